/**
 * Property tests (fast-check): every backend, and the native addon on every AES code path this CPU
 * runs (others are listed as skipped with the reason), agrees byte for byte with node:crypto's
 * aes-256-xts driven per sector with the plain64 tweak, over random keys, both sector sizes,
 * sector numbers (small, around 2^32 tweak carries, near 2^53, bigints near 2^61 and at the very
 * top of the 64-bit tweak range) and batches of 1..64 sectors; decryption inverts encryption;
 * the Into, in-place and async variants agree with the plain call; plain Uint8Arrays and
 * unaligned views give the same bytes as Buffers.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BACKENDS, caseTitle, cipherCases, cipherFor, cipherForCase, nodeXtsSectors } from './helpers.js';

const TWEAK_MAX = 2n ** 64n - 1n;

interface Case {
  key: Uint8Array;
  sectorSize: 512 | 4096;
  firstSector: number | bigint;
  data: Uint8Array;
}

const keyArb = fc
  .uint8Array({ minLength: 64, maxLength: 64 })
  .filter((k) => !Buffer.from(k.subarray(0, 32)).equals(Buffer.from(k.subarray(32))));

/** Sector numbers from every range where the tweak arithmetic could go wrong. */
function firstSectorArb(sectorSize: number, count: number): fc.Arbitrary<number | bigint> {
  const unitsPerSector = BigInt(sectorSize / 512);
  const maxFirst = TWEAK_MAX / unitsPerSector - BigInt(count - 1);
  const carry32 = Number(2n ** 32n / unitsPerSector);
  return fc.oneof(
    fc.integer({ min: 0, max: 1_000_000 }),
    // The low 32-bit word of the unit number wraps inside the batch.
    fc.integer({ min: Math.max(0, carry32 - 64), max: carry32 + 64 }),
    fc.integer({ min: Number.MAX_SAFE_INTEGER - 1000, max: Number.MAX_SAFE_INTEGER }),
    fc.bigInt({ min: 2n ** 61n - 2n ** 20n, max: 2n ** 61n - 1n }).map((n) => (n > maxFirst ? maxFirst : n)),
    // The last sector of the batch has the largest tweak that fits 64 bits.
    fc.bigInt({ min: maxFirst - 1000n, max: maxFirst }),
  );
}

const caseArb: fc.Arbitrary<Case> = fc
  .record({ key: keyArb, sectorSize: fc.constantFrom(512 as const, 4096 as const), count: fc.integer({ min: 1, max: 64 }) })
  .chain(({ key, sectorSize, count }) =>
    fc.record({
      key: fc.constant(key),
      sectorSize: fc.constant(sectorSize),
      firstSector: firstSectorArb(sectorSize, count),
      data: fc.uint8Array({ minLength: sectorSize * count, maxLength: sectorSize * count }),
    }),
  );

const RUNS = { numRuns: 60 };

