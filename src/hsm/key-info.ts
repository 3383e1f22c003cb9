import { BlockvaultError } from '../errors.js';
import type { KeyRecord } from './metadata-store.js';
import { KeyState, type KeyStateName, type RootKeyInfo } from './types.js';

/** A pending dual-authorization deletion lapses after this long (the KMS convention, 7 days). */
export const DUAL_AUTH_WINDOW_MS = 7 * 24 * 3_600_000;

const STATE_NAMES: Record<KeyState, KeyStateName> = {
  [KeyState.Active]: 'Active',
  [KeyState.Suspended]: 'Suspended',
  [KeyState.Deactivated]: 'Deactivated',
  [KeyState.Destroyed]: 'Destroyed',
};

export function stateName(state: KeyState): KeyStateName {
  return STATE_NAMES[state];
}

export type KeyOperation =
  | 'wrap'
  | 'unwrap'
  | 'rewrap'
  | 'rotate'
  | 'enable'
  | 'disable'
  | 'deactivate'
  | 'delete'
  | 'set key for deletion'
  | 'write a policy'
  | 'register a resource';

const LIVE = [KeyState.Active, KeyState.Suspended, KeyState.Deactivated];

/**
 * DESIGN.md, "States": Active 1 allows wrap, unwrap, rewrap, rotate, delete; Suspended 2 allows
 * reading metadata, enable and delete; Deactivated 3 allows unwrap, rewrap and delete; Destroyed 5
 * allows reading metadata only. Policies, dual-authorization marks and registrations are metadata
 * about a key that still exists, so they are allowed in every state but Destroyed.
 */
const ALLOWED: Record<KeyOperation, readonly KeyState[]> = {
  wrap: [KeyState.Active],
  unwrap: [KeyState.Active, KeyState.Deactivated],
  rewrap: [KeyState.Active, KeyState.Deactivated],
  rotate: [KeyState.Active],
  enable: [KeyState.Suspended],
  disable: [KeyState.Active],
  deactivate: [KeyState.Active],
  delete: LIVE,
  'set key for deletion': LIVE,
  'write a policy': LIVE,
  'register a resource': LIVE,
};

function hint(state: KeyState, operation: KeyOperation): string {
  if (operation === 'enable' && state === KeyState.Active) return 'it is already Active';
  if (operation === 'disable' && state === KeyState.Suspended) return 'it is already Suspended; enable it with hsm.enableKey(crn)';
  if (state === KeyState.Suspended) return 'enable it first with hsm.enableKey(crn)';
  if (state === KeyState.Deactivated) return 'a Deactivated key only unwraps and rewraps existing data keys; create a new root key for new data';
  return 'see DESIGN.md "States" for what each state allows';
}

/** KEY_DESTROYED for a destroyed key, KEY_STATE when the state does not allow the operation. */
export function assertStateAllows(record: KeyRecord, operation: KeyOperation, crn: string): void {
  if (record.state === KeyState.Destroyed || record.pendingDestroy !== null) {
    throw new BlockvaultError('KEY_DESTROYED', `root key ${crn} was destroyed${record.destroyedAtMs !== null ? ` at ${new Date(record.destroyedAtMs).toISOString()}` : ''}: its material is gone, so it cannot ${operation}. Only its metadata remains`, { keyCrn: crn });
  }
  if (!ALLOWED[operation].includes(record.state)) {
    throw new BlockvaultError('KEY_STATE', `root key ${crn} is ${stateName(record.state)} (state ${record.state}) and cannot ${operation}: ${hint(record.state, operation)}`, {
      keyCrn: crn,
      state: record.state,
    });
  }
}

export function pendingDeletionBy(record: KeyRecord, nowMs: number): string | null {
  if (record.deletionAuthorizedBy === null || record.deletionAuthorizedAtMs === null) return null;
  return nowMs < record.deletionAuthorizedAtMs + DUAL_AUTH_WINDOW_MS ? record.deletionAuthorizedBy : null;
}

export function toRootKeyInfo(record: KeyRecord, crn: string, nowMs: number): RootKeyInfo {
  const current = record.versions[record.versions.length - 1];
  const by = pendingDeletionBy(record, nowMs);
  return {
    id: record.id,
    name: record.name,
    crn,
    instanceId: record.instanceId,
    state: record.state,
    stateName: stateName(record.state),
    version: current ? current.version : 0,
    versions: record.versions.map((v) => ({ version: v.version, createdAtMs: v.createdAtMs, destroyedAtMs: v.destroyedAtMs })),
    createdAtMs: record.createdAtMs,
    rotatedAtMs: record.rotatedAtMs,
    imported: record.imported,
    platformManaged: record.platformManaged,
    dualAuthDelete: record.dualAuthDelete,
    deletionAuthorizedBy: by,
    deletionAuthorizedUntilMs: by === null ? null : (record.deletionAuthorizedAtMs as number) + DUAL_AUTH_WINDOW_MS,
    rotationPolicy: record.rotationPolicy === null ? null : { ...record.rotationPolicy },
    destroyedAtMs: record.destroyedAtMs,
  };
}
