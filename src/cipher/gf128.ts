/**
 * GF(2^128) arithmetic for the XTS tweak (IEEE 1619-2007, section 5.2).
 *
 * IEEE 1619 treats a 16-byte tweak as a 128-bit number stored little-endian: byte 0 holds the
 * least significant bits. Multiplying it by the primitive element alpha (the polynomial x) is a
 * left shift of that number by one bit; when bit 127 falls off, the result is reduced modulo
 * x^128 + x^7 + x^2 + x + 1, which means XOR-ing 0x87 into byte 0.
 *
 * blockvault keeps the tweak in four 32-bit little-endian words, w0 = bytes 0..3 through
 * w3 = bytes 12..15, which is the layout of a Uint32Array view over the bytes on a
 * little-endian machine and the word layout @noble/ciphers' AES core works in. The shift then
 * moves the top bit of each word into the bottom of the next one.
 */

/** The low byte of the reduction polynomial x^128 + x^7 + x^2 + x + 1 (IEEE 1619-2007, 5.2). */
export const GF128_REDUCTION = 0x87;

/**
 * Multiplies the tweak held in words `t[0..3]` by alpha, in place (IEEE 1619-2007, 5.2:
 * T <- T (x) alpha). Small enough for V8 to inline into the per-block loop.
 */
export function mulAlpha(t: Uint32Array): void {
  const w0 = t[0]!;
  const w1 = t[1]!;
  const w2 = t[2]!;
  const w3 = t[3]!;
  // -(w3 >>> 31) is all ones exactly when bit 127 is set: a branch-free (constant-time) reduction.
  t[0] = (w0 << 1) ^ (GF128_REDUCTION & -(w3 >>> 31));
  t[1] = (w1 << 1) | (w0 >>> 31);
  t[2] = (w2 << 1) | (w1 >>> 31);
  t[3] = (w3 << 1) | (w2 >>> 31);
}

/**
 * Writes the dm-crypt `plain64` tweak value into `t`: the 64-bit little-endian number of a
 * data unit, zero-padded to 128 bits (IEEE 1619-2007, 5.1: the data unit sequence number `i`
 * encoded as a little-endian 128-bit value). `lo` and `hi` are the low and high 32 bits.
 */
export function setTweakNumber(t: Uint32Array, lo: number, hi: number): void {
  t[0] = lo;
  t[1] = hi;
  t[2] = 0;
  t[3] = 0;
}

/** Reads an explicit 16-byte tweak from `bytes[offset..offset+16)` into the words of `t`. */
export function loadTweakBytes(t: Uint32Array, bytes: Uint8Array, offset: number): void {
  for (let w = 0; w < 4; w++) {
    const o = offset + 4 * w;
    t[w] = bytes[o]! | (bytes[o + 1]! << 8) | (bytes[o + 2]! << 16) | (bytes[o + 3]! << 24);
  }
}
