/**
 * The shapes of a "Syncing KMS state" task (DESIGN.md, "Rotation"): what is persisted in the
 * engine's LMDB sub-database `tasks`, what progress listeners receive, and the audit actions a
 * task emits. These are public (engine.tasks returns them); extend, don't rename.
 */

export const TASK_TYPE_SYNCING_KMS_STATE = 'syncing-kms-state' as const;

/** `reencrypt`: rewrap, then move every cluster to a fresh DEK. `rewrap`: rewrap the DEKs only. */
export type TaskMode = 'reencrypt' | 'rewrap';
export const TASK_MODES: readonly TaskMode[] = ['reencrypt', 'rewrap'];

export type TaskState = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';
export const TERMINAL_TASK_STATES: readonly TaskState[] = ['completed', 'failed', 'cancelled'];

export function isTerminalTaskState(state: TaskState): boolean {
  return TERMINAL_TASK_STATES.includes(state);
}

/**
 * Where a running task is. Persisted so that a resume after a crash knows which steps are done;
 * every step is idempotent, so redoing the current one is always safe.
 */
export type TaskPhase = 'rewrap' | 'begin-generation' | 'reencrypt' | 'verify' | 'retire' | 'done';

export interface TaskError {
  code: string;
  message: string;
}

export interface TaskRecord {
  id: string;
  type: typeof TASK_TYPE_SYNCING_KMS_STATE;
  volumeId: string;
  keyCrn: string;
  fromKeyVersion: number;
  toKeyVersion: number;
  mode: TaskMode;
  state: TaskState;
  phase: TaskPhase;
  /** The write generation seen when the task started: beginGeneration's `expectedPrevious`. */
  baseGeneration: number | null;
  /** The generation every cluster moves to; persisted before the first cluster moves. */
  targetGeneration: number | null;
  /** The next cluster index to scan: every cluster below it is done (or was never stale). */
  checkpointClusterIndex: number;
  /** Full scans that found stale clusters so far; the task ends after a scan that found none. */
  passCount: number;
  sectorsDone: number;
  sectorsTotal: number;
  /** Logical bytes re-encrypted (sectors times sector size). */
  bytesDone: number;
  /** Re-encryption rate of the current (or last) run of the task, as of its last checkpoint. */
  bytesPerSecond: number;
  /** Estimated time to completion as of the last checkpoint; null while unknown, 0 once completed. */
  etaMs: number | null;
  createdAtMs: number;
  startedAtMs: number | null;
  endedAtMs: number | null;
  updatedAtMs: number;
  error: TaskError | null;
}

/** What a caller (the engine, on hsm.rotateKey) asks for. */
export interface NewTaskSpec {
  volumeId: string;
  keyCrn: string;
  fromKeyVersion: number;
  toKeyVersion: number;
  mode?: TaskMode;
}

export interface TaskProgressEvent {
  taskId: string;
  volumeId: string;
  state: TaskState;
  phase: TaskPhase;
  sectorsDone: number;
  sectorsTotal: number;
  /** Over the current run of the task (a resume starts a new run). */
  bytesPerSecond: number;
  /** Null while the rate is unknown. */
  etaMs: number | null;
}

/**
 * Audit actions. The KMS records a resource's acknowledgement of a key lifecycle action (here: a
 * rotation the volume has fully synced to) as `hs-crypto.secrets-event.ack` ("Acknowledge a
 * lifecycle action on a key", Hyper Protect Crypto Services Activity Tracker events; formerly
 * `hs-crypto.secrets.eventack`). The other actions are blockvault's own.
 */
export const ROTATION_AUDIT_ACTIONS = {
  start: 'blockvault.rotation.start',
  resume: 'blockvault.rotation.resume',
  complete: 'blockvault.rotation.complete',
  cancel: 'blockvault.rotation.cancel',
  fail: 'blockvault.rotation.fail',
  kmsAck: 'hs-crypto.secrets-event.ack',
} as const;
export type RotationAuditAction = (typeof ROTATION_AUDIT_ACTIONS)[keyof typeof ROTATION_AUDIT_ACTIONS];

export type RotationEventHook = (action: RotationAuditAction, details: Record<string, unknown>) => void | Promise<void>;
