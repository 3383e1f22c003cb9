/** Deterministic sector contents for checks against a reference model: version 0 is the initial fill. */
export function sectorContent(sectorSize: number, sector: number, version: number): Uint8Array {
  const out = new Uint8Array(sectorSize);
  let x = (Math.imul(sector + 1, 0x9e3779b1) ^ Math.imul(version + 7, 0x85ebca6b)) >>> 0 || 1;
  for (let i = 0; i < sectorSize; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
    out[i + 1] = (x >>> 8) & 0xff;
    out[i + 2] = (x >>> 16) & 0xff;
    out[i + 3] = (x >>> 24) & 0xff;
  }
  return out;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** mulberry32: a small seeded PRNG for reproducible test schedules. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