for (const c of cipherCases()) {
  describe.skipIf(c.skipReason !== null)(caseTitle(c, 'XTS properties'), () => {
      it('agrees with node:crypto aes-256-xts per sector (plain64 tweak), and decrypt inverts encrypt', () => {
      const xts = cipherForCase(c);
      fc.assert(
        fc.property(caseArb, ({ key, sectorSize, firstSector, data }) => {
          const expected = nodeXtsSectors('encrypt', key, BigInt(firstSector), sectorSize, data);
          const ct = xts.encryptSectors(key, firstSector, sectorSize, data);
          expect(Buffer.from(ct).equals(expected)).toBe(true);
          const pt = xts.decryptSectors(key, firstSector, sectorSize, ct);
          expect(Buffer.from(pt).equals(Buffer.from(data))).toBe(true);
          expect(nodeXtsSectors('decrypt', key, BigInt(firstSector), sectorSize, ct).equals(Buffer.from(data))).toBe(true);
        }),
        RUNS,
      );
    });

    it('Into, in-place and async agree with the plain call', async () => {
      const xts = cipherForCase(c);
      await fc.assert(
        fc.asyncProperty(caseArb, async ({ key, sectorSize, firstSector, data }) => {
          const ct = Buffer.from(xts.encryptSectors(key, firstSector, sectorSize, data));

          const into = new Uint8Array(data.length);
          xts.encryptSectorsInto(key, firstSector, sectorSize, data, into);
          expect(Buffer.from(into).equals(ct)).toBe(true);

          const inPlace = Uint8Array.from(data);
          xts.encryptSectorsInto(key, firstSector, sectorSize, inPlace, inPlace);
          expect(Buffer.from(inPlace).equals(ct)).toBe(true);
          xts.decryptSectorsInto(key, firstSector, sectorSize, inPlace, inPlace);
          expect(Buffer.from(inPlace).equals(Buffer.from(data))).toBe(true);

          expect(Buffer.from(await xts.encryptSectorsAsync(key, firstSector, sectorSize, data)).equals(ct)).toBe(true);
          expect(Buffer.from(await xts.decryptSectorsAsync(key, firstSector, sectorSize, ct)).equals(Buffer.from(data))).toBe(true);
        }),
        { numRuns: 25 },
      );
    });

    it('plain Uint8Arrays and unaligned views (byteOffset 1..3) give the same bytes as Buffers', () => {
      const xts = cipherForCase(c);
      fc.assert(
        fc.property(caseArb, fc.integer({ min: 1, max: 3 }), ({ key, sectorSize, firstSector, data }, shift) => {
          const ct = Buffer.from(xts.encryptSectors(Buffer.from(key), firstSector, sectorSize, Buffer.from(data)));
          // Key and data at odd offsets inside larger ArrayBuffers, as plain Uint8Arrays.
          const keyView = new Uint8Array(new ArrayBuffer(64 + shift), shift, 64);
          keyView.set(key);
          const dataView = new Uint8Array(new ArrayBuffer(data.length + shift), shift, data.length);
          dataView.set(data);
          expect(Buffer.from(xts.encryptSectors(keyView, firstSector, sectorSize, dataView)).equals(ct)).toBe(true);
          xts.encryptSectorsInto(keyView, firstSector, sectorSize, dataView, dataView);
          expect(Buffer.from(dataView).equals(ct)).toBe(true);
          // Output into an unaligned destination in a different buffer.
          const dst = new Uint8Array(new ArrayBuffer(data.length + 4), 4 - shift, data.length);
          xts.decryptSectorsInto(key, firstSector, sectorSize, ct, dst);
          expect(Buffer.from(dst).equals(Buffer.from(data))).toBe(true);
        }),
        { numRuns: 25 },
      );
    });

    it('a batch equals the same sectors encrypted one at a time', () => {
      const xts = cipherForCase(c);
      fc.assert(
        fc.property(caseArb, ({ key, sectorSize, firstSector, data }) => {
          const batch = Buffer.from(xts.encryptSectors(key, firstSector, sectorSize, data));
          for (let offset = 0, k = 0n; offset < data.length; offset += sectorSize, k++) {
            const one = xts.encryptSectors(key, BigInt(firstSector) + k, sectorSize, data.subarray(offset, offset + sectorSize));
            expect(Buffer.from(one).equals(batch.subarray(offset, offset + sectorSize))).toBe(true);
          }
        }),
        { numRuns: 15 },
      );
    });
  });
}

describe('native and TS backends agree', () => {
  it.runIf(BACKENDS.includes('native'))('byte for byte on random cases, sector and explicit-tweak APIs', () => {
    const native = cipherFor('native');
    const ts = cipherFor('ts');
    fc.assert(
      fc.property(caseArb, ({ key, sectorSize, firstSector, data }) => {
        const a = Buffer.from(native.encryptSectors(key, firstSector, sectorSize, data));
        expect(a.equals(Buffer.from(ts.encryptSectors(key, firstSector, sectorSize, data)))).toBe(true);
        const units = data.length / sectorSize;
        const tweaks = Buffer.alloc(units * 16);
        for (let k = 0; k < units; k++) tweaks.writeUInt32LE((k * 2654435761) >>> 0, 16 * k + (k % 13));
        const b = Buffer.from(native.encryptDataUnits(key, tweaks, sectorSize, data));
        expect(b.equals(Buffer.from(ts.encryptDataUnits(key, tweaks, sectorSize, data)))).toBe(true);
        expect(Buffer.from(ts.decryptDataUnits(key, tweaks, sectorSize, b)).equals(Buffer.from(data))).toBe(true);
      }),
      RUNS,
    );
  });
});
