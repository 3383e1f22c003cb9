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

const ABORTED: ReencryptBatchResult = { aborted: true, packed: null, rawLengths: [] };

export default function rotationWorker(request: RotationWorkerRequest): unknown {
  if (request.kind === 'probe') return ops.probe ? ops.probe() : null;
  const keys = new Uint8Array(request.keys);
  try {
    const abortFlag = new Int32Array(request.abortFlag);
    const input = new Uint8Array(request.packed);
    const { rawLengths, clusterIndexes, keySlots, newGeneration, sectorSize, clusterSectors } = request;
    assert(keys.length % DATA_KEY_BYTES === 0 && keys.length >= 2 * DATA_KEY_BYTES, 'rotation batch carries whole keys');
    const newKey = keys.subarray(0, DATA_KEY_BYTES);
    const outputs: Uint8Array[] = [];
    let offset = 0;
    let sameLengths = true;
    for (let i = 0; i < rawLengths.length; i++) {
      // Checked per cluster, so an abort stops a batch part-way rather than at its end.
      if (Atomics.load(abortFlag, 0) !== 0) return ABORTED;
      const length = rawLengths[i]!;
      const slot = keySlots[i]!;
      assert(slot >= 1 && (slot + 1) * DATA_KEY_BYTES <= keys.length, 'cluster key slot in range');
      const oldKey = keys.subarray(slot * DATA_KEY_BYTES, (slot + 1) * DATA_KEY_BYTES);
      const raw = input.subarray(offset, offset + length);
      const out = ops.reencryptCluster(cipher, raw, clusterIndexes[i]!, sectorSize, clusterSectors, oldKey, newKey, newGeneration);
      if (out.length !== length) sameLengths = false;
      outputs.push(out);
      offset += length;
    }
    // The output goes back in the input's buffer when the sizes allow (they do for a fixed-size
    // cluster format): the old ciphertext is no longer needed and no new buffer is allocated.
    let packed: ArrayBuffer;
    if (sameLengths) {
      let at = 0;
      for (const out of outputs) {
        input.set(out, at);
        at += out.length;
      }
      packed = request.packed;
    } else {
      const bytes = new Uint8Array(outputs.reduce((sum, out) => sum + out.length, 0));
      let at = 0;
      for (const out of outputs) {
        bytes.set(out, at);
        at += out.length;
      }
      packed = bytes.buffer;
    }
    const value: ReencryptBatchResult = { aborted: false, packed, rawLengths: outputs.map((out) => out.length) };
    return move({ [transferableSymbol]: [packed], [valueSymbol]: value } as never);
  } finally {
    keys.fill(0);
  }
}
