import { createHash } from 'node:crypto';
import type { Database, RootDatabase } from 'lmdb';
import type { Clock } from '../clock.js';
import { BlockvaultError } from '../errors.js';
import { canonicalJson, toJsonValue, type JsonValue } from './canonical-json.js';
import type { AuditEvent, AuditListFilter, AuditRecord, AuditVerifyResult } from './types.js';

/** The LMDB sub-database holding the log: numeric keys are sequence numbers, HEAD_KEY the chain head. */
export const AUDIT_DB_NAME = 'audit';
const HEAD_KEY = 'head';
const GENESIS_HASH = '0'.repeat(64);
const SEQ_MAX = Number.MAX_SAFE_INTEGER;

const ACTION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const INITIATOR_LENGTH_MAX = 256;
const REASON_LENGTH_MAX = 2048;
const CRN_LENGTH_MAX = 512;
/** One record's details as canonical JSON; large enough for thousands of affected resource CRNs. */
const DETAILS_BYTES_MAX = 1 << 20;
const LIST_LIMIT_DEFAULT = 1000;
const LIST_LIMIT_MAX = 10_000;

interface Head {
  seq: number;
  hash: string;
}

export interface AuditLogOptions {
  root: RootDatabase;
  clock: Clock;
}

function invalid(message: string): never {
  throw new BlockvaultError('INVALID_ARGUMENT', message);
}

function optionalText(value: unknown, name: string, lengthMax: number): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') return invalid(`audit event ${name} must be a string, got ${typeof value}`);
  return value.length > lengthMax ? `${value.slice(0, lengthMax - 1)}…` : value;
}

/** Details as plain JSON; a value JSON cannot hold (a bigint, a cycle) is the caller's mistake. */
function jsonDetails(details: object): JsonValue {
  try {
    return toJsonValue(details);
  } catch (error) {
    return invalid(`audit event details must be JSON data: ${(error as Error).message}`);
  }
}

/** SHA-256 over the canonical JSON of every field but `hash` (prevHash included). */
export function hashAuditRecord(record: Omit<AuditRecord, 'hash'> | AuditRecord): string {
  const { hash: _ignored, ...body } = record as AuditRecord;
  return createHash('sha256').update(canonicalJson(body)).digest('hex');
}

/**
 * The activity log: append-only and hash-chained. Record n stores the SHA-256 of record n-1, its
 * own hash covers its fields and that link, and sequence numbers are dense, so editing, dropping
 * or reordering any stored record breaks `verify()` at a named sequence number. The chain head
 * is stored too, so dropping the newest records is caught as well.
 *
 * What a chain without a secret cannot do: someone who can write the LMDB file may rewrite a
 * whole suffix of the log with freshly computed hashes. `verify()` returns `headHash` so an
 * operator can anchor it elsewhere (a ticket, a second system) and compare later.
 *
 * The chain is extended synchronously when `append` is called (so concurrent appends from one
 * process get consecutive numbers in call order); the LMDB write is batched and the returned
 * promise settles once it is committed. One process appends to a given directory at a time.
 */
export class AuditLog {
  private readonly db: Database<unknown, number | string>;
  private head: Head;
  private closed = false;

  private constructor(
    db: Database<unknown, number | string>,
    private readonly clock: Clock,
  ) {
    this.db = db;
    this.head = AuditLog.readHead(db);
  }

  static async open(options: AuditLogOptions): Promise<AuditLog> {
    if (options === null || typeof options !== 'object') invalid('AuditLog.open needs { root, clock }');
    const { root, clock } = options;
    if (root === null || typeof root !== 'object' || typeof (root as RootDatabase).openDB !== 'function') {
      invalid('AuditLog.open needs { root }: the LMDB root database of the engine directory');
    }
    if (clock === null || typeof clock !== 'object' || typeof clock.nowMs !== 'function') {
      invalid('AuditLog.open needs { clock }: an object with nowMs()');
    }
    const db = root.openDB<unknown, number | string>(AUDIT_DB_NAME, { encoding: 'json' });
    return new AuditLog(db, clock);
  }

