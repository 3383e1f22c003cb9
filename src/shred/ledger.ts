/**
 * What the stress harness's readers and writers did, classified against the lock timeline.
 *
 * Timeline (performance.now() milliseconds, one clock for everything):
 *   deleteCalledAt   just before engine.hsm.deleteKey(crn, { force: true }) is called
 *   lockEffectiveAt  the engine's cryptoshred lock (ShredLock) has marked every volume locked and wiped its
 *                    keys (its synchronous part has returned): any operation *started* from here
 *                    on must fail
 *   lockSettledAt    the first macrotask after lockEffectiveAt: any operation that *resolves*
 *                    with data from here on returned data after the lock
 *   lockDoneAt       the lock's promise resolved (lock persisted, rotation tasks stopped)
 *   deleteReturnedAt deleteKey resolved
 *
 * Why lockSettledAt and not lockEffectiveAt for "resolved after the lock": an operation is a
 * promise; the volume decides its outcome synchronously (a read checks the lock, decrypts and
 * hands back its buffer in one step) and the caller sees it one or more microtasks later. A read
 * decided just before the lock can therefore be *seen* a microtask after lockEffectiveAt, which is
 * not data returned after the lock. Every microtask queued before a macrotask runs before it, so a
 * read that resolves with data after lockSettledAt was decided after the lock: a true violation.
 * So is a read *started* after lockEffectiveAt that returns data. Both are counted; both must be
 * zero. (Should a read ever yield between its lock check and its result, its last step must check
 * again; VolumeCore.readNow does.)
 *
 * Memory stays bounded for long runs: operations that end before the delete call only bump
 * counters; later successes (few: they stop at the lock) are kept, up to a cap, for
 * classification once the lock's moments are known; later failures are counted by code.
 */
/** 'open': engine.openVolume, which works in every state; only its failures count (as unexpected). */
export type OpKind = 'read' | 'write' | 'open';

export interface LockTimeline {
  deleteCalledAt: number;
  lockEffectiveAt: number;
  lockSettledAt: number;
  lockDoneAt: number;
  deleteReturnedAt: number;
}

/** Codes an operation may fail with once the key is being destroyed (issue 6). */
export const EXPECTED_SHRED_CODES: readonly string[] = ['KEY_DESTROYED', 'VOLUME_LOCKED'];

interface LateSuccess {
  kind: 'read' | 'write';
  startedAt: number;
  endedAt: number;
}

const LATE_SUCCESSES_MAX = 1_000_000;

export interface UnexpectedError {
  kind: OpKind;
  code: string;
  message: string;
  atMs: number;
}

export interface LedgerSummary {
  writesAcknowledgedBeforeLock: number;
  writesAcknowledgedAfterLock: number;
  writesStartedAfterLockAcknowledged: number;
  writesRejectedAfterLock: Record<string, number>;
  readsReturnedDataBeforeLock: number;
  readsReturningDataAfterLock: number;
  readsStartedAfterLockReturningData: number;
  readsRejectedAfterLock: Record<string, number>;
  /** Decided before the lock, seen by the caller between lockEffectiveAt and lockSettledAt (allowed; see above). */
  opsResolvedInLockWindow: number;
  readsCorrupt: number;
  unexpectedErrors: number;
  unexpectedErrorExamples: UnexpectedError[];
  hangs: number;
  bytesWrittenBeforeLock: number;
  bytesReadBeforeLock: number;
}

export class OpLedger {
  #deleteCalledAt: number | null = null;
  readonly #late: LateSuccess[] = [];
  #lateDropped = 0;
  #writesEarly = 0;
  #readsEarly = 0;
  #bytesWritten = 0;
  #bytesRead = 0;
  readonly #writesRejected: Record<string, number> = {};
  readonly #readsRejected: Record<string, number> = {};
  #readsCorrupt = 0;
  #unexpected = 0;
  readonly #unexpectedExamples: UnexpectedError[] = [];
  #hangs = 0;

