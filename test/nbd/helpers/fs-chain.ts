/**
 * An NBD export as a mounted ext4 file system: nbdfuse shows the export as a file, losetup makes
 * that file a block device, mkfs.ext4 and mount put ext4 on it. Every step pushes its undo onto a
 * Cleanups stack, so whatever failed, `cleanups.run()` unmounts, detaches and kills by the names
 * and pids this chain created. The undo steps assume the device may have gone bad underneath
 * (a cryptoshred makes every request fail with EIO): unmount with a timeout, then lazily; detach
 * the loop device; stop nbdfuse, then unmount its directory lazily if it is still there.
 * No vitest import: the benchmarks use it too.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from '../../helpers/wait-for.js';
import { run, runOk } from './processes.js';

/** What this machine lacks for the chain beyond the tools (root, /dev/fuse, loop devices); empty when nothing. */
export function fsChainMissing(): string[] {
  return [
    ...(process.getuid?.() === 0 ? [] : ['not root (losetup and mount need it)']),
    ...(existsSync('/dev/fuse') ? [] : ['no /dev/fuse']),
    ...(existsSync('/dev/loop-control') ? [] : ['no /dev/loop-control (loop devices)']),
  ];
}

/** Undo steps, run newest first; a failing step does not stop the ones after it. */
export class Cleanups {
  readonly #steps: Array<{ what: string; undo: () => Promise<unknown> }> = [];
  readonly errors: string[] = [];

  push(what: string, undo: () => Promise<unknown>): void {
    this.#steps.push({ what, undo });
  }

  get depth(): number {
    return this.#steps.length;
  }

  /** Runs the steps pushed since `depth` (default all), newest first; collects what failed in `errors`. */
  async run(depth = 0): Promise<void> {
    while (this.#steps.length > depth) {
      const step = this.#steps.pop()!;
      try {
        await step.undo();
      } catch (error) {
        this.errors.push(`${step.what}: ${(error as Error).message}`);
      }
    }
  }
}

export function mounted(path: string): boolean {
  return readFileSync('/proc/mounts', 'utf8').split('\n').some((line) => line.split(' ')[1] === path);
}


/** Unmounts `path`; if that fails or hangs (a device gone bad), detaches it lazily (umount -l). */
export async function unmountRobustly(path: string, timeoutMs = 10_000): Promise<void> {
  if (!mounted(path)) return;
  const r = await run('umount', [path], { timeoutMs });
  if (r.code === 0 && !mounted(path)) return;
  if (mounted(path)) await runOk('umount', ['-l', path], { timeoutMs });
}

/** nbdfuse exposes `uri` as `<fuseDir>/nbd`; losetup attaches it. Returns the loop device. */
export async function attachLoop(cleanups: Cleanups, uri: string, fuseDir: string): Promise<string> {
  mkdirSync(fuseDir, { recursive: true });
  const fuse = spawn('nbdfuse', [fuseDir, uri], { stdio: ['ignore', 'ignore', 'pipe'] });
  let fuseErr = '';
  fuse.stderr!.on('data', (b: Buffer) => (fuseErr += b.toString()));
  const fuseExited = new Promise<void>((resolve) => fuse.on('close', () => resolve()));
  cleanups.push(`stop nbdfuse (pid ${fuse.pid}) on ${fuseDir}`, async () => {
    // A plain unmount first lets nbdfuse exit on its own; killing it aborts the FUSE connection.
    if (mounted(fuseDir)) await run('umount', [fuseDir], { timeoutMs: 5000 });
    if (fuse.exitCode === null && fuse.signalCode === null) fuse.kill('SIGTERM');
    await Promise.race([fuseExited, new Promise((r) => setTimeout(r, 5000))]);
    if (fuse.exitCode === null && fuse.signalCode === null) fuse.kill('SIGKILL');
    if (mounted(fuseDir)) await runOk('umount', ['-l', fuseDir], { timeoutMs: 5000 });
  });
  const file = join(fuseDir, 'nbd');
  await waitFor(() => existsSync(file) || fuse.exitCode !== null, 'nbdfuse', 10_000, 25);
  if (!existsSync(file)) throw new Error(`nbdfuse exited: ${fuseErr}`);
  const loop = (await runOk('losetup', ['--find', '--show', file])).stdout.trim();
  cleanups.push(`detach ${loop}`, async () => {
    const attached = (await run('losetup', ['--list', '--noheadings', '--output', 'NAME'])).stdout.split('\n').map((l) => l.trim());
    if (attached.includes(loop)) await runOk('losetup', ['--detach', loop], { timeoutMs: 10_000 });
  });
  return loop;
}

/**
 * mkfs.ext4 with 4 KiB blocks. `eager` initializes the inode tables and the journal now instead
 * of leaving it to the kernel's ext4lazyinit thread, which otherwise writes to the device in the
 * background for a while after mounting (benchmarks want no such hidden load).
 */
export async function mkfsExt4(loop: string, options: { eager?: boolean } = {}): Promise<void> {
  const extended = options.eager === true ? ['-E', 'lazy_itable_init=0,lazy_journal_init=0'] : [];
  await runOk('mkfs.ext4', ['-q', '-F', '-b', '4096', ...extended, loop], { timeoutMs: 120_000 });
}

export async function mountExt4(cleanups: Cleanups, loop: string, mountDir: string): Promise<void> {
  mkdirSync(mountDir, { recursive: true });
  await runOk('mount', ['-t', 'ext4', loop, mountDir], { timeoutMs: 30_000 });
  cleanups.push(`unmount ${mountDir}`, () => unmountRobustly(mountDir));
}
