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

/** 64 KiB: sixteen 4096-byte sectors or 128 512-byte ones per allocation. */
export const SLAB_BYTES = 64 * 1024;

export class BufferSlab {
  private slab: Buffer | null = null;
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
      slab = Buffer.alloc(SLAB_BYTES);
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
}
