/**
 * Fresh sector-sized buffers cut from a zeroed slab: the plaintext of single-sector reads, and the
 * ciphertext of small writes (held by lmdb-js and the store's overlay until their commit).
 *
 * Why: allocating a 4096-byte ArrayBuffer costs about 1 µs in V8 (an external backing store
 * plus its GC accounting), as much as an LMDB get and more than the sector's decryption, and the
 * first write into fresh memory costs about as much again. Node's own Buffer pool only serves
 * sizes below 4 KiB. Cutting views from one SLAB_BYTES slab pays that once per slab.
 *
 * What it costs, as with Node's Buffer pool: a buffer keeps its whole slab alive until every view
 * of it is collected, and `buf.buffer` spans the slab. So each open volume has its own slabs (a
 * read's buffer shares memory only with reads of the same volume, which its holder could read
 * anyway), and a slab is zeroed when allocated (its unused part holds no stale process memory).
 */
import { assert } from '../errors.js';
import { FreeByCapacity, powerOfTwoCapacity } from '../util/free-by-capacity.js';

/** 64 KiB: sixteen 4096-byte sectors or 128 512-byte ones per allocation. */
export const SLAB_BYTES = 64 * 1024;

export class BufferSlab {
  /** The slab being cut from (null before the first cut and after release). */
  protected slab: Buffer | null = null;
  private usedBytes = 0;

  /**
   * A fresh, zeroed buffer of `bytes` bytes, never handed out before: a view of the slab for up to
   * a quarter of a slab, its own allocation above that (big buffers gain nothing from sharing).
   */
  take(bytes: number): Buffer {
    assert(Number.isInteger(bytes) && bytes > 0, 'a slab serves whole positive sizes');
    if (bytes > SLAB_BYTES / 4) return Buffer.alloc(bytes);
    let slab = this.slab;
    if (slab === null || this.usedBytes + bytes > SLAB_BYTES) {
      slab = this.nextSlab(slab);
      this.slab = slab;
      this.usedBytes = 0;
    }
    const at = this.usedBytes;
    this.usedBytes = at + bytes;
    return slab.subarray(at, at + bytes);
  }

  /** Forget the current slab (its unused part is zeros; views already handed out stay valid). */
  release(): void {
    this.slab = null;
    this.usedBytes = 0;
  }

  /** The slab to cut from next, once `full` (null at first) has no room: a new zeroed one. */
  protected nextSlab(_full: Buffer | null): Buffer {
    return Buffer.alloc(SLAB_BYTES);
  }
}

/** What the store's pending writes report about the values they hand to LMDB (PendingWrites). */
export interface ValuePins {
  /** `value` was handed to LMDB: it is read until its commit settles. */
  pin(value: Uint8Array): void;
  /** The commit of a pinned `value` settled (done or failed): neither LMDB nor the overlay reads it any more. */
  unpin(value: Uint8Array): void;
}

/** Free slabs kept for reuse per volume: 256 KiB, enough for 64 4 KiB writes in flight. */
export const FREE_SLABS_MAX = 4;
/**
 * Free big buffers (a write step's ciphertext above a quarter slab) kept for reuse per volume, in
 * bytes of capacity: 8 MiB, eight 1 MiB steps.
 */
export const FREE_BIG_BYTES_MAX = 8 * 1024 * 1024;

interface PooledSlab {
  readonly bytes: Buffer;
  /** Values cut from this slab that LMDB or the overlay still reads. */
  pins: number;
  /** A big buffer (one write step's ciphertext, a power-of-two capacity) rather than a SLAB_BYTES slab. */
  readonly big: boolean;
}

/**
 * The ciphertext of writes: BufferSlab's views, but a slab is used again once every put that
 * referenced it has settled, instead of becoming garbage (so `take` may return bytes handed out
 * before: this volume's ciphertext, never plaintext).
 *
 * Why: a fresh slab per 16 sectors written is external memory, and V8 answers external memory
 * with full mark-compact collections: 16 of them per 60k random 4 KiB writes, about 10 us of CPU
 * per write on the collector threads, on a 2-core machine the same cores LMDB's writer thread
 * needs. Recycled slabs took that to 1-3 collections and the process's CPU per write from
 * 57-62 us to 46-50 us.
 *
 * Why it is safe: these views never leave the engine. A view reaches lmdb-js (read until its
 * commit) and the store's overlay (until PendingWrites.settle, after the commit); reads copy out
 * of it. The store pins each value it hands to LMDB and unpins it when its commit settles, so a
 * slab is reused only when no pinned value is left in it and it is no longer the slab being cut.
 * A view that was cut but never put (the compact layout copies the ciphertext into its cluster
 * value) is dead once its write step returns: a step cuts once and runs synchronously, so when a
 * later cut closes a slab, every view cut from it is either pinned or dead.
 *
 * Big buffers (a write step's ciphertext above a quarter slab, up to writeStepBytesMax) are pooled
 * the same way, one view per buffer, by power-of-two capacity, at most FREE_BIG_BYTES_MAX of them
 * free, and none once nothing big is pinned (an idle volume holds no big buffers). Why: a fresh
 * 1 MiB buffer per 1 MiB write is new memory each time (page faults, zeroing, and the collections
 * V8 answers external memory with); reusing them took about 11% off the NBD server's CPU per MB of
 * sequential writes (bench:nbd's CPU table, three alternating pairs: 5.0-5.5 against 5.7-5.9 ms).
 */
