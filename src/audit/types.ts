import type { JsonValue } from './canonical-json.js';

/**
 * Audit events are named as the KMS names them (hs-crypto.secrets.create, .wrap, ...); other
 * modules append their own (blockvault.rotation.start, ...), so any well-formed action is accepted.
 */
export type AuditOutcome = 'success' | 'failure';

/** What a module hands to `AuditLog.append`. */
export interface AuditEvent {
  /** Dotted name, e.g. 'hs-crypto.secrets.delete'; [A-Za-z0-9._-], at most 128 characters. */
  action: string;
  /** Who asked (a user, a service, a process); defaults to 'system'. */
  initiator?: string;
  /** Defaults to 'success'. */
  outcome?: AuditOutcome;
  /** Why it failed (the error message); only for failures. */
  reason?: string;
  /** The stable error code of a failure, e.g. 'KEY_IN_USE'. */
  code?: string;
  keyCrn?: string | null;
  resourceCrn?: string | null;
  instanceId?: string | null;
  /** Anything else worth keeping, as plain JSON (force flag, affected resources, versions). */
  details?: Record<string, unknown>;
}

/** A stored event: the hash covers every other field, prevHash included (a hash chain). */
export interface AuditRecord {
  seq: number;
  timeMs: number;
  action: string;
  initiator: string;
  outcome: AuditOutcome;
  reason: string | null;
  code: string | null;
  keyCrn: string | null;
  resourceCrn: string | null;
  instanceId: string | null;
  details: { [key: string]: JsonValue };
  /** Hex SHA-256 of the previous record (64 zeros for seq 1). */
  prevHash: string;
  /** Hex SHA-256 over the canonical JSON of this record without `hash`. */
  hash: string;
}

export interface AuditListFilter {
  action?: string;
  keyCrn?: string;
  resourceCrn?: string;
  initiator?: string;
  outcome?: AuditOutcome;
  /** Inclusive lower bound on timeMs. */
  sinceMs?: number;
  /** Exclusive upper bound on timeMs. */
  untilMs?: number;
  /** Only records with seq greater than this (for paging). */
  afterSeq?: number;
  /** At most this many records (default 1000, at most 10000). */
  limit?: number;
  /** 'asc' (oldest first, the default) or 'desc' (newest first). */
  order?: 'asc' | 'desc';
}

export interface AuditVerifyResult {
  ok: boolean;
  /** How many records verified before the first problem (all of them when ok). */
  count: number;
  /** The sequence number where the chain first breaks. */
  firstBadSeq?: number;
  reason?: string;
  /** The hash of the last good record: anchor it elsewhere to detect a rewritten suffix. */
  headHash: string;
}