  /**
   * Continue from the stored head when there is one, even if newer records were dropped: new
   * records then chain onto the head and the gap stays visible to verify().
   */
  private static readHead(db: Database<unknown, number | string>): Head {
    const stored = db.get(HEAD_KEY) as Partial<Head> | undefined;
    if (stored && Number.isSafeInteger(stored.seq) && typeof stored.hash === 'string') {
      return { seq: stored.seq as number, hash: stored.hash };
    }
    for (const { key, value } of db.getRange({ start: SEQ_MAX, end: 0, reverse: true, limit: 1 })) {
      const record = value as Partial<AuditRecord>;
      if (typeof key === 'number' && typeof record.hash === 'string') return { seq: key, hash: record.hash };
    }
    return { seq: 0, hash: GENESIS_HASH };
  }

  /** Sequence number and hash of the newest record (seq 0 and 64 zeros for an empty log). */
  headInfo(): { seq: number; hash: string } {
    return { ...this.head };
  }

  /** Append one event; any well-formed action name is accepted. Resolves once it is committed. */
  append(event: AuditEvent): Promise<AuditRecord> {
    this.assertOpen();
    if (event === null || typeof event !== 'object') invalid('audit event must be an object with an action');
    if (typeof event.action !== 'string' || !ACTION_PATTERN.test(event.action)) {
      invalid(`audit action ${JSON.stringify(event.action)} must be 1-128 characters of [A-Za-z0-9._-], e.g. 'hs-crypto.secrets.create'`);
    }
    const outcome = event.outcome ?? 'success';
    if (outcome !== 'success' && outcome !== 'failure') invalid(`audit outcome must be 'success' or 'failure', got ${JSON.stringify(outcome)}`);
    if (event.details !== undefined && (event.details === null || typeof event.details !== 'object' || Array.isArray(event.details))) {
      invalid('audit event details must be a plain object');
    }
    const details = (event.details === undefined ? {} : jsonDetails(event.details)) as { [key: string]: JsonValue };
    if (canonicalJson(details).length > DETAILS_BYTES_MAX) invalid(`audit event details exceed ${DETAILS_BYTES_MAX} bytes as JSON`);
    const timeMs = this.clock.nowMs();
    if (!Number.isFinite(timeMs)) invalid('the clock returned a non-finite time');

    const body: Omit<AuditRecord, 'hash'> = {
      seq: this.head.seq + 1,
      timeMs,
      action: event.action,
      initiator: optionalText(event.initiator, 'initiator', INITIATOR_LENGTH_MAX) ?? 'system',
      outcome,
      reason: optionalText(event.reason, 'reason', REASON_LENGTH_MAX) ?? (outcome === 'failure' ? 'unspecified' : null),
      code: optionalText(event.code, 'code', 64),
      keyCrn: optionalText(event.keyCrn, 'keyCrn', CRN_LENGTH_MAX),
      resourceCrn: optionalText(event.resourceCrn, 'resourceCrn', CRN_LENGTH_MAX),
      instanceId: optionalText(event.instanceId, 'instanceId', 128),
      details,
      prevHash: this.head.hash,
    };
    const record: AuditRecord = { ...body, hash: hashAuditRecord(body) };
    this.head = { seq: record.seq, hash: record.hash };
    // Both puts land in the same batched LMDB transaction (same event turn).
    const stored = this.db.put(record.seq, record);
    const headStored = this.db.put(HEAD_KEY, { seq: record.seq, hash: record.hash });
    return Promise.all([stored, headStored]).then(() => record);
  }

