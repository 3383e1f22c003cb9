import type { RootDatabase } from 'lmdb';
import { assert } from '../errors.js';

/**
 * How the budget ends LMDB transactions at a size. lmdb-js has no such setting: its write thread
 * keeps one transaction open for as long as it finds queued writes, so with writes arriving
 * faster than it applies them a transaction takes in everything the budget lets through, and the
 * next one cannot start filling until that one's fsync returns the budget (the writes resolve
 * after it). `fence()` queues a marker behind the writes issued so far and resolves once LMDB's
 * write thread has reached it; issuing nothing more until then lets that thread run out of work
 * and commit, so the transaction ends near `bytes`, and the next one fills (on another thread)
 * while this one is fsynced.
 */
export interface TxnSizeCap {
  bytes: number;
  fence(): Promise<void>;
}

/**
 * A TxnSizeCap fence on lmdb-js's write queue: an empty async transaction. lmdb-js runs its
 * callback when the write thread reaches it in the queue (everything issued before it has been
 * applied); its promise settles at the commit, which also ends the fence should the callback
 * never run (a failed commit, a closing environment).
 */
export function lmdbWriteFence(root: RootDatabase): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      try {
        // lmdb-js types transactionAsync as returning the callback's value; it returns a promise.
        const committed = root.transactionAsync(() => resolve()) as unknown as Promise<unknown>;
        committed.then(
          () => resolve(),
          () => resolve(),
        );
      } catch {
        resolve(); // refused outright (closed): the writes that follow fail on their own
      }
    });
}

/**
 * An engine-wide bound on bytes handed to LMDB but not yet committed. lmdb-js queues async puts
 * without limit; every queued value also sits in a volume's pending-cluster overlay, so this one
 * number bounds both. When the budget is spent, volume queues stop issuing new operations until
 * commits return bytes (backpressure instead of unbounded memory). With a TxnSizeCap, they also
 * pause after every `cap.bytes` of LMDB writes until the cap's fence has passed.
 */
export class WriteBudget {
  private inflightBytes = 0;
  private waiters: (() => void)[] = [];
  /** LMDB bytes issued since the last fence passed. */
  private sinceFenceBytes = 0;
  private fencing = false;

  constructor(
    readonly bytesMax: number,
    private readonly cap: TxnSizeCap | null = null,
  ) {
    assert(Number.isSafeInteger(bytesMax) && bytesMax > 0, 'write budget is a positive integer');
    assert(cap === null || (Number.isSafeInteger(cap.bytes) && cap.bytes > 0), 'a transaction size cap is a positive integer');
  }

  get used(): number {
    return this.inflightBytes;
  }

  /** Whether writes may be issued now (no side effect, unlike waitForRoom). */
  hasRoom(): boolean {
    return this.inflightBytes < this.bytesMax && !this.fencing;
  }

  /** A promise to wait on before issuing more writes, or null when there is room now. */
  waitForRoom(): Promise<void> | null {
    if (this.hasRoom()) return null;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Bytes handed to LMDB's write queue (`toLmdb`, counted against the cap) or to another store. */
  take(bytes: number, toLmdb = false): void {
    this.inflightBytes += bytes;
    if (!toLmdb || this.cap === null) return;
    this.sinceFenceBytes += bytes;
    if (this.sinceFenceBytes >= this.cap.bytes && !this.fencing) this.startFence(this.cap);
  }

  give(bytes: number): void {
    this.inflightBytes -= bytes;
    assert(this.inflightBytes >= 0, 'write budget never goes negative');
    // Wake waiters only when a useful amount is free again, so they do not spin one put at a time.
    if (this.inflightBytes < this.bytesMax / 2) this.wake();
  }

  private startFence(cap: TxnSizeCap): void {
    this.fencing = true;
    const pass = (): void => {
      // One macrotask later: the write thread commits right after the marker, and writes issued
      // before it looked for more work would join this transaction (harmless, only larger).
      setImmediate(() => {
        this.fencing = false;
        this.sinceFenceBytes = 0;
        if (this.inflightBytes < this.bytesMax) this.wake();
      });
    };
    // A fence that fails must not hold writers forever (a promise settles once: one pass).
    cap.fence().then(pass, pass);
  }

  private wake(): void {
    if (this.waiters.length === 0 || this.fencing) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}
