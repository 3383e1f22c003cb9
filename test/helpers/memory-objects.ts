/**
 * An object pool in memory with RADOS's ordering (src/volume/object-store.ts relies on it): the
 * operations sent to one object apply in the order they were sent, each after a random delay, and
 * answer once applied; operations on different objects interleave freely. For the model tests of
 * the object cluster store's logic; the real pool is RADOS (test/store/, test/helpers/ceph.ts).
 */
import type { ClusterObjects } from '../../src/volume/object-store.js';

export class MemoryObjects implements ClusterObjects {
  readonly objects = new Map<string, Buffer>();
  private readonly chains = new Map<string, Promise<unknown>>();
  /** Operations sent and not yet answered. */
  inFlight = 0;

  /** `listing`: offer list() (the store then keeps an index of the clusters that exist). */
  constructor(
    private readonly delayMsMax = 2,
    listing = false,
  ) {
    if (!listing) this.list = undefined;
  }

  /** Like RADOS listing: what exists when the listing reaches it, after a random delay; any order. */
  list?: (prefix: string, limit: number) => Promise<string[]> = async (prefix, limit) => {
    await new Promise((resolve) => setTimeout(resolve, Math.random() * this.delayMsMax));
    const names = [...this.objects.keys()].filter((name) => name.startsWith(prefix)).reverse();
    if (names.length > limit) throw new Error(`more than ${limit} objects start with ${prefix}`);
    return names;
  };

  private op<T>(oid: string, apply: () => T): Promise<T> {
    const previous = this.chains.get(oid) ?? Promise.resolve();
    this.inFlight++;
    const done = previous.then(
      () =>
        new Promise<T>((resolve, reject) => {
          setTimeout(() => {
            this.inFlight--;
            try {
              resolve(apply());
            } catch (error) {
              reject(error);
            }
          }, Math.random() * this.delayMsMax);
        }),
    );
    const chained = done.catch(() => undefined);
    this.chains.set(oid, chained);
    void chained.then(() => {
      if (this.chains.get(oid) === chained) this.chains.delete(oid);
    });
    return done;
  }

  read(oid: string): Promise<Buffer | null> {
    return this.op(oid, () => {
      const value = this.objects.get(oid);
      return value === undefined ? null : Buffer.from(value);
    });
  }

  readHead(oid: string, bytes: number): Promise<Buffer | null> {
    return this.op(oid, () => {
      const value = this.objects.get(oid);
      return value === undefined ? null : Buffer.from(value.subarray(0, bytes));
    });
  }

  writeFull(oid: string, data: Uint8Array): Promise<void> {
    const copy = Buffer.from(data);
    return this.op(oid, () => {
      this.objects.set(oid, copy);
    });
  }

  remove(oid: string): Promise<boolean> {
    return this.op(oid, () => this.objects.delete(oid));
  }

  compareAndWrite(oid: string, expected: Uint8Array, data: Uint8Array): Promise<boolean> {
    const copy = Buffer.from(data);
    return this.op(oid, () => {
      const value = this.objects.get(oid);
      if (value === undefined || value.length < expected.length || !value.subarray(0, expected.length).equals(expected)) return false;
      this.objects.set(oid, copy);
      return true;
    });
  }
}
