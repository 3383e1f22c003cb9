/**
 * IEEE 1619-2007 XTS-AES-256 known-answer vectors 10-14 (Annex B), on both backends and on every
 * AES code path of the native addon (a path this CPU cannot run is listed as skipped), through the
 * sector API (512-byte sectors: the sector number is the data unit sequence number) and through
 * the explicit-tweak API.
 */
import { describe, expect, it } from 'vitest';
import { caseTitle, cipherCases, cipherForCase, hex, nodeXtsSectors, plain64Tweak, randomKey } from './helpers.js';
import { IEEE1619_XTS_AES_256 } from './ieee1619-vectors.js';

function sequenceTweak(sequence: bigint): Buffer {
  const t = Buffer.alloc(16);
  t.writeBigUInt64LE(sequence);
  return t;
}

for (const c of cipherCases()) {
  describe.skipIf(c.skipReason !== null)(caseTitle(c, 'IEEE 1619 XTS-AES-256 vectors'), () => {
    describe.each(IEEE1619_XTS_AES_256)('$name', (v) => {
      const key = Buffer.from(v.key, 'hex');
      const pt = Buffer.from(v.plaintext, 'hex');
      const ct = Buffer.from(v.ciphertext, 'hex');

      it('sector API, firstSector as number and as bigint', () => {
        const xts = cipherForCase(c);
        expect(xts.backend).toBe(c.backend);
        if (c.nativePath !== undefined) expect(xts.nativePath).toBe(c.nativePath);
        expect(hex(xts.encryptSectors(key, Number(v.sequence), 512, pt))).toBe(v.ciphertext);
        expect(hex(xts.encryptSectors(key, v.sequence, 512, pt))).toBe(v.ciphertext);
        expect(hex(xts.decryptSectors(key, v.sequence, 512, ct))).toBe(v.plaintext);
      });

      it('in-place and async sector API', async () => {
        const xts = cipherForCase(c);
        const buf = Buffer.from(pt);
        xts.encryptSectorsInto(key, v.sequence, 512, buf, buf);
        expect(hex(buf)).toBe(v.ciphertext);
        xts.decryptSectorsInto(key, v.sequence, 512, buf, buf);
        expect(hex(buf)).toBe(v.plaintext);
        expect(hex(await xts.encryptSectorsAsync(key, v.sequence, 512, pt))).toBe(v.ciphertext);
        expect(hex(await xts.decryptSectorsAsync(key, v.sequence, 512, ct))).toBe(v.plaintext);
      });

      it('explicit-tweak API', () => {
        const xts = cipherForCase(c);
        const tweak = sequenceTweak(v.sequence);
        expect(hex(xts.encryptDataUnits(key, tweak, 512, pt))).toBe(v.ciphertext);
        expect(hex(xts.decryptDataUnits(key, tweak, 512, ct))).toBe(v.plaintext);
      });
    });

    it('all five vectors in one explicit-tweak call (one tweak per data unit)', () => {
      const xts = cipherForCase(c);
      const key = Buffer.from(IEEE1619_XTS_AES_256[0]!.key, 'hex');
      const tweaks = Buffer.concat(IEEE1619_XTS_AES_256.map((v) => sequenceTweak(v.sequence)));
      const pt = Buffer.concat(IEEE1619_XTS_AES_256.map((v) => Buffer.from(v.plaintext, 'hex')));
      const ct = Buffer.concat(IEEE1619_XTS_AES_256.map((v) => Buffer.from(v.ciphertext, 'hex')));
      expect(hex(xts.encryptDataUnits(key, tweaks, 512, pt))).toBe(hex(ct));
      expect(hex(xts.decryptDataUnits(key, tweaks, 512, ct))).toBe(hex(pt));
      // The same units as 32-byte data units with the same per-unit tweaks shows dataUnitSize is honoured.
      expect(hex(xts.encryptDataUnits(key, tweaks.subarray(0, 16), 32, pt.subarray(0, 32)))).toBe(
        IEEE1619_XTS_AES_256[0]!.ciphertext.slice(0, 64),
      );
    });

    it('4096-byte sector n uses the plain64 tweak 8n, as LUKS2 with --sector-size 4096 does', () => {
      const xts = cipherForCase(c);
      const key = randomKey();
      const data = Buffer.alloc(3 * 4096, 0x5a);
      const ct = xts.encryptSectors(key, 1000, 4096, data);
      expect(hex(ct)).toBe(hex(nodeXtsSectors('encrypt', key, 1000n, 4096, data)));
      // Same bytes through the explicit-tweak API with tweaks 8000, 8008, 8016.
      const tweaks = Buffer.concat([1000n, 1001n, 1002n].map((n) => plain64Tweak(n, 4096)));
      expect(tweaks.readBigUInt64LE(16)).toBe(8008n);
      expect(hex(xts.encryptDataUnits(key, tweaks, 4096, data))).toBe(hex(ct));
    });
  });
}
