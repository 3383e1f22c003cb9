import {
  generateKeyPair,
  hkdfSync,
  randomFillSync,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlockvaultError, assert } from '../errors.js';
import { KeyUnwrapError, kwpUnwrap, kwpWrap } from './kwp.js';
import { ROOT_KEY_BYTES, acceptRootMaterial, decryptImportToken, type ImportMaterial, type KeyProvider, type KeyVersionRef, type ProviderInventory } from './provider.js';
import { UnsealError, seal, unseal } from './seal.js';
import { TEMP_SUFFIX, listDirectorySync, shredFileSync, writeFileAtomicSync } from './secure-files.js';

/**
 * The software key provider. Each root-key version is one small file,
 * `<hsmDir>/keys/<keyId>.v<version>.sealed`, sealed with AES-256-GCM under the master key with
 * associated data naming the key id and version. Import-token private keys are sealed the same way
 * under `<hsmDir>/transport/`.
 *
 * Why files and not LMDB: LMDB is copy-on-write, so an overwritten or deleted value leaves its old
 * bytes in free pages; a sealed root key there could be unsealed again by anyone holding the
 * passphrase. A file of its own can be overwritten in place and unlinked (see secure-files.ts for
 * what that does and does not reach on SSDs and journaling file systems).
 *
 * In memory, material lives in Buffers this module allocated (never the shared pool) and fills
 * with zeros on destroy, eviction and close. A bounded cache holds the versions in use.
 */
export { ROOT_KEY_BYTES };
const ID_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/;
const KEY_FILE_PATTERN = /^([A-Za-z0-9_-][A-Za-z0-9._-]{0,63})\.v([1-9][0-9]{0,8})\.sealed$/;
const TRANSPORT_FILE_PATTERN = /^([A-Za-z0-9_-][A-Za-z0-9._-]{0,63})\.sealed$/;
/** At most this many key versions are held unsealed in memory at once (least recently used leave). */
export const MATERIAL_CACHE_ENTRIES_MAX = 4096;
const RSA_MODULUS_BITS = 2048;

function checkRef(ref: KeyVersionRef): void {
  assert(ref !== null && typeof ref === 'object', 'key version reference must be an object');
  assert(typeof ref.keyId === 'string' && ID_PATTERN.test(ref.keyId), `bad key id ${String(ref.keyId)}`);
  assert(Number.isSafeInteger(ref.version) && ref.version >= 1, `bad key version ${String(ref.version)}`);
}

function checkId(id: string): void {
  assert(typeof id === 'string' && ID_PATTERN.test(id), `bad id ${String(id)}`);
}

const rootKeyAad = (ref: KeyVersionRef): string => `blockvault-hsm/v1/root-key/${ref.keyId}/v${ref.version}`;
const transportAad = (id: string): string => `blockvault-hsm/v1/transport-key/${id}`;

export interface SoftwareKeyProviderOptions {
  /** The HSM's directory (`<engine dir>/hsm`). */
  hsmDir: string;
  /** 32 bytes; copied, and the copy is zeroized on close. */
  masterKey: Uint8Array;
}

export class SoftwareKeyProvider implements KeyProvider {
  readonly kind = 'software';
  private readonly keysDir: string;
  private readonly transportDir: string;
  private readonly masterKey: Buffer;
  /** Insertion order is recency order: a hit moves the entry to the end. */
  private readonly cache = new Map<string, Buffer>();
  private closed = false;

  constructor(options: SoftwareKeyProviderOptions) {
    assert(options.masterKey.length === 32, 'master key must be 32 bytes');
    this.keysDir = join(options.hsmDir, 'keys');
    this.transportDir = join(options.hsmDir, 'transport');
    mkdirSync(this.keysDir, { recursive: true, mode: 0o700 });
    mkdirSync(this.transportDir, { recursive: true, mode: 0o700 });
    this.masterKey = Buffer.alloc(32);
    this.masterKey.set(options.masterKey);
    // A crash between writing and renaming leaves a temporary file; it may hold sealed material.
    for (const dir of [this.keysDir, this.transportDir]) {
      for (const name of listDirectorySync(dir)) if (name.endsWith(TEMP_SUFFIX)) shredFileSync(join(dir, name));
    }
  }

  private keyPath(ref: KeyVersionRef): string {
    return join(this.keysDir, `${ref.keyId}.v${ref.version}.sealed`);
  }

  private transportPath(id: string): string {
    return join(this.transportDir, `${id}.sealed`);
  }

