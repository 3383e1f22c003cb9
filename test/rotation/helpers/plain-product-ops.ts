/**
 * ClusterOps for the product cluster format without any cipher: the cluster is copied and its
 * generation restamped. The rotation benchmark runs the worker pipeline with it to separate the
 * pipeline's own cost (scan, transfer, commit) from the cipher's.
 */
import { clusterGeneration } from '../../../src/volume/cluster-format.js';

export function reencryptCluster(
  _cipher: unknown,
  raw: Uint8Array,
  _clusterIndex: number,
  _sectorSize: number,
  _clusterSectors: number,
  _oldKey: Uint8Array,
  _newKey: Uint8Array,
  newGeneration: number,
): Uint8Array {
  return restampGeneration(raw, newGeneration);
}

/** The product header keeps the generation as u32 big-endian at offset 4 (src/volume/cluster-format.ts). */
export function restampGeneration(raw: Uint8Array, generation: number): Uint8Array {
  clusterGeneration(raw); // header checks
  const out = Uint8Array.from(raw);
  new DataView(out.buffer).setUint32(4, generation, false);
  return out;
}

export function createCipher(): null {
  return null;
}
