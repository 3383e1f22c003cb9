import { createCipheriv, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { XtsCipher } from '../../src/cipher/index.js';
import {
  CLUSTER_HEADER_BYTES,
  clusterGeneration,
  clusterKey,
  decodeCluster,
  decryptSlotsInto,
  parseClusterKey,
  reencryptCluster,
  removeSlots,
  storeKeyRange,
  writeSlots,
  type ClusterGeometry,
} from '../../src/volume/cluster-format.js';
import { generateDataKey, halvesDiffer } from '../../src/volume/data-key.js';
import type { ReencryptClusterFn } from '../../src/volume/reencrypt-contract.js';
import { cipherBackends } from '../helpers/cipher-backends.js';

/** node:crypto's aes-256-xts, one sector per call with the plain64 tweak: the independent reference. */
function referenceEncrypt(key: Uint8Array, sector: number, sectorSize: number, plain: Uint8Array): Buffer {
  const tweak = Buffer.alloc(16);
  tweak.writeBigUInt64LE(BigInt(sector * (sectorSize / 512)));
  const c = createCipheriv('aes-256-xts', key, tweak);
  return Buffer.concat([c.update(plain), c.final()]);
}

const geometries: ClusterGeometry[] = [
  { sectorSize: 4096, clusterSectors: 8 },
  { sectorSize: 512, clusterSectors: 64 },
  { sectorSize: 4096, clusterSectors: 1 },
  { sectorSize: 512, clusterSectors: 13 },
];

describe('cluster keys', () => {
  it('encode (storeId, clusterIndex) big-endian so one volume is one ordered key range', () => {
    const key = clusterKey(7, 2 ** 40 + 5);
    expect(key.length).toBe(12);
    expect(parseClusterKey(key)).toEqual({ storeId: 7, clusterIndex: 2 ** 40 + 5 });
    const { start, end } = storeKeyRange(7);
    expect(Buffer.compare(start, key)).toBeLessThan(0);
    expect(Buffer.compare(key, end)).toBeLessThan(0);
    expect(Buffer.compare(clusterKey(7, 1), clusterKey(7, 256))).toBeLessThan(0);
    expect(Buffer.compare(clusterKey(6, 2 ** 50), start)).toBeLessThan(0);
  });
});

describe('data keys', () => {
  it('are 64 random bytes with distinct halves, regenerated when the halves are equal', () => {
    const key = generateDataKey();
    expect(key.length).toBe(64);
    expect(halvesDiffer(key)).toBe(true);
    let calls = 0;
    const equalThenRandom = (size: number): Uint8Array => {
      calls++;
      if (calls === 1) return Buffer.alloc(size, 7);
      return randomBytes(size);
    };
    expect(halvesDiffer(generateDataKey(equalThenRandom))).toBe(true);
    expect(calls).toBe(2);
  });
});

for (const { backend, skipReason } of cipherBackends()) {
  describe.skipIf(skipReason !== null)(`cluster format [${backend}]${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
    let cipher: XtsCipher;
    beforeAll(() => {
      cipher = XtsCipher.create({ backend });
    });

    for (const g of geometries) {
      const ss = g.sectorSize;
      const cs = g.clusterSectors;

      it(`keeps only present sectors, compact, in slot order (${ss} x ${cs})`, () => {
        const key = generateDataKey();
        const clusterIndex = 3;
        const model = new Map<number, Buffer>();
        let cluster: Buffer | null = null;
        fc.assert(
          fc.property(
            fc.array(
              fc.record({
                remove: fc.boolean(),
                first: fc.nat({ max: cs - 1 }),
                count: fc.integer({ min: 1, max: cs }),
              }),
              { minLength: 1, maxLength: 12 },
            ),
            (ops) => {
              model.clear();
              cluster = null;
              for (const op of ops) {
                const first = op.first;
                const last = Math.min(cs - 1, first + op.count - 1);
                if (op.remove) {
                  if (cluster === null) continue;
                  cluster = removeSlots(decodeCluster(cluster, g), g, first, last);
                  for (let s = first; s <= last; s++) model.delete(s);
                } else {
                  const plain = randomBytes((last - first + 1) * ss);
                  const ct = cipher.encryptSectors(key, clusterIndex * cs + first, ss, plain);
                  cluster = writeSlots(cluster === null ? null : decodeCluster(cluster, g), g, first, ct, 4);
                  for (let s = first; s <= last; s++) model.set(s, plain.subarray((s - first) * ss, (s - first + 1) * ss));
                }
                if (model.size === 0) {
                  expect(cluster).toBeNull();
                  continue;
                }
                const view = decodeCluster(cluster!, g);
                expect(view.presentCount).toBe(model.size);
                expect(cluster!.length).toBe(CLUSTER_HEADER_BYTES + model.size * ss);
                expect(clusterGeneration(cluster!)).toBe(4);
                const out = Buffer.alloc(cs * ss);
                decryptSlotsInto(cipher, view, g, clusterIndex, key, 0, cs - 1, out);
                for (let s = 0; s < cs; s++) {
                  const expected = model.get(s) ?? Buffer.alloc(ss);
                  expect(out.subarray(s * ss, (s + 1) * ss).equals(expected)).toBe(true);
                }
              }
            },
          ),
          { numRuns: 40 },
        );
      });

      it(`stores dm-crypt plain64 ciphertext with absolute sector numbers (${ss} x ${cs})`, () => {
        const key = generateDataKey();
        const clusterIndex = 5;
        const plain = randomBytes(ss);
        const slot = cs - 1;
        const ct = cipher.encryptSectors(key, clusterIndex * cs + slot, ss, plain);
        const cluster = writeSlots(null, g, slot, ct, 1);
        const stored = cluster.subarray(CLUSTER_HEADER_BYTES);
        expect(stored.equals(referenceEncrypt(key, clusterIndex * cs + slot, ss, plain))).toBe(true);
      });

      it(`re-encrypts a cluster to a new key and generation, bitmap unchanged (${ss} x ${cs})`, () => {
        const oldKey = generateDataKey();
        const newKey = generateDataKey();
        const clusterIndex = 9;
        let cluster: Buffer | null = null;
        const plains = new Map<number, Buffer>();
        for (let s = 0; s < cs; s += 2) {
          const plain = randomBytes(ss);
          plains.set(s, plain);
          const ct = cipher.encryptSectors(oldKey, clusterIndex * cs + s, ss, plain);
          cluster = writeSlots(cluster === null ? null : decodeCluster(cluster, g), g, s, ct, 1);
        }
        const fn: ReencryptClusterFn = reencryptCluster;
        const moved = fn(cipher, cluster!, clusterIndex, ss, cs, oldKey, newKey, 2);
        expect(moved.length).toBe(cluster!.length);
        const view = decodeCluster(moved, g);
        expect(view.generation).toBe(2);
        expect(Buffer.from(view.bitmap).equals(Buffer.from(decodeCluster(cluster!, g).bitmap))).toBe(true);
        const out = Buffer.alloc(cs * ss);
        decryptSlotsInto(cipher, view, g, clusterIndex, newKey, 0, cs - 1, out);
        for (let s = 0; s < cs; s++) {
          expect(out.subarray(s * ss, (s + 1) * ss).equals(plains.get(s) ?? Buffer.alloc(ss))).toBe(true);
        }
      });
    }

    it('refuses corrupt values: magic, version, sector size, bitmap range, length', () => {
      const g: ClusterGeometry = { sectorSize: 512, clusterSectors: 4 };
      const key = generateDataKey();
      const good = writeSlots(null, g, 1, cipher.encryptSectors(key, 1, 512, randomBytes(512)), 1);
      expect(() => decodeCluster(good, g)).not.toThrow();
      const broken = (mutate: (b: Buffer) => Buffer): Buffer => mutate(Buffer.from(good));
      expect(() => decodeCluster(broken((b) => ((b[0] = 0), b)), g)).toThrow(/magic/);
      expect(() => decodeCluster(broken((b) => ((b[2] = 9), b)), g)).toThrow(/version/);
      expect(() => decodeCluster(broken((b) => ((b[3] = 12), b)), g)).toThrow(/sector/);
      expect(() => decodeCluster(broken((b) => ((b[8] = 0x20), b)), g)).toThrow(/beyond/);
      expect(() => decodeCluster(broken((b) => ((b[8] = 0x03), b)), g)).toThrow(/length/);
      expect(() => decodeCluster(broken((b) => b.subarray(0, b.length - 1)), g)).toThrow(/length/);
      expect(() => decodeCluster(broken((b) => ((b[8] = 0), b)), g)).toThrow(/at least one/);
      // Stored data that fails a check is the caller's typed VOLUME_CORRUPT, not an invariant failure.
      expect(() => decodeCluster(broken((b) => ((b[0] = 0), b)), g)).toThrow(expect.objectContaining({ code: 'VOLUME_CORRUPT', details: { place: 'cluster' } }));
    });

    it('never rewrites part of a cluster under another generation', () => {
      const g: ClusterGeometry = { sectorSize: 512, clusterSectors: 4 };
      const key = generateDataKey();
      const old = writeSlots(null, g, 0, cipher.encryptSectors(key, 0, 512, randomBytes(512)), 1);
      const ct = cipher.encryptSectors(key, 1, 512, randomBytes(512));
      expect(() => writeSlots(decodeCluster(old, g), g, 1, ct, 2)).toThrow(/generation/);
      const whole = cipher.encryptSectors(key, 0, 512, randomBytes(4 * 512));
      expect(decodeCluster(writeSlots(decodeCluster(old, g), g, 0, whole, 2), g).generation).toBe(2);
    });
  });
}
