/**
 * Random operations on a volume's storage (VolumeCore on a real LMDB file, or on an object pool
 * with RADOS's ordering and random delays: the remote store's loads) compared with an in-memory
 * reference: reads, writes and trims of any byte range (unaligned too), flushes, reopens, and
 * batches of operations issued without waiting (call order must hold).
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeCluster, decodeSplitMeta, isPresent, parseClusterKey } from '../../src/volume/cluster-format.js';
import { cipherBackends } from '../helpers/cipher-backends.js';
import { CoreHarness, HARNESS_OID_PREFIX } from '../helpers/core-harness.js';
import { MemoryObjects } from '../helpers/memory-objects.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { xorshiftBytes } from '../helpers/xorshift.js';

afterAll(() => removeTempDirs());

type Op =
  | { kind: 'write'; offset: number; length: number; seed: number }
  | { kind: 'read'; offset: number; length: number }
  | { kind: 'trim'; offset: number; length: number }
  | { kind: 'flush' }
  | { kind: 'reopen' }
  | { kind: 'batch'; ops: Op[] };

function rangeArb(sizeBytes: number, sectorSize: number, lengthMax: number): fc.Arbitrary<{ offset: number; length: number }> {
  const aligned = fc
    .tuple(fc.nat({ max: sizeBytes / sectorSize - 1 }), fc.integer({ min: 0, max: Math.max(1, lengthMax / sectorSize) }))
    .map(([s, n]) => ({ offset: s * sectorSize, length: n * sectorSize }));
  const unaligned = fc.tuple(fc.nat({ max: sizeBytes - 1 }), fc.nat({ max: lengthMax })).map(([offset, length]) => ({ offset, length }));
  const nearEnd = fc.nat({ max: 3 * sectorSize }).map((back) => ({ offset: Math.max(0, sizeBytes - back - 7), length: back + 7 }));
  return fc
    .oneof({ weight: 3, arbitrary: aligned }, { weight: 3, arbitrary: unaligned }, { weight: 1, arbitrary: nearEnd })
    .map(({ offset, length }) => ({ offset, length: Math.min(length, sizeBytes - offset) }));
}

function opArb(sizeBytes: number, sectorSize: number, lengthMax: number): fc.Arbitrary<Op> {
  const range = rangeArb(sizeBytes, sectorSize, lengthMax);
  const simple: fc.Arbitrary<Op> = fc.oneof(
    { weight: 6, arbitrary: fc.tuple(range, fc.nat()).map(([r, seed]) => ({ kind: 'write' as const, ...r, seed })) },
    { weight: 4, arbitrary: range.map((r) => ({ kind: 'read' as const, ...r })) },
    { weight: 2, arbitrary: range.map((r) => ({ kind: 'trim' as const, ...r })) },
    { weight: 1, arbitrary: fc.constant({ kind: 'flush' as const }) },
  );
  return fc.oneof(
    { weight: 10, arbitrary: simple },
    { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
    { weight: 2, arbitrary: fc.array(simple, { minLength: 2, maxLength: 8 }).map((ops) => ({ kind: 'batch' as const, ops })) },
  );
}


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
];

/** Every stored cluster image of the harness volume: LMDB values, or the pool's objects. */
function storedClusters(h: CoreHarness, objects: MemoryObjects | undefined): { clusterIndex: number; value: Buffer }[] {
  if (objects === undefined) return [...h.clusters.getRange()].map(({ key, value }) => ({ clusterIndex: parseClusterKey(key).clusterIndex, value }));
  return [...objects.objects]
    .filter(([oid]) => oid.startsWith(HARNESS_OID_PREFIX))
    .map(([oid, value]) => ({ clusterIndex: Number.parseInt(oid.slice(oid.lastIndexOf('.') + 1), 16), value }));
}

