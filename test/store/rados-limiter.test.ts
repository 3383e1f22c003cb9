/**
 * The RADOS pool's in-flight bound (src/store/rados/limiter.ts) on its own, with fake
 * operations: no cluster needed.
 */
import { describe, expect, it, vi } from 'vitest';
import { InFlightLimiter } from '../../src/store/rados/limiter.js';

const errors = { busy: () => new Error('busy'), timedOut: () => new Error('timed out') };

function limiter(bounds: Partial<ConstructorParameters<typeof InFlightLimiter>[0]> = {}): InFlightLimiter {
  return new InFlightLimiter({ opsInFlightMax: 2, bytesInFlightMax: 100, opsQueuedMax: 3, waitMs: 1000, ...bounds });
}

describe('InFlightLimiter', () => {
  it('starts at most opsInFlightMax at once, the rest in FIFO order as slots free up', async () => {
    const l = limiter();
    const started: number[] = [];
    expect(l.tryAcquire(1)).toBe(true);
    expect(l.tryAcquire(1)).toBe(true);
    expect(l.tryAcquire(1)).toBe(false);
    const waits = [3, 4, 5].map((n) => l.acquire(1, errors).then(() => started.push(n)));
    expect(l.opsQueued).toBe(3);
    // The queue is full: one more is refused at once, and tryAcquire never jumps the queue.
    await expect(l.acquire(1, errors)).rejects.toThrow('busy');
    l.release(1);
    await Promise.resolve();
    expect(started).toEqual([3]);
    expect(l.tryAcquire(1)).toBe(false);
    l.release(1);
    l.release(1);
    await Promise.all(waits);
    expect(started).toEqual([3, 4, 5]);
    expect([l.opsInFlight, l.opsQueued]).toEqual([2, 0]);
  });

  it('bounds bytes: a big operation waits at the head and is not overtaken; one over the budget runs alone', async () => {
    const l = limiter({ opsInFlightMax: 10 });
    expect(l.tryAcquire(60)).toBe(true);
    const order: string[] = [];
    const big = l.acquire(50, errors).then(() => order.push('big'));
    const small = l.acquire(1, errors).then(() => order.push('small'));
    await Promise.resolve();
    expect(order).toEqual([]);
    l.release(60);
    await Promise.all([big, small]);
    expect(order).toEqual(['big', 'small']);
    l.release(50);
    l.release(1);
    expect(l.tryAcquire(1000)).toBe(true);
    expect(l.bytesInFlight).toBe(100);
    expect(l.tryAcquire(1)).toBe(false);
  });

  it('a wait longer than waitMs fails, and lets the ones behind it go', async () => {
    vi.useFakeTimers();
    try {
      const l = limiter({ opsInFlightMax: 10, waitMs: 1000 });
      expect(l.tryAcquire(100)).toBe(true);
      const first = l.acquire(100, errors);
      const firstOutcome = first.then(() => 'started', (e: Error) => e.message);
      await vi.advanceTimersByTimeAsync(500);
      const second = l.acquire(1, errors).then(() => 'started', (e: Error) => e.message);
      await vi.advanceTimersByTimeAsync(500);
      expect(await firstOutcome).toBe('timed out');
      // The first gave up; the second now heads the queue and starts once the bytes come free.
      l.release(100);
      expect(await second).toBe('started');
      expect([l.opsInFlight, l.opsQueued, l.bytesInFlight]).toEqual([1, 0, 1]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('idle() resolves once nothing is in flight or queued', async () => {
    const l = limiter();
    await l.idle();
    expect(l.tryAcquire(1)).toBe(true);
    expect(l.tryAcquire(1)).toBe(true);
    const queued = l.acquire(1, errors);
    let idle = false;
    const idled = l.idle().then(() => (idle = true));
    l.release(1);
    await queued;
    l.release(1);
    await Promise.resolve();
    expect(idle).toBe(false);
    l.release(1);
    await idled;
    expect(idle).toBe(true);
  });
});
