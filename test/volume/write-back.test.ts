/**
 * Write-back writes (`writeBack`, what the NBD server uses): answered once applied, before their
 * LMDB commit; made durable by the flush that follows; and a commit that fails after the answer
 * is not hidden: that flush and every later one reject with WRITE_LOST. Real LMDB files; the
 * failure is injected at the lmdb-js boundary (a put whose promise rejects), since a real commit
 * failure (disk full, I/O error) cannot be provoked on demand.
 */
import { randomBytes } from 'node:crypto';
import type { Database } from 'lmdb';
import { afterAll, describe, expect, it } from 'vitest';
import { CoreHarness } from '../helpers/core-harness.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

afterAll(() => removeTempDirs());

const SIZE = 4 * 1024 * 1024;
const base = { backend: 'native', sectorSize: 4096, clusterSectors: 8, sizeBytes: SIZE } as const;

/** Puts and removes through `db`, whose promises reject while `failing.on` (after the real put). */
function failingCommits(failing: { on: boolean }) {
  return (db: Database<Buffer, Buffer>): Database<Buffer, Buffer> =>
    new Proxy(db, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver) as unknown;
        if ((property !== 'put' && property !== 'remove') || typeof value !== 'function') return typeof value === 'function' ? value.bind(target) : value;
        return (...args: unknown[]) => {
          const written = (value as (...a: unknown[]) => Promise<boolean>).apply(target, args);
          if (!failing.on) return written;
          return written.then(() => {
            throw new Error('injected commit failure (EIO)');
          });
        };
      },
    });
}

describe.each(['split', 'compact'] as const)('write-back writes (%s layout)', (layout) => {
  it('resolve before their commit and are read back at once; a write-through write resolves after it', async () => {
    const h = await CoreHarness.open({ ...base, dir: makeTempDir(), layout });
    try {
      const data = randomBytes(3 * 4096 + 100);
      await h.core.write(5000, data, true);
      // The commit has not happened yet (it needs another turn of the event loop): still in the overlay.
      expect(h.core.store.pendingCount).toBeGreaterThan(0);
      expect(Buffer.from(await h.core.read(5000, data.length)).equals(data)).toBe(true);
      await h.core.write(40_000, data);
      expect(h.core.store.pendingCount).toBe(0);
      await h.core.flush();
      await h.reopen();
      expect(Buffer.from(await h.core.read(5000, data.length)).equals(data)).toBe(true);
    } finally {
      await h.close();
    }
  });

  it('a flush after a write-back write reports its failed commit, then keeps reporting it', async () => {
    const failing = { on: false };
    const h = await CoreHarness.open({ ...base, dir: makeTempDir(), layout, wrapDatabase: failingCommits(failing) });
    try {
      await h.core.write(0, randomBytes(8192), true);
      await h.core.flush();
      failing.on = true;
      await h.core.write(65_536, randomBytes(4096), true); // answered: the failure comes later
      failing.on = false;
      await expect(h.core.flush()).rejects.toMatchObject({ code: 'WRITE_LOST', details: { volumeId: 'test-volume' } });
      await expect(h.core.flush()).rejects.toMatchObject({ code: 'WRITE_LOST' });
      // A write-through write whose commit fails rejects itself (and is no write-back loss).
      const other = await CoreHarness.open({ ...base, dir: makeTempDir(), layout, wrapDatabase: failingCommits(failing) });
      try {
        failing.on = true;
        await expect(other.core.write(0, randomBytes(4096))).rejects.toThrow(/injected commit failure/);
        failing.on = false;
        await expect(other.core.flush()).rejects.toThrow(/injected commit failure/);
        await expect(other.core.flush()).resolves.toBeUndefined();
      } finally {
        await other.close();
      }
    } finally {
      await h.close();
    }
  });
});
