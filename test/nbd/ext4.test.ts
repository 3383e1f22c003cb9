/**
 * A real file system on a blockvault volume: nbdfuse exposes the NBD export as a file, losetup
 * makes it a block device, mkfs.ext4 and mount put ext4 on it; files are written and checksummed,
 * unmounted, checked with e2fsck, and verified again after the server and the engine were
 * restarted (so the data went through the volume to LMDB, not just through a cache).
 *
 * The server runs in its own process (`blockvault volume serve`), as it must: a process that
 * serves an export must not make blocking file system calls on a mount backed by it (its event
 * loop would wait for a FUSE request that only it can answer).
 *
 * Needs root, /dev/fuse and loop devices; where one is missing the case says so and skips.
 * Cleanup (unmount, detach the loop device, unmount the FUSE dir, kill nbdfuse) goes by the
 * names this test created, in afterEach, also when a step failed.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runBlockvault } from '../cli/helpers.js';
import { findTools } from '../helpers/external-tool.js';
import { useTempDirs } from '../helpers/temp-dir.js';
import { xorshiftBytes } from '../helpers/xorshift.js';
import { startCliServer } from './helpers/cli-server.js';
import { attachLoop, Cleanups, fsChainMissing, mounted } from './helpers/fs-chain.js';
import { run, runOk } from './helpers/processes.js';

const tools = findTools([
  { name: 'nbdfuse', debianPackage: 'libnbd-bin' },
  { name: 'losetup', debianPackage: 'mount' },
  { name: 'mount', debianPackage: 'mount' },
  { name: 'umount', debianPackage: 'mount' },
  { name: 'mkfs.ext4', debianPackage: 'e2fsprogs' },
  { name: 'e2fsck', debianPackage: 'e2fsprogs' },
]);
const missing = [...(tools.ok ? [] : [tools.reason]), ...fsChainMissing()];
const reason = missing.join(', ');

const tempDir = useTempDirs('blockvault-nbd-ext4-');
const MiB = 1024 * 1024;
const VOLUME_BYTES = 128 * MiB;

const cleanups = new Cleanups();
afterEach(async () => {
  await cleanups.run();
});

/** Serve the volume (CLI child process), expose it with nbdfuse, attach a loop device; returns the device name. */
async function attach(engineDir: string, dir: string, round: number): Promise<string> {
  const server = await startCliServer(['fs', '--dir', engineDir, '--socket', join(dir, `nbd-${round}.sock`)]);
  cleanups.push(`stop volume serve (pid ${server.child.pid})`, async () => {
    const code = await server.stop();
    if (code !== 0) throw new Error(`volume serve exited ${code}: ${server.stderr()}`);
  });
  return attachLoop(cleanups, server.firstLine, join(dir, `fuse-${round}`));
}

/** A plain mount and, on cleanup, a plain unmount that must succeed (fs-chain's mountExt4 falls back to a lazy one). */
async function mountAt(loop: string, mountDir: string): Promise<void> {
  mkdirSync(mountDir, { recursive: true });
  await runOk('mount', ['-t', 'ext4', loop, mountDir]);
  cleanups.push(`unmount ${mountDir}`, async () => {
    if (mounted(mountDir)) await runOk('umount', [mountDir]);
  });
}

/** Runs the newest cleanup steps (the ones pushed since `depth`) now; any that failed fail the test. */
async function unwindTo(depth: number): Promise<void> {
  await cleanups.run(depth);
  expect(cleanups.errors).toEqual([]);
}

describe.skipIf(missing.length > 0)(`ext4 on a volume through nbdfuse and a loop device${reason === '' ? '' : ` (skipped: ${reason})`}`, () => {
  it('mkfs.ext4, mount, write and checksum, unmount, e2fsck, restart everything, remount, verify', async () => {
    const dir = tempDir();
    const engineDir = join(dir, 'engine');
    expect((await runBlockvault(['hsm', 'init', '--dir', engineDir])).code).toBe(0);
    expect((await runBlockvault(['volume', 'create', '--dir', engineDir, '--name', 'fs', '--size', String(VOLUME_BYTES)])).code).toBe(0);

    const base = cleanups.depth;
    const loop = await attach(engineDir, dir, 1);
    await runOk('mkfs.ext4', ['-q', '-F', '-b', '4096', loop], { timeoutMs: 60_000 });
    const mountDir = join(dir, 'mnt');
    await mountAt(loop, mountDir);
    const sums = new Map<string, string>();
    for (let i = 0; i < 6; i++) {
      const data = xorshiftBytes(100 + i, (i + 1) * 1_234_567);
      const name = `file-${i}.bin`;
      writeFileSync(join(mountDir, name), data);
      sums.set(name, createHash('sha256').update(data).digest('hex'));
    }
    mkdirSync(join(mountDir, 'dir/sub'), { recursive: true });
    writeFileSync(join(mountDir, 'dir/sub/small.txt'), 'a small file in a subdirectory\n');
    await runOk('sync', []);
    await runOk('umount', [mountDir]);
    const fsck = await run('e2fsck', ['-f', '-n', loop]);
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
    await unwindTo(base);

    // unwindTo stopped the server (SIGTERM: flush, close, exit 0). A new server process opens
    // the engine afresh: what the file system wrote must have reached the volume's store.
    const loop2 = await attach(engineDir, dir, 2);
    await mountAt(loop2, mountDir);
    for (const [name, sum] of sums) {
      expect(createHash('sha256').update(readFileSync(join(mountDir, name))).digest('hex'), name).toBe(sum);
    }
    expect(readFileSync(join(mountDir, 'dir/sub/small.txt'), 'utf8')).toBe('a small file in a subdirectory\n');
    await unwindTo(base);
    expect(mounted(mountDir)).toBe(false);
  });
});
