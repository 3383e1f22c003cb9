/**
 * Key operations while a volume is exported over NBD: a rotation with re-encryption under fio's
 * random-write load loses no write (fio verifies every block's crc32c afterwards), and a forced
 * key delete (cryptoshred) makes every later request of a connected client fail with EIO, and
 * new clients too, while the export's metadata stays visible.
 */
import { afterEach, expect, it } from 'vitest';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { findTools } from '../helpers/external-tool.js';
import { forEachProvider } from '../helpers/providers.js';
import { useTempDirs } from '../helpers/temp-dir.js';
import { xorshiftBytes } from '../helpers/xorshift.js';
import { killAll, run, runOk } from './helpers/processes.js';
import { CMD, ERR, RawClient } from './helpers/raw-client.js';
import { serveVolumes, type Served } from './helpers/served.js';

const check = findTools([
  { name: 'fio', debianPackage: 'fio' },
  { name: 'qemu-io', debianPackage: 'qemu-utils' },
  { name: 'nbdinfo', debianPackage: 'libnbd-bin' },
  { name: 'nbdcopy', debianPackage: 'libnbd-bin' },
]);
const tempDir = useTempDirs('blockvault-nbd-keys-');
const MiB = 1024 * 1024;

let served: Served | null = null;
let raw: RawClient | null = null;
afterEach(async () => {
  killAll();
  raw?.close();
  await served?.stop();
  served = raw = null;
});

function fioArgs(uri: string, extra: string[]): string[] {
  // The same job (offsets, seed, block headers) for the write run and the verify-only run.
  return ['--name=rot', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--size=48M', '--iodepth=16', '--verify=crc32c', '--verify_state_save=0', '--randseed=21', '--output-format=json', ...extra];
}

function fioJob(stdout: string): { error: number; write: { io_bytes: number }; read: { io_bytes: number } } {
  return (JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: Array<ReturnType<typeof fioJob>> }).jobs[0]!;
}

// On each key provider: the rotation rewraps and the shred destroys the root key on the token too.
forEachProvider('key operations on an exported volume', (provider) => {
  // The rotation under fio load runs on the software provider only: it costs about 7 s of fio and
  // re-encryption on a 2-core machine either way, and its one key operation (a new version and a
  // rewrap) is the PKCS#11 path that test/engine/rotation.test.ts and
  // test/rotation/engine-volume.test.ts already run on the token. The shred below runs on both.
  if (provider === 'software') it('a rotation with re-encryption under fio random-write load loses no write', async () => {
    const dir = tempDir();
    served = await serveVolumes(dir, [{ name: 'db', sizeBytes: 64 * MiB }], undefined, { provider });
    const uri = served.uri('db');
    // Fill the volume so the re-encryption has every cluster to move while fio overwrites them.
    const fill = join(dir, 'fill.raw');
    writeFileSync(fill, xorshiftBytes(3, 64 * MiB));
    await runOk('nbdcopy', [fill, uri]);
    const before = served.engine.listVolumes()[0]!;

    let fioDone = false;
    // Paced (about 2.5 s for 48 MiB): the write-back server takes random 4 KiB writes faster than
    // the rotation re-encrypts 64 MiB, and this test is about the two running at once.
    const load = run('fio', fioArgs(uri, ['--do_verify=0', '--rate=20m']), { timeoutMs: 60_000 }).finally(() => (fioDone = true));
    await new Promise((r) => setTimeout(r, 250));
    expect(fioDone).toBe(false);
    const tasks = await served.engine.hsm.rotateKey(served.key.crn);
    expect(tasks).toHaveLength(1);
    const task = await served.engine.tasks.wait(tasks[0]!.id, { timeoutMs: 60_000 });
    const overlapped = !fioDone;
    const written = await load;
    expect(written.code, written.stderr).toBe(0);
    expect(fioJob(written.stdout)).toMatchObject({ error: 0, write: { io_bytes: 48 * MiB } });
    expect(task.state).toBe('completed');
    // The rotation finished while fio was still writing: the race this test is about happened.
    expect(overlapped).toBe(true);
    const after = served.engine.listVolumes()[0]!;
    expect(after.keyVersion).toBe(before.keyVersion + 1);

    // Every block fio wrote, read back under the new key, with its crc32c checked.
    const verified = await runOk('fio', fioArgs(uri, ['--verify_only', '--verify_fatal=1']), { timeoutMs: 60_000 });
    const job = fioJob(verified.stdout);
    expect(job.error).toBe(0);
    expect(job.read.io_bytes).toBe(48 * MiB);
  });

  it('cryptoshred while exported: every later request of a connected client fails with EIO, new clients too', async () => {
    const dir = tempDir();
    served = await serveVolumes(dir, [{ name: 'pg', sizeBytes: 16 * MiB }], undefined, { provider });
    const uri = served.uri('pg');
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 1M', uri]);
    raw = await RawClient.connect(served.socketPath);
    await raw.go('pg', { structured: true, allocation: true });
    raw.request(CMD.READ, 1n, 0, 4096);
    expect((await raw.reply()).data).toEqual(Buffer.alloc(4096, 0x5a));

    // A load that is running when the key goes.
    const load = run('fio', ['--name=shred', '--ioengine=nbd', `--uri=${uri}`, '--rw=randrw', '--bs=4k', '--size=16M', '--iodepth=8', '--time_based', '--runtime=20', '--output-format=json'], { timeoutMs: 40_000 });
    await new Promise((r) => setTimeout(r, 300));
    await served.engine.hsm.deleteKey(served.key.crn, { force: true });
    const shredLoad = await load;
    expect(shredLoad.code).not.toBe(0);
    expect(shredLoad.stdout + shredLoad.stderr).toMatch(/Input\/output error|error=5|EIO/i);

    let cookie = 10n;
    const requests: Array<[number, number, number, Buffer?]> = [
      [CMD.READ, 0, 4096],
      [CMD.WRITE, 0, 4096, Buffer.alloc(4096, 1)],
      [CMD.FLUSH, 0, 0],
      [CMD.TRIM, 0, 4096],
      [CMD.WRITE_ZEROES, 0, 4096],
      [CMD.BLOCK_STATUS, 0, 4096],
      [CMD.READ, 8 * MiB, 512],
    ];
    for (const [type, offset, length, payload] of requests) raw.request(type, cookie++, offset, length, 0, payload);
    for (let i = 0; i < requests.length; i++) {
      const reply = await raw.reply();
      expect(reply.error, `request ${reply.cookie}`).toBe(ERR.EIO);
      expect(reply.data).toBeUndefined();
    }
    const fresh = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0x5a 0 4k', uri]);
    expect(fresh.code).not.toBe(0);
    expect(fresh.stdout + fresh.stderr).toContain('Input/output error');
    // The export and its metadata stay visible; blockvault reports the volume locked.
    const info = JSON.parse((await runOk('nbdinfo', ['--json', uri])).stdout) as { exports: Array<{ 'export-size': number }> };
    expect(info.exports[0]!['export-size']).toBe(16 * MiB);
    expect(served.engine.listVolumes()[0]!.state).toBe('locked');
  });
}, check.ok ? null : check.reason);
