import { createHash, generateKeyPair, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { Template } from 'pkcs11js';
import { BlockvaultError, assert } from '../../errors.js';
import { kwpWrap } from '../kwp.js';
import { acceptRootMaterial, decryptImportToken, type ImportMaterial, type KeyProvider, type KeyVersionRef, type ProviderInventory } from '../provider.js';
import { ckrName, mapPkcs11Error } from './errors.js';
import { readPkcs11Marker, removePkcs11Marker, writePkcs11Marker, type Pkcs11Marker } from './marker.js';
import {
  CKM_SHA256_HMAC,
  DATA_KEY_BYTES_MAX,
  DATA_KEY_BYTES_MIN,
  KWP_OVERHEAD_BYTES,
  METADATA_KEY_BYTES,
  ROOT_KEY_BYTES,
  dataKeyAttributes,
  labels,
  metadataKeyAttributes,
  rootKeyAttributes,
  transportKeyAttributes,
} from './mechanisms.js';
import type { ResolvedPkcs11Options } from './options.js';
import { Pkcs11Token } from './session-pool.js';

/**
 * The PKCS#11 key provider: root keys are AES-256 objects on a token (generated there, or BYOK
 * material created there), data keys are wrapped and unwrapped by the token with RFC 5649 KWP,
 * and the metadata key is an HMAC-SHA256 of "blockvault metadata v1" by a non-extractable generic
 * secret on the token (src/hsm/provider.ts). Nothing of a root key ever reaches this process
 * except imported material on its way in.
 *
 * Data keys pass through the token as session objects (CKA_TOKEN false): wrap creates one from
 * the caller's bytes and wraps it, unwrap unwraps into one and reads its value, rewrap unwraps into
 * a *sensitive* one and wraps it under the new version, so the data key never leaves the token.
 * Every such object is destroyed in a `finally`, also when the operation fails.
 */
const ID_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/;
const RSA_MODULUS_BITS = 2048;
/** Token object handles of key versions kept in memory (least recently used leave). */
export const HANDLE_CACHE_ENTRIES_MAX = 4096;
/** The most objects inventory() reads from the token; beyond that the token is not ours alone. */
export const INVENTORY_OBJECTS_MAX = 1 << 20;
const FIND_BATCH_OBJECTS = 256;
/** Objects with one label: one is normal; a few more only after a crash mid-create. */
const SAME_LABEL_OBJECTS_MAX = 16;
/**
 * A fixed, non-secret 32-byte value. To refuse imported rotation material equal to an earlier
 * version without reading any version's material, the token wraps this probe under each existing
 * version and the provider compares with the KWP of the probe under the new material (RFC 5649
 * is deterministic, so equal outputs mean equal keys).
 */
const DUPLICATE_PROBE = createHash('sha256').update('blockvault pkcs11 duplicate-material probe v1').digest();
const METADATA_MESSAGE = Buffer.from('blockvault metadata v1', 'utf8');
/** CKR values that mean "this wrapped key does not unwrap under this key" (SoftHSM says GENERAL_ERROR). */
const UNWRAP_FAILED = new Set(['CKR_GENERAL_ERROR', 'CKR_WRAPPED_KEY_INVALID', 'CKR_WRAPPED_KEY_LEN_RANGE', 'CKR_ENCRYPTED_DATA_INVALID', 'CKR_ENCRYPTED_DATA_LEN_RANGE']);

function checkRef(ref: KeyVersionRef): void {
  assert(ref !== null && typeof ref === 'object', 'key version reference must be an object');
  assert(typeof ref.keyId === 'string' && ID_PATTERN.test(ref.keyId), `bad key id ${String(ref.keyId)}`);
  assert(Number.isSafeInteger(ref.version) && ref.version >= 1, `bad key version ${String(ref.version)}`);
}

function checkId(id: string): void {
  assert(typeof id === 'string' && ID_PATTERN.test(id), `bad id ${String(id)}`);
}

function checkDataKey(plaintext: Uint8Array): void {
  if (!(plaintext instanceof Uint8Array)) throw new BlockvaultError('INVALID_ARGUMENT', 'the data key must be a Uint8Array');
  if (plaintext.length < DATA_KEY_BYTES_MIN || plaintext.length > DATA_KEY_BYTES_MAX || plaintext.length % 8 !== 0) {
    throw new BlockvaultError(
      'INVALID_ARGUMENT',
      `the PKCS#11 provider wraps data keys of ${DATA_KEY_BYTES_MIN} to ${DATA_KEY_BYTES_MAX} bytes in whole 8-byte blocks (data keys are 64 bytes), got ${plaintext.length}: SoftHSM 2.6.1's RFC 5649 output is wrong for other lengths`,
    );
  }
}

export interface Pkcs11ProviderOpenOptions {
  hsmDir: string;
  pkcs11: ResolvedPkcs11Options;
  /**
   * True for an HSM whose metadata holds nothing yet: write the marker if there is none, and make
   * the metadata key if the token has none under the marker's namespace (which completes a first
   * open that crashed between the two).
   */
  create: boolean;
  nowMs: number;
}

export class Pkcs11KeyProvider implements KeyProvider {
  readonly kind = 'pkcs11';
  /**
   * Object handles of key versions, found in the token's epoch `handlesEpoch` (a new login after a
   * lost session gives the objects new handles: Pkcs11Token.epoch). Insertion order is recency order.
   */
  private readonly handles = new Map<string, Buffer>();
  private handlesEpoch: number;
  /** The metadata key's object handle, of `handlesEpoch` too; null once stale, found again on use. */
  private metadataHandle: Buffer | null;
  private closed = false;

  private constructor(
    private readonly token: Pkcs11Token,
    private readonly marker: Pkcs11Marker,
    private readonly mechanism: number,
    metadata: { handle: Buffer; epoch: number },
  ) {
    this.metadataHandle = metadata.handle;
    this.handlesEpoch = metadata.epoch;
  }

  /** Log in to the token and find (or, for a new HSM, make) this directory's metadata key. */
  static async open(options: Pkcs11ProviderOpenOptions): Promise<Pkcs11KeyProvider> {
    const token = Pkcs11Token.acquire(options.pkcs11);
    /** Whether this call wrote the marker: a failure below removes it again (removePkcs11Marker). */
    let wroteMarker = false;
    try {
      let marker = readPkcs11Marker(options.hsmDir);
      if (marker === null) {
        if (!options.create) {
          throw new BlockvaultError('KEYSTORE_CORRUPT', `${options.hsmDir}/pkcs11.json is missing although the HSM holds keys; restore it from a backup (it names the token objects of this directory)`);
        }
        marker = writePkcs11Marker(options.hsmDir, token, options.nowMs);
        wroteMarker = true;
      } else if (marker.tokenSerial !== token.serial) {
        throw new BlockvaultError(
          'HSM_UNAVAILABLE',
          `this engine directory's root keys are on the PKCS#11 token with serial ${marker.tokenSerial} (label ${JSON.stringify(marker.tokenLabel)}), not on ${token.serial} (label ${JSON.stringify(token.label)}); open it with that token`,
        );
      }
      const label = labels.metadataKey(marker.namespace);
      const mechanism = options.pkcs11.kwpMechanism;
      const metadata = await token.withSession(async (session) => {
        const epoch = token.epoch;
        const found = findByLabel(token, session, label, undefined);
        if (found[0] !== undefined) return { handle: found[0], epoch };
        token.assertLoggedIn(session, 'finding the metadata key');
        if (!options.create) {
          throw new BlockvaultError('KEYSTORE_CORRUPT', `the PKCS#11 token has no metadata key ${label} for this engine directory; it was deleted from the token, and the directory's keys with it`);
        }
        try {
          return { handle: await token.module.C_GenerateKeyAsync(session, { mechanism: token.p.CKM_GENERIC_SECRET_KEY_GEN }, metadataKeyAttributes(token.p, label)), epoch };
        } catch (error) {
          throw mapPkcs11Error(error, 'creating the metadata key');
        }
      });
      return new Pkcs11KeyProvider(token, marker, mechanism, metadata);
    } catch (error) {
      // Nothing was made on the token (the metadata key is its last step), so the directory goes
      // back to new: it opens once the cause is fixed, e.g. a full token (HSM_FULL) has room again.
      if (wroteMarker) removePkcs11Marker(options.hsmDir);
      token.release();
      throw error;
    }
  }

  /** The namespace of this directory's token objects (for tests and `blockvault hsm info`). */
  get namespace(): string {
    return this.marker.namespace;
  }

  private assertOpen(): void {
    if (this.closed) throw new BlockvaultError('ENGINE_CLOSED', 'the HSM is closed; reopen the engine');
  }

  private session<T>(fn: (session: Buffer) => Promise<T> | T): Promise<T> {
    this.assertOpen();
    return this.token.withSession((session) => {
      this.dropStaleHandles();
      return fn(session);
    });
  }

  /** Forget the object handles found before the token's latest session loss (Pkcs11Token.epoch). */
  private dropStaleHandles(): void {
    if (this.handlesEpoch === this.token.epoch) return;
    this.handles.clear();
    this.metadataHandle = null;
    this.handlesEpoch = this.token.epoch;
  }

  private rootLabel(ref: KeyVersionRef): string {
    return labels.rootKey(this.marker.namespace, ref.keyId, ref.version);
  }

  /** The token object of one version, or KEY_DESTROYED. */
  private rootHandle(session: Buffer, ref: KeyVersionRef): Buffer {
    checkRef(ref);
    const cacheKey = `${ref.keyId}/${ref.version}`;
    const hit = this.handles.get(cacheKey);
    if (hit !== undefined) {
      this.handles.delete(cacheKey);
      this.handles.set(cacheKey, hit);
      return hit;
    }
    const epoch = this.token.epoch;
    const found = findByLabel(this.token, session, this.rootLabel(ref), this.token.p.CKO_SECRET_KEY);
    const handle = found[0];
    if (handle === undefined) {
      // KEY_DESTROYED locks every volume of the key for good: be sure the token could have seen it.
      this.token.assertLoggedIn(session, `finding root key ${ref.keyId} version ${ref.version}`);
      throw new BlockvaultError('KEY_DESTROYED', `version ${ref.version} of root key ${ref.keyId} has no material: it was destroyed`);
    }
    if (epoch !== this.token.epoch) return handle; // a loss came between: do not cache it
    this.handles.set(cacheKey, handle);
    while (this.handles.size > HANDLE_CACHE_ENTRIES_MAX) this.handles.delete(this.handles.keys().next().value as string);
    return handle;
  }

  private refuseExisting(session: Buffer, ref: KeyVersionRef): void {
    if (findByLabel(this.token, session, this.rootLabel(ref), this.token.p.CKO_SECRET_KEY).length > 0) {
      throw new BlockvaultError('INVALID_ARGUMENT', `version ${ref.version} of root key ${ref.keyId} exists already on the token`);
    }
  }

  /** A session object holding `value` (copied into the token), for the token to wrap. */
  private createDataKeyObject(session: Buffer, value: Uint8Array, sensitive: boolean): Buffer {
    const copy = Buffer.alloc(value.length);
    copy.set(value);
    try {
      return this.token.module.C_CreateObject(session, dataKeyAttributes(this.token.p, { sensitive, value: copy }));
    } catch (error) {
      throw mapPkcs11Error(error, 'creating a session object for a data key');
    } finally {
      copy.fill(0);
    }
  }

  private destroyObject(session: Buffer, handle: Buffer): void {
    try {
      this.token.module.C_DestroyObject(session, handle);
    } catch (error) {
      if (ckrName(error) !== 'CKR_OBJECT_HANDLE_INVALID') throw mapPkcs11Error(error, 'C_DestroyObject');
    }
  }

  private async wrapObject(session: Buffer, wrappingKey: Buffer, object: Buffer, plaintextBytes: number, what: string): Promise<Uint8Array> {
    try {
      const out = await this.token.module.C_WrapKeyAsync(session, { mechanism: this.mechanism }, wrappingKey, object, Buffer.alloc(plaintextBytes + KWP_OVERHEAD_BYTES));
      return new Uint8Array(out);
    } catch (error) {
      throw mapPkcs11Error(error, what);
    }
  }

  private async unwrapToObject(session: Buffer, ref: KeyVersionRef, wrapped: Uint8Array, sensitive: boolean): Promise<Buffer> {
    if (!(wrapped instanceof Uint8Array) || wrapped.length % 8 !== 0 || wrapped.length < DATA_KEY_BYTES_MIN + KWP_OVERHEAD_BYTES || wrapped.length > DATA_KEY_BYTES_MAX + KWP_OVERHEAD_BYTES) {
      throw new BlockvaultError('INVALID_ARGUMENT', `the wrapped key does not unwrap under version ${ref.version} of this root key (wrong key, wrong version or altered bytes)`);
    }
    const root = this.rootHandle(session, ref);
    try {
      return await this.token.module.C_UnwrapKeyAsync(session, { mechanism: this.mechanism }, root, Buffer.from(wrapped), dataKeyAttributes(this.token.p, { sensitive }));
    } catch (error) {
      const name = ckrName(error);
      if (name !== null && UNWRAP_FAILED.has(name)) {
        throw new BlockvaultError('INVALID_ARGUMENT', `the wrapped key does not unwrap under version ${ref.version} of this root key (wrong key, wrong version or altered bytes)`, { pkcs11: name });
      }
      throw mapPkcs11Error(error, `unwrapping under root key ${ref.keyId} version ${ref.version}`);
    }
  }

  /** Import material as a fresh 32-byte Buffer; the caller zeroizes it. */
  private async acceptMaterial(session: Buffer, input: ImportMaterial): Promise<Buffer> {
    return acceptRootMaterial(input, (id, encrypted) => this.decryptWithTransportKey(session, id, encrypted));
  }

  private decryptWithTransportKey(session: Buffer, id: string, encrypted: Uint8Array): Buffer {
    checkId(id);
    if (!(encrypted instanceof Uint8Array) || encrypted.length !== RSA_MODULUS_BITS / 8) {
      throw new BlockvaultError('INVALID_ARGUMENT', `encryptedMaterial must be the ${RSA_MODULUS_BITS / 8}-byte RSA-OAEP-SHA256 ciphertext of the 32-byte key under the import token's public key`);
    }
    const handle = findByLabel(this.token, session, labels.transportKey(this.marker.namespace, id), this.token.p.CKO_DATA)[0];
    if (handle === undefined) {
      this.token.assertLoggedIn(session, 'finding the import token key');
      throw new BlockvaultError('IMPORT_TOKEN_EXPIRED', 'the import token\'s private key is gone; create a new import token');
    }
    let der: Buffer;
    try {
      der = this.token.module.C_GetAttributeValue(session, handle, [{ type: this.token.p.CKA_VALUE }])[0]?.value as Buffer;
    } catch (error) {
      throw mapPkcs11Error(error, 'reading the import token key');
    }
    // node:crypto, not the token: SoftHSM 2.6.1 fails CKM_RSA_PKCS_OAEP with SHA-256 (mechanisms.ts).
    return decryptImportToken(id, der, encrypted);
  }

  /** C_CreateObject of BYOK material with the root-key attributes; material never touches a file. */
  private storeMaterial(session: Buffer, ref: KeyVersionRef, material: Buffer): void {
    try {
      this.token.module.C_CreateObject(session, [...rootKeyAttributes(this.token.p, this.rootLabel(ref)), { type: this.token.p.CKA_VALUE, value: material }]);
    } catch (error) {
      throw mapPkcs11Error(error, `storing root key ${ref.keyId} version ${ref.version}`);
    }
  }

  async create(ref: KeyVersionRef): Promise<void> {
    checkRef(ref);
    await this.session(async (session) => {
      this.refuseExisting(session, ref);
      const template: Template = [...rootKeyAttributes(this.token.p, this.rootLabel(ref)), { type: this.token.p.CKA_VALUE_LEN, value: ROOT_KEY_BYTES }];
      try {
        await this.token.module.C_GenerateKeyAsync(session, { mechanism: this.token.p.CKM_AES_KEY_GEN }, template);
      } catch (error) {
        throw mapPkcs11Error(error, `generating root key ${ref.keyId} version ${ref.version}`);
      }
    });
  }

  async import(ref: KeyVersionRef, input: ImportMaterial): Promise<void> {
    checkRef(ref);
    await this.session(async (session) => {
      this.refuseExisting(session, ref);
      const material = await this.acceptMaterial(session, input);
      try {
        this.storeMaterial(session, ref, material);
      } finally {
        material.fill(0);
      }
    });
  }

  async rotate(ref: KeyVersionRef, input?: ImportMaterial): Promise<void> {
    checkRef(ref);
    if (input === undefined) {
      await this.create(ref);
      return;
    }
    await this.session(async (session) => {
      this.refuseExisting(session, ref);
      const material = await this.acceptMaterial(session, input);
      try {
        const expected = kwpWrap(material, DUPLICATE_PROBE);
        const probe = this.createDataKeyObject(session, DUPLICATE_PROBE, true);
        try {
          for (let version = 1; version < ref.version; version += 1) {
            const found = findByLabel(this.token, session, labels.rootKey(this.marker.namespace, ref.keyId, version), this.token.p.CKO_SECRET_KEY)[0];
            if (found === undefined) continue; // destroyed or never committed
            const probeWrapped = await this.wrapObject(session, found, probe, DUPLICATE_PROBE.length, 'comparing rotation material');
            if (probeWrapped.length === expected.length && timingSafeEqual(probeWrapped, expected)) {
              throw new BlockvaultError('INVALID_ARGUMENT', `the new material equals version ${version} of this key; rotate with different key material`);
            }
          }
        } finally {
          this.destroyObject(session, probe);
        }
        this.storeMaterial(session, ref, material);
      } finally {
        material.fill(0);
      }
    });
  }

  async wrap(ref: KeyVersionRef, plaintext: Uint8Array): Promise<Uint8Array> {
    checkRef(ref);
    checkDataKey(plaintext);
    return this.session(async (session) => {
      const root = this.rootHandle(session, ref);
      const object = this.createDataKeyObject(session, plaintext, true);
      try {
        return await this.wrapObject(session, root, object, plaintext.length, `wrapping under root key ${ref.keyId} version ${ref.version}`);
      } finally {
        this.destroyObject(session, object);
      }
    });
  }

  async unwrap(ref: KeyVersionRef, wrapped: Uint8Array): Promise<Uint8Array> {
    checkRef(ref);
    return this.session(async (session) => {
      const object = await this.unwrapToObject(session, ref, wrapped, false);
      try {
        const value = this.token.module.C_GetAttributeValue(session, object, [{ type: this.token.p.CKA_VALUE }])[0]?.value as Buffer;
        const out = new Uint8Array(value.length);
        out.set(value);
        value.fill(0);
        return out;
      } catch (error) {
        throw mapPkcs11Error(error, 'reading an unwrapped data key');
      } finally {
        this.destroyObject(session, object);
      }
    });
  }

  async rewrap(from: KeyVersionRef, to: KeyVersionRef, wrapped: Uint8Array): Promise<Uint8Array> {
    checkRef(from);
    checkRef(to);
    return this.session(async (session) => {
      const target = this.rootHandle(session, to); // fail on a destroyed target before unwrapping anything
      const object = await this.unwrapToObject(session, from, wrapped, true);
      try {
        return await this.wrapObject(session, target, object, wrapped.length - KWP_OVERHEAD_BYTES, `rewrapping under root key ${to.keyId} version ${to.version}`);
      } finally {
        this.destroyObject(session, object);
      }
    });
  }

  async destroy(keyId: string, versions: readonly number[]): Promise<void> {
    checkId(keyId);
    await this.session((session) => {
      for (const version of versions) {
        const ref = { keyId, version };
        checkRef(ref);
        this.handles.delete(`${keyId}/${version}`);
        const found = findByLabel(this.token, session, this.rootLabel(ref), this.token.p.CKO_SECRET_KEY);
        // Nothing found must mean nothing left to destroy, not a login that cannot see the object.
        if (found.length === 0) this.token.assertLoggedIn(session, `destroying root key ${keyId} version ${version}`);
        for (const handle of found) this.destroyObject(session, handle);
      }
    });
  }

  async createTransportKey(transportKeyId: string): Promise<{ publicKeyPem: string }> {
    checkId(transportKeyId);
    this.assertOpen();
    const { publicKey, privateKey } = await new Promise<{ publicKey: KeyObject; privateKey: KeyObject }>((resolve, reject) =>
      generateKeyPair('rsa', { modulusLength: RSA_MODULUS_BITS, publicExponent: 0x10001 }, (error, pub, priv) => (error ? reject(error) : resolve({ publicKey: pub, privateKey: priv }))),
    );
    const label = labels.transportKey(this.marker.namespace, transportKeyId);
    await this.session((session) => {
      for (const stale of findByLabel(this.token, session, label, this.token.p.CKO_DATA)) this.destroyObject(session, stale);
      const der = privateKey.export({ format: 'der', type: 'pkcs8' });
      try {
        this.token.module.C_CreateObject(session, transportKeyAttributes(this.token.p, label, der));
      } catch (error) {
        throw mapPkcs11Error(error, 'storing an import token key');
      } finally {
        der.fill(0);
      }
    });
    return { publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString() };
  }

  async destroyTransportKey(transportKeyId: string): Promise<void> {
    checkId(transportKeyId);
    await this.session((session) => {
      for (const handle of findByLabel(this.token, session, labels.transportKey(this.marker.namespace, transportKeyId), this.token.p.CKO_DATA)) this.destroyObject(session, handle);
    });
  }

  async inventory(): Promise<ProviderInventory> {
    const prefix = labels.prefix(this.marker.namespace);
    const rootPattern = /^root\/([A-Za-z0-9_-][A-Za-z0-9._-]{0,63})\/v([1-9][0-9]{0,8})$/;
    const transportPattern = /^transport\/([A-Za-z0-9_-][A-Za-z0-9._-]{0,63})$/;
    return this.session((session) => {
      // A logged-out session lists no private object, and every live key would look missing.
      this.token.assertLoggedIn(session, 'listing token objects');
      const keyVersions: KeyVersionRef[] = [];
      const transportKeyIds: string[] = [];
      const p = this.token.p;
      for (const handle of findAll(this.token, session)) {
        let label: string;
        try {
          label = String(this.token.module.C_GetAttributeValue(session, handle, [{ type: p.CKA_LABEL }])[0]?.value ?? '');
        } catch {
          continue; // an object without a label is not one of ours
        }
        if (!label.startsWith(prefix)) continue;
        const rest = label.slice(prefix.length);
        const root = rootPattern.exec(rest);
        if (root) keyVersions.push({ keyId: root[1] as string, version: Number(root[2]) });
        const transport = transportPattern.exec(rest);
        if (transport) transportKeyIds.push(transport[1] as string);
      }
      return { keyVersions, transportKeyIds };
    });
  }

  async metadataKey(): Promise<Uint8Array> {
    return this.session(async (session) => {
      const handle = this.metadataHandle ?? this.findMetadataKey(session);
      try {
        this.token.module.C_SignInit(session, { mechanism: CKM_SHA256_HMAC }, handle);
        const mac = await this.token.module.C_SignAsync(session, METADATA_MESSAGE, Buffer.alloc(METADATA_KEY_BYTES));
        assert(mac.length === METADATA_KEY_BYTES, 'HMAC-SHA256 is 32 bytes');
        const out = new Uint8Array(METADATA_KEY_BYTES);
        out.set(mac);
        mac.fill(0);
        return out;
      } catch (error) {
        throw mapPkcs11Error(error, 'computing the metadata key');
      }
    });
  }

  /** The metadata key's handle found again (after a session loss made the old one stale). */
  private findMetadataKey(session: Buffer): Buffer {
    const epoch = this.token.epoch;
    const label = labels.metadataKey(this.marker.namespace);
    const handle = findByLabel(this.token, session, label, undefined)[0];
    if (handle === undefined) {
      this.token.assertLoggedIn(session, 'finding the metadata key');
      throw new BlockvaultError('KEYSTORE_CORRUPT', `the PKCS#11 token has no metadata key ${label} for this engine directory; it was deleted from the token, and the directory's keys with it`);
    }
    if (epoch === this.token.epoch) this.metadataHandle = handle;
    return handle;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.handles.clear();
    this.token.release();
  }
}

/** Token objects with this label (and class), at most SAME_LABEL_OBJECTS_MAX. */
function findByLabel(token: Pkcs11Token, session: Buffer, label: string, objectClass: number | undefined): Buffer[] {
  const template: Template = [
    { type: token.p.CKA_TOKEN, value: true },
    { type: token.p.CKA_LABEL, value: label },
  ];
  if (objectClass !== undefined) template.push({ type: token.p.CKA_CLASS, value: objectClass });
  try {
    token.module.C_FindObjectsInit(session, template);
    try {
      return token.module.C_FindObjects(session, SAME_LABEL_OBJECTS_MAX);
    } finally {
      token.module.C_FindObjectsFinal(session);
    }
  } catch (error) {
    throw mapPkcs11Error(error, `finding ${label}`);
  }
}

/** Every token object this login can see, at most INVENTORY_OBJECTS_MAX. */
function findAll(token: Pkcs11Token, session: Buffer): Buffer[] {
  const all: Buffer[] = [];
  try {
    token.module.C_FindObjectsInit(session, [{ type: token.p.CKA_TOKEN, value: true }]);
    try {
      for (;;) {
        const batch = token.module.C_FindObjects(session, FIND_BATCH_OBJECTS);
        all.push(...batch);
        if (batch.length < FIND_BATCH_OBJECTS) break;
        if (all.length > INVENTORY_OBJECTS_MAX) throw new BlockvaultError('HSM_UNAVAILABLE', `the PKCS#11 token holds more than ${INVENTORY_OBJECTS_MAX} objects; blockvault does not scan that many`);
      }
    } finally {
      token.module.C_FindObjectsFinal(session);
    }
  } catch (error) {
    throw mapPkcs11Error(error, 'listing token objects');
  }
  return all;
}
