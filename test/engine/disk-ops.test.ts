/**
 * The volume calls a disk protocol needs (the NBD server uses them): allocationMap (stored
 * extents and holes), writeZeroes with and without `allocate`, and `durable` writes. Checked
 * against a byte model, on both cipher backends and both sector sizes, plus bad input and a
 * locked volume.
 */
import { expect, it } from 'vitest';
import { cipherBackends } from '../helpers/cipher-backends.js';
import { forEachProvider } from '../helpers/providers.js';
import { openTestEngine, rootKey } from '../helpers/engine.js';
import { useTempDirs } from '../helpers/temp-dir.js';
import { xorshiftBytes } from '../helpers/xorshift.js';

const tempDir = useTempDirs('bv-disk-ops-');
const KiB = 1024;
const SIZE = 1024 * KiB;

for (const { backend, skipReason } of cipherBackends()) {
  forEachProvider(`disk operations [${backend}]`, (provider) => {
    for (const sectorSize of [4096, 512] as const) {
      it(`allocationMap follows writes, trims and writeZeroes (${sectorSize}-byte sectors)`, async () => {
        const engine = await openTestEngine(tempDir(), { provider, cipher: backend });
        try {
          const vol = await engine.createVolume({ name: 'v', sizeBytes: SIZE, sectorSize });
          const model = Buffer.alloc(SIZE);
          /** Which sectors are stored, by the model's rules: written -> yes, trimmed/zeroed whole -> no. */
          const stored = new Array<boolean>(SIZE / sectorSize).fill(false);
          const touch = (offset: number, length: number, value: boolean, wholeOnly: boolean) => {
            for (let s = Math.floor(offset / sectorSize); s * sectorSize < offset + length; s++) {
              const whole = s * sectorSize >= offset && (s + 1) * sectorSize <= offset + length;
              if (!wholeOnly || whole) stored[s] = value;
            }
          };
          expect(await vol.allocationMap(0, SIZE)).toEqual([{ offset: 0, length: SIZE, allocated: false }]);
          const data = xorshiftBytes(5, 40 * KiB);
          await vol.write(100 * KiB + 7, data, { durable: true });
          data.copy(model, 100 * KiB + 7);
          touch(100 * KiB + 7, data.length, true, false);
          // A hole inside the written run (whole sectors only), and zeros that stay stored.
          await vol.writeZeroes(110 * KiB, 8 * KiB);
          model.fill(0, 110 * KiB, 118 * KiB);
          touch(110 * KiB, 8 * KiB, false, true);
          await vol.writeZeroes(300 * KiB + 3, 20 * KiB, { allocate: true, durable: true });
          model.fill(0, 300 * KiB + 3, 320 * KiB + 3);
          touch(300 * KiB + 3, 20 * KiB, true, false);
          await vol.trim(310 * KiB, 4 * KiB, { durable: true });
          model.fill(0, 310 * KiB, 314 * KiB);
          touch(310 * KiB, 4 * KiB, false, true);

          expect(Buffer.from(await vol.read(0, SIZE)).equals(model)).toBe(true);
          const expected: Array<{ offset: number; length: number; allocated: boolean }> = [];
          stored.forEach((allocated, s) => {
            const last = expected[expected.length - 1];
            if (last !== undefined && last.allocated === allocated) last.length += sectorSize;
            else expected.push({ offset: s * sectorSize, length: sectorSize, allocated });
          });
          expect(await vol.allocationMap(0, SIZE)).toEqual(expected);
          // A sub-range is clipped to the range asked for, also inside a sector.
          const part = await vol.allocationMap(100 * KiB + 1, 20 * KiB);
          expect(part[0]!.offset).toBe(100 * KiB + 1);
          expect(part.reduce((n, e) => n + e.length, 0)).toBe(20 * KiB);
          expect(await vol.allocationMap(5, 0)).toEqual([]);
        } finally {
          await engine.close();
        }
      });
    }

    it('bad ranges are OUT_OF_RANGE and change nothing; a locked volume refuses with VOLUME_LOCKED', async () => {
      const engine = await openTestEngine(tempDir(), { provider, cipher: backend });
      try {
        const key = await rootKey(engine);
        const vol = await engine.createVolume({ name: 'v', sizeBytes: SIZE, sectorSize: 4096, diskEncryptionKeyCrn: key.crn });
        await vol.write(0, Buffer.alloc(8192, 3));
        for (const [offset, length] of [[-1, 1], [0, SIZE + 1], [SIZE, 1], [0.5, 1], [Number.NaN, 1]] as const) {
          await expect(vol.writeZeroes(offset, length)).rejects.toMatchObject({ code: 'OUT_OF_RANGE' });
          await expect(vol.writeZeroes(offset, length, { allocate: true })).rejects.toMatchObject({ code: 'OUT_OF_RANGE' });
          await expect(vol.allocationMap(offset, length)).rejects.toMatchObject({ code: 'OUT_OF_RANGE' });
        }
        expect(Buffer.from(await vol.read(0, 8192)).equals(Buffer.alloc(8192, 3))).toBe(true);
        await engine.hsm.deleteKey(key.crn, { force: true });
        await expect(vol.allocationMap(0, 4096)).rejects.toMatchObject({ code: 'VOLUME_LOCKED' });
        await expect(vol.writeZeroes(0, 4096, { allocate: true })).rejects.toMatchObject({ code: 'VOLUME_LOCKED' });
        await expect(vol.write(0, Buffer.alloc(4096), { durable: true })).rejects.toMatchObject({ code: 'VOLUME_LOCKED' });
      } finally {
        await engine.close();
      }
    });
  }, skipReason);
}
