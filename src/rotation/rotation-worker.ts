/**
 * A piscina worker: re-encrypts one batch of clusters per task with the cluster format's pure
 * function (see cluster-ops.ts). It holds no LMDB handle and no engine state; keys arrive with
 * each batch and are zeroized when the batch ends, so a worker never keeps a key between jobs and
 * an aborted rotation (cryptoshredding) leaves no key behind in any thread.
 */
import { workerData } from 'node:worker_threads';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { assert } from '../errors.js';
import { DATA_KEY_BYTES, type ReencryptBatchResult, type RotationWorkerData, type RotationWorkerRequest } from './batch-protocol.js';
import { loadClusterOps } from './cluster-ops.js';

const { opsModuleUrl, backend } = workerData as RotationWorkerData;
const ops = await loadClusterOps(opsModuleUrl);
const cipher = await ops.createCipher(backend);

const ABORTED: ReencryptBatchResult = { aborted: true, inputs: [], outputs: [] };

/** The buffer of `bytes` if `bytes` spans all of it, else a copy's: what can be transferred as is. */
function wholeBuffer(bytes: Uint8Array): ArrayBuffer {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer) return bytes.buffer;
  return Uint8Array.from(bytes).buffer;
}

export default function rotationWorker(request: RotationWorkerRequest): unknown {
  if (request.kind === 'probe') return ops.probe ? ops.probe() : null;
  const keys = new Uint8Array(request.keys);
  try {
    const abortFlag = new Int32Array(request.abortFlag);
    const { clusters, clusterIndexes, keySlots, newGeneration, sectorSize, clusterSectors } = request;
    assert(keys.length % DATA_KEY_BYTES === 0 && keys.length >= 2 * DATA_KEY_BYTES, 'rotation batch carries whole keys');
    const newKey = keys.subarray(0, DATA_KEY_BYTES);
    const outputs: ArrayBuffer[] = [];
    for (let i = 0; i < clusters.length; i++) {
      // Checked per cluster, so an abort stops a batch part-way rather than at its end.
      if (Atomics.load(abortFlag, 0) !== 0) return ABORTED;
      const slot = keySlots[i]!;
      assert(slot >= 1 && (slot + 1) * DATA_KEY_BYTES <= keys.length, 'cluster key slot in range');
      const oldKey = keys.subarray(slot * DATA_KEY_BYTES, (slot + 1) * DATA_KEY_BYTES);
      const raw = new Uint8Array(clusters[i]!);
      outputs.push(wholeBuffer(ops.reencryptCluster(cipher, raw, clusterIndexes[i]!, sectorSize, clusterSectors, oldKey, newKey, newGeneration)));
    }
    const value: ReencryptBatchResult = { aborted: false, inputs: clusters, outputs };
    return move({ [transferableSymbol]: [...clusters, ...outputs], [valueSymbol]: value } as never);
  } finally {
    keys.fill(0);
  }
}
