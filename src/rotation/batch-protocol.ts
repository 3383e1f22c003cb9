/**
 * Messages between the runner (main thread) and rotation-worker.ts. Cluster bytes travel in one
 * packed ArrayBuffer per batch, moved by transfer both ways (never structured-cloned); keys travel
 * in their own small ArrayBuffer, also transferred, so that after `postMessage` the only copy is in
 * the worker, which zeroizes it when the batch ends (whatever the outcome).
 */

/** A DEK is 512 bits: two AES-256 keys for XTS (IEEE 1619). */
export const DATA_KEY_BYTES = 64;

export interface RotationWorkerData {
  opsModuleUrl: string;
  backend: string | undefined;
}

export interface ReencryptBatchRequest {
  kind: 'reencrypt';
  /** The stored values of the batch's clusters, back to back. */
  packed: ArrayBuffer;
  rawLengths: number[];
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
  /** The re-encrypted values, back to back, in the request's order; null when aborted. */
  packed: ArrayBuffer | null;
  rawLengths: number[];
}
