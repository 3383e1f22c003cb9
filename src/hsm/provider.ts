/**
 * Where root-key material lives. SoftHsm (authorizations, states, registrations, audit, metadata)
 * reaches material only through this interface, the way rustls reaches its crypto through a
 * provider: a PKCS#11 provider for a real HSM can replace the software one without touching the
 * volume or rotation code.
 *
 * Rules every provider follows:
 * - Material is addressed by handle (key id) and version only. No method returns root-key
 *   material; `unwrap` returns the *data key* the caller wrapped.
 * - Material handed in (`import`, `rotate`) is copied; the caller zeroizes its own copy.
 * - `destroy` is final: the material is overwritten where it is stored and zeroized in memory;
 *   later use of that version fails with KEY_DESTROYED.
 * - Errors are BlockvaultErrors: KEY_DESTROYED (no material for that version), INVALID_ARGUMENT
 *   (a wrapped key that does not authenticate, material of the wrong size, a reused version),
 *   KEYSTORE_CORRUPT (stored material fails authentication).
 */
import { constants, createPrivateKey, privateDecrypt, type KeyObject } from 'node:crypto';
import { BlockvaultError } from '../errors.js';
export interface KeyVersionRef {
  /** The root key's id ([A-Za-z0-9._-], at most 64 characters). */
  keyId: string;
  /** 1, 2, ... */
  version: number;
}

/** Material handed over for import: in the clear, or encrypted to a transport (import-token) key. */
export type ImportMaterial = { material: Uint8Array } | { transportKeyId: string; encryptedMaterial: Uint8Array };

/** A root key is AES-256, in every provider. */
export const ROOT_KEY_BYTES = 32;

/**
 * Import material as a fresh 32-byte Buffer the caller owns and zeroizes, checked the same way in
 * every provider. `decrypt` opens an import token (each provider holds its transport keys its own
 * way); the plaintext it returns is wiped here.
 */
export function acceptRootMaterial(input: ImportMaterial, decrypt: (transportKeyId: string, encrypted: Uint8Array) => Buffer): Buffer {
  let plain: Buffer;
  let ownsPlain: boolean;
  if (input !== null && typeof input === 'object' && 'transportKeyId' in input) {
    plain = decrypt(input.transportKeyId, input.encryptedMaterial);
    ownsPlain = true;
  } else {
    if (input === null || typeof input !== 'object' || !(input.material instanceof Uint8Array)) throw new BlockvaultError('INVALID_ARGUMENT', 'material must be a Uint8Array of 32 bytes');
    plain = Buffer.from(input.material.buffer, input.material.byteOffset, input.material.byteLength);
    ownsPlain = false;
  }
  try {
    if (plain.length !== ROOT_KEY_BYTES) {
      throw new BlockvaultError('INVALID_ARGUMENT', `a root key is AES-256: the material must be exactly ${ROOT_KEY_BYTES} bytes, got ${plain.length}`);
    }
    if (plain.every((byte) => byte === 0)) throw new BlockvaultError('INVALID_ARGUMENT', 'the material is all zeros; import a random 32-byte key');
    const material = Buffer.alloc(ROOT_KEY_BYTES);
    plain.copy(material);
    return material;
  } finally {
    if (ownsPlain) plain.fill(0);
  }
}

export interface ProviderInventory {
  keyVersions: KeyVersionRef[];
  transportKeyIds: string[];
}

export interface KeyProvider {
  /** A short name for logs and `SoftHsm.info()`, e.g. 'software'. */
  readonly kind: string;

  /** Generate fresh random AES-256 material for a new key's first version. */
  create(ref: KeyVersionRef): Promise<void>;
  /** Store supplied 32-byte material as a new key's first version (BYOK). */
  import(ref: KeyVersionRef, material: ImportMaterial): Promise<void>;
  /**
   * Add version `ref.version` to an existing key: fresh random material, or the supplied material
   * (imported keys). Supplied material equal to an existing version is refused.
   */
  rotate(ref: KeyVersionRef, material?: ImportMaterial): Promise<void>;

  /** AES-KWP (RFC 5649) of a data key under one version. */
  wrap(ref: KeyVersionRef, plaintext: Uint8Array): Promise<Uint8Array>;
  /** The data key; the caller owns the returned buffer and zeroizes it. */
  unwrap(ref: KeyVersionRef, wrapped: Uint8Array): Promise<Uint8Array>;
  /** Unwrap under `from` and wrap under `to` without the data key leaving the provider. */
  rewrap(from: KeyVersionRef, to: KeyVersionRef, wrapped: Uint8Array): Promise<Uint8Array>;

  /** Destroy the given versions of a key (all of them for a key deletion). Idempotent. */
  destroy(keyId: string, versions: readonly number[]): Promise<void>;

  /** An RSA-OAEP-SHA256 2048-bit key pair for an import token; returns the public key (SPKI PEM). */
  createTransportKey(transportKeyId: string): Promise<{ publicKeyPem: string }>;
  /** Destroy an import token's private key. Idempotent. */
  destroyTransportKey(transportKeyId: string): Promise<void>;

  /**
   * A 32-byte key that authenticates the HSM's metadata records (key states, versions, policies,
   * authorizations, registrations) and, through sub-keys, the engine's volume records. Stable for
   * the life of the keystore or token; the caller zeroizes its copy. Software: HKDF-SHA256 of the
   * master key (info 'blockvault-hsm/v1/metadata-key'). PKCS#11: HMAC-SHA256 inside the token, by
   * a non-extractable generic-secret key, of "blockvault metadata v1".
   */
  metadataKey(): Promise<Uint8Array>;

  /** What is stored, so the HSM can finish interrupted operations and remove strays on open. */
  inventory(): Promise<ProviderInventory>;

  /** Zeroize every copy of material held in memory. The provider is unusable afterwards. */
  close(): Promise<void>;
}

/**
 * Open an import token in node:crypto: RSA-OAEP with SHA-256 under the token's private key, given
 * as PKCS#8 DER, which is wiped here. Every provider decrypts here; SoftHSM 2.6.1 cannot do
 * OAEP with SHA-256 in the token (pkcs11/mechanisms.ts).
 */
export function decryptImportToken(id: string, der: Buffer, encrypted: Uint8Array): Buffer {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } catch {
    throw new BlockvaultError('KEYSTORE_CORRUPT', `the import-token key ${id} is damaged; create a new import token`);
  } finally {
    der.fill(0);
  }
  try {
    return privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, encrypted);
  } catch {
    throw new BlockvaultError(
      'INVALID_ARGUMENT',
      'encryptedMaterial does not decrypt with this import token; encrypt the 32-byte key with RSA-OAEP (SHA-256) to the public key from getImportToken',
    );
  }
}