  /** From now on successes are kept for classification and failures with shred codes are expected. */
  markDeleteCalled(at: number): void {
    this.#deleteCalledAt = at;
  }

  get deleteCalled(): boolean {
    return this.#deleteCalledAt !== null;
  }

  succeeded(kind: OpKind, startedAt: number, endedAt: number, bytes: number): void {
    if (kind === 'open') return; // metadata access: allowed in every state
    if (this.#deleteCalledAt === null || endedAt < this.#deleteCalledAt) {
      if (kind === 'write') this.#writesEarly++;
      else this.#readsEarly++;
      if (kind === 'write') this.#bytesWritten += bytes;
      else this.#bytesRead += bytes;
      return;
    }
    if (this.#late.length < LATE_SUCCESSES_MAX) this.#late.push({ kind, startedAt, endedAt });
    else this.#lateDropped++;
    if (kind === 'write') this.#bytesWritten += bytes;
    else this.#bytesRead += bytes;
  }

  failed(kind: OpKind, error: unknown, endedAt: number): void {
    const code = codeOf(error);
    const expected = kind !== 'open' && this.#deleteCalledAt !== null && EXPECTED_SHRED_CODES.includes(code);
    if (expected) {
      const counts = kind === 'write' ? this.#writesRejected : this.#readsRejected;
      counts[code] = (counts[code] ?? 0) + 1;
      return;
    }
    this.unexpected(kind, code, error instanceof Error ? error.message : String(error), endedAt);
  }

  unexpected(kind: OpKind, code: string, message: string, atMs: number): void {
    this.#unexpected++;
    if (this.#unexpectedExamples.length < 10) this.#unexpectedExamples.push({ kind, code, message, atMs });
  }

  corruptRead(): void {
    this.#readsCorrupt++;
  }

  hung(): void {
    this.#hangs++;
  }

  summarize(timeline: LockTimeline | null): LedgerSummary {
    const summary: LedgerSummary = {
      writesAcknowledgedBeforeLock: this.#writesEarly,
      writesAcknowledgedAfterLock: 0,
      writesStartedAfterLockAcknowledged: 0,
      writesRejectedAfterLock: { ...this.#writesRejected },
      readsReturnedDataBeforeLock: this.#readsEarly,
      readsReturningDataAfterLock: 0,
      readsStartedAfterLockReturningData: 0,
      readsRejectedAfterLock: { ...this.#readsRejected },
      opsResolvedInLockWindow: 0,
      readsCorrupt: this.#readsCorrupt,
      unexpectedErrors: this.#unexpected,
      unexpectedErrorExamples: [...this.#unexpectedExamples],
      hangs: this.#hangs,
      bytesWrittenBeforeLock: this.#bytesWritten,
      bytesReadBeforeLock: this.#bytesRead,
    };
    // Successes past the cap cannot be placed on the timeline: count them as violations rather than hide them.
    if (this.#lateDropped > 0) summary.readsReturningDataAfterLock += this.#lateDropped;
    for (const op of this.#late) {
      const afterSettled = timeline === null || op.endedAt > timeline.lockSettledAt;
      const startedAfter = timeline !== null && op.startedAt >= timeline.lockEffectiveAt;
      if (op.kind === 'write') {
        if (afterSettled) summary.writesAcknowledgedAfterLock++;
        if (startedAfter) summary.writesStartedAfterLockAcknowledged++;
        if (!afterSettled && !startedAfter) summary.writesAcknowledgedBeforeLock++;
      } else {
        if (afterSettled) summary.readsReturningDataAfterLock++;
        if (startedAfter) summary.readsStartedAfterLockReturningData++;
        if (!afterSettled && !startedAfter) summary.readsReturnedDataBeforeLock++;
      }
      if (timeline !== null && !afterSettled && !startedAfter && op.endedAt > timeline.lockEffectiveAt) summary.opsResolvedInLockWindow++;
    }
    return summary;
  }
}

export function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : error instanceof Error ? error.name : 'UNKNOWN';
}
