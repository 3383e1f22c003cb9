/**
 * The bound on one pool's operations: at most `opsInFlightMax` operations and
 * `bytesInFlightMax` bytes in librados at once, later ones waiting in a FIFO of at most
 * `opsQueuedMax`. The addon refuses (-EBUSY) rather than queues, and librados' own throttle is
 * off (it would block Node's thread), so this is where callers wait.
 *
 * A queued operation that has not started within `waitMs` fails (the caller's `timedOut`
 * error), so with the OSDs gone every call still settles within about two timeouts: one waiting
 * here, one in librados (rados_osd_op_timeout). Strict FIFO: a big operation at the head is not
 * overtaken by small ones behind it, so nothing starves.
 */
import { assert } from '../../errors.js';

export interface LimiterBounds {
  opsInFlightMax: number;
  bytesInFlightMax: number;
  opsQueuedMax: number;
  waitMs: number;
}

interface Waiter {
  bytes: number;
  start: () => void;
  timer: NodeJS.Timeout | undefined;
  /** Timed out: skipped (and dropped) when it reaches the head. */
  gone: boolean;
}

export class InFlightLimiter {
  #ops = 0;
  #bytes = 0;
  #queue: Waiter[] = [];
  #head = 0;
  /** Queued and neither started nor timed out. */
  #waiting = 0;
  #idle: (() => void)[] = [];

  constructor(private readonly bounds: LimiterBounds) {}

  get opsInFlight(): number {
    return this.#ops;
  }
  get bytesInFlight(): number {
    return this.#bytes;
  }
  get opsQueued(): number {
    return this.#waiting;
  }

  /** Takes a slot for an operation of `bytes` if one is free and nobody waits; false otherwise. */
  tryAcquire(bytes: number): boolean {
    const cost = this.#cost(bytes);
    if (this.#waiting > 0 || !this.#fits(cost)) return false;
    this.#take(cost);
    return true;
  }

  /**
   * Waits for a slot (after tryAcquire said no). Rejects with `busy()` at once when the queue is
   * full, with `timedOut()` when the wait exceeds waitMs.
   */
  acquire(bytes: number, errors: { busy: () => Error; timedOut: () => Error }): Promise<void> {
    const cost = this.#cost(bytes);
    if (this.#waiting >= this.bounds.opsQueuedMax) return Promise.reject(errors.busy());
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        bytes: cost,
        gone: false,
        start: () => {
          clearTimeout(waiter.timer);
          resolve();
        },
        timer: undefined,
      };
      waiter.timer = setTimeout(() => {
        waiter.gone = true;
        this.#waiting -= 1;
        reject(errors.timedOut());
        // The head may have been this waiter, holding back smaller ones behind it.
        this.#pump();
      }, this.bounds.waitMs);
      this.#queue.push(waiter);
      this.#waiting += 1;
      // A slot may have come free since tryAcquire.
      this.#pump();
    });
  }

  /** Gives back the slot of a finished operation of `bytes`. */
  release(bytes: number): void {
    const cost = this.#cost(bytes);
    assert(this.#ops > 0 && this.#bytes >= cost, 'release matches an acquire');
    this.#ops -= 1;
    this.#bytes -= cost;
    this.#pump();
  }

  /**
   * What an operation counts against bytesInFlightMax: an operation bigger than the whole budget
   * (a compare-and-write of a 64 MiB object with a large expectation) runs alone instead of never.
   */
  #cost(bytes: number): number {
    assert(Number.isSafeInteger(bytes) && bytes >= 0, 'an operation has a byte count');
    return Math.min(bytes, this.bounds.bytesInFlightMax);
  }

  /** Resolves once nothing is queued or in flight. */
  idle(): Promise<void> {
    if (this.#ops === 0 && this.#waiting === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #fits(bytes: number): boolean {
    return this.#ops < this.bounds.opsInFlightMax && this.#bytes + bytes <= this.bounds.bytesInFlightMax;
  }

  #take(bytes: number): void {
    this.#ops += 1;
    this.#bytes += bytes;
  }

  #pump(): void {
    while (this.#head < this.#queue.length) {
      const next = this.#queue[this.#head]!;
      if (!next.gone) {
        if (!this.#fits(next.bytes)) break;
        this.#waiting -= 1;
        this.#take(next.bytes);
        next.start();
      }
      this.#head += 1;
    }
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    if (this.#ops === 0 && this.#waiting === 0) for (const resolve of this.#idle.splice(0)) resolve();
  }
}
