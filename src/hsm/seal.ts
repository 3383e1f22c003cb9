import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * The keystore's sealing format: AES-256-GCM under the master key with a fresh 96-bit nonce per
 * seal, and associated data naming what is sealed (for example the key id and version), so a
 * sealed file copied over another one's name fails authentication instead of unsealing.
 *
 *   magic "BVSEAL01" (8) || nonce (12) || tag (16) || ciphertext
 */
const MAGIC = Buffer.from('BVSEAL01', 'latin1');
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const SEAL_OVERHEAD_BYTES = MAGIC.length + NONCE_BYTES + TAG_BYTES;

export class UnsealError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsealError';
  }
}

export function seal(masterKey: Uint8Array, plaintext: Uint8Array, aad: string): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', masterKey, nonce);
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const body = cipher.update(plaintext);
  const last = cipher.final();
  return Buffer.concat([MAGIC, nonce, cipher.getAuthTag(), body, last]);
}

/** Returns a fresh Buffer the caller owns (and must fill(0) when done). */
export function unseal(masterKey: Uint8Array, sealed: Uint8Array, aad: string): Buffer {
  if (sealed.length < SEAL_OVERHEAD_BYTES || !MAGIC.equals(sealed.subarray(0, MAGIC.length))) {
    throw new UnsealError('not a blockvault sealed object');
  }
  const nonce = sealed.subarray(MAGIC.length, MAGIC.length + NONCE_BYTES);
  const tag = sealed.subarray(MAGIC.length + NONCE_BYTES, SEAL_OVERHEAD_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', masterKey, nonce);
  decipher.setAAD(Buffer.from(aad, 'utf8'));
  decipher.setAuthTag(tag);
  const body = decipher.update(sealed.subarray(SEAL_OVERHEAD_BYTES));
  try {
    decipher.final();
  } catch {
    body.fill(0);
    throw new UnsealError('authentication failed');
  }
  return body;
}
