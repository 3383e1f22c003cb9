/**
 * One process per engine directory at a time. The engine assumes a single process appends to its
 * audit hash chain, writes its HSM keystore and caches volume records (src/audit/audit-log.ts:
 * "One process appends to a given directory at a time"); two processes on one directory would
 * fork the audit chain. So Engine.open (and the CLI, around it) takes a lock file in the
 * directory: created exclusively, holding the owner's pid; a live owner makes the caller wait up
 * to `waitMs` and then fail with `busyError`; a lock whose owner died (a crash, a SIGKILL) is taken
 * over. Within one process the lock is held once: a second open of the same directory is refused
 * too, because two engines on one directory in one process fork the chain just the same.
 *
 * Residual race, accepted: two processes that both find the same dead owner's lock at the same
 * instant may both remove it; the exclusive create lets only one of them win the new lock unless
 * the loser's remove lands after the winner's create. Crashes are rare and opens rarer still.
 */
import { mkdirSync, openSync, readFileSync, rmSync, writeSync, closeSync } from 'node:fs';
import path from 'node:path';

const POLL_MS = 100;
const LOCK_WAIT_MS_DEFAULT = 120_000;

export interface DirLock {
  release(): void;
}

export interface LockDirOptions {
  /** The lock file's name inside `dir`. */
  fileName: string;
  /** How long to wait for a live owner; 0 fails at once. Default 120 s. */
  waitMs?: number;
  onWait?: (ownerPid: number) => void;
  /** The error thrown when a live owner still holds the lock after `waitMs`. */
  busyError: (ownerPid: number | null) => Error;
}

export async function lockDir(dir: string, options: LockDirOptions): Promise<DirLock> {
  mkdirSync(dir, { recursive: true });
  const lockPath = path.join(dir, options.fileName);
  const deadline = Date.now() + (options.waitMs ?? LOCK_WAIT_MS_DEFAULT);
  let announced = false;
  for (;;) {
    try {
      const fd = openSync(lockPath, 'wx', 0o600);
      try {
        writeSync(fd, `${process.pid}\n`);
      } finally {
        closeSync(fd);
      }
      let released = false;
      return {
        release() {
          if (released) return;
          released = true;
          rmSync(lockPath, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const owner = readOwner(lockPath);
    if (owner !== null && !isAlive(owner)) {
      rmSync(lockPath, { force: true }); // its owner died without releasing it
      continue;
    }
    if (Date.now() >= deadline) {
      throw options.busyError(owner);
    }
    if (!announced && owner !== null) {
      announced = true;
      options.onWait?.(owner);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function readOwner(lockPath: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(lockPath, 'utf8'), 10);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null; // removed meanwhile, or not written yet: try again
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
