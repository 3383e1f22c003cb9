import { hkdfSync, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlockvaultError } from '../errors.js';
import { UnsealError, seal, unseal } from './seal.js';
import { writeFileAtomicSync } from './secure-files.js';

/**
 * The HSM master key: 256 bits from the operator's passphrase (scrypt, RFC 7914) or from a
 * 32-byte key file (through HKDF-SHA256, RFC 5869, with a stored salt). It is never stored.
 * `keystore.json` keeps only the KDF parameters, the salt and a verifier: a known block sealed
 * under the master key, so a wrong passphrase is recognised at once (WRONG_PASSPHRASE) before
 * anything is unsealed or changed.
 */
export const KEYSTORE_FILE_NAME = 'keystore.json';
const FORMAT = 'blockvault-hsm-keystore';
const VERIFIER_AAD = 'blockvault-hsm/v1/verifier';
const VERIFIER_PLAINTEXT = Buffer.from('blockvault-hsm keystore verifier', 'utf8'); // 32 bytes
const HKDF_INFO = 'blockvault-hsm/v1/master-key-from-key-file';
export const MASTER_KEY_BYTES = 32;

/** scrypt cost N = 2^15 with r = 8, p = 1: about 32 MiB and tens of milliseconds per open. */
export const SCRYPT_N_DEFAULT = 1 << 15;
const SCRYPT_N_MIN = 1 << 10;
const SCRYPT_N_MAX = 1 << 22;
const SCRYPT_R = 8;
const SCRYPT_P = 1;
const PASSPHRASE_LENGTH_MAX = 4096;

type KdfParams = { type: 'scrypt'; salt: string; N: number; r: number; p: number } | { type: 'keyfile'; salt: string };

interface KeystoreFile {
  format: typeof FORMAT;
  version: 1;
  kdf: KdfParams;
  /** Base64 of the sealed verifier block. */
  verifier: string;
  createdAtMs: number;
}

export interface MasterKeySource {
  passphrase?: string;
  keyFile?: string;
  /** scrypt cost for a new keystore (a power of two, 2^10 to 2^22); existing ones keep theirs. */
  scryptN?: number;
}

function corrupt(path: string, why: string): never {
  throw new BlockvaultError('KEYSTORE_CORRUPT', `${path} is damaged (${why}); restore the HSM directory from a backup`);
}

function validateSource(source: MasterKeySource): 'scrypt' | 'keyfile' {
  const { passphrase, keyFile } = source;
  if (passphrase !== undefined && keyFile !== undefined) {
    throw new BlockvaultError('INVALID_ARGUMENT', 'give the HSM either a passphrase or a keyFile, not both');
  }
  if (passphrase === undefined && keyFile === undefined) {
    throw new BlockvaultError('INVALID_ARGUMENT', 'the HSM needs a passphrase or a keyFile (a file holding 32 random bytes) to unseal its keystore');
  }
  if (passphrase !== undefined) {
    if (typeof passphrase !== 'string' || passphrase.length === 0 || passphrase.length > PASSPHRASE_LENGTH_MAX) {
      throw new BlockvaultError('INVALID_ARGUMENT', `the HSM passphrase must be a non-empty string of at most ${PASSPHRASE_LENGTH_MAX} characters`);
    }
    return 'scrypt';
  }
  if (typeof keyFile !== 'string' || keyFile.length === 0) throw new BlockvaultError('INVALID_ARGUMENT', 'keyFile must be a path');
  return 'keyfile';
}

/** 32 raw bytes, or 64 hex digits with optional surrounding whitespace. */
function readKeyFile(path: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    throw new BlockvaultError('INVALID_ARGUMENT', `cannot read the HSM key file ${path}: ${(error as Error).message}`);
  }
  if (bytes.length === MASTER_KEY_BYTES) return bytes;
  const text = bytes.toString('latin1').trim();
  bytes.fill(0);
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  throw new BlockvaultError(
    'INVALID_ARGUMENT',
    `the HSM key file ${path} must hold exactly 32 bytes or 64 hex digits; create one with: head -c 32 /dev/urandom > ${path}`,
  );
}

function scryptAsync(passphrase: Buffer, salt: Buffer, N: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(passphrase, salt, MASTER_KEY_BYTES, { N, r, p, maxmem: 256 * N * r + (1 << 20) }, (error, key) => (error ? reject(error) : resolve(key)));
  });
}

async function derive(kdf: KdfParams, source: MasterKeySource): Promise<Buffer> {
  const salt = Buffer.from(kdf.salt, 'base64');
  if (kdf.type === 'scrypt') {
    const passphrase = Buffer.from(source.passphrase as string, 'utf8');
    try {
      return await scryptAsync(passphrase, salt, kdf.N, kdf.r, kdf.p);
    } finally {
      passphrase.fill(0);
    }
  }
  const ikm = readKeyFile(source.keyFile as string);
  try {
    return Buffer.from(hkdfSync('sha256', ikm, salt, HKDF_INFO, MASTER_KEY_BYTES));
  } finally {
    ikm.fill(0);
  }
}

