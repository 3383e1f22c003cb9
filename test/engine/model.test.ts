/**
 * Random operations through the public API compared with an in-memory reference (issue 4): reads,
 * writes and trims of any byte range, flushes, handle closes, engine closes and reopens, both
 * sector sizes and both layouts, on real LMDB files.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, expect, it } from 'vitest';
import { Engine, type Volume } from '../../src/index.js';
import { cipherBackends } from '../helpers/cipher-backends.js';
import { testHsmOptions } from '../helpers/engine.js';
import { forEachProvider } from '../helpers/providers.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { xorshiftBytes } from '../helpers/xorshift.js';

afterAll(() => removeTempDirs());

type Op =
  | { kind: 'write'; offset: number; length: number; seed: number }
  | { kind: 'read'; offset: number; length: number }
  | { kind: 'trim'; offset: number; length: number }
  | { kind: 'flush' }
  | { kind: 'reopenVolume' }
  | { kind: 'reopenEngine' }
  | { kind: 'concurrent'; ops: Op[] };

function rangeArb(sizeBytes: number, sectorSize: number): fc.Arbitrary<{ offset: number; length: number }> {
  const lengthMax = 40 * 1024;
  return fc
    .oneof(
      fc.tuple(fc.nat({ max: sizeBytes / sectorSize - 1 }), fc.nat({ max: lengthMax / sectorSize })).map(([s, n]) => ({ offset: s * sectorSize, length: n * sectorSize })),
      fc.tuple(fc.nat({ max: sizeBytes - 1 }), fc.nat({ max: lengthMax })).map(([offset, length]) => ({ offset, length })),
    )
    .map(({ offset, length }) => ({ offset, length: Math.min(length, sizeBytes - offset) }));
}

function opsArb(sizeBytes: number, sectorSize: number): fc.Arbitrary<Op[]> {
  const range = rangeArb(sizeBytes, sectorSize);
  const io: fc.Arbitrary<Op> = fc.oneof(
    { weight: 5, arbitrary: fc.tuple(range, fc.nat()).map(([r, seed]) => ({ kind: 'write' as const, ...r, seed })) },
    { weight: 4, arbitrary: range.map((r) => ({ kind: 'read' as const, ...r })) },
    { weight: 2, arbitrary: range.map((r) => ({ kind: 'trim' as const, ...r })) },
    { weight: 1, arbitrary: fc.constant({ kind: 'flush' as const }) },
  );
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 12, arbitrary: io },
    { weight: 1, arbitrary: fc.constant({ kind: 'reopenVolume' as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'reopenEngine' as const }) },
    { weight: 2, arbitrary: fc.array(io, { minLength: 2, maxLength: 6 }).map((ops) => ({ kind: 'concurrent' as const, ops })) },
  );
  return fc.array(op, { minLength: 1, maxLength: 30 });
}


const configs = [
  { sectorSize: 4096 as const, layout: 'split' as const },
  { sectorSize: 4096 as const, layout: 'compact' as const },
  { sectorSize: 512 as const, layout: 'compact' as const },
];

for (const { backend, skipReason } of cipherBackends()) {
  forEachProvider(`engine vs an in-memory model [${backend}]`, (provider) => {
    /** The software keystore under a fresh key file, or the process's SoftHSM2 token. */
    const hsmOf = (keyFile: string) => (provider === 'pkcs11' ? testHsmOptions(provider) : { keyFile });
    for (const { sectorSize, layout } of configs) {
      it(`sector ${sectorSize}, ${layout}`, async () => {
        const sizeBytes = 200 * 1024 + 3 * sectorSize;
        await fc.assert(
          fc.asyncProperty(opsArb(sizeBytes, sectorSize), async (ops) => {
            const dir = makeTempDir('bv-engine-model-');
            const keyFile = join(dir, 'hsm.key');
            writeFileSync(keyFile, randomBytes(32), { mode: 0o600 });
            const open = () => Engine.open({ dir: join(dir, 'engine'), hsm: hsmOf(keyFile), cipher: backend, purgeIntervalMs: 0, volumeLayout: layout });
            let engine = await open();
            let vol: Volume = await engine.createVolume({ name: 'model', sizeBytes, sectorSize });
            expect(vol.info().layout).toBe(layout);
            const model = Buffer.alloc(sizeBytes);
            const issue = (op: Op): Promise<void> => {
              switch (op.kind) {
                case 'write': {
                  const data = xorshiftBytes(op.seed, op.length);
                  data.copy(model, op.offset);
                  return vol.write(op.offset, data);
                }
                case 'read': {
                  const expected = Buffer.from(model.subarray(op.offset, op.offset + op.length));
                  return vol.read(op.offset, op.length).then((got) => {
                    expect(Buffer.from(got).equals(expected)).toBe(true);
                  });
                }
                case 'trim':
                  model.fill(0, op.offset, op.offset + op.length);
                  return vol.trim(op.offset, op.length);
                case 'flush':
                  return vol.flush();
                default:
                  throw new Error(`not an I/O op: ${op.kind}`);
              }
            };
            try {
              for (const op of ops) {
                if (op.kind === 'reopenVolume') {
                  await vol.close();
                  vol = await engine.openVolume('model');
                } else if (op.kind === 'reopenEngine') {
                  await engine.close();
                  engine = await open();
                  vol = await engine.openVolume('model');
                } else if (op.kind === 'concurrent') {
                  await Promise.all(op.ops.map(issue));
                } else {
                  await issue(op);
                }
              }
              await engine.close();
              engine = await open();
              vol = await engine.openVolume('model');
              expect(Buffer.from(await vol.read(0, sizeBytes)).equals(model)).toBe(true);
            } finally {
              await engine.close();
            }
          }),
          { numRuns: 15 },
        );
      });
    }
  }, skipReason);
}
