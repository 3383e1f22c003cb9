/**
 * One CLI command per engine directory at a time: a command waits (up to two minutes) for another
 * blockvault process that has the directory open, rather than failing at once as Engine.open does.
 * The mechanism is src/util/dir-lock.ts; this is only the CLI's file name, wait and error.
 */
import { lockDir as lockDirWith, type DirLock } from '../util/dir-lock.js';
import { CliFailure } from './usage-error.js';

export type { DirLock };
export const LOCK_FILE = 'cli.lock';
export const LOCK_WAIT_MS_DEFAULT = 120_000;

export function lockDir(dir: string, options: { waitMs?: number; onWait?: (ownerPid: number) => void } = {}): Promise<DirLock> {
  return lockDirWith(dir, {
    fileName: LOCK_FILE,
    waitMs: options.waitMs ?? LOCK_WAIT_MS_DEFAULT,
    ...(options.onWait === undefined ? {} : { onWait: options.onWait }),
    busyError: (owner) =>
      new CliFailure(
        'DIR_BUSY',
        `another blockvault process (pid ${owner ?? '?'}) has ${dir} open; the engine serves one process at a time. Wait for it to finish, or stop it`,
      ),
  });
}