export class CiphertextSlabs extends BufferSlab implements ValuePins {
  private readonly free: PooledSlab[] = [];
  /** Every slab this pool may still reuse, by its memory (how a pinned value finds its slab). */
  private readonly byMemory = new Map<ArrayBufferLike, PooledSlab>();
  /** Free big buffers, by capacity. */
  private readonly freeBig = new FreeByCapacity<PooledSlab>(FREE_BIG_BYTES_MAX, (big) => big.bytes.length);
  /** The big buffer cut last: like the current slab, never reused before the next big cut. */
  private lastBig: PooledSlab | null = null;
  /** Pins held on big buffers: at 0 no big write is in flight, and the free ones go (an idle volume holds none). */
  private bigPins = 0;

  /**
   * As BufferSlab's, but a big buffer comes from this pool: the same reasoning as for slabs, with
   * one view per buffer. A step cuts once and issues its puts synchronously, so at the next big
   * cut the previous buffer is either pinned (reused when its last pin goes) or dead.
   */
  override take(bytes: number): Buffer {
    if (bytes <= SLAB_BYTES / 4) return super.take(bytes);
    const last = this.lastBig;
    this.lastBig = null;
    if (last !== null && last.pins === 0) this.recycle(last);
    const capacity = powerOfTwoCapacity(bytes);
    let big = this.freeBig.take(capacity);
    if (big === undefined) {
      big = { bytes: Buffer.alloc(capacity), pins: 0, big: true };
      this.byMemory.set(big.bytes.buffer, big);
    }
    this.lastBig = big;
    return big.bytes.subarray(0, bytes);
  }

  pin(value: Uint8Array): void {
    const slab = this.byMemory.get(value.buffer);
    if (slab === undefined) return;
    slab.pins++;
    if (slab.big) this.bigPins++;
  }

  unpin(value: Uint8Array): void {
    const slab = this.byMemory.get(value.buffer);
    if (slab === undefined) return;
    assert(slab.pins > 0, 'a value is unpinned once per pin');
    slab.pins--;
    if (slab.pins === 0 && slab.bytes !== this.slab && slab !== this.lastBig) this.recycle(slab);
    if (slab.big && --this.bigPins === 0) this.dropFreeBig();
  }

  /** Slabs kept for reuse now (for tests). */
  get freeCount(): number {
    return this.free.length;
  }

  /** Capacity of the big buffers kept for reuse now, in bytes (for tests). */
  get freeBigBytesNow(): number {
    return this.freeBig.bytes;
  }

  /** Forget every slab (a closed or locked volume): values still pinned stay valid and are no longer tracked. */
  override release(): void {
    super.release();
    this.free.length = 0;
    this.freeBig.clear();
    this.lastBig = null;
    this.bigPins = 0;
    this.byMemory.clear();
  }

  /** Nothing big in flight: the free big buffers become garbage (the last cut stays, as it is live or dead by the next cut). */
  private dropFreeBig(): void {
    for (const big of this.freeBig.clear()) this.byMemory.delete(big.bytes.buffer);
  }

  /** A slab closed with nothing pinned is free at once; the next slab is a free one if any. */
  protected override nextSlab(full: Buffer | null): Buffer {
    const closed = full === null ? undefined : this.byMemory.get(full.buffer);
    if (closed !== undefined && closed.pins === 0) this.recycle(closed);
    const next = this.free.pop() ?? this.newSlab();
    return next.bytes;
  }

  private newSlab(): PooledSlab {
    const slab: PooledSlab = { bytes: Buffer.alloc(SLAB_BYTES), pins: 0, big: false };
    this.byMemory.set(slab.bytes.buffer, slab);
    return slab;
  }

  private recycle(slab: PooledSlab): void {
    if (slab.big) {
      if (!this.freeBig.keep(slab)) this.byMemory.delete(slab.bytes.buffer);
      return;
    }
    if (this.free.length < FREE_SLABS_MAX) this.free.push(slab);
    else this.byMemory.delete(slab.bytes.buffer);
  }
}
