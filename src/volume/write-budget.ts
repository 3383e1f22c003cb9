import { assert } from '../errors.js';

/**
 * An engine-wide bound on bytes handed to LMDB but not yet committed. lmdb-js queues async puts
 * without limit; every queued value also sits in a volume's pending-cluster overlay, so this one
 * number bounds both. When the budget is spent, volume queues stop issuing new operations until
 * commits return bytes (backpressure instead of unbounded memory).
 */
export class WriteBudget {
  private inflightBytes = 0;
  private waiters: (() => void)[] = [];

  constructor(readonly bytesMax: number) {
    assert(Number.isSafeInteger(bytesMax) && bytesMax > 0, 'write budget is a positive integer');
  }

  get used(): number {
    return this.inflightBytes;
  }

  /** Whether writes may be issued now (no side effect, unlike waitForRoom). */
  hasRoom(): boolean {
    return this.inflightBytes < this.bytesMax;
  }

  /** A promise to wait on before issuing more writes, or null when there is room now. */
  waitForRoom(): Promise<void> | null {
    if (this.hasRoom()) return null;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  take(bytes: number): void {
    this.inflightBytes += bytes;
  }

  give(bytes: number): void {
    this.inflightBytes -= bytes;
    assert(this.inflightBytes >= 0, 'write budget never goes negative');
    // Wake waiters only when a useful amount is free again, so they do not spin one put at a time.
    if (this.waiters.length > 0 && this.inflightBytes < this.bytesMax / 2) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const wake of waiters) wake();
    }
  }
}
