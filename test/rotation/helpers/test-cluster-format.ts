/**
 * A deliberately simple cluster format for the rotation tests (not the product format, which is
 * src/volume/cluster-format.ts): an 8-byte header, magic "TV", version 1, one reserved byte, the
 * DEK generation as u32 little-endian; then every sector of the cluster, written or not, as XTS
 * ciphertext. The runner is format-agnostic; this proves it.
 */
import type { SectorCipherLike } from './test-cipher.js';

export const TEST_HEADER_BYTES = 8;

export function clusterGeneration(raw: Uint8Array): number {
  if (raw.length < TEST_HEADER_BYTES || raw[0] !== 0x54 || raw[1] !== 0x56 || raw[2] !== 1) throw new Error('not a test cluster');
  return new DataView(raw.buffer, raw.byteOffset, raw.byteLength).getUint32(4, true);
}

export function encodeCluster(
  cipher: SectorCipherLike,
  key: Uint8Array,
  generation: number,
  clusterIndex: number,
  sectorSize: number,
  clusterSectors: number,
  plaintext: Uint8Array,
): Uint8Array {
  if (plaintext.length !== sectorSize * clusterSectors) throw new RangeError('a test cluster holds every sector');
  const out = new Uint8Array(TEST_HEADER_BYTES + plaintext.length);
  out.set([0x54, 0x56, 1, 0]);
  new DataView(out.buffer).setUint32(4, generation, true);
  out.set(cipher.encryptSectors(key, clusterIndex * clusterSectors, sectorSize, plaintext), TEST_HEADER_BYTES);
  return out;
}

export function decodeCluster(
  cipher: SectorCipherLike,
  key: Uint8Array,
  raw: Uint8Array,
  clusterIndex: number,
  sectorSize: number,
  clusterSectors: number,
): Uint8Array {
  clusterGeneration(raw);
  if (raw.length !== TEST_HEADER_BYTES + sectorSize * clusterSectors) throw new Error('test cluster has the wrong length');
  return cipher.decryptSectors(key, clusterIndex * clusterSectors, sectorSize, raw.subarray(TEST_HEADER_BYTES));
}

/** ReencryptClusterFn for this format. */
export function reencryptCluster(
  cipher: SectorCipherLike,
  raw: Uint8Array,
  clusterIndex: number,
  sectorSize: number,
  clusterSectors: number,
  oldKey: Uint8Array,
  newKey: Uint8Array,
  newGeneration: number,
): Uint8Array {
  const plaintext = decodeCluster(cipher, oldKey, raw, clusterIndex, sectorSize, clusterSectors);
  try {
    return encodeCluster(cipher, newKey, newGeneration, clusterIndex, sectorSize, clusterSectors, plaintext);
  } finally {
    plaintext.fill(0);
  }
}
