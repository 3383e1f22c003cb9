import { assert } from '../errors.js';

/** The capacity a pooled buffer for `bytes` comes in: the next power of two (less than 2x the bytes). */
export function powerOfTwoCapacity(bytes: number): number {
  assert(Number.isSafeInteger(bytes) && bytes > 0, 'a pooled buffer has a whole positive size');
  return 2 ** Math.ceil(Math.log2(bytes));
}

/**
 * Free buffers kept for reuse, by capacity, bounded by their capacity altogether: what the write
 * path's big ciphertext buffers (src/volume/buffer-slab.ts) and the NBD reader's payloads
 * (src/nbd/socket-reader.ts) pool in.
 */
export class FreeByCapacity<T> {
  readonly #lists = new Map<number, T[]>();
  #bytes = 0;

  constructor(
    readonly bytesMax: number,
    private readonly capacityOf: (item: T) => number,
  ) {}

  /** Capacity of the items kept now, in bytes. */
  get bytes(): number {
    return this.#bytes;
  }

  /** A kept item of exactly `capacity` bytes, no longer kept; undefined when there is none. */
  take(capacity: number): T | undefined {
    const item = this.#lists.get(capacity)?.pop();
    if (item !== undefined) this.#bytes -= capacity;
    return item;
  }

  /** Keep `item` unless that would exceed bytesMax; says whether it was kept. */
  keep(item: T): boolean {
    const capacity = this.capacityOf(item);
    if (this.#bytes + capacity > this.bytesMax) return false;
    let list = this.#lists.get(capacity);
    if (list === undefined) this.#lists.set(capacity, (list = []));
    list.push(item);
    this.#bytes += capacity;
    return true;
  }

  /** Keep nothing any more; returns what was kept. */
  clear(): T[] {
    const dropped = [...this.#lists.values()].flat();
    this.#lists.clear();
    this.#bytes = 0;
    return dropped;
  }
}
