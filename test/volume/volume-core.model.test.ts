/**
 * The VolumeCore model check (test/helpers/volume-model.ts) on a real LMDB file, and on an object
 * pool with RADOS's ordering and random delays (the remote store's loads); test/store/ runs it on
 * RADOS itself.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { cipherBackends } from '../helpers/cipher-backends.js';
import { CoreHarness, HARNESS_OID_PREFIX } from '../helpers/core-harness.js';
import { MemoryObjects } from '../helpers/memory-objects.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { checkVolumeModel } from '../helpers/volume-model.js';

afterAll(() => removeTempDirs());

const configs = [
  { sectorSize: 4096 as const, clusterSectors: 8, layout: 'split' as const, store: 'lmdb' as const },
  { sectorSize: 4096 as const, clusterSectors: 3, layout: 'split' as const, store: 'lmdb' as const },
  { sectorSize: 4096 as const, clusterSectors: 8, layout: 'compact' as const, store: 'lmdb' as const },
  { sectorSize: 512 as const, clusterSectors: 64, layout: 'compact' as const, store: 'lmdb' as const },
  { sectorSize: 4096 as const, clusterSectors: 1, layout: 'compact' as const, store: 'lmdb' as const },
  { sectorSize: 512 as const, clusterSectors: 5, layout: 'compact' as const, store: 'lmdb' as const },
  { sectorSize: 4096 as const, clusterSectors: 8, layout: 'compact' as const, store: 'objects' as const },
  { sectorSize: 512 as const, clusterSectors: 5, layout: 'compact' as const, store: 'objects' as const },
  { sectorSize: 4096 as const, clusterSectors: 1, layout: 'compact' as const, store: 'objects' as const },
  { sectorSize: 4096 as const, clusterSectors: 8, layout: 'compact' as const, store: 'listed objects' as const },
  { sectorSize: 512 as const, clusterSectors: 5, layout: 'compact' as const, store: 'listed objects' as const },
];

/** Every cluster image the harness volume has in the pool. */
function storedClusters(objects: MemoryObjects): { clusterIndex: number; value: Buffer }[] {
  return [...objects.objects]
    .filter(([oid]) => oid.startsWith(HARNESS_OID_PREFIX))
    .map(([oid, value]) => ({ clusterIndex: Number.parseInt(oid.slice(oid.lastIndexOf('.') + 1), 16), value }));
}

for (const { backend, skipReason } of cipherBackends()) {
  describe.skipIf(skipReason !== null)(`VolumeCore vs an in-memory model [${backend}]`, () => {
    for (const { sectorSize, clusterSectors, layout, store } of configs) {
      const where = { lmdb: '', objects: ', in an object pool', 'listed objects': ', in an object pool that lists' }[store];
      it(`sector ${sectorSize}, ${clusterSectors} sectors per cluster, ${layout}${where}`, async () => {
        await checkVolumeModel({
          backend,
          sectorSize,
          clusterSectors,
          layout,
          numRuns: 50,
          pool:
            store !== 'lmdb'
              ? () => {
                  const objects = new MemoryObjects(2, store === 'listed objects');
                  return { objects, oidPrefix: HARNESS_OID_PREFIX, stored: () => storedClusters(objects) };
                }
              : undefined,
        });
      });
    }

    it.each(['split', 'compact', 'objects', 'listed objects'] as const)('trim of a whole volume leaves no cluster behind (%s)', async (kind) => {
      const dir = makeTempDir('bv-core-trim-');
      const sizeBytes = 4096 * 8 * 10;
      const objects = kind === 'objects' || kind === 'listed objects' ? new MemoryObjects(2, kind === 'listed objects') : undefined;
      const layout = kind === 'split' ? 'split' : 'compact';
      const h = await CoreHarness.open({ dir, backend, sectorSize: 4096, clusterSectors: 8, layout, sizeBytes, trimStepClustersMax: 3, objects });
      const count = (): number => (objects === undefined ? h.storedClusterCount() : storedClusters(objects).length);
      try {
        await h.core.write(0, randomBytes(sizeBytes));
        expect(count()).toBe(10);
        await h.core.trim(100, sizeBytes - 200);
        expect(count()).toBe(2);
        await h.core.trim(0, sizeBytes);
        expect(count()).toBe(0);
        expect(h.sectors.getKeysCount()).toBe(0);
        expect(Buffer.from(await h.core.read(0, sizeBytes)).equals(Buffer.alloc(sizeBytes))).toBe(true);
      } finally {
        await h.close();
      }
    });
  });
}

describe('an object pool holding a foreign object under a volume\'s name prefix', () => {
  it('makes a scan fail with VOLUME_CORRUPT, naming the object; reads and writes of real clusters go on', async () => {
    const objects = new MemoryObjects(1, true);
    const h = await CoreHarness.open({ dir: makeTempDir('bv-core-foreign-'), backend: 'native', sectorSize: 4096, clusterSectors: 8, layout: 'compact', sizeBytes: 4096 * 8 * 4, objects });
    try {
      const data = randomBytes(4096);
      await h.core.write(0, data);
      objects.objects.set(`${HARNESS_OID_PREFIX}00000001.not-a-cluster`, Buffer.from('x'));
      await expect(h.core.trim(4096 * 8, 4096 * 8)).rejects.toMatchObject({ code: 'VOLUME_CORRUPT', message: expect.stringContaining('not-a-cluster') });
      expect(Buffer.from(await h.core.read(0, 4096)).equals(data)).toBe(true);
    } finally {
      await h.close();
    }
  });
});
