import { createCipheriv, createDecipheriv, getCiphers, timingSafeEqual } from 'node:crypto';

/**
 * AES Key Wrap with Padding (RFC 5649, NIST SP 800-38F "KWP"). Root keys wrap data keys with it:
 * deterministic, no nonce to manage, and integrity-checked by the alternative initial value
 * A65959A6 || MLI (the 32-bit big-endian plaintext length).
 *
 * OpenSSL implements it as id-aesNNN-wrap-pad and node:crypto exposes that where the linked
 * OpenSSL does; otherwise the portable version below (RFC 5649 section 4 over AES-ECB, itself
 * RFC 3394's wrapping function W) is used. Both are tested against the RFC 5649 section 6 vectors.
 */

/** Thrown when unwrapping fails its integrity check: wrong key, wrong version or altered bytes. */
export class KeyUnwrapError extends Error {
  constructor(message = 'AES-KWP integrity check failed') {
    super(message);
    this.name = 'KeyUnwrapError';
  }
}

const KWP_IV_PREFIX = Buffer.from('a65959a6', 'hex'); // RFC 5649 section 3, the alternative IV
const KW_IV = Buffer.from('a6a6a6a6a6a6a6a6', 'hex'); // RFC 3394 section 2.2.3.1, the default IV
/** The padded plaintext is at most 2^32 bytes by the MLI; we bound it far lower (data keys). */
export const KWP_PLAINTEXT_BYTES_MAX = 1 << 16;

function ecbName(kek: Uint8Array): string {
  if (kek.length !== 16 && kek.length !== 24 && kek.length !== 32) throw new RangeError(`KEK must be 16, 24 or 32 bytes, got ${kek.length}`);
  return `aes-${kek.length * 8}-ecb`;
}

function checkPlaintext(plaintext: Uint8Array): void {
  if (!(plaintext instanceof Uint8Array)) throw new TypeError('plaintext must be a Uint8Array');
  if (plaintext.length < 1 || plaintext.length > KWP_PLAINTEXT_BYTES_MAX) throw new RangeError(`plaintext must be 1 to ${KWP_PLAINTEXT_BYTES_MAX} bytes, got ${plaintext.length}`);
}

function checkWrapped(wrapped: Uint8Array): void {
  if (!(wrapped instanceof Uint8Array)) throw new TypeError('wrapped must be a Uint8Array');
  if (wrapped.length < 16 || wrapped.length % 8 !== 0 || wrapped.length > KWP_PLAINTEXT_BYTES_MAX + 8) {
    throw new KeyUnwrapError(`wrapped key must be a multiple of 8 bytes from 16 to ${KWP_PLAINTEXT_BYTES_MAX + 8}, got ${wrapped.length}`);
  }
}

/**
 * RFC 3394 section 2.2.1, the wrapping function W: 6n rounds over the n 64-bit blocks of R with
 * the integrity register A. Returns A || R1 .. Rn.
 */
export function rfc3394Wrap(kek: Uint8Array, iv: Uint8Array, plaintext: Uint8Array): Buffer {
  if (plaintext.length % 8 !== 0 || plaintext.length < 16) throw new RangeError('W needs at least two 64-bit blocks');
  const n = plaintext.length / 8;
  const out = Buffer.alloc(8 + plaintext.length);
  out.set(iv, 0);
  out.set(plaintext, 8);
  const cipher = createCipheriv(ecbName(kek), kek, null).setAutoPadding(false);
  const block = Buffer.alloc(16);
  for (let j = 0; j <= 5; j += 1) {
    for (let i = 1; i <= n; i += 1) {
      out.copy(block, 0, 0, 8);
      out.copy(block, 8, i * 8, i * 8 + 8);
      const b = cipher.update(block);
      const t = BigInt(n * j + i);
      b.writeBigUInt64BE(b.readBigUInt64BE(0) ^ t, 0);
      b.copy(out, 0, 0, 8);
      b.copy(out, i * 8, 8, 16);
      b.fill(0);
    }
  }
  block.fill(0);
  return out;
}

/** RFC 3394 section 2.2.2, the unwrapping function W^-1. Returns A and R1 .. Rn. */
function rfc3394Unwrap(kek: Uint8Array, wrapped: Uint8Array): { a: Buffer; r: Buffer } {
  const n = wrapped.length / 8 - 1;
  const a = Buffer.from(wrapped.subarray(0, 8));
  const r = Buffer.alloc(n * 8);
  r.set(wrapped.subarray(8));
  const decipher = createDecipheriv(ecbName(kek), kek, null).setAutoPadding(false);
  const block = Buffer.alloc(16);
  for (let j = 5; j >= 0; j -= 1) {
    for (let i = n; i >= 1; i -= 1) {
      const t = BigInt(n * j + i);
      block.writeBigUInt64BE(a.readBigUInt64BE(0) ^ t, 0);
      r.copy(block, 8, (i - 1) * 8, i * 8);
      const b = decipher.update(block);
      b.copy(a, 0, 0, 8);
      b.copy(r, (i - 1) * 8, 8, 16);
      b.fill(0);
    }
  }
  block.fill(0);
  return { a, r };
}

