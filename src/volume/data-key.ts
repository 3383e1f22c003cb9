import { randomBytes } from 'node:crypto';
import { assert, type BlockvaultError } from '../errors.js';
import { clusterCorrupt } from './cluster-format.js';
import type { SectorKeyHandle } from './cluster-format.js';

/** A volume's data key: AES-256-XTS, two 256-bit halves (IEEE 1619: key 1 encrypts, key 2 tweaks). */
export const DATA_KEY_BYTES = 64;
const HALF_BYTES = DATA_KEY_BYTES / 2;

/**
 * IEEE 1619-2007 (and NIST SP 800-38E's implementation guidance) require the two XTS key halves
 * to differ; OpenSSL refuses equal halves outright. With 256 random bits per half a collision
 * never happens in practice, but the check is cheap and makes the property hold by construction.
 */
export function halvesDiffer(key: Uint8Array): boolean {
  let diff = 0;
  for (let i = 0; i < HALF_BYTES; i++) diff |= key[i]! ^ key[i + HALF_BYTES]!;
  return diff !== 0;
}

/** A fresh random 512-bit XTS data key with distinct halves. */
export function generateDataKey(random: (size: number) => Uint8Array = randomBytes): Uint8Array {
  for (;;) {
    const key = random(DATA_KEY_BYTES);
    assert(key.length === DATA_KEY_BYTES, `random source returned ${DATA_KEY_BYTES} bytes`);
    if (halvesDiffer(key)) return key;
    key.fill(0);
  }
}

export function assertDataKey(key: Uint8Array): void {
  assert(key.length === DATA_KEY_BYTES, `a data key is ${DATA_KEY_BYTES} bytes, got ${key.length}`);
  assert(halvesDiffer(key), 'the two XTS halves of a data key differ');
}

/**
 * The unwrapped data keys of one volume, by generation. The only place plaintext DEKs live in the
 * main thread; `wipe()` overwrites every one of them (zeroization on close and on cryptoshred).
 *
 * With a `keyed` factory (the cipher's XtsCipher.keyed), each key also gets a handle with its
 * cipher schedules expanded once, for the read and write paths; a handle is wiped wherever its
 * key is zeroized.
 */
export class KeyRing {
  private readonly keys = new Map<number, Uint8Array>();
  private readonly handles = new Map<number, SectorKeyHandle>();
  private shredded: BlockvaultError | null = null;

  constructor(private readonly keyed?: (key: Uint8Array) => SectorKeyHandle) {}

  /**
   * Store a key (the ring owns it from now on). On a shredded ring the key is zeroized at once and
   * the shred's error thrown: an unwrap that was under way when the root key was destroyed must
   * not bring a data key back into memory.
   */
  set(generation: number, key: Uint8Array): void {
    if (this.shredded !== null) {
      key.fill(0);
      throw this.shredded;
    }
    assertDataKey(key);
    const handle = this.keyed?.(key);
    const previous = this.keys.get(generation);
    if (previous !== undefined && previous !== key) previous.fill(0);
    this.handles.get(generation)?.wipe();
    this.keys.set(generation, key);
    if (handle === undefined) this.handles.delete(generation);
    else this.handles.set(generation, handle);
  }

  /** The key's prepared cipher handle, if the ring has a `keyed` factory and holds the key. */
  handle(generation: number): SectorKeyHandle | undefined {
    return this.handles.get(generation);
  }

  has(generation: number): boolean {
    return this.keys.has(generation);
  }

  /** The key itself (not a copy): for cipher calls made synchronously by the caller. */
  get(generation: number): Uint8Array {
    const key = this.keys.get(generation);
    // Not assert(cond, `...`) directly: the message would be built on every call (every read).
    // Every generation of the (authenticated) record is loaded, so a cluster naming another one
    // was edited on disk.
    if (key === undefined) clusterCorrupt('cluster', `names data-key generation ${generation}, which is not one of the volume's (${this.generations().join(', ')})`);
    return key;
  }

  generations(): number[] {
    return [...this.keys.keys()].sort((a, b) => a - b);
  }

  delete(generation: number): void {
    const key = this.keys.get(generation);
    if (key !== undefined) key.fill(0);
    this.keys.delete(generation);
    this.handles.get(generation)?.wipe();
    this.handles.delete(generation);
  }

  wipe(): void {
    for (const key of this.keys.values()) key.fill(0);
    this.keys.clear();
    for (const handle of this.handles.values()) handle.wipe();
    this.handles.clear();
  }

  /** Cryptoshred: wipe every key now and refuse (zeroize) any key set later, for good. */
  shred(error: BlockvaultError): void {
    this.shredded ??= error;
    this.wipe();
  }

  get size(): number {
    return this.keys.size;
  }
}
