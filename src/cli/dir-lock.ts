/**
 * One CLI process per engine directory at a time. The engine assumes a single process appends to
 * its audit hash chain and writes its HSM keystore (src/audit/audit-log.ts: "One process appends
 * to a given directory at a time"); two CLI commands run side by side on the same directory would
 * fork the audit chain. So every command that opens the engine first takes `<dir>/cli.lock`
 * (created exclusively, holding the owner's pid), waits while another live process holds it, and
 * takes over a lock whose owner has died.
 */
import { mkdirSync, openSync, readFileSync, rmSync, writeSync, closeSync } from 'node:fs';
import path from 'node:path';
import { CliFailure } from './usage-error.js';

export const LOCK_FILE = 'cli.lock';
const POLL_MS = 100;
export const LOCK_WAIT_MS_DEFAULT = 120_000;

export interface DirLock {
  release(): void;
}

export async function lockDir(dir: string, options: { waitMs?: number; onWait?: (ownerPid: number) => void } = {}): Promise<DirLock> {
  mkdirSync(dir, { recursive: true });
  const lockPath = path.join(dir, LOCK_FILE);
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
      throw new CliFailure(
        'DIR_BUSY',
        `another blockvault process (pid ${owner ?? '?'}) has ${dir} open; the engine serves one process at a time. Wait for it to finish, or stop it`,
      );
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