  private assertOpen(): void {
    if (this.closed) throw new BlockvaultError('ENGINE_CLOSED', 'the HSM is closed; reopen the engine');
  }

  private remember(cacheKey: string, material: Buffer): void {
    this.cache.set(cacheKey, material);
    while (this.cache.size > MATERIAL_CACHE_ENTRIES_MAX) {
      const [oldestKey, oldest] = this.cache.entries().next().value as [string, Buffer];
      oldest.fill(0);
      this.cache.delete(oldestKey);
    }
  }

  /** The material of one version, from the cache or unsealed from its file. Never leaves this class. */
  private material(ref: KeyVersionRef): Buffer {
    this.assertOpen();
    checkRef(ref);
    const cacheKey = `${ref.keyId}/${ref.version}`;
    const hit = this.cache.get(cacheKey);
    if (hit !== undefined) {
      this.cache.delete(cacheKey);
      this.cache.set(cacheKey, hit);
      return hit;
    }
    let sealed: Buffer;
    try {
      sealed = readFileSync(this.keyPath(ref));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new BlockvaultError('KEY_DESTROYED', `version ${ref.version} of root key ${ref.keyId} has no material: it was destroyed`);
      }
      throw error;
    }
    let plain: Buffer;
    try {
      plain = unseal(this.masterKey, sealed, rootKeyAad(ref));
    } catch (error) {
      if (error instanceof UnsealError) {
        throw new BlockvaultError('KEYSTORE_CORRUPT', `the sealed material of root key ${ref.keyId} version ${ref.version} fails authentication (${error.message}); restore the HSM directory from a backup`);
      }
      throw error;
    }
    if (plain.length !== ROOT_KEY_BYTES) {
      plain.fill(0);
      throw new BlockvaultError('KEYSTORE_CORRUPT', `the sealed material of root key ${ref.keyId} version ${ref.version} has the wrong size`);
    }
    const material = Buffer.alloc(ROOT_KEY_BYTES);
    plain.copy(material);
    plain.fill(0);
    this.remember(cacheKey, material);
    return material;
  }

  private store(ref: KeyVersionRef, material: Buffer): void {
    const cacheKey = `${ref.keyId}/${ref.version}`;
    assert(!this.cache.has(cacheKey), `material for ${cacheKey} exists already`);
    const sealed = seal(this.masterKey, material, rootKeyAad(ref));
    writeFileAtomicSync(this.keyPath(ref), sealed);
    this.remember(cacheKey, material);
  }

  /** Turn import material into a fresh 32-byte Buffer this class owns. */
  private acceptMaterial(input: ImportMaterial): Buffer {
    return acceptRootMaterial(input, (id, encrypted) => this.decryptWithTransportKey(id, encrypted));
  }

  private decryptWithTransportKey(id: string, encrypted: Uint8Array): Buffer {
    checkId(id);
    if (!(encrypted instanceof Uint8Array) || encrypted.length !== RSA_MODULUS_BITS / 8) {
      throw new BlockvaultError('INVALID_ARGUMENT', `encryptedMaterial must be the ${RSA_MODULUS_BITS / 8}-byte RSA-OAEP-SHA256 ciphertext of the 32-byte key under the import token's public key`);
    }
    let sealed: Buffer;
    try {
      sealed = readFileSync(this.transportPath(id));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new BlockvaultError('IMPORT_TOKEN_EXPIRED', 'the import token\'s private key is gone; create a new import token');
      }
      throw error;
    }
    let der: Buffer;
    try {
      der = unseal(this.masterKey, sealed, transportAad(id));
    } catch (error) {
      if (error instanceof UnsealError) throw new BlockvaultError('KEYSTORE_CORRUPT', `the sealed import-token key ${id} fails authentication; create a new import token`);
      throw error;
    }
    return decryptImportToken(id, der, encrypted);
  }

  private existingVersions(keyId: string): number[] {
    const versions: number[] = [];
    for (const name of listDirectorySync(this.keysDir)) {
      const match = KEY_FILE_PATTERN.exec(name);
      if (match && match[1] === keyId) versions.push(Number(match[2]));
    }
    return versions;
  }

  async create(ref: KeyVersionRef): Promise<void> {
    this.assertOpen();
    checkRef(ref);
    const material = Buffer.alloc(ROOT_KEY_BYTES);
    randomFillSync(material);
    this.store(ref, material);
  }

  async import(ref: KeyVersionRef, input: ImportMaterial): Promise<void> {
    this.assertOpen();
    checkRef(ref);
    this.store(ref, this.acceptMaterial(input));
  }

  async rotate(ref: KeyVersionRef, input?: ImportMaterial): Promise<void> {
    this.assertOpen();
    checkRef(ref);
    if (input === undefined) {
      await this.create(ref);
      return;
    }
    const material = this.acceptMaterial(input);
    try {
      for (const version of this.existingVersions(ref.keyId)) {
        if (timingSafeEqual(this.material({ keyId: ref.keyId, version }), material)) {
          throw new BlockvaultError('INVALID_ARGUMENT', `the new material equals version ${version} of this key; rotate with different key material`);
        }
      }
    } catch (error) {
      material.fill(0);
      throw error;
    }
    this.store(ref, material);
  }

  async wrap(ref: KeyVersionRef, plaintext: Uint8Array): Promise<Uint8Array> {
    return kwpWrap(this.material(ref), plaintext);
  }

  async unwrap(ref: KeyVersionRef, wrapped: Uint8Array): Promise<Uint8Array> {
    const material = this.material(ref);
    try {
      return kwpUnwrap(material, wrapped);
    } catch (error) {
      if (error instanceof KeyUnwrapError) {
        throw new BlockvaultError('INVALID_ARGUMENT', `the wrapped key does not unwrap under version ${ref.version} of this root key (wrong key, wrong version or altered bytes)`);
      }
      throw error;
    }
  }

  async rewrap(from: KeyVersionRef, to: KeyVersionRef, wrapped: Uint8Array): Promise<Uint8Array> {
    const target = this.material(to); // fail on a destroyed target before unwrapping anything
    const plaintext = await this.unwrap(from, wrapped);
    try {
      return kwpWrap(target, plaintext);
    } finally {
      plaintext.fill(0);
    }
  }

  async destroy(keyId: string, versions: readonly number[]): Promise<void> {
    this.assertOpen();
    checkId(keyId);
    for (const version of versions) {
      const ref = { keyId, version };
      checkRef(ref);
      const cacheKey = `${keyId}/${version}`;
      const cached = this.cache.get(cacheKey);
      if (cached !== undefined) {
        cached.fill(0);
        this.cache.delete(cacheKey);
      }
      shredFileSync(this.keyPath(ref));
    }
  }

  async createTransportKey(transportKeyId: string): Promise<{ publicKeyPem: string }> {
    this.assertOpen();
    checkId(transportKeyId);
    const { publicKey, privateKey } = await new Promise<{ publicKey: KeyObject; privateKey: KeyObject }>((resolve, reject) =>
      generateKeyPair('rsa', { modulusLength: RSA_MODULUS_BITS, publicExponent: 0x10001 }, (error, pub, priv) =>
        error ? reject(error) : resolve({ publicKey: pub, privateKey: priv }),
      ),
    );
    this.assertOpen();
    const der = privateKey.export({ format: 'der', type: 'pkcs8' });
    try {
      writeFileAtomicSync(this.transportPath(transportKeyId), seal(this.masterKey, der, transportAad(transportKeyId)));
    } finally {
      der.fill(0);
    }
    return { publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString() };
  }

  async destroyTransportKey(transportKeyId: string): Promise<void> {
    this.assertOpen();
    checkId(transportKeyId);
    shredFileSync(this.transportPath(transportKeyId));
  }

  async inventory(): Promise<ProviderInventory> {
    this.assertOpen();
    const keyVersions: KeyVersionRef[] = [];
    for (const name of listDirectorySync(this.keysDir)) {
      const match = KEY_FILE_PATTERN.exec(name);
      if (match) keyVersions.push({ keyId: match[1] as string, version: Number(match[2]) });
    }
    const transportKeyIds: string[] = [];
    for (const name of listDirectorySync(this.transportDir)) {
      const match = TRANSPORT_FILE_PATTERN.exec(name);
      if (match) transportKeyIds.push(match[1] as string);
    }
    return { keyVersions, transportKeyIds };
  }

  async metadataKey(): Promise<Uint8Array> {
    assert(!this.closed, 'the provider is open');
    // HKDF (RFC 5869) with an empty salt: the master key is already uniformly random (scrypt or a key file).
    return new Uint8Array(hkdfSync('sha256', this.masterKey, Buffer.alloc(0), 'blockvault-hsm/v1/metadata-key', 32));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const material of this.cache.values()) material.fill(0);
    this.cache.clear();
    this.masterKey.fill(0);
  }
}
