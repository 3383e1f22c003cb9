/**
 * A blockvault NBD server in its own process, for tests and benchmarks that put a kernel file
 * system on an export (nbdfuse + loop + ext4): the process that serves an export must not be the
 * one that makes blocking calls on a mount backed by it, and a test runner must not have its
 * event loop stalled by kernel FUSE I/O. Started by `startEngineServer` (engine-server.ts).
 *
 * `node --import tsx engine-server.child.ts <engine dir> <socket path> <volume bytes> [--import-key]`
 * opens an Engine on the directory, creates an HSM instance and a root key (created in the HSM,
 * or imported from 32 random bytes with --import-key), authorizes the storage service, creates
 * one volume `pg` under that key and serves it on the Unix socket. It prints one JSON line
 * `{"ready":{uri,keyCrn,volumeId}}`, then takes one JSON command per stdin line and answers each
 * with one JSON line `{"id",ok,result|error}`:
 *   state              the volume's metadata (engine.listVolumes) and the key's state
 *   rotate             rotates the root key (new material if imported); the task ids
 *   wait {taskId}      waits for a task (timeoutMs, default 60 s); the task record
 *   shred              force-deletes the root key (cryptoshred); the volume's state afterwards
 *   stop               closes the server and the engine, then exits 0
 * stdin closing also stops it, so a parent that dies leaves no server behind.
 */
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { Engine } from '../../../src/engine.js';
import { ENGINE_SERVER_PASSPHRASE } from './engine-server.js';

const [dir, socketPath, sizeText, ...flags] = process.argv.slice(2);
if (dir === undefined || socketPath === undefined || sizeText === undefined) {
  process.stderr.write('usage: engine-server.child.ts <engine dir> <socket path> <volume bytes> [--import-key]\n');
  process.exit(2);
}
const imported = flags.includes('--import-key');

const engine = await Engine.open({ dir, hsm: { passphrase: ENGINE_SERVER_PASSPHRASE }, purgeIntervalMs: 0 });
const instance = await engine.hsm.createInstance({ name: 'pg-instance' });
const key = imported
  ? await engine.hsm.importRootKey(instance.id, { name: 'pg-root', material: randomBytes(32) })
  : await engine.hsm.createRootKey(instance.id, { name: 'pg-root' });
await engine.hsm.authorize({ sourceService: 'blockvault', targetInstance: instance.id, role: 'Reader' });
const vol = await engine.createVolume({ name: 'pg', sizeBytes: Number(sizeText), sectorSize: 4096, diskEncryptionKeyCrn: key.crn });
const volumeId = vol.info().id;
await vol.close();
const server = await engine.serveNbd({ socketPath }, [{ volume: 'pg' }]);

let stopping: Promise<void> | null = null;
function stop(): Promise<void> {
  stopping ??= (async () => {
    await server.close().catch(() => undefined);
    await engine.close();
  })();
  return stopping;
}

async function handle(command: { cmd?: string; taskId?: string; timeoutMs?: number }): Promise<unknown> {
  switch (command.cmd) {
    case 'state': {
      const volume = engine.listVolumes().find((v) => v.id === volumeId)!;
      return { volume, key: await engine.hsm.getKey(key.crn).catch((e: Error) => ({ error: e.message })) };
    }
    case 'rotate': {
      const tasks = (await engine.hsm.rotateKey(key.crn, imported ? { material: randomBytes(32) } : {})) as Array<{ id: string }>;
      return { taskIds: tasks.map((t) => t.id) };
    }
    case 'wait':
      return engine.tasks.wait(command.taskId!, { timeoutMs: command.timeoutMs ?? 60_000 });
    case 'shred': {
      const result = await engine.hsm.deleteKey(key.crn, { force: true });
      return { result, volume: engine.listVolumes().find((v) => v.id === volumeId)! };
    }
    case 'stop':
      await stop();
      return { stopped: true };
    default:
      throw new Error(`unknown command ${JSON.stringify(command.cmd)}`);
  }
}

process.stdout.write(`${JSON.stringify({ ready: { uri: server.uri, keyCrn: key.crn, volumeId } })}\n`);

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  let command: { id?: number; cmd?: string };
  try {
    command = JSON.parse(line) as typeof command;
  } catch {
    process.stdout.write(`${JSON.stringify({ id: null, ok: false, error: `not JSON: ${line}` })}\n`);
    return;
  }
  handle(command).then(
    (result) => {
      process.stdout.write(`${JSON.stringify({ id: command.id, ok: true, result })}\n`);
      if (command.cmd === 'stop') process.exit(0);
    },
    (error: unknown) => {
      const e = error as { code?: string; message?: string };
      process.stdout.write(`${JSON.stringify({ id: command.id, ok: false, error: `${e.code ?? 'ERROR'}: ${e.message ?? String(error)}` })}\n`);
    },
  );
});
lines.on('close', () => void stop().then(() => process.exit(0)));
