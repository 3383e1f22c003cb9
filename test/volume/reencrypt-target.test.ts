/**
 * The volume's ReencryptTarget (src/volume/reencrypt-contract.ts) driven like the rotation runner drives
 * it, with foreground writes and trims racing the re-encryption: a racing edit always wins, no
 * data is lost, and the old generation can be retired at the end. Both layouts, both backends,
 * and an object pool (the remote store's compare-and-set commits, test/helpers/memory-objects.ts).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { reencryptCluster } from '../../src/volume/cluster-format.js';
import type { VolumeLayout } from '../../src/volume/cluster-store.js';
import { VolumeReencryptTarget } from '../../src/volume/reencrypt-target.js';
import { cipherBackends } from '../helpers/cipher-backends.js';
import { CoreHarness, testKeeper } from '../helpers/core-harness.js';
import { MemoryObjects } from '../helpers/memory-objects.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

afterAll(() => removeTempDirs());


const configs: { sectorSize: 512 | 4096; clusterSectors: number; layout: VolumeLayout; inObjects?: boolean }[] = [
  { sectorSize: 4096, clusterSectors: 8, layout: 'split' },
  { sectorSize: 4096, clusterSectors: 8, layout: 'compact' },
  { sectorSize: 512, clusterSectors: 64, layout: 'compact' },
  { sectorSize: 4096, clusterSectors: 8, layout: 'compact', inObjects: true },
  { sectorSize: 512, clusterSectors: 64, layout: 'compact', inObjects: true },
];

for (const { backend, skipReason } of cipherBackends()) {
  describe.skipIf(skipReason !== null)(`ReencryptTarget [${backend}]`, () => {
    for (const { sectorSize, clusterSectors, layout, inObjects = false } of configs) {
      it(`re-encrypts every cluster while racing writes and trims win (${sectorSize} x ${clusterSectors}, ${layout}${inObjects ? ', object pool' : ''})`, async () => {
        const clusterBytes = sectorSize * clusterSectors;
        const clusterCount = 12;
        const sizeBytes = clusterBytes * clusterCount;
        const objects = inObjects ? new MemoryObjects() : undefined;
        const h = await CoreHarness.open({ dir: makeTempDir('bv-target-'), backend, sectorSize, clusterSectors, layout, sizeBytes, objects });
        try {
          const model = randomBytes(sizeBytes);
          // A hole: cluster 5 never written, and half of cluster 7 trimmed.
          model.fill(0, 5 * clusterBytes, 6 * clusterBytes);
          await h.core.write(0, model.subarray(0, 5 * clusterBytes));
          await h.core.write(6 * clusterBytes, model.subarray(6 * clusterBytes));
          await h.core.trim(7 * clusterBytes, clusterBytes / 2);
          model.fill(0, 7 * clusterBytes, 7 * clusterBytes + clusterBytes / 2);

          const keeper = testKeeper();
          const checkpoints = h.root.openDB<number, string>('checkpoints', {});
          const target = new VolumeReencryptTarget(h.core, keeper);
          expect(target.writeGeneration()).toBe(1);
          // An object pool answers an upper bound: the volume's cluster count.
          expect(await target.storedClusterCount()).toBe(inObjects ? clusterCount : clusterCount - 1);
          const generation = await target.beginGeneration(1);
          expect(generation).toBe(2);
          expect(await target.beginGeneration(1)).toBe(2); // idempotent across a crash
          const oldKey = target.dataKey(1);
          const newKey = target.dataKey(2);

          let from = 0;
          let stored = 0;
          let lost = 0;
          let batch = 0;
          for (;;) {
            const snapshots = await target.staleClusters(from, generation, 3);
            if (snapshots.length === 0) break;
            const items = snapshots.map((expected) => ({
              expected,
              raw: reencryptCluster(h.cipher, expected.raw, expected.clusterIndex, sectorSize, clusterSectors, oldKey, newKey, generation),
            }));
            // Race: a foreground write into the first snapshot's cluster and a trim of the
            // second's, after the snapshot: on even batches issued before the commit (the
            // commit must skip them), on odd batches right after it (they must overwrite it).
            const racing: Promise<void>[] = [];
            const race = (): void => {
              const first = snapshots[0]!.clusterIndex;
              const patch = randomBytes(sectorSize + 3);
              patch.copy(model, first * clusterBytes + 5);
              racing.push(h.core.write(first * clusterBytes + 5, patch));
              if (snapshots[1] !== undefined) {
                const second = snapshots[1].clusterIndex;
                model.fill(0, second * clusterBytes, second * clusterBytes + sectorSize);
                racing.push(h.core.trim(second * clusterBytes, sectorSize));
              }
            };
            if (batch % 2 === 0) race();
            let inCommit = false;
            const commit = target.commitReencrypted(items, () => {
              inCommit = true;
              checkpoints.putSync('checkpoint', batch);
            });
            if (batch % 2 === 1) race();
            const committed = await commit;
            // LMDB persists the checkpoint in the clusters' transaction; an object pool has none,
            // so the caller persists it afterwards (as the runner does).
            expect(inCommit).toBe(!inObjects);
            if (!inCommit) checkpoints.putSync('checkpoint', batch);
            await Promise.all(racing);
            stored += committed;
            lost += items.length - committed;
            expect(checkpoints.get('checkpoint')).toBe(batch);
            batch++;
            from = snapshots[snapshots.length - 1]!.clusterIndex + 1;
          }
          expect(lost).toBeGreaterThan(0);
          expect(stored + lost).toBe(clusterCount - 1);
          expect(await target.staleClusters(0, generation, 100)).toEqual([]);
          await target.retireGenerations(generation);
          expect(keeper.retired).toEqual([1]);
          expect(h.core.keys.generations()).toEqual([2]);
          oldKey.fill(0);
          newKey.fill(0);
          expect(Buffer.from(await h.core.read(0, sizeBytes)).equals(model)).toBe(true);
        } finally {
          await h.close();
        }
      });
    }

    it('a foreground write to a stale cluster moves the whole cluster to the write generation', async () => {
      const h = await CoreHarness.open({ dir: makeTempDir('bv-target-'), backend, sectorSize: 4096, clusterSectors: 8, layout: 'split', sizeBytes: 4096 * 16 });
      try {
        const data = randomBytes(4096 * 16);
        await h.core.write(0, data);
        const target = new VolumeReencryptTarget(h.core, testKeeper());
        const generation = await target.beginGeneration(1);
        expect((await target.staleClusters(0, generation, 10)).map((s) => s.clusterIndex)).toEqual([0, 1]);
        const patch = randomBytes(100);
        patch.copy(data, 9000);
        await h.core.write(9000, patch);
        expect((await target.staleClusters(0, generation, 10)).map((s) => s.clusterIndex)).toEqual([1]);
        expect(Buffer.from(await h.core.read(0, data.length)).equals(data)).toBe(true);
      } finally {
        await h.close();
      }
    });
  });
}

describe('data keys in memory', () => {
  it('are zeroized when the volume closes', async () => {
    const h = await CoreHarness.open({ dir: makeTempDir('bv-zero-'), backend: 'ts', sectorSize: 4096, clusterSectors: 8, layout: 'split', sizeBytes: 4096 * 8 });
    const key = h.core.keys.get(1);
    expect(key.some((b) => b !== 0)).toBe(true);
    await h.core.write(0, randomBytes(4096));
    await h.close();
    expect(key.every((b) => b === 0)).toBe(true);
    expect(h.core.keys.size).toBe(0);
  });
});
