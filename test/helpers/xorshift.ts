/**
 * Deterministic test bytes: `length` bytes of a 32-bit xorshift stream (13, 17, 5) seeded with
 * `seed`, so a failing model or crash run can be replayed from its seed.
 */
export function xorshiftBytes(seed: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
