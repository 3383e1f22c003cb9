/**
 * PostgreSQL on a blockvault volume: the volume is served over NBD by a separate process
 * (helpers/engine-server.child.ts, an Engine with a BYOK root key), nbdfuse shows the export as a
 * file, losetup makes it a block device, ext4 goes on it, and a PostgreSQL cluster lives there.
 *
 *  1. initdb, pg_ctl start, pgbench -i, a short pgbench run: exit 0, no failed transaction, and
 *     TPC-B's sums agree (accounts = tellers = branches = history, one history row per
 *     transaction).
 *  2. The root key is rotated (new material, re-encryption of every written sector) while a
 *     second pgbench run is going: pgbench succeeds and the rotation task completes before it
 *     ends. Then PostgreSQL stops, the whole chain is taken down (so no page cache is left) and
 *     brought up again, e2fsck finds ext4 clean and the sums still agree: what PostgreSQL wrote
 *     before and during the rotation reads back from the volume under the new key.
 *  3. The key is force-deleted (cryptoshred) during a third run: PostgreSQL gets I/O errors
 *     (its log says so, pgbench fails), blockvault reports the volume locked, a fresh NBD
 *     connection cannot read a byte of it, and after a restart (the CLI opening the engine
 *     directory in a new process) the volume still shows locked and still cannot be exported.
 *
 * The server must not run in the test process: a blocking file system call on the mount (by
 * this process or the kernel on its behalf) would wait for a FUSE request that only this
 * process's event loop could answer. Needs root (losetup, mount), /dev/fuse, loop devices and
 * the OS user postgres; where one is missing the case says so and skips. Cleanup (postmaster by
 * pid, umount with a lazy fallback, losetup -d, nbdfuse, the server process) runs by name and
 * pid in afterEach, whatever failed, and the test checks that nothing was left behind.
 */
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { findTools } from '../helpers/external-tool.js';
import { useTempDirs } from '../helpers/temp-dir.js';
import { runBlockvault } from '../cli/helpers.js';
import { ENGINE_SERVER_PASSPHRASE, startEngineServer, type EngineServer } from './helpers/engine-server.js';
import { attachLoop, Cleanups, fsChainMissing, mkfsExt4, mounted, mountExt4 } from './helpers/fs-chain.js';
import { alive, cluster, findPostgresBin, POSTGRES_DEBIAN_PACKAGE, POSTGRES_PROGRAMS, postgresUser, TPCB_SUMS_SQL, type Cluster } from './helpers/postgres.js';
import { killAll, run } from './helpers/processes.js';
import { CMD, ERR, RawClient } from './helpers/raw-client.js';

const pgBin = findPostgresBin();
const tools = findTools([
  { name: 'nbdfuse', debianPackage: 'libnbd-bin' },
  { name: 'losetup', debianPackage: 'mount' },
  { name: 'mount', debianPackage: 'mount' },
  { name: 'umount', debianPackage: 'mount' },
  { name: 'mkfs.ext4', debianPackage: 'e2fsprogs' },
  { name: 'e2fsck', debianPackage: 'e2fsprogs' },
  { name: 'pgrep', debianPackage: 'procps' },
  // Absolute paths where found (see findPostgresBin), else the bare names, reported missing.
  ...POSTGRES_PROGRAMS.map((p) => ({ name: pgBin === null ? p : join(pgBin, p), debianPackage: POSTGRES_DEBIAN_PACKAGE })),
]);
const pgUser = postgresUser();
if (pgUser === null && process.env['BLOCKVAULT_REQUIRE_TOOLS'] === '1') {
  throw new Error(`BLOCKVAULT_REQUIRE_TOOLS=1 and no OS user postgres: apt-get install ${POSTGRES_DEBIAN_PACKAGE} creates it`);
}
const missing = [
  ...(tools.ok ? [] : [tools.reason]),
  ...(pgUser === null ? [`no OS user postgres (apt-get install ${POSTGRES_DEBIAN_PACKAGE})`] : []),
  ...fsChainMissing(),
];
const reason = missing.join(', ');

const tempDir = useTempDirs('blockvault-nbd-pg-');
const MiB = 1024 * 1024;
const VOLUME_BYTES = 512 * MiB;
/** pgbench's scale: 100 000 accounts per unit, about 15 MiB of tables and indexes per unit. */
const SCALE = 4;
const BENCH_ARGS = ['--client=4', '--jobs=2', '--no-vacuum'];

