import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readdirSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * Small files that hold sealed key material. Writes are atomic (temporary file, fsync, rename,
 * fsync of the directory) so a crash leaves either the old or the new file, never half of one.
 * Destruction overwrites the file's bytes in place with random data and fsyncs before unlinking,
 * so the sealed bytes are gone from the file system's view of the disk, not just unlinked.
 *
 * Residual risk, stated plainly: an in-place overwrite reaches the same logical blocks, but SSD
 * firmware (wear levelling, remapping) and copy-on-write or journaling file systems (btrfs, ZFS,
 * ext4 with data=journal, snapshots, backups) may keep older physical copies. Those copies are
 * still sealed under the master key, so shredding's guarantee on such media is: without the
 * passphrase or key file nothing is recoverable, and with it only from below the file system.
 * These calls are synchronous on purpose: the files are tiny, and doing them in one event-loop
 * turn means no other operation can observe a half-destroyed key.
 */

export const TEMP_SUFFIX = '.tmp';

export function fsyncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some platforms cannot fsync a directory; the rename is still atomic there.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Create `path` holding `bytes`, fsynced, with mode 0600; never over an existing file (O_EXCL:
 * EEXIST, also for a symlink). The directory entry is not fsynced: the caller does that.
 */
export function writeNewFileSync(path: string, bytes: Uint8Array): void {
  const fd = openSync(path, 'wx', 0o600);
  try {
    let offset = 0;
    while (offset < bytes.length) offset += writeSync(fd, bytes, offset, bytes.length - offset);
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    shredFileSync(path);
    throw error;
  }
  closeSync(fd);
}

/** Write `bytes` to `path` atomically and durably; the file is created with mode 0600. */
export function writeFileAtomicSync(path: string, bytes: Uint8Array): void {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`);
  writeNewFileSync(tmp, bytes);
  renameSync(tmp, path);
  fsyncDirectory(dirname(path));
}

/**
 * Overwrite every byte of the file with random data, fsync, unlink, fsync the directory.
 * Returns false when there was no such file (already destroyed).
 */
export function shredFileSync(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'r+');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
  try {
    const length = statSync(path).size;
    const noise = randomBytes(Math.min(Math.max(length, 1), 1 << 16));
    let offset = 0;
    while (offset < length) {
      const count = Math.min(noise.length, length - offset);
      offset += writeSync(fd, noise, 0, count, offset);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  unlinkSync(path);
  fsyncDirectory(dirname(path));
  return true;
}

/** Names in `dir` (none when it does not exist). */
export function listDirectorySync(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}
