/**
 * A volume's operations, run in call order.
 *
 * An operation is a sequence of synchronous *steps*. A step reads clusters, encrypts and issues
 * its LMDB writes without yielding; the last step returns a promise for the operation's completion
 * (its commits). Running the steps of every operation strictly in call order, one operation after
 * the other, is what makes overlapping writes take effect in call order and every cluster
 * read-modify-write atomic, with no locks: JavaScript does not interleave synchronous code. Large
 * operations (a 1 GiB write, a trim of a whole volume) are split into bounded steps so the write
 * budget (src/volume/write-budget.ts) can apply backpressure between them; no other operation
 * runs in between, so the order still holds.
 *
 * Operations wait here only while the engine's write budget is spent; otherwise `submit` runs
 * them at once, in the caller's tick. The queue holds closures over the callers' own buffers, each
 * caller awaiting its promise, so its memory is what callers chose to submit; internal buffers
 * are bounded by the write budget.
 */
/**
 * A step's outcome: done (with the operation's completion), or more steps to come. `wait` (a
 * remote cluster store's load, see ClusterStore.load) asks to run the same step again once that
 * promise settles; a rejection fails the operation.
 */
export type StepResult<T> = { done: false; wait?: Promise<void> } | { done: true; result: Promise<T> };
export type Step<T> = () => StepResult<T>;

const NOT_DONE: { done: false } = { done: false };
export const stepPending = (): { done: false } => NOT_DONE;
/** Run this step again once `wait` settles (nothing else of this queue runs meanwhile). */
export const stepAfter = (wait: Promise<void>): { done: false; wait: Promise<void> } => ({ done: false, wait });

interface Pending {
  step: Step<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

export class OpQueue {
  private readonly pending: Pending[] = [];
  private draining = false;

  /**
   * `room.waitForRoom()` returns null when steps may run now, else a promise to wait on;
   * `room.hasRoom()` says the same without making a promise (the engine's WriteBudget).
   */
  constructor(private readonly room: { waitForRoom(): Promise<void> | null; hasRoom(): boolean }) {}

  get length(): number {
    return this.pending.length;
  }

  /** True when an operation submitted now would run at once (nothing queued, room in the budget). */
  idle(): boolean {
    return !this.draining && this.pending.length === 0 && this.room.hasRoom();
  }

  /**
   * True when nothing is queued or running: every operation submitted so far has issued all its
   * writes. A read (which issues no writes, so needs no room in the write budget) may run now and
   * still sees every earlier operation.
   */
  empty(): boolean {
    return !this.draining && this.pending.length === 0;
  }

  /** An operation of one step. */
  submitOne<T>(run: () => Promise<T>): Promise<T> {
    return this.submit(() => ({ done: true, result: run() }));
  }

  submit<T>(step: Step<T>): Promise<T> {
    if (!this.draining && this.pending.length === 0) {
      // Fast path: nothing queued ahead of us; run steps now while there is room.
      while (this.room.hasRoom()) {
        let outcome: StepResult<T>;
        try {
          outcome = step();
        } catch (error) {
          return Promise.reject(error);
        }
        if (outcome.done) return outcome.result;
        if (outcome.wait !== undefined) return this.enqueue(step, outcome.wait);
      }
    }
    return this.enqueue(step, null);
  }

  private enqueue<T>(step: Step<T>, wait: Promise<void> | null): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ step, resolve: resolve as (value: unknown) => void, reject });
      if (!this.draining) void this.drain(wait);
    });
  }

  /** `first`: what the first pending operation's step asked to wait for before it runs again. */
  private async drain(first: Promise<void> | null): Promise<void> {
    this.draining = true;
    let wait = first;
    try {
      while (this.pending.length > 0) {
        if (wait !== null) {
          const settling = wait;
          wait = null;
          try {
            await settling;
          } catch (error) {
            this.pending.shift()!.reject(error);
          }
          continue;
        }
        const room = this.room.waitForRoom();
        if (room !== null) {
          await room;
          continue;
        }
        const op = this.pending[0]!;
        let outcome: StepResult<unknown>;
        try {
          outcome = op.step();
        } catch (error) {
          this.pending.shift();
          op.reject(error);
          continue;
        }
        if (outcome.done) {
          this.pending.shift();
          outcome.result.then(op.resolve, op.reject);
        } else if (outcome.wait !== undefined) {
          wait = outcome.wait;
        }
      }
    } finally {
      this.draining = false;
    }
  }
}
