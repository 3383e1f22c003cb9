/**
 * The split layout's meta cache (src/volume/cluster-store.ts, MetaCache) never changes what a
 * read returns: with a bound far below the volume's cluster count (constant eviction), with reads
 * between a re-encryption commit's issue and its resolution, and after a re-encryption that ran
 * with no lookup at all (the entries made before it belong to an epoch that has ended).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { reencryptCluster } from '../../src/volume/cluster-format.js';
import { VolumeReencryptTarget } from '../../src/volume/reencrypt-target.js';
import type { VolumeCore } from '../../src/volume/volume-core.js';
import { cipherBackends } from '../helpers/cipher-backends.js';
import { CoreHarness, testKeeper } from '../helpers/core-harness.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

afterAll(() => removeTempDirs());

const SECTOR = 4096;
const CLUSTER_SECTORS = 8;
const CLUSTER_BYTES = SECTOR * CLUSTER_SECTORS;

/** A small deterministic PRNG, so a failure can be replayed. */
function prng(seed: number): (n: number) => number {
  let x = seed | 1;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

async function expectSectors(core: VolumeCore, model: Buffer, sectors: number[]): Promise<void> {
  for (const s of sectors) {
    expect(Buffer.from(await core.read(s * SECTOR, SECTOR)).equals(model.subarray(s * SECTOR, (s + 1) * SECTOR)), `sector ${s}`).toBe(true);
  }
}

/** Re-encrypt every cluster to a new generation; `between` runs after each commit is issued, before it resolves. */
async function reencryptAll(h: CoreHarness, between: (clusterIndexes: number[]) => Promise<void> | void): Promise<void> {
  const target = new VolumeReencryptTarget(h.core, testKeeper());
  const generation = await target.beginGeneration(target.writeGeneration());
  const oldKey = target.dataKey(generation - 1);
  const newKey = target.dataKey(generation);
  let from = 0;
  for (;;) {
    const snapshots = await target.staleClusters(from, generation, 3);
    if (snapshots.length === 0) break;
    const items = snapshots.map((expected) => ({
      expected,
      raw: reencryptCluster(h.cipher, expected.raw, expected.clusterIndex, SECTOR, CLUSTER_SECTORS, oldKey, newKey, generation),
    }));
    const commit = target.commitReencrypted(items, () => {});
    await between(snapshots.map((s) => s.clusterIndex));
    await commit;
    from = snapshots[snapshots.length - 1]!.clusterIndex + 1;
  }
  await target.retireGenerations(generation);
  oldKey.fill(0);
  newKey.fill(0);
}

for (const { backend, skipReason } of cipherBackends()) {
  describe.skipIf(skipReason !== null)(`split layout meta cache [${backend}]`, () => {
    it('random writes, trims and reads with a cache far smaller than the volume match the model', async () => {
      const clusterCount = 24;
      const sizeBytes = clusterCount * CLUSTER_BYTES;
      const h = await CoreHarness.open({
        dir: makeTempDir('bv-metacache-'),
        backend,
        sectorSize: SECTOR,
        clusterSectors: CLUSTER_SECTORS,
        layout: 'split',
        sizeBytes,
        metaCacheClustersMax: 4,
      });
      try {
        const model = Buffer.alloc(sizeBytes);
        const random = prng(0x5eed);
        for (let round = 0; round < 40; round++) {
          // A batch issued without waiting: call order must hold, reads see every earlier call.
          const pending: Promise<unknown>[] = [];
          for (let i = 0; i < 8; i++) {
            const offset = random(2) === 0 ? random(sizeBytes / SECTOR) * SECTOR : random(sizeBytes);
            const length = Math.min(sizeBytes - offset, random(3) === 0 ? SECTOR : 1 + random(3 * SECTOR));
            const kind = random(6);
            if (kind < 3) {
              const data = randomBytes(length);
              data.copy(model, offset);
              pending.push(h.core.write(offset, data));
            } else if (kind === 3) {
              model.fill(0, offset, offset + length);
              pending.push(h.core.trim(offset, length));
            } else {
              const expected = Buffer.from(model.subarray(offset, offset + length));
              pending.push(h.core.read(offset, length).then((got) => expect(Buffer.from(got).equals(expected)).toBe(true)));
            }
          }
          await Promise.all(pending);
          if (round % 10 === 9) expect(Buffer.from(await h.core.read(0, sizeBytes)).equals(model)).toBe(true);
        }
        await h.reopen();
        expect(Buffer.from(await h.core.read(0, sizeBytes)).equals(model)).toBe(true);
      } finally {
        await h.close();
      }
    });

    it('reads during a re-encryption return the latest data, also while a commit is in flight', async () => {
      const clusterCount = 9;
      const sizeBytes = clusterCount * CLUSTER_BYTES;
      const h = await CoreHarness.open({ dir: makeTempDir('bv-metacache-'), backend, sectorSize: SECTOR, clusterSectors: CLUSTER_SECTORS, layout: 'split', sizeBytes });
      try {
        const model = randomBytes(sizeBytes);
        model.fill(0, 4 * CLUSTER_BYTES, 5 * CLUSTER_BYTES); // a hole
        await h.core.write(0, model.subarray(0, 4 * CLUSTER_BYTES));
        await h.core.write(5 * CLUSTER_BYTES, model.subarray(5 * CLUSTER_BYTES));
        const all = Array.from({ length: sizeBytes / SECTOR }, (_, s) => s);
        await expectSectors(h.core, model, all); // every meta now cached
        await reencryptAll(h, async (clusters) => {
          // The commit is issued, not yet visible: reads see the old snapshot, consistently.
          await expectSectors(h.core, model, all);
          // A racing write to the batch's first cluster, then reads while both are in flight.
          const at = clusters[0]! * CLUSTER_BYTES + SECTOR;
          const patch = randomBytes(SECTOR);
          patch.copy(model, at);
          const racing = h.core.write(at, patch);
          await expectSectors(h.core, model, all);
          await racing;
        });
        await expectSectors(h.core, model, all);
        expect(h.core.keys.generations()).toEqual([2]);
      } finally {
        await h.close();
      }
    });

    it('entries made before a re-encryption are not used after it, even with no lookup while it ran', async () => {
      const sizeBytes = 6 * CLUSTER_BYTES;
      const h = await CoreHarness.open({ dir: makeTempDir('bv-metacache-'), backend, sectorSize: SECTOR, clusterSectors: CLUSTER_SECTORS, layout: 'split', sizeBytes });
      try {
        const model = randomBytes(sizeBytes);
        await h.core.write(0, model);
        const all = Array.from({ length: sizeBytes / SECTOR }, (_, s) => s);
        await expectSectors(h.core, model, all);
        await reencryptAll(h, () => {});
        await expectSectors(h.core, model, all);
        await reencryptAll(h, () => {});
        expect(Buffer.from(await h.core.read(0, sizeBytes)).equals(model)).toBe(true);
        expect(h.core.keys.generations()).toEqual([3]);
      } finally {
        await h.close();
      }
    });
  });
}