function parseKeystore(path: string): KeystoreFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    return corrupt(path, `not readable JSON: ${(error as Error).message}`);
  }
  const file = parsed as Partial<KeystoreFile>;
  if (file === null || typeof file !== 'object' || file.format !== FORMAT || file.version !== 1) return corrupt(path, 'unknown format');
  const kdf = file.kdf as Partial<KdfParams> | undefined;
  if (!kdf || typeof kdf.salt !== 'string' || typeof file.verifier !== 'string') return corrupt(path, 'missing fields');
  if (kdf.type === 'scrypt') {
    const { N, r, p } = kdf as { N: unknown; r: unknown; p: unknown };
    const okN = typeof N === 'number' && Number.isInteger(N) && N >= SCRYPT_N_MIN && N <= SCRYPT_N_MAX && (N & (N - 1)) === 0;
    if (!okN || r !== SCRYPT_R || p !== SCRYPT_P) return corrupt(path, 'scrypt parameters out of range');
  } else if (kdf.type !== 'keyfile') {
    return corrupt(path, 'unknown key derivation');
  }
  return file as KeystoreFile;
}

/** Whether `hsmDir` already holds a keystore. */
export function keystoreExists(hsmDir: string): boolean {
  return existsSync(join(hsmDir, KEYSTORE_FILE_NAME));
}

/**
 * Derive and verify the master key of an existing keystore, or create a new keystore when there
 * is none and `create` is true. The returned Buffer belongs to the caller, who zeroizes it.
 */
export async function openMasterKey(hsmDir: string, source: MasterKeySource, options: { create: boolean; nowMs: number }): Promise<Buffer> {
  const mode = validateSource(source);
  const path = join(hsmDir, KEYSTORE_FILE_NAME);
  if (!existsSync(path)) {
    if (!options.create) {
      throw new BlockvaultError('KEYSTORE_CORRUPT', `${path} is missing although the HSM holds keys; restore it from a backup (without it nothing can be unsealed)`);
    }
    return createKeystore(hsmDir, path, mode, source, options.nowMs);
  }
  const file = parseKeystore(path);
  if (file.kdf.type !== mode) {
    const needed = file.kdf.type === 'scrypt' ? 'a passphrase (hsm.passphrase)' : 'the key file it was created with (hsm.keyFile)';
    throw new BlockvaultError('WRONG_PASSPHRASE', `this HSM keystore is sealed with ${needed}; open it with that instead`);
  }
  const masterKey = await derive(file.kdf, source);
  let check: Buffer;
  try {
    check = unseal(masterKey, Buffer.from(file.verifier, 'base64'), VERIFIER_AAD);
  } catch (error) {
    masterKey.fill(0);
    if (error instanceof UnsealError) {
      throw new BlockvaultError(
        'WRONG_PASSPHRASE',
        mode === 'scrypt'
          ? 'wrong HSM passphrase: the keystore did not unseal; nothing was opened or changed. Try again with the right passphrase'
          : 'wrong HSM key file: the keystore did not unseal; nothing was opened or changed. Use the key file the HSM was created with',
      );
    }
    throw error;
  }
  const ok = check.length === VERIFIER_PLAINTEXT.length && timingSafeEqual(check, VERIFIER_PLAINTEXT);
  check.fill(0);
  if (!ok) {
    masterKey.fill(0);
    corrupt(path, 'the verifier unsealed to unexpected contents');
  }
  return masterKey;
}

async function createKeystore(hsmDir: string, path: string, mode: 'scrypt' | 'keyfile', source: MasterKeySource, nowMs: number): Promise<Buffer> {
  const N = source.scryptN ?? SCRYPT_N_DEFAULT;
  if (!Number.isInteger(N) || N < SCRYPT_N_MIN || N > SCRYPT_N_MAX || (N & (N - 1)) !== 0) {
    throw new BlockvaultError('INVALID_ARGUMENT', `scryptN must be a power of two from ${SCRYPT_N_MIN} to ${SCRYPT_N_MAX}, got ${N}`);
  }
  const salt = randomBytes(32).toString('base64');
  const kdf: KdfParams = mode === 'scrypt' ? { type: 'scrypt', salt, N, r: SCRYPT_R, p: SCRYPT_P } : { type: 'keyfile', salt };
  const masterKey = await derive(kdf, source);
  const file: KeystoreFile = {
    format: FORMAT,
    version: 1,
    kdf,
    verifier: seal(masterKey, VERIFIER_PLAINTEXT, VERIFIER_AAD).toString('base64'),
    createdAtMs: nowMs,
  };
  mkdirSync(hsmDir, { recursive: true, mode: 0o700 });
  writeFileAtomicSync(path, Buffer.from(`${JSON.stringify(file, null, 2)}\n`, 'utf8'));
  return masterKey;
}