  /** Records matching every given filter, oldest first unless order is 'desc'. */
  list(filter: AuditListFilter = {}): AuditRecord[] {
    this.assertOpen();
    if (filter === null || typeof filter !== 'object') invalid('list() takes a filter object');
    const limit = filter.limit ?? LIST_LIMIT_DEFAULT;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > LIST_LIMIT_MAX) invalid(`limit must be an integer from 1 to ${LIST_LIMIT_MAX}, got ${limit}`);
    for (const name of ['sinceMs', 'untilMs', 'afterSeq'] as const) {
      const value = filter[name];
      if (value !== undefined && (typeof value !== 'number' || Number.isNaN(value))) invalid(`${name} must be a number`);
    }
    for (const name of ['action', 'keyCrn', 'resourceCrn', 'initiator', 'outcome'] as const) {
      const value = filter[name];
      if (value !== undefined && typeof value !== 'string') invalid(`${name} must be a string`);
    }
    if (filter.order !== undefined && filter.order !== 'asc' && filter.order !== 'desc') invalid(`order must be 'asc' or 'desc'`);
    const descending = filter.order === 'desc';
    const afterSeq = Math.max(0, Math.floor(filter.afterSeq ?? 0));
    const range = descending
      ? this.db.getRange({ start: SEQ_MAX, end: afterSeq, reverse: true })
      : this.db.getRange({ start: afterSeq + 1, end: SEQ_MAX });
    const out: AuditRecord[] = [];
    for (const { key, value } of range) {
      if (typeof key !== 'number') continue;
      const record = value as AuditRecord;
      if (filter.action !== undefined && record.action !== filter.action) continue;
      if (filter.keyCrn !== undefined && record.keyCrn !== filter.keyCrn) continue;
      if (filter.resourceCrn !== undefined && record.resourceCrn !== filter.resourceCrn) continue;
      if (filter.initiator !== undefined && record.initiator !== filter.initiator) continue;
      if (filter.outcome !== undefined && record.outcome !== filter.outcome) continue;
      if (filter.sinceMs !== undefined && !(record.timeMs >= filter.sinceMs)) continue;
      if (filter.untilMs !== undefined && !(record.timeMs < filter.untilMs)) continue;
      out.push(record);
      if (out.length >= limit) break;
    }
    return out;
  }

  /** Walk the whole chain; reports the first sequence number where it breaks. */
  verify(): AuditVerifyResult {
    this.assertOpen();
    let expectedSeq = 1;
    let prevHash = GENESIS_HASH;
    const fail = (seq: number, reason: string): AuditVerifyResult => ({ ok: false, count: expectedSeq - 1, firstBadSeq: seq, reason, headHash: prevHash });
    for (const { key, value } of this.db.getRange({ start: 0, end: SEQ_MAX })) {
      if (typeof key !== 'number') continue;
      if (key !== expectedSeq) {
        return fail(expectedSeq, key > expectedSeq ? `record ${expectedSeq} is missing (the next stored record is ${key})` : `unexpected record key ${key}`);
      }
      const record = value as AuditRecord;
      if (record === null || typeof record !== 'object' || typeof record.hash !== 'string') {
        return fail(key, `record ${key} is not an audit record`);
      }
      if (record.seq !== key) return fail(key, `record stored at ${key} claims seq ${String(record.seq)}: records were reordered or moved`);
      if (record.prevHash !== prevHash) {
        return fail(key, `record ${key} does not link to record ${key - 1} (prevHash mismatch): a record was dropped, reordered or rewritten`);
      }
      let recomputed: string;
      try {
        recomputed = hashAuditRecord(record);
      } catch {
        return fail(key, `record ${key} holds values that have no JSON form`);
      }
      if (recomputed !== record.hash) return fail(key, `record ${key} was edited: its contents do not match its hash`);
      prevHash = record.hash;
      expectedSeq += 1;
    }
    const count = expectedSeq - 1;
    const stored = this.db.get(HEAD_KEY) as Partial<Head> | undefined;
    if (stored !== undefined) {
      if (stored.seq !== count || stored.hash !== prevHash) {
        const seq = typeof stored.seq === 'number' && stored.seq > count ? count + 1 : Math.max(1, count);
        return fail(seq, `the stored chain head (seq ${String(stored.seq)}) does not match the last record (seq ${count}): newest records were dropped or the head was altered`);
      }
    } else if (count > 0) {
      return fail(count, 'the chain head record is missing');
    }
    return { ok: true, count, headHash: prevHash };
  }

  /** Resolves once every append so far is committed. */
  async flush(): Promise<void> {
    await this.db.flushed;
  }

  /** The engine owns the LMDB root; closing the log only refuses further use. */
  close(): void {
    this.closed = true;
  }

  private assertOpen(): void {
    if (this.closed) throw new BlockvaultError('ENGINE_CLOSED', 'the audit log is closed; reopen the engine to read or append events');
  }
}