for (const { backend, skipReason } of cipherBackends()) {
  describe.skipIf(skipReason !== null)(`VolumeCore vs an in-memory model [${backend}]`, () => {
    for (const { sectorSize, clusterSectors, layout, store } of configs) {
      const clusterBytes = sectorSize * clusterSectors;
      // Three whole clusters and a partial one, so the end of the volume falls inside a cluster.
      const sizeBytes = clusterBytes * 3 + Math.max(1, Math.floor(clusterSectors / 2)) * sectorSize;
      it(`sector ${sectorSize}, ${clusterSectors} sectors per cluster, ${layout}${store === 'objects' ? ', in an object pool' : ''}`, async () => {
        await fc.assert(
          fc.asyncProperty(fc.array(opArb(sizeBytes, sectorSize, clusterBytes * 2 + sectorSize), { minLength: 1, maxLength: 25 }), async (ops) => {
            const dir = makeTempDir('bv-core-model-');
            const objects = store === 'objects' ? new MemoryObjects() : undefined;
            // A small write budget and small steps so backpressure and multi-step operations happen.
            const h = await CoreHarness.open({
              dir,
              backend,
              sectorSize,
              clusterSectors,
              layout,
              sizeBytes,
              writeBufferBytesMax: clusterBytes * 4,
              writeStepBytesMax: clusterBytes,
              trimStepClustersMax: 2,
              objects,
            });
            const model = Buffer.alloc(sizeBytes);
            try {
              const issue = (op: Op): Promise<void> => {
                switch (op.kind) {
                  case 'write': {
                    const data = xorshiftBytes(op.seed, op.length);
                    data.copy(model, op.offset);
                    return h.core.write(op.offset, data);
                  }
                  case 'read': {
                    const expected = Buffer.from(model.subarray(op.offset, op.offset + op.length));
                    return h.core.read(op.offset, op.length).then((got) => {
                      expect(got.length).toBe(op.length);
                      expect(Buffer.from(got).equals(expected)).toBe(true);
                    });
                  }
                  case 'trim':
                    model.fill(0, op.offset, op.offset + op.length);
                    return h.core.trim(op.offset, op.length);
                  case 'flush':
                    return h.core.flush();
                  default:
                    throw new Error(`not a simple op: ${op.kind}`);
                }
              };
              for (const op of ops) {
                if (op.kind === 'reopen') await h.reopen();
                else if (op.kind === 'batch') await Promise.all(op.ops.map(issue));
                else await issue(op);
              }
              await h.reopen();
              const all = await h.core.read(0, sizeBytes);
              expect(Buffer.from(all).equals(model)).toBe(true);
              // Every stored value decodes; split bodies exist exactly for present slots.
              const g = { sectorSize, clusterSectors };
              let storedSectors = 0;
              const presentSectors = new Set<number>();
              const stored = storedClusters(h, objects);
              if (objects !== undefined) expect(h.clusters.getKeysCount()).toBe(0);
              for (const { clusterIndex, value } of stored) {
                const view = layout === 'split' ? decodeSplitMeta(value, g) : decodeCluster(value, g);
                storedSectors += view.presentCount;
                for (let slot = 0; slot < clusterSectors; slot++) {
                  if (isPresent(view.bitmap, slot)) presentSectors.add(clusterIndex * clusterSectors + slot);
                }
              }
              const bodies = [...h.sectors.getKeys()].map((key) => parseClusterKey(key).clusterIndex);
              if (layout === 'split') expect(new Set(bodies)).toEqual(presentSectors);
              else expect(bodies).toEqual([]);
              let nonZeroSectors = 0;
              for (let s = 0; s < sizeBytes / sectorSize; s++) {
                if (model.subarray(s * sectorSize, (s + 1) * sectorSize).some((b) => b !== 0)) nonZeroSectors++;
              }
              expect(storedSectors).toBeGreaterThanOrEqual(nonZeroSectors);
            } finally {
              await h.close();
            }
          }),
          { numRuns: 50 },
        );
      });
    }

    it.each(['split', 'compact', 'objects'] as const)('trim of a whole volume leaves no cluster behind (%s)', async (kind) => {
      const dir = makeTempDir('bv-core-trim-');
      const sizeBytes = 4096 * 8 * 10;
      const objects = kind === 'objects' ? new MemoryObjects() : undefined;
      const layout = kind === 'objects' ? 'compact' : kind;
      const h = await CoreHarness.open({ dir, backend, sectorSize: 4096, clusterSectors: 8, layout, sizeBytes, trimStepClustersMax: 3, objects });
      const count = (): number => (objects === undefined ? h.storedClusterCount() : storedClusters(h, objects).length);
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