function aiv(length: number): Buffer {
  const iv = Buffer.alloc(8);
  KWP_IV_PREFIX.copy(iv, 0);
  iv.writeUInt32BE(length, 4);
  return iv;
}

/** RFC 5649 section 4.1, portable. */
export function kwpWrapPortable(kek: Uint8Array, plaintext: Uint8Array): Buffer {
  checkPlaintext(plaintext);
  const paddedLength = Math.ceil(plaintext.length / 8) * 8;
  const padded = Buffer.alloc(paddedLength);
  padded.set(plaintext);
  try {
    if (paddedLength === 8) {
      // One block: a single AES encryption of AIV || P (RFC 5649 section 4.1, step 2).
      const block = Buffer.concat([aiv(plaintext.length), padded]);
      const cipher = createCipheriv(ecbName(kek), kek, null).setAutoPadding(false);
      const out = cipher.update(block);
      block.fill(0);
      return out;
    }
    return rfc3394Wrap(kek, aiv(plaintext.length), padded);
  } finally {
    padded.fill(0);
  }
}

/** RFC 5649 section 4.2, portable; throws KeyUnwrapError on any integrity failure. */
export function kwpUnwrapPortable(kek: Uint8Array, wrapped: Uint8Array): Buffer {
  checkWrapped(wrapped);
  let a: Buffer;
  let r: Buffer;
  if (wrapped.length === 16) {
    const decipher = createDecipheriv(ecbName(kek), kek, null).setAutoPadding(false);
    const block = decipher.update(wrapped);
    a = Buffer.from(block.subarray(0, 8));
    r = Buffer.from(block.subarray(8, 16));
    block.fill(0);
  } else {
    ({ a, r } = rfc3394Unwrap(kek, wrapped));
  }
  // Section 3: check the AIV prefix, that MLI fits the padded length, and that padding is zero.
  const mli = a.readUInt32BE(4);
  const ok =
    timingSafeEqual(a.subarray(0, 4), KWP_IV_PREFIX) &&
    mli > r.length - 8 &&
    mli <= r.length &&
    r.subarray(mli).every((byte) => byte === 0);
  if (!ok) {
    r.fill(0);
    throw new KeyUnwrapError();
  }
  const out = Buffer.alloc(mli);
  r.copy(out, 0, 0, mli);
  r.fill(0);
  return out;
}

const nativeAvailable = new Set(getCiphers());

function nativeName(kek: Uint8Array): string | null {
  const name = `id-aes${kek.length * 8}-wrap-pad`;
  return nativeAvailable.has(name) ? name : null;
}

/** True when node:crypto (OpenSSL) provides KWP for this KEK size. */
export function kwpNativeAvailable(kekBytes = 32): boolean {
  return nativeAvailable.has(`id-aes${kekBytes * 8}-wrap-pad`);
}

/** RFC 5649 wrap: OpenSSL's id-aesNNN-wrap-pad when present, else the portable code. */
export function kwpWrap(kek: Uint8Array, plaintext: Uint8Array): Buffer {
  checkPlaintext(plaintext);
  ecbName(kek);
  const name = nativeName(kek);
  if (name === null) return kwpWrapPortable(kek, plaintext);
  const cipher = createCipheriv(name, kek, KWP_IV_PREFIX);
  return Buffer.concat([cipher.update(plaintext), cipher.final()]);
}

/** RFC 5649 unwrap; throws KeyUnwrapError when the integrity check fails. */
export function kwpUnwrap(kek: Uint8Array, wrapped: Uint8Array): Buffer {
  checkWrapped(wrapped);
  ecbName(kek);
  const name = nativeName(kek);
  if (name === null) return kwpUnwrapPortable(kek, wrapped);
  const decipher = createDecipheriv(name, kek, KWP_IV_PREFIX);
  let head: Buffer;
  try {
    head = decipher.update(wrapped);
  } catch {
    throw new KeyUnwrapError();
  }
  let tail: Buffer;
  try {
    tail = decipher.final();
  } catch {
    head.fill(0);
    throw new KeyUnwrapError();
  }
  if (tail.length === 0) return head;
  const out = Buffer.concat([head, tail]);
  head.fill(0);
  tail.fill(0);
  return out;
}

export { KW_IV as RFC3394_DEFAULT_IV };
