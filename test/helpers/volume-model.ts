/**
 * The VolumeCore model check shared by the storage tests: random reads, writes and trims of any
 * byte range (unaligned too), flushes, reopens, and batches issued without waiting (call order
 * must hold), compared with an in-memory reference. test/volume/volume-core.model.test.ts runs it
 * on LMDB and on an in-memory object pool; test/store/rados-volume.test.ts on RADOS.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import { decodeCluster, decodeSplitMeta, isPresent, parseClusterKey, type SectorSize } from '../../src/volume/cluster-format.js';
import type { VolumeLayout } from '../../src/volume/cluster-store.js';
import type { ClusterObjects } from '../../src/volume/object-store.js';
import { CoreHarness } from './core-harness.js';
import { makeTempDir } from './temp-dir.js';
import { xorshiftBytes } from './xorshift.js';

export interface ModelCheckOptions {
  backend: 'native' | 'ts';
  sectorSize: SectorSize;
  clusterSectors: number;
  layout: VolumeLayout;
  numRuns: number;
  /**
   * For a volume in an object pool: a fresh pool (or a fresh name prefix in one) per run, and,
   * where the pool can list them, the cluster images it holds, for the check of stored values.
   */
  pool?: () => { objects: ClusterObjects; oidPrefix: string; stored?: () => { clusterIndex: number; value: Buffer }[] };
}

function storedInLmdb(h: CoreHarness): { clusterIndex: number; value: Buffer }[] {
  return [...h.clusters.getRange()].map(({ key, value }) => ({ clusterIndex: parseClusterKey(key).clusterIndex, value }));
}

type Op =
  | { kind: 'write'; offset: number; length: number; seed: number }
  | { kind: 'read'; offset: number; length: number }
  | { kind: 'trim'; offset: number; length: number }
  | { kind: 'map'; offset: number; length: number }
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
    { weight: 1, arbitrary: range.map((r) => ({ kind: 'map' as const, ...r })) },
    { weight: 1, arbitrary: fc.constant({ kind: 'flush' as const }) },
  );
  return fc.oneof(
    { weight: 10, arbitrary: simple },
    { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
    { weight: 2, arbitrary: fc.array(simple, { minLength: 2, maxLength: 8 }).map((ops) => ({ kind: 'batch' as const, ops })) },
  );
}


/** Run the model check: three whole clusters and a partial one, so the end of the volume falls inside a cluster. */
export async function checkVolumeModel(options: ModelCheckOptions): Promise<void> {
  const { backend, sectorSize, clusterSectors, layout } = options;
  const clusterBytes = sectorSize * clusterSectors;
  const sizeBytes = clusterBytes * 3 + Math.max(1, Math.floor(clusterSectors / 2)) * sectorSize;
  await fc.assert(
    fc.asyncProperty(fc.array(opArb(sizeBytes, sectorSize, clusterBytes * 2 + sectorSize), { minLength: 1, maxLength: 25 }), async (ops) => {
      const dir = makeTempDir('bv-core-model-');
      const pool = options.pool?.();
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
        objects: pool?.objects,
        oidPrefix: pool?.oidPrefix,
      });
      const model = Buffer.alloc(sizeBytes);
      // Which sectors are stored (allocated): written ones, until a trim covers them whole.
      const allocated = new Uint8Array(Math.ceil(sizeBytes / sectorSize));
      try {
        const issue = (op: Op): Promise<void> => {
          switch (op.kind) {
            case 'write': {
              const data = xorshiftBytes(op.seed, op.length);
              data.copy(model, op.offset);
              if (op.length > 0) allocated.fill(1, Math.floor(op.offset / sectorSize), Math.floor((op.offset + op.length - 1) / sectorSize) + 1);
              return h.core.write(op.offset, data);
            }
            case 'read': {
              const expected = Buffer.from(model.subarray(op.offset, op.offset + op.length));
              return h.core.read(op.offset, op.length).then((got) => {
                expect(got.length).toBe(op.length);
                expect(Buffer.from(got).equals(expected)).toBe(true);
              });
            }
            case 'trim': {
              model.fill(0, op.offset, op.offset + op.length);
              const whole = Math.floor((op.offset + op.length) / sectorSize);
              if (Math.ceil(op.offset / sectorSize) < whole) allocated.fill(0, Math.ceil(op.offset / sectorSize), whole);
              return h.core.trim(op.offset, op.length);
            }
            case 'map': {
              // One allocation call, issued now (as the NBD server's BLOCK_STATUS), at most 2
              // stored clusters visited: its extents start at the offset, follow each other, and
              // say per sector what the model says at this point of the call order.
              const expected = Uint8Array.from(allocated);
              return h.core.allocation(op.offset, op.length, 2).then((extents) => {
                if (op.length > 0) expect(extents.length).toBeGreaterThan(0);
                let at = op.offset;
                for (const extent of extents) {
                  expect(extent.offset).toBe(at);
                  expect(extent.length).toBeGreaterThan(0);
                  for (let s = Math.floor(extent.offset / sectorSize); s * sectorSize < extent.offset + extent.length; s++) {
                    expect(extent.allocated, `sector ${s}`).toBe(expected[s] === 1);
                  }
                  at += extent.length;
                }
                expect(at).toBeLessThanOrEqual(op.offset + op.length);
              });
            }
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
        const stored = pool === undefined ? storedInLmdb(h) : pool.stored?.();
        if (pool !== undefined) expect(h.clusters.getKeysCount()).toBe(0);
        for (const { clusterIndex, value } of stored ?? []) {
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
        if (stored !== undefined) expect(storedSectors).toBeGreaterThanOrEqual(nonZeroSectors);
      } finally {
        await h.close();
      }
    }),
    { numRuns: options.numRuns },
  );
}
