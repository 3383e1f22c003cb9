/** The XTS tweak arithmetic of IEEE 1619-2007, 5.2, on its edge cases. */
import { describe, expect, it } from 'vitest';
import { GF128_REDUCTION, loadTweakBytes, mulAlpha, setTweakNumber } from '../../src/cipher/gf128.js';

/** The 128-bit little-endian number held in the words. */
function value(t: Uint32Array): bigint {
  return (BigInt(t[3]!) << 96n) | (BigInt(t[2]!) << 64n) | (BigInt(t[1]!) << 32n) | BigInt(t[0]!);
}

/** Reference: shift left, reduce by x^128 + x^7 + x^2 + x + 1. */
function mulAlphaRef(x: bigint): bigint {
  const shifted = x << 1n;
  return shifted >= 2n ** 128n ? (shifted - 2n ** 128n) ^ 0x87n : shifted;
}

describe('GF(2^128) tweak doubling', () => {
  it('shifts within and across 32-bit words', () => {
    const t = new Uint32Array([1, 0, 0, 0]);
    mulAlpha(t);
    expect(value(t)).toBe(2n);
    for (const x of [0x8000_0000n, 0x8000_0000_0000_0000n, 0x8000_0000n << 64n, 0xffff_ffff_ffff_ffff_ffffn]) {
      const w = new Uint32Array([Number(x & 0xffffffffn), Number((x >> 32n) & 0xffffffffn), Number((x >> 64n) & 0xffffffffn), Number(x >> 96n)]);
      mulAlpha(w);
      expect(value(w)).toBe(mulAlphaRef(x));
    }
  });

  it('reduces by 0x87 when bit 127 falls off', () => {
    const t = new Uint32Array([0, 0, 0, 0x8000_0000]);
    mulAlpha(t);
    expect(value(t)).toBe(BigInt(GF128_REDUCTION));
    const all = new Uint32Array([0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff]);
    mulAlpha(all);
    expect(value(all)).toBe(mulAlphaRef(2n ** 128n - 1n));
  });

  it('matches the reference over a long chain of doublings', () => {
    const t = new Uint32Array(4);
    setTweakNumber(t, 0x89abcdef, 0x01234567);
    let ref = 0x0123456789abcdefn;
    for (let j = 0; j < 300; j++) {
      mulAlpha(t);
      ref = mulAlphaRef(ref);
      expect(value(t)).toBe(ref);
    }
  });

  it('loads an explicit tweak little-endian from any byte offset', () => {
    const bytes = Uint8Array.from({ length: 20 }, (_, i) => i + 1);
    const t = new Uint32Array(4);
    loadTweakBytes(t, bytes, 3);
    expect(value(t)).toBe(BigInt('0x' + Buffer.from(bytes.subarray(3, 19)).reverse().toString('hex')));
  });
});