const cleanups = new Cleanups();
let raw: RawClient | null = null;
afterEach(async () => {
  raw?.close();
  raw = null;
  killAll();
  await cleanups.run();
});

function tpcbSums(line: string): { sums: string[]; history: number } {
  const f = line.split('|');
  return { sums: f.slice(0, 4), history: Number(f[4]) };
}

describe.skipIf(missing.length > 0)(`PostgreSQL on a volume (ext4, loop, nbdfuse, NBD)${reason === '' ? '' : ` (skipped: ${reason})`}`, () => {
  it('pgbench runs; a key rotation under pgbench loses nothing; a cryptoshred under pgbench gives PostgreSQL I/O errors and locks the data for good', async () => {
    const bin = pgBin!;
    const user = pgUser!;
    const dir = tempDir();
    // The postgres user must reach the socket and log directories (and the mount) under it.
    chmodSync(dir, 0o755);
    const server: EngineServer = await startEngineServer({ engineDir: join(dir, 'engine'), socketPath: join(dir, 'nbd.sock'), sizeBytes: VOLUME_BYTES, importKey: true });
    cleanups.push(`stop the engine server (pid ${server.child.pid})`, async () => {
      const code = await server.stop();
      if (code !== 0) throw new Error(`engine server exited ${code}: ${server.stderr()}`);
    });

    const mountDir = join(dir, 'mnt');
    let pg: Cluster | null = null;
    const up = async (round: number, format: boolean): Promise<{ loop: string; pg: Cluster }> => {
      const loop = await attachLoop(cleanups, server.uri, join(dir, `fuse-${round}`));
      if (format) await mkfsExt4(loop);
      else {
        const fsck = await run('e2fsck', ['-f', '-n', loop], { timeoutMs: 60_000 });
        expect(fsck.code, `e2fsck after the rotation:\n${fsck.stdout}${fsck.stderr}`).toBe(0);
      }
      await mountExt4(cleanups, loop, mountDir);
      const c = cluster(bin, user, { dataDir: join(mountDir, 'pgdata'), socketDir: join(dir, 'pgsock'), logFile: join(dir, 'pglog', `postgres-${round}.log`) });
      if (format) await c.initdb();
      cleanups.push(`stop PostgreSQL in ${c.dataDir}`, () => c.kill());
      await c.start();
      return { loop, pg: c };
    };

    // 1. A cluster on the volume, pgbench's tables, a short run.
    const base = cleanups.depth;
    ({ pg } = await up(1, true));
    const init = await pg.pgbench(['--initialize', '--quiet', `--scale=${SCALE}`]);
    expect(init.run.code, `pgbench -i:\n${init.run.stderr}`).toBe(0);
    const first = await pg.pgbench([...BENCH_ARGS, '--time=5']);
    expect(first.run.code, `pgbench run 1:\n${first.run.stdout}${first.run.stderr}`).toBe(0);
    expect(first.transactions).toBeGreaterThan(0);
    expect(first.failed).toBe(0);
    expect(first.tps).toBeGreaterThan(0);
    const afterFirst = tpcbSums(await pg.sql(TPCB_SUMS_SQL));
    expect(new Set(afterFirst.sums).size, `TPC-B sums ${afterFirst.sums.join(', ')}`).toBe(1);
    expect(afterFirst.history).toBe(first.transactions);

    // 2. Rotate the root key while pgbench runs.
    const before = (await server.command<{ volume: { keyVersion: number; state: string } }>('state')).volume;
    expect(before.state).toBe('active');
    let secondDone = false;
    const secondRun = pg.pgbench([...BENCH_ARGS, '--time=15']).finally(() => (secondDone = true));
    await new Promise((r) => setTimeout(r, 1500));
    expect(secondDone, 'pgbench run 2 ended before the rotation started').toBe(false);
    const { taskIds } = await server.command<{ taskIds: string[] }>('rotate');
    expect(taskIds).toHaveLength(1);
    const task = await server.command<{ state: string; sectorsDone?: number }>('wait', { taskId: taskIds[0], timeoutMs: 60_000 });
    const rotatedWhileRunning = !secondDone;
    const second = await secondRun;
    expect(second.run.code, `pgbench run 2 (rotation):\n${second.run.stdout}${second.run.stderr}`).toBe(0);
    expect(second.failed).toBe(0);
    expect(second.transactions).toBeGreaterThan(0);
    expect(task.state).toBe('completed');
    expect(rotatedWhileRunning, 'the rotation task completed while pgbench was still running').toBe(true);
    const rotated = (await server.command<{ volume: { keyVersion: number; state: string } }>('state')).volume;
    expect(rotated.keyVersion).toBe(before.keyVersion + 1);
    expect(rotated.state).toBe('active');

    // Down to the volume and up again: e2fsck and the TPC-B sums read what the volume holds.
    const stopped = await pg.stop('fast');
    expect(stopped.code, stopped.stderr).toBe(0);
    await cleanups.run(base);
    expect(cleanups.errors).toEqual([]);
    expect(mounted(mountDir)).toBe(false);
    ({ pg } = await up(2, false));
    const afterSecond = tpcbSums(await pg.sql(TPCB_SUMS_SQL));
    expect(new Set(afterSecond.sums).size, `TPC-B sums after the rotation ${afterSecond.sums.join(', ')}`).toBe(1);
    expect(afterSecond.history).toBe(first.transactions + second.transactions);

    // 3. Cryptoshred while pgbench runs.
    let thirdDone = false;
    const thirdRun = pg.pgbench([...BENCH_ARGS, '--time=30'], 60_000).finally(() => (thirdDone = true));
    await new Promise((r) => setTimeout(r, 2000));
    expect(thirdDone, 'pgbench run 3 ended before the cryptoshred').toBe(false);
    const shredAt = Date.now();
    const shred = await server.command<{ volume: { state: string } }>('shred');
    expect(shred.volume.state).toBe('locked');
    const third = await thirdRun;
    const failedAfterMs = Date.now() - shredAt;
    expect(third.run.code, `pgbench run 3 (cryptoshred) should fail:\n${third.run.stdout}`).not.toBe(0);
    // It failed because PostgreSQL's I/O failed, and well before its 30 s were up.
    expect(third.run.signal).toBeNull();
    expect(failedAfterMs).toBeLessThan(25_000);
    expect(pg.log()).toMatch(/(PANIC|ERROR|FATAL): .*Input\/output error/);

    // blockvault: the volume is locked, its metadata readable; the key is gone.
    const state = await server.command<{ volume: { state: string; name: string; sizeBytes: number; lockedAtMs: number | null }; key: { state?: number } }>('state');
    expect(state.volume).toMatchObject({ state: 'locked', name: 'pg', sizeBytes: VOLUME_BYTES });
    expect(state.volume.lockedAtMs).not.toBeNull();
    // A fresh connection (not the page cache of any file system) cannot read the data.
    raw = await RawClient.connect(server.socketPath);
    await raw.go('pg');
    const offsets = [0, 4096, 64 * MiB, 256 * MiB];
    offsets.forEach((offset, i) => raw!.request(CMD.READ, BigInt(i + 1), offset, 4096));
    for (const _ of offsets) {
      const reply = await raw.reply();
      expect(reply.error, `read ${reply.cookie}`).toBe(ERR.EIO);
      expect(reply.data).toBeUndefined();
    }
    raw.close();
    raw = null;

    // Take everything down (ext4 on a device that fails every request: umount may need -l).
    const pid = pg.postmasterPid;
    await cleanups.run();
    expect(cleanups.errors).toEqual([]);
    expect(mounted(mountDir)).toBe(false);
    if (pid !== null) expect(alive(pid)).toBe(false);
    expect((await run('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE'])).stdout).not.toContain(dir);
    expect(server.child.exitCode).toBe(0);

    // After a restart (a new process opens the engine directory): the metadata still reads as
    // locked, and the data still cannot be read.
    const env = { BLOCKVAULT_PASSPHRASE: ENGINE_SERVER_PASSPHRASE };
    const show = await runBlockvault(['volume', 'show', 'pg', '--dir', join(dir, 'engine'), '--json'], { env });
    expect(show.code, show.stderr).toBe(0);
    expect(show.json()).toMatchObject({ name: 'pg', state: 'locked', sizeBytes: VOLUME_BYTES });
    const exported = await runBlockvault(['volume', 'export', 'pg', '--dir', join(dir, 'engine'), '--length', '4096', '--file', join(dir, 'after.raw'), '--json'], { env });
    expect(exported.code).toBe(1);
    expect(exported.jsonError().error.code).toBe('VOLUME_LOCKED');
  }, 150_000);
});
