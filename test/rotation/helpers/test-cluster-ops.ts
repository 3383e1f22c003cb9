/**
 * ClusterOps for the rotation tests (see src/rotation/cluster-ops.ts). Options ride on the module
 * URL's query, so that each test can ask for its own behaviour from the same file:
 *   ?delayMs=N        block the worker N ms per cluster (makes cancel/abort/race windows wide)
 *   ?failAtCluster=N  throw when asked to re-encrypt cluster N
 *   ?plain=1          no cipher: copy the sectors and restamp the generation (benchmark ceiling)
 * createCipher's backend: 'node' (default, node:crypto) or src/cipher's 'native' / 'ts'.
 */
import { clusterGeneration, reencryptCluster as reencryptTestCluster } from './test-cluster-format.js';
import { createTestCipher, type SectorCipherLike } from './test-cipher.js';

const params = new URL(import.meta.url).searchParams;
const delayMs = Number(params.get('delayMs') ?? 0);
const failAtCluster = params.has('failAtCluster') ? Number(params.get('failAtCluster')) : null;
const plain = params.get('plain') === '1';
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Keys this thread was handed, kept only to prove (probe) that the worker zeroized them. */
const keysSeen: Uint8Array[] = [];

export function reencryptCluster(
  workerCipher: SectorCipherLike,
  raw: Uint8Array,
  clusterIndex: number,
  sectorSize: number,
  clusterSectors: number,
  oldKey: Uint8Array,
  newKey: Uint8Array,
  newGeneration: number,
): Uint8Array {
  if (keysSeen.length < 256) keysSeen.push(oldKey, newKey);
  if (delayMs > 0) Atomics.wait(sleeper, 0, 0, delayMs);
  if (failAtCluster === clusterIndex) throw new Error(`test fault: cluster ${clusterIndex}`);
  if (plain) {
    clusterGeneration(raw);
    const out = Uint8Array.from(raw);
    new DataView(out.buffer).setUint32(4, newGeneration, true);
    return out;
  }
  return reencryptTestCluster(workerCipher, raw, clusterIndex, sectorSize, clusterSectors, oldKey, newKey, newGeneration);
}

export function createCipher(backend: string | undefined): Promise<SectorCipherLike> {
  return createTestCipher(backend);
}

export function probe(): { keysSeen: number; allZero: boolean } {
  return { keysSeen: keysSeen.length, allZero: keysSeen.every((key) => key.every((byte) => byte === 0)) };
}
