/**
 * Messages between the runner (main thread) and rotation-worker.ts. Cluster bytes move by transfer
 * both ways, never structured-cloned and, on the main thread, never copied: each stored value the
 * target read goes to the worker in its own ArrayBuffer and comes back untouched next to its
 * re-encrypted image (the commit compares against it). Keys travel in their own small ArrayBuffer,
 * also transferred, so that after `postMessage` the only copy is in the worker, which zeroizes it
 * when the batch ends (whatever the outcome).
 */

/** A DEK is 512 bits: two AES-256 keys for XTS (IEEE 1619). */
export const DATA_KEY_BYTES = 64;

export interface RotationWorkerData {
  opsModuleUrl: string;
  backend: string | undefined;
}

export interface ReencryptBatchRequest {
  kind: 'reencrypt';
  /** One stored cluster value per buffer (the whole buffer), in batch order. */
  clusters: ArrayBuffer[];
  clusterIndexes: number[];
  /** Per cluster: the slot of its old key in `keys`. Slot 0 holds the new key. */
  keySlots: number[];
  /** DATA_KEY_BYTES per slot. */
  keys: ArrayBuffer;
  newGeneration: number;
  sectorSize: number;
  clusterSectors: number;
  /** Int32Array(1) shared with the runner; non-zero means: stop now and wipe the keys. */
  abortFlag: SharedArrayBuffer;
}

export interface ProbeRequest {
  kind: 'probe';
}

export type RotationWorkerRequest = ReencryptBatchRequest | ProbeRequest;

export interface ReencryptBatchResult {
  aborted: boolean;
  /** The request's cluster buffers, returned untouched; empty when aborted. */
  inputs: ArrayBuffer[];
  /** The re-encrypted values, one whole buffer each, in the request's order; empty when aborted. */
  outputs: ArrayBuffer[];
}
