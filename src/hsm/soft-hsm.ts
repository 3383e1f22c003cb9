import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { RootDatabase } from 'lmdb';
import type { AuditLog } from '../audit/audit-log.js';
import { systemClock, type Clock } from '../clock.js';
import { formatCrn, parseCrn } from '../crn.js';
import { BlockvaultError, assert, isBlockvaultError } from '../errors.js';
import { assertStateAllows, pendingDeletionBy, toRootKeyInfo } from './key-info.js';
import { keystoreExists, openMasterKey } from './master-key.js';
import { MetadataStore, type ImportTokenRecord, type InstanceRecord, type KeyRecord, type RegistrationRecord } from './metadata-store.js';
import type { ImportMaterial, KeyProvider } from './provider.js';
import { SoftwareKeyProvider } from './software-provider.js';
import {
  checkBoolean,
  checkBytes,
  checkCaller,
  checkId,
  checkIntegerRange,
  checkName,
  checkRotationPolicy,
  checkService,
  checkText,
  checkVersion,
  invalid,
  optionsObject,
} from './validate.js';
import {
  KeyState,
  type Authorization,
  type CallerContext,
  type DeleteKeyResult,
  type HsmHooks,
  type HsmInstanceInfo,
  type ImportTokenInfo,
  type ImportTokenStatus,
  type Registration,
  type RootKeyInfo,
  type RotationPolicy,
  type RotationSchedulerResult,
  type UnwrapResult,
  type WrapResult,
} from './types.js';

/** The CRN fields of this HSM: crn:v1:local:private:blockvault-hsm:local:a/<account>:<instance>:key:<id>. */
export const HSM_SERVICE = 'blockvault-hsm';
const CRN_CLOUD = 'local';
const CRN_SCOPE = 'private';
const CRN_REGION = 'local';
/** The storage service's name in caller contexts and authorizations. */
export const STORAGE_SERVICE_NAME = 'blockvault';
/** The internal instance that holds platform-managed root keys. */
export const PLATFORM_INSTANCE_ID = 'platform';
const DEFAULT_INITIATOR = 'operator';

const DATA_KEY_BYTES_MAX = 1024;
const IMPORT_TOKEN_EXPIRES_IN_MS_DEFAULT = 10 * 60_000;
const IMPORT_TOKEN_EXPIRES_IN_MS_MAX = 24 * 3_600_000;
const IMPORT_TOKEN_RETRIEVALS_MAX = 100;
const RSA_CIPHERTEXT_BYTES = 256;
const ROOT_KEY_BYTES = 32;

export interface SoftHsmOptions {
  /** The LMDB root database of the engine directory (the HSM opens its own sub-database in it). */
  root: RootDatabase;
  /** The engine directory; sealed material goes to `<dir>/hsm/`. */
  dir: string;
  /** Exactly one of passphrase and keyFile. */
  passphrase?: string;
  keyFile?: string;
  clock?: Clock;
  audit: AuditLog;
  hooks?: HsmHooks;
  /** The account in key CRNs (a/<account>); 'default' unless given. */
  account?: string;
  /** scrypt cost for a new keystore (tests use less than the default 2^15). */
  scryptN?: number;
  /** Replace the software key provider (for example with a PKCS#11 one). */
  createProvider?: (args: { hsmDir: string; masterKey: Uint8Array }) => KeyProvider;
}

interface AuditMeta {
  initiator: string;
  keyCrn?: string | null;
  instanceId?: string | null;
  resourceCrn?: string | null;
  details?: Record<string, unknown>;
}

const roughText = (value: unknown): string | null => (typeof value === 'string' ? value.slice(0, 512) : null);
const roughInitiator = (value: unknown, fallback: string): string => {
  const initiator = (value as { initiator?: unknown } | null | undefined)?.initiator;
  if (typeof initiator === 'string' && initiator.length > 0) return initiator.slice(0, 256);
  const service = (value as { sourceService?: unknown } | null | undefined)?.sourceService;
  return typeof service === 'string' && service.length > 0 ? service.slice(0, 256) : fallback;
};

/**
 * The software HSM (DESIGN.md, "Key hierarchy"): HSM instances, root keys and their states,
 * authorizations, registrations, import tokens, rotation policies and dual-authorization
 * deletion, with every operation in the audit log. Root-key material is reached only through a
 * KeyProvider; no method returns it.
 *
 * Concurrency: operations that change metadata run one at a time (an async mutex); wrap, unwrap
 * and rewrap only read metadata and do not queue behind them. Hooks are called outside the
 * mutex, so a hook may call back into the HSM.
 */
export class SoftHsm {
  private hooks: HsmHooks;
  private closed = false;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly store: MetadataStore,
    private readonly provider: KeyProvider,
    private readonly audit: AuditLog,
    private readonly clock: Clock,
    private readonly account: string,
    hooks: HsmHooks | undefined,
  ) {
    this.hooks = hooks ?? {};
  }

  /**
   * Open (or create) the HSM of an engine directory. A wrong passphrase or key file fails with
   * WRONG_PASSPHRASE before anything is unsealed or changed.
   */
  static async open(options: SoftHsmOptions): Promise<SoftHsm> {
    if (options === null || typeof options !== 'object') invalid('SoftHsm.open takes { root, dir, passphrase | keyFile, clock, audit }');
    const { root, dir, audit } = options;
    if (root === null || typeof root !== 'object' || typeof root.openDB !== 'function') invalid('SoftHsm.open needs { root }: the LMDB root database');
    if (typeof dir !== 'string' || dir.length === 0) invalid('SoftHsm.open needs { dir }: the engine directory');
    if (audit === null || typeof audit !== 'object' || typeof audit.append !== 'function') invalid('SoftHsm.open needs { audit }: an AuditLog');
    const clock = options.clock ?? systemClock;
    if (typeof clock.nowMs !== 'function') invalid('clock must have nowMs()');
    const account = options.account ?? 'default';
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(account)) invalid('account must be 1-64 characters of [A-Za-z0-9._-]');
    if (options.hooks !== undefined && (options.hooks === null || typeof options.hooks !== 'object')) invalid('hooks must be an object');

    const hsmDir = join(dir, 'hsm');
    const store = new MetadataStore(root);
    const create = !keystoreExists(hsmDir) && store.isEmpty();
    const source = {
      ...(options.passphrase !== undefined ? { passphrase: options.passphrase } : {}),
      ...(options.keyFile !== undefined ? { keyFile: options.keyFile } : {}),
      ...(options.scryptN !== undefined ? { scryptN: options.scryptN } : {}),
    };
    const masterKey = await openMasterKey(hsmDir, source, { create, nowMs: clock.nowMs() });
    let provider: KeyProvider;
    try {
      provider = options.createProvider ? options.createProvider({ hsmDir, masterKey }) : new SoftwareKeyProvider({ hsmDir, masterKey });
    } finally {
      masterKey.fill(0);
    }
    const hsm = new SoftHsm(store, provider, audit, clock, account, options.hooks);
    try {
      await hsm.recover();
    } catch (error) {
      await provider.close();
      throw error;
    }
    return hsm;
  }

  /** Replace the hooks (the engine may only have them once it exists). */
  setHooks(hooks: HsmHooks): void {
    if (hooks === null || typeof hooks !== 'object') invalid('hooks must be an object');
    this.hooks = hooks;
  }

  /** Zeroize all material in memory. Pending metadata operations finish first. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.exclusive(async () => {
      this.closed = true;
    });
    await this.provider.close();
  }

  // -------------------------------------------------------------------------------------------
  // Instances.

  async createInstance(options: { name: string; initiator?: string }): Promise<HsmInstanceInfo> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR) };
    return this.exclusive(() =>
      this.audited('hs-crypto.instances.create', meta, async () => {
        const opts = optionsObject(options, 'createInstance({ name })');
        const name = checkName(opts.name, 'instance name');
        meta.initiator = checkText(opts.initiator, 'initiator', DEFAULT_INITIATOR);
        if (name === PLATFORM_INSTANCE_ID) throw new BlockvaultError('ALREADY_EXISTS', `the instance name '${PLATFORM_INSTANCE_ID}' is reserved for platform-managed keys; choose another`);
        if (this.store.instances().some((i) => i.name === name)) throw new BlockvaultError('ALREADY_EXISTS', `an HSM instance named '${name}' exists already; choose another name or use it`);
        const record: InstanceRecord = { id: randomUUID(), name, createdAtMs: this.clock.nowMs(), platformManaged: false };
        this.store.transact((tx) => tx.putInstance(record));
        meta.instanceId = record.id;
        meta.details = { name };
        return this.instanceInfo(record);
      }),
    );
  }

  async listInstances(): Promise<HsmInstanceInfo[]> {
    this.assertOpen();
    return this.store
      .instances()
      .sort((a, b) => a.createdAtMs - b.createdAtMs || a.id.localeCompare(b.id))
      .map((r) => this.instanceInfo(r));
  }

  async getInstance(instanceId: string): Promise<HsmInstanceInfo> {
    this.assertOpen();
    return this.instanceInfo(this.requireInstance(instanceId));
  }

  // -------------------------------------------------------------------------------------------
  // Root keys: create and import.

  async createRootKey(
    instanceId: string,
    options: { name: string; dualAuthDelete?: boolean; rotationPolicy?: RotationPolicy | null; initiator?: string },
  ): Promise<RootKeyInfo> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR), instanceId: roughText(instanceId) };
    return this.exclusive(() =>
      this.audited('hs-crypto.secrets.create', meta, async () => {
        const spec = this.newKeySpec(instanceId, options, 'createRootKey(instanceId, { name })', meta);
        return this.addKey(spec, { kind: 'create' }, meta);
      }),
    );
  }

  /** BYOK: store 32 bytes of caller material as a new root key. The caller zeroizes its copy. */
  async importRootKey(
    instanceId: string,
    options: { name: string; material: Uint8Array; dualAuthDelete?: boolean; rotationPolicy?: RotationPolicy | null; initiator?: string },
  ): Promise<RootKeyInfo> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR), instanceId: roughText(instanceId) };
    return this.exclusive(() =>
      this.audited('hs-crypto.secrets.import', meta, async () => {
        const spec = this.newKeySpec(instanceId, options, 'importRootKey(instanceId, { name, material })', meta);
        const material = checkBytes((options as { material?: unknown }).material, 'material', ROOT_KEY_BYTES, ROOT_KEY_BYTES);
        meta.details = { ...meta.details, viaImportToken: false };
        return this.addKey(spec, { kind: 'import', material: { material } }, meta);
      }),
    );
  }

  /**
   * Create (or replace) the instance's import token: an RSA-OAEP-SHA256 key pair with an expiry
   * and a retrieval limit. Fetch its public key with getImportToken (which counts a retrieval).
   */
  async createImportToken(instanceId: string, options?: { expiresInMs?: number; maxRetrievals?: number; initiator?: string }): Promise<ImportTokenStatus> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR), instanceId: roughText(instanceId) };
    return this.exclusive(() =>
      this.audited('hs-crypto.import-token.create', meta, async () => {
        const opts = optionsObject(options, 'createImportToken(instanceId, { expiresInMs?, maxRetrievals? })');
        meta.initiator = checkText(opts.initiator, 'initiator', DEFAULT_INITIATOR);
        const instance = this.requireCustomerInstance(instanceId);
        const expiresInMs = checkIntegerRange(opts.expiresInMs, 'expiresInMs', 1000, IMPORT_TOKEN_EXPIRES_IN_MS_MAX, IMPORT_TOKEN_EXPIRES_IN_MS_DEFAULT);
        const maxRetrievals = checkIntegerRange(opts.maxRetrievals, 'maxRetrievals', 1, IMPORT_TOKEN_RETRIEVALS_MAX, 1);
        const previous = this.store.token(instance.id);
        const transportKeyId = randomUUID();
        const { publicKeyPem } = await this.provider.createTransportKey(transportKeyId);
        const now = this.clock.nowMs();
        const record: ImportTokenRecord = { instanceId: instance.id, transportKeyId, publicKeyPem, createdAtMs: now, expiresAtMs: now + expiresInMs, maxRetrievals, retrievals: 0 };
        try {
          this.store.transact((tx) => tx.putToken(record));
        } catch (error) {
          await this.provider.destroyTransportKey(transportKeyId);
          throw error;
        }
        if (previous !== undefined) await this.provider.destroyTransportKey(previous.transportKeyId);
        meta.details = { expiresAtMs: record.expiresAtMs, maxRetrievals, replacedPrevious: previous !== undefined };
        return this.tokenStatus(record);
      }),
    );
  }

  /** The import token with its public key; counts one retrieval. Expired or used up: IMPORT_TOKEN_EXPIRED. */
  async getImportToken(instanceId: string, options?: { initiator?: string }): Promise<ImportTokenInfo> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR), instanceId: roughText(instanceId) };
    return this.exclusive(() =>
      this.audited('hs-crypto.import-token.read', meta, async () => {
        meta.initiator = checkText(optionsObject(options, 'getImportToken(instanceId)').initiator, 'initiator', DEFAULT_INITIATOR);
        const token = await this.usableToken(instanceId);
        if (token.retrievals >= token.maxRetrievals) {
          throw new BlockvaultError('IMPORT_TOKEN_EXPIRED', `the import token of instance ${token.instanceId} was retrieved ${token.retrievals} time(s), its limit; create a new one with createImportToken`);
        }
        const updated: ImportTokenRecord = { ...token, retrievals: token.retrievals + 1 };
        this.store.transact((tx) => tx.putToken(updated));
        meta.details = { retrievals: updated.retrievals, maxRetrievals: updated.maxRetrievals };
        return { ...this.tokenStatus(updated), publicKeyPem: updated.publicKeyPem };
      }),
    );
  }

  /**
   * Secure BYOK: `encryptedMaterial` is the 32-byte key encrypted with RSA-OAEP-SHA256 to the import
   * token's public key. A successful import uses the token up.
   */
  async importRootKeyWithToken(
    instanceId: string,
    options: { name: string; encryptedMaterial: Uint8Array; dualAuthDelete?: boolean; rotationPolicy?: RotationPolicy | null; initiator?: string },
  ): Promise<RootKeyInfo> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR), instanceId: roughText(instanceId) };
    return this.exclusive(() =>
      this.audited('hs-crypto.secrets.import', meta, async () => {
        const spec = this.newKeySpec(instanceId, options, 'importRootKeyWithToken(instanceId, { name, encryptedMaterial })', meta);
        const encryptedMaterial = checkBytes((options as { encryptedMaterial?: unknown }).encryptedMaterial, 'encryptedMaterial', RSA_CIPHERTEXT_BYTES, RSA_CIPHERTEXT_BYTES);
        meta.details = { ...meta.details, viaImportToken: true };
        const token = await this.usableToken(spec.instance.id);
        const info = await this.addKey(spec, { kind: 'import', material: { transportKeyId: token.transportKeyId, encryptedMaterial } }, meta);
        this.store.transact((tx) => tx.removeToken(token.instanceId));
        await this.provider.destroyTransportKey(token.transportKeyId);
        return info;
      }),
    );
  }

  /**
   * A random platform-managed root key for a volume provisioned without a customer key, in the
   * internal 'platform' instance, which the storage service is authorized on automatically.
   */
  async createPlatformKey(): Promise<RootKeyInfo> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: STORAGE_SERVICE_NAME, instanceId: PLATFORM_INSTANCE_ID };
    return this.exclusive(() =>
      this.audited('hs-crypto.secrets.create', meta, async () => {
        const instance = this.ensurePlatformInstance();
        const keyId = randomUUID();
        meta.details = { platformManaged: true };
        return this.addKey(
          { instance, name: `platform-${keyId.slice(0, 8)}`, dualAuthDelete: false, rotationPolicy: null, platformManaged: true },
          { kind: 'create' },
          meta,
          keyId,
        );
      }),
    );
  }

  // -------------------------------------------------------------------------------------------
  // Root keys: read.

  async getKey(crn: string): Promise<RootKeyInfo> {
    this.assertOpen();
    const { record, crn: canonical } = this.resolveKey(crn);
    return toRootKeyInfo(record, canonical, this.clock.nowMs());
  }

  async listKeys(filter?: { instanceId?: string }): Promise<RootKeyInfo[]> {
    this.assertOpen();
    const opts = optionsObject(filter, 'listKeys({ instanceId? })');
    let records = this.store.keys();
    if (opts.instanceId !== undefined) {
      const instance = this.requireInstance(opts.instanceId);
      records = records.filter((r) => r.instanceId === instance.id);
    }
    const now = this.clock.nowMs();
    return records
      .sort((a, b) => a.createdAtMs - b.createdAtMs || a.id.localeCompare(b.id))
      .map((r) => toRootKeyInfo(r, this.keyCrnOf(r), now));
  }

  // -------------------------------------------------------------------------------------------
  // Wrap, unwrap, rewrap (AES-KWP, RFC 5649).

  /** Wrap a data key under the key's current version. Needs an Active key and a Reader authorization. */
  async wrap(crn: string, plaintext: Uint8Array, ctx: CallerContext): Promise<WrapResult> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: roughInitiator(ctx, 'unknown'), keyCrn: roughText(crn) };
    return this.audited('hs-crypto.secrets.wrap', meta, async () => {
      const { record, crn: keyCrn } = this.resolveKey(crn);
      meta.keyCrn = keyCrn;
      meta.initiator = this.checkAuthorized(ctx, record).initiator;
      assertStateAllows(record, 'wrap', keyCrn);
      checkBytes(plaintext, 'plaintext (the data key)', 1, DATA_KEY_BYTES_MAX);
      const keyVersion = this.currentVersion(record);
      const wrapped = await this.provider.wrap({ keyId: record.id, version: keyVersion }, plaintext);
      meta.details = { keyVersion };
      return { keyCrn, keyVersion, wrapped };
    });
  }

  /**
   * Unwrap a data key wrapped under `version`. Older versions still unwrap and say that a rewrap
   * is due. Needs an Active or Deactivated key and a Reader authorization.
   */
  async unwrap(crn: string, wrapped: Uint8Array, version: number, ctx: CallerContext): Promise<UnwrapResult> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: roughInitiator(ctx, 'unknown'), keyCrn: roughText(crn) };
    return this.audited('hs-crypto.secrets.unwrap', meta, async () => {
      const { record, crn: keyCrn } = this.resolveKey(crn);
      meta.keyCrn = keyCrn;
      meta.initiator = this.checkAuthorized(ctx, record).initiator;
      assertStateAllows(record, 'unwrap', keyCrn);
      checkBytes(wrapped, 'wrapped', 16, DATA_KEY_BYTES_MAX + 8);
      const keyVersion = this.liveVersion(record, version, keyCrn);
      const plaintext = await this.provider.unwrap({ keyId: record.id, version: keyVersion }, wrapped);
      const rewrapRecommended = keyVersion < this.currentVersion(record);
      meta.details = { keyVersion, rewrapRecommended };
      return { plaintext, keyVersion, rewrapRecommended };
    });
  }

  /** Unwrap under `version` and wrap under the current version; the data key never leaves the HSM. */
  async rewrap(crn: string, wrapped: Uint8Array, version: number, ctx: CallerContext): Promise<WrapResult> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: roughInitiator(ctx, 'unknown'), keyCrn: roughText(crn) };
    return this.audited('hs-crypto.secrets.rewrap', meta, async () => {
      const { record, crn: keyCrn } = this.resolveKey(crn);
      meta.keyCrn = keyCrn;
      meta.initiator = this.checkAuthorized(ctx, record).initiator;
      assertStateAllows(record, 'rewrap', keyCrn);
      checkBytes(wrapped, 'wrapped', 16, DATA_KEY_BYTES_MAX + 8);
      const fromVersion = this.liveVersion(record, version, keyCrn);
      const keyVersion = this.currentVersion(record);
      const rewrapped = await this.provider.rewrap({ keyId: record.id, version: fromVersion }, { keyId: record.id, version: keyVersion }, wrapped);
      meta.details = { fromVersion, keyVersion };
      return { keyCrn, keyVersion, wrapped: rewrapped };
    });
  }

  // -------------------------------------------------------------------------------------------
  // Rotation.

  /**
   * A new key version (Active keys only). Keys created in the HSM get fresh random material;
   * imported keys rotate only with new `material`. Returns what `hooks.onRotated` returns (the
   * "Syncing KMS state" tasks), or [] without that hook.
   */
  async rotateKey(crn: string, options?: { material?: Uint8Array; rewrapOnly?: boolean; initiator?: string }): Promise<unknown[]> {
    this.assertOpen();
    const opts = optionsObject(options, 'rotateKey(crn, { material?, rewrapOnly? })');
    const rewrapOnly = checkBoolean(opts.rewrapOnly, 'rewrapOnly', false);
    const info = await this.exclusive(() => this.rotateLocked(crn, opts, 'manual'));
    return this.notifyRotated(info, rewrapOnly);
  }

  /** Set (or with null, remove) the key's rotation policy: an interval of at least one hour. */
  async setRotationPolicy(crn: string, policy: RotationPolicy | null, options?: { initiator?: string }): Promise<RootKeyInfo> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR), keyCrn: roughText(crn) };
    return this.exclusive(() =>
      this.audited('hs-crypto.policies.write', meta, async () => {
        meta.initiator = checkText(optionsObject(options, 'setRotationPolicy(crn, policy, options?)').initiator, 'initiator', DEFAULT_INITIATOR);
        const { record, crn: keyCrn } = this.resolveKey(crn);
        meta.keyCrn = keyCrn;
        const rotationPolicy = checkRotationPolicy(policy);
        assertStateAllows(record, 'write a policy', keyCrn);
        meta.details = { policy: 'rotation', rotationPolicy, imported: record.imported };
        return this.saveKey({ ...record, rotationPolicy });
      }),
    );
  }

  /**
   * Turn on dual authorization for deleting the key. It cannot be turned off: that would let one
   * caller undo the protection alone.
   */
  async setDualAuthDelete(crn: string, options: { enabled: boolean; initiator?: string }): Promise<RootKeyInfo> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR), keyCrn: roughText(crn) };
    return this.exclusive(() =>
      this.audited('hs-crypto.policies.write', meta, async () => {
        const opts = optionsObject(options, 'setDualAuthDelete(crn, { enabled })');
        meta.initiator = checkText(opts.initiator, 'initiator', DEFAULT_INITIATOR);
        const { record, crn: keyCrn } = this.resolveKey(crn);
        meta.keyCrn = keyCrn;
        const enabled = checkBoolean(opts.enabled, 'enabled', true);
        assertStateAllows(record, 'write a policy', keyCrn);
        meta.details = { policy: 'dualAuthDelete', enabled };
        if (!enabled && record.dualAuthDelete) invalid('dual authorization for deletion cannot be turned off once on; delete the key with two initiators instead');
        return this.saveKey({ ...record, dualAuthDelete: enabled || record.dualAuthDelete });
      }),
    );
  }

  /**
   * Rotate every Active key whose rotation policy is due by the clock (interval counted from its
   * last rotation, or its creation). Imported keys are skipped (they rotate only with new
   * material) and reported as such.
   */
  async runScheduler(): Promise<RotationSchedulerResult> {
    this.assertOpen();
    const result: RotationSchedulerResult = { rotated: [], skipped: [], failed: [], nextDueAtMs: null };
    const byAge = this.store.keys().sort((a, b) => a.createdAtMs - b.createdAtMs || a.id.localeCompare(b.id));
    for (const record of byAge) {
      if (record.rotationPolicy === null || record.state === KeyState.Destroyed || record.pendingDestroy !== null) continue;
      const keyCrn = this.keyCrnOf(record);
      const dueAtMs = (record.rotatedAtMs ?? record.createdAtMs) + record.rotationPolicy.intervalMs;
      if (this.clock.nowMs() < dueAtMs) continue;
      if (record.imported) {
        result.skipped.push({ keyCrn, reason: 'imported key: it rotates only when new material is supplied (rotateKey(crn, { material }))' });
        continue;
      }
      if (record.state !== KeyState.Active) {
        result.skipped.push({ keyCrn, reason: `the key is ${record.state === KeyState.Suspended ? 'Suspended' : 'Deactivated'}; only Active keys rotate` });
        continue;
      }
      try {
        const info = await this.exclusive(() => this.rotateLocked(keyCrn, { initiator: 'rotation-scheduler' }, 'policy'));
        const tasks = await this.notifyRotated(info, false);
        result.rotated.push({ keyCrn, version: info.version, tasks });
      } catch (error) {
        if (this.closed) throw error;
        const code = isBlockvaultError(error) ? error.code : 'INTERNAL';
        result.failed.push({ keyCrn, code, message: (error as Error).message });
      }
    }
    for (const record of this.store.keys()) {
      if (record.rotationPolicy === null || record.state !== KeyState.Active || record.imported || record.pendingDestroy !== null) continue;
      const dueAtMs = (record.rotatedAtMs ?? record.createdAtMs) + record.rotationPolicy.intervalMs;
      result.nextDueAtMs = result.nextDueAtMs === null ? dueAtMs : Math.min(result.nextDueAtMs, dueAtMs);
    }
    return result;
  }

  // -------------------------------------------------------------------------------------------
  // States.

  /** Suspended -> Active. */
  async enableKey(crn: string, options?: { initiator?: string }): Promise<RootKeyInfo> {
    return this.transition(crn, options, 'enable', KeyState.Active, 'hs-crypto.secrets.enable');
  }

  /** Active -> Suspended: no wrap, unwrap or rewrap until enabled again. */
  async disableKey(crn: string, options?: { initiator?: string }): Promise<RootKeyInfo> {
    return this.transition(crn, options, 'disable', KeyState.Suspended, 'hs-crypto.secrets.disable');
  }

  /** Active -> Deactivated: unwrap and rewrap only, for good (there is no way back to Active). */
  async deactivateKey(crn: string, options?: { initiator?: string }): Promise<RootKeyInfo> {
    return this.transition(crn, options, 'deactivate', KeyState.Deactivated, 'hs-crypto.secrets.deactivate');
  }

  // -------------------------------------------------------------------------------------------
  // Deletion.

  /** Dual authorization, step one: record who authorizes the deletion (valid 7 days). */
  async setKeyForDeletion(crn: string, options: { initiator: string }): Promise<RootKeyInfo> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: roughInitiator(options, 'unknown'), keyCrn: roughText(crn) };
    return this.exclusive(() =>
      this.audited('hs-crypto.secrets.setkeyfordeletion', meta, async () => {
        const opts = optionsObject(options, 'setKeyForDeletion(crn, { initiator })');
        if (opts.initiator === undefined) invalid('setKeyForDeletion needs { initiator }: who authorizes the deletion (a different initiator must then delete)');
        const initiator = checkText(opts.initiator, 'initiator', '');
        meta.initiator = initiator;
        const { record, crn: keyCrn } = this.resolveKey(crn);
        meta.keyCrn = keyCrn;
        assertStateAllows(record, 'set key for deletion', keyCrn);
        if (!record.dualAuthDelete) invalid(`root key ${keyCrn} has no dual-authorization policy; delete it directly with deleteKey`);
        return this.saveKey({ ...record, deletionAuthorizedBy: initiator, deletionAuthorizedAtMs: this.clock.nowMs() });
      }),
    );
  }

  /** Withdraw a pending dual-authorization deletion. */
  async unsetKeyForDeletion(crn: string, options: { initiator: string }): Promise<RootKeyInfo> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: roughInitiator(options, 'unknown'), keyCrn: roughText(crn) };
    return this.exclusive(() =>
      this.audited('hs-crypto.secrets.unsetkeyfordeletion', meta, async () => {
        const opts = optionsObject(options, 'unsetKeyForDeletion(crn, { initiator })');
        if (opts.initiator === undefined) invalid('unsetKeyForDeletion needs { initiator }');
        meta.initiator = checkText(opts.initiator, 'initiator', '');
        const { record, crn: keyCrn } = this.resolveKey(crn);
        meta.keyCrn = keyCrn;
        assertStateAllows(record, 'set key for deletion', keyCrn);
        if (pendingDeletionBy(record, this.clock.nowMs()) === null) invalid(`root key ${keyCrn} has no pending deletion authorization to withdraw`);
        return this.saveKey({ ...record, deletionAuthorizedBy: null, deletionAuthorizedAtMs: null });
      }),
    );
  }

  /**
   * Destroy the key: every version's material is overwritten in the keystore and zeroized in
   * memory; the metadata stays readable (state Destroyed). Refused with KEY_IN_USE while
   * registrations exist unless `force` (cryptoshredding: the result lists the resources), and with
   * KEY_DELETION_PREVENTED while any registration says preventKeyDeletion, even with force.
   * `hooks.onDestroyed` runs before this returns.
   */
  async deleteKey(crn: string, options?: { force?: boolean; initiator?: string }): Promise<DeleteKeyResult> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR), keyCrn: roughText(crn) };
    const result = await this.exclusive(() =>
      this.audited('hs-crypto.secrets.delete', meta, async () => {
        const opts = optionsObject(options, 'deleteKey(crn, { force?, initiator? })');
        const force = checkBoolean(opts.force, 'force', false);
        const initiator = checkText(opts.initiator, 'initiator', DEFAULT_INITIATOR);
        meta.initiator = initiator;
        meta.details = { force, affectedResources: [] };
        const { record, crn: keyCrn } = this.resolveKey(crn);
        meta.keyCrn = keyCrn;
        assertStateAllows(record, 'delete', keyCrn);
        const registrations = this.store.registrationsOfKey(record.id);
        const preventing = registrations.filter((r) => r.preventKeyDeletion);
        if (preventing.length > 0) {
          throw new BlockvaultError(
            'KEY_DELETION_PREVENTED',
            `root key ${keyCrn} cannot be deleted, not even with force: ${preventing.length} registration(s) prevent it (${preventing.slice(0, 3).map((r) => r.resourceCrn).join(', ')}). Remove those resources or clear preventKeyDeletion with updateRegistration first`,
            { keyCrn, resources: preventing.map((r) => r.resourceCrn) },
          );
        }
        if (registrations.length > 0 && !force) {
          throw new BlockvaultError(
            'KEY_IN_USE',
            `root key ${keyCrn} protects ${registrations.length} resource(s) (${registrations.slice(0, 3).map((r) => r.resourceCrn).join(', ')}${registrations.length > 3 ? ', ...' : ''}). Delete them first, or pass { force: true } to cryptoshred them: their data can then never be read again`,
            { keyCrn, resources: registrations.map((r) => r.resourceCrn) },
          );
        }
        if (record.dualAuthDelete) {
          const by = pendingDeletionBy(record, this.clock.nowMs());
          if (opts.initiator === undefined) {
            throw new BlockvaultError('KEY_DELETION_NOT_AUTHORIZED', `root key ${keyCrn} needs dual authorization to delete: pass { initiator } naming who deletes it (a different initiator from the one who called setKeyForDeletion)`, { keyCrn });
          }
          if (by === null) {
            throw new BlockvaultError('KEY_DELETION_NOT_AUTHORIZED', `root key ${keyCrn} needs dual authorization to delete: one initiator calls setKeyForDeletion(crn, { initiator }), then a different initiator deletes it within 7 days`, { keyCrn });
          }
          if (by === initiator) {
            throw new BlockvaultError('KEY_DELETION_NOT_AUTHORIZED', `root key ${keyCrn} was set for deletion by '${by}'; a different initiator must delete it (dual authorization)`, { keyCrn });
          }
          meta.details.authorizedBy = by;
        }
        const affectedResources = registrations.map((r) => r.resourceCrn);
        meta.details.affectedResources = affectedResources;
        const destroyed = await this.destroyKeyMaterial(record, { force, initiator, affectedResources });
        return { key: toRootKeyInfo(destroyed, keyCrn, this.clock.nowMs()), affectedResources };
      }),
    );
    if (this.hooks.onDestroyed) await this.hooks.onDestroyed(result.key, result.affectedResources);
    return result;
  }

  // -------------------------------------------------------------------------------------------
  // Authorizations.

  /** Let a service (all its instances, or one) use the keys of an instance: role 'Reader'. Idempotent. */
  async authorize(options: { sourceService: string; sourceInstance?: string; targetInstance: string; role: 'Reader'; initiator?: string }): Promise<Authorization> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: roughInitiator({ initiator: (options as { initiator?: unknown } | undefined)?.initiator }, DEFAULT_INITIATOR) };
    return this.exclusive(() =>
      this.audited('hs-crypto.authorizations.create', meta, async () => {
        const opts = optionsObject(options, "authorize({ sourceService, sourceInstance?, targetInstance, role: 'Reader' })");
        meta.initiator = checkText(opts.initiator, 'initiator', DEFAULT_INITIATOR);
        const sourceService = checkService(opts.sourceService, 'sourceService');
        const sourceInstance = checkText(opts.sourceInstance, 'sourceInstance', '*');
        if (opts.role !== 'Reader') invalid(`role must be 'Reader', got ${JSON.stringify(opts.role)}`);
        const target = this.requireInstance(opts.targetInstance);
        meta.instanceId = target.id;
        meta.details = { sourceService, sourceInstance, role: 'Reader' };
        const existing = this.store.authorizations().find((a) => a.sourceService === sourceService && a.sourceInstance === sourceInstance && a.targetInstance === target.id && a.role === 'Reader');
        if (existing !== undefined) return existing;
        const record: Authorization = { id: randomUUID(), sourceService, sourceInstance, targetInstance: target.id, role: 'Reader', createdAtMs: this.clock.nowMs() };
        this.store.transact((tx) => tx.putAuthorization(record));
        meta.details.authorizationId = record.id;
        return record;
      }),
    );
  }

  /** Remove an authorization; later wrap, unwrap and registration requests it covered fail. */
  async revoke(id: string, options?: { initiator?: string }): Promise<Authorization> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR) };
    return this.exclusive(() =>
      this.audited('hs-crypto.authorizations.delete', meta, async () => {
        meta.initiator = checkText(optionsObject(options, 'revoke(id)').initiator, 'initiator', DEFAULT_INITIATOR);
        const authId = checkId(id, 'authorization id');
        const record = this.store.authorization(authId);
        if (record === undefined) throw new BlockvaultError('NOT_FOUND', `no authorization ${authId}; list them with listAuthorizations()`);
        meta.instanceId = record.targetInstance;
        meta.details = { authorizationId: authId, sourceService: record.sourceService, sourceInstance: record.sourceInstance };
        if (record.targetInstance === PLATFORM_INSTANCE_ID && record.sourceService === STORAGE_SERVICE_NAME) {
          invalid('the storage service\'s authorization on the platform instance is managed by blockvault and cannot be revoked');
        }
        this.store.transact((tx) => tx.removeAuthorization(authId));
        return record;
      }),
    );
  }

  async listAuthorizations(filter?: { targetInstance?: string; sourceService?: string }): Promise<Authorization[]> {
    this.assertOpen();
    const opts = optionsObject(filter, 'listAuthorizations({ targetInstance?, sourceService? })');
    return this.store
      .authorizations()
      .filter((a) => (opts.targetInstance === undefined || a.targetInstance === opts.targetInstance) && (opts.sourceService === undefined || a.sourceService === opts.sourceService))
      .sort((a, b) => a.createdAtMs - b.createdAtMs || a.id.localeCompare(b.id));
  }

  // -------------------------------------------------------------------------------------------
  // Registrations.

  /**
   * Record that a resource's data keys are wrapped by this key at `keyVersion`. Creating an
   * existing (key, resource) pair updates it (so a retried provisioning step is harmless).
   */
  async createRegistration(
    options: { keyCrn: string; resourceCrn: string; keyVersion: number; preventKeyDeletion?: boolean },
    ctx: CallerContext,
  ): Promise<Registration> {
    return this.writeRegistration('hs-crypto.registrations.create', options, ctx, true);
  }

  /** Change a registration's keyVersion (after a rewrap) or its preventKeyDeletion flag. */
  async updateRegistration(
    options: { keyCrn: string; resourceCrn: string; keyVersion?: number; preventKeyDeletion?: boolean },
    ctx: CallerContext,
  ): Promise<Registration> {
    return this.writeRegistration('hs-crypto.registrations.update', options, ctx, false);
  }

  /** Remove a registration (also allowed after the key was destroyed). NOT_FOUND when absent. */
  async deleteRegistration(keyCrn: string, resourceCrn: string, ctx: CallerContext): Promise<Registration> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: roughInitiator(ctx, 'unknown'), keyCrn: roughText(keyCrn), resourceCrn: roughText(resourceCrn) };
    return this.exclusive(() =>
      this.audited('hs-crypto.registrations.delete', meta, async () => {
        const { record, crn } = this.resolveKey(keyCrn);
        meta.keyCrn = crn;
        meta.initiator = this.checkAuthorized(ctx, record).initiator;
        parseCrn(resourceCrn);
        const existing = this.store.registration(record.id, resourceCrn);
        if (existing === undefined) throw new BlockvaultError('NOT_FOUND', `no registration of ${resourceCrn} against root key ${crn}`);
        this.store.transact((tx) => tx.removeRegistration(record.id, resourceCrn));
        return this.registrationInfo(existing, crn);
      }),
    );
  }

  /** Registrations by key, by resource, or all. */
  async listRegistrations(filter?: { keyCrn?: string; resourceCrn?: string }): Promise<Registration[]> {
    this.assertOpen();
    const opts = optionsObject(filter, 'listRegistrations({ keyCrn?, resourceCrn? })');
    let records: RegistrationRecord[];
    if (opts.keyCrn !== undefined) {
      const { record } = this.resolveKey(opts.keyCrn);
      records = this.store.registrationsOfKey(record.id);
    } else {
      records = this.store.registrations();
    }
    if (opts.resourceCrn !== undefined) {
      if (typeof opts.resourceCrn !== 'string') invalid('resourceCrn must be a CRN string');
      records = records.filter((r) => r.resourceCrn === opts.resourceCrn);
    }
    const crnOf = new Map<string, string>();
    return records.map((r) => {
      let crn = crnOf.get(r.keyId);
      if (crn === undefined) {
        const key = this.store.key(r.keyId);
        crn = key ? this.keyCrnOf(key) : r.keyId;
        crnOf.set(r.keyId, crn);
      }
      return this.registrationInfo(r, crn);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Internals.

  private assertOpen(): void {
    if (this.closed) throw new BlockvaultError('ENGINE_CLOSED', 'the HSM is closed; reopen the engine');
  }

  /** Run metadata-changing operations one at a time, in call order. */
  private exclusive<T>(run: () => Promise<T>): Promise<T> {
    const guarded = async (): Promise<T> => {
      this.assertOpen();
      return run();
    };
    const result = this.queue.then(guarded, guarded);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Append a success or failure event for `action` around `run` (which fills in `meta`). */
  private async audited<T>(action: string, meta: AuditMeta, run: () => Promise<T>): Promise<T> {
    let result: T;
    try {
      result = await run();
    } catch (error) {
      const code = isBlockvaultError(error) ? error.code : 'INTERNAL';
      try {
        await this.audit.append({ action, outcome: 'failure', code, reason: (error as Error).message, ...meta });
      } catch {
        // The failure itself is what the caller needs to see.
      }
      throw error;
    }
    await this.audit.append({ action, outcome: 'success', ...meta });
    return result;
  }

  private crn(instance: string, resourceType: string, resource: string): string {
    return formatCrn({ cloud: CRN_CLOUD, scope: CRN_SCOPE, service: HSM_SERVICE, region: CRN_REGION, account: this.account, instance, resourceType, resource });
  }

  private keyCrnOf(record: KeyRecord): string {
    return this.crn(record.instanceId, 'key', record.id);
  }

  private instanceInfo(record: InstanceRecord): HsmInstanceInfo {
    return { id: record.id, name: record.name, crn: this.crn(record.id, 'instance', record.id), createdAtMs: record.createdAtMs, platformManaged: record.platformManaged };
  }

  private registrationInfo(record: RegistrationRecord, keyCrn: string): Registration {
    return { keyCrn, resourceCrn: record.resourceCrn, keyVersion: record.keyVersion, preventKeyDeletion: record.preventKeyDeletion, createdAtMs: record.createdAtMs, updatedAtMs: record.updatedAtMs };
  }

  private tokenStatus(record: ImportTokenRecord): ImportTokenStatus {
    return { instanceId: record.instanceId, createdAtMs: record.createdAtMs, expiresAtMs: record.expiresAtMs, maxRetrievals: record.maxRetrievals, retrievals: record.retrievals };
  }

  /** A key CRN (never a bare id) that names a key of this HSM. */
  private resolveKey(text: unknown): { record: KeyRecord; crn: string } {
    const parsed = parseCrn(text, 'key');
    const ours = parsed.cloud === CRN_CLOUD && parsed.scope === CRN_SCOPE && parsed.service === HSM_SERVICE && parsed.region === CRN_REGION && parsed.account === this.account;
    const record = ours ? this.store.key(parsed.resource) : undefined;
    if (record === undefined || record.instanceId !== parsed.instance) {
      throw new BlockvaultError('NOT_FOUND', `no root key ${String(text)} in this HSM; list the keys with listKeys() and pass one's full CRN`);
    }
    return { record, crn: this.keyCrnOf(record) };
  }

  private requireInstance(instanceId: unknown): InstanceRecord {
    const id = checkId(instanceId, 'instanceId');
    const record = this.store.instance(id);
    if (record === undefined) throw new BlockvaultError('NOT_FOUND', `no HSM instance ${id}; create one with createInstance({ name }) or list them with listInstances()`);
    return record;
  }

  private requireCustomerInstance(instanceId: unknown): InstanceRecord {
    const record = this.requireInstance(instanceId);
    if (record.platformManaged) invalid(`the '${PLATFORM_INSTANCE_ID}' instance is managed by blockvault; use an instance of your own`);
    return record;
  }

  private ensurePlatformInstance(): InstanceRecord {
    const existing = this.store.instance(PLATFORM_INSTANCE_ID);
    if (existing !== undefined) return existing;
    const now = this.clock.nowMs();
    const instance: InstanceRecord = { id: PLATFORM_INSTANCE_ID, name: PLATFORM_INSTANCE_ID, createdAtMs: now, platformManaged: true };
    const grant: Authorization = { id: randomUUID(), sourceService: STORAGE_SERVICE_NAME, sourceInstance: '*', targetInstance: PLATFORM_INSTANCE_ID, role: 'Reader', createdAtMs: now };
    this.store.transact((tx) => {
      tx.putInstance(instance);
      tx.putAuthorization(grant);
    });
    return instance;
  }

  /** NOT_AUTHORIZED unless the caller's service holds a Reader authorization on the key's instance. */
  private checkAuthorized(ctx: unknown, record: KeyRecord): { initiator: string } {
    const caller = checkCaller(ctx);
    const granted = this.store
      .authorizations()
      .some((a) => a.sourceService === caller.sourceService && a.targetInstance === record.instanceId && a.role === 'Reader' && (a.sourceInstance === '*' || a.sourceInstance === caller.sourceInstance));
    if (!granted) {
      throw new BlockvaultError(
        'NOT_AUTHORIZED',
        `service '${caller.sourceService}'${caller.sourceInstance ? ` (instance ${caller.sourceInstance})` : ''} holds no Reader authorization on HSM instance ${record.instanceId}; grant one with hsm.authorize({ sourceService: '${caller.sourceService}', targetInstance: '${record.instanceId}', role: 'Reader' })`,
        { sourceService: caller.sourceService, targetInstance: record.instanceId },
      );
    }
    return { initiator: caller.initiator };
  }

  private currentVersion(record: KeyRecord): number {
    const current = record.versions[record.versions.length - 1];
    assert(current !== undefined, `root key ${record.id} has no versions`);
    return current.version;
  }

  /** A version that exists and still has material. */
  private liveVersion(record: KeyRecord, version: unknown, keyCrn: string): number {
    const wanted = checkVersion(version);
    const found = record.versions.find((v) => v.version === wanted);
    if (found === undefined) throw new BlockvaultError('NOT_FOUND', `root key ${keyCrn} has no version ${wanted} (its versions are 1 to ${this.currentVersion(record)}); pass the keyVersion that wrap returned`);
    if (found.destroyedAtMs !== null) throw new BlockvaultError('KEY_DESTROYED', `version ${wanted} of root key ${keyCrn} was destroyed`, { keyCrn });
    return wanted;
  }

  private newKeySpec(
    instanceId: string,
    options: { name?: unknown; dualAuthDelete?: unknown; rotationPolicy?: unknown; initiator?: unknown } | undefined,
    call: string,
    meta: AuditMeta,
  ): { instance: InstanceRecord; name: string; dualAuthDelete: boolean; rotationPolicy: RotationPolicy | null; platformManaged: boolean } {
    const opts = optionsObject(options, call);
    meta.initiator = checkText(opts.initiator, 'initiator', DEFAULT_INITIATOR);
    const instance = this.requireCustomerInstance(instanceId);
    meta.instanceId = instance.id;
    const name = checkName(opts.name, 'key name');
    const dualAuthDelete = checkBoolean(opts.dualAuthDelete, 'dualAuthDelete', false);
    const rotationPolicy = opts.rotationPolicy === undefined ? null : checkRotationPolicy(opts.rotationPolicy);
    if (this.store.keys().some((k) => k.instanceId === instance.id && k.name === name && k.state !== KeyState.Destroyed)) {
      throw new BlockvaultError('ALREADY_EXISTS', `instance ${instance.name} already has a root key named '${name}'; choose another name`);
    }
    meta.details = { name, dualAuthDelete, rotationPolicy };
    return { instance, name, dualAuthDelete, rotationPolicy, platformManaged: false };
  }

  /** Material first, then metadata: a crash in between leaves a stray file that recover() shreds. */
  private async addKey(
    spec: { instance: InstanceRecord; name: string; dualAuthDelete: boolean; rotationPolicy: RotationPolicy | null; platformManaged: boolean },
    source: { kind: 'create' } | { kind: 'import'; material: ImportMaterial },
    meta: AuditMeta,
    keyId: string = randomUUID(),
  ): Promise<RootKeyInfo> {
    const ref = { keyId, version: 1 };
    if (source.kind === 'create') await this.provider.create(ref);
    else await this.provider.import(ref, source.material);
    const now = this.clock.nowMs();
    const record: KeyRecord = {
      id: keyId,
      name: spec.name,
      instanceId: spec.instance.id,
      state: KeyState.Active,
      versions: [{ version: 1, createdAtMs: now, destroyedAtMs: null }],
      createdAtMs: now,
      rotatedAtMs: null,
      imported: source.kind === 'import',
      platformManaged: spec.platformManaged,
      dualAuthDelete: spec.dualAuthDelete,
      deletionAuthorizedBy: null,
      deletionAuthorizedAtMs: null,
      rotationPolicy: spec.rotationPolicy,
      destroyedAtMs: null,
      pendingDestroy: null,
    };
    try {
      this.store.transact((tx) => tx.putKey(record));
    } catch (error) {
      await this.provider.destroy(keyId, [1]);
      throw error;
    }
    const crn = this.keyCrnOf(record);
    meta.keyCrn = crn;
    meta.details = { ...meta.details, keyVersion: 1 };
    return toRootKeyInfo(record, crn, now);
  }

  private saveKey(record: KeyRecord): RootKeyInfo {
    this.store.transact((tx) => tx.putKey(record));
    return toRootKeyInfo(record, this.keyCrnOf(record), this.clock.nowMs());
  }

  private async usableToken(instanceId: unknown): Promise<ImportTokenRecord> {
    const instance = this.requireCustomerInstance(instanceId);
    const token = this.store.token(instance.id);
    if (token === undefined) throw new BlockvaultError('NOT_FOUND', `instance ${instance.id} has no import token; create one with createImportToken(instanceId)`);
    if (this.clock.nowMs() >= token.expiresAtMs) {
      await this.provider.destroyTransportKey(token.transportKeyId);
      throw new BlockvaultError('IMPORT_TOKEN_EXPIRED', `the import token of instance ${instance.id} expired at ${new Date(token.expiresAtMs).toISOString()}; create a new one with createImportToken`);
    }
    return token;
  }

  private async transition(
    crn: string,
    options: { initiator?: string } | undefined,
    operation: 'enable' | 'disable' | 'deactivate',
    to: KeyState,
    action: string,
  ): Promise<RootKeyInfo> {
    this.assertOpen();
    const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR), keyCrn: roughText(crn) };
    return this.exclusive(() =>
      this.audited(action, meta, async () => {
        meta.initiator = checkText(optionsObject(options, `${operation}Key(crn)`).initiator, 'initiator', DEFAULT_INITIATOR);
        const { record, crn: keyCrn } = this.resolveKey(crn);
        meta.keyCrn = keyCrn;
        assertStateAllows(record, operation, keyCrn);
        meta.details = { from: record.state, to };
        return this.saveKey({ ...record, state: to });
      }),
    );
  }

  private async rotateLocked(crn: string, opts: { material?: unknown; initiator?: unknown }, trigger: 'manual' | 'policy'): Promise<RootKeyInfo> {
    const meta: AuditMeta = { initiator: roughInitiator(opts, DEFAULT_INITIATOR), keyCrn: roughText(crn) };
    return this.audited('hs-crypto.secrets.rotate', meta, async () => {
      meta.initiator = checkText(opts.initiator, 'initiator', DEFAULT_INITIATOR);
      const { record, crn: keyCrn } = this.resolveKey(crn);
      meta.keyCrn = keyCrn;
      assertStateAllows(record, 'rotate', keyCrn);
      let material: ImportMaterial | undefined;
      if (opts.material !== undefined) {
        if (!record.imported) invalid(`root key ${keyCrn} was created in the HSM; it rotates with fresh HSM material, so do not pass material`);
        material = { material: checkBytes(opts.material, 'material', ROOT_KEY_BYTES, ROOT_KEY_BYTES) };
      } else if (record.imported) {
        invalid(`root key ${keyCrn} was imported: it rotates only with new material, rotateKey(crn, { material }) with 32 new bytes`);
      }
      const version = this.currentVersion(record) + 1;
      await this.provider.rotate({ keyId: record.id, version }, material);
      const now = this.clock.nowMs();
      const updated: KeyRecord = { ...record, versions: [...record.versions, { version, createdAtMs: now, destroyedAtMs: null }], rotatedAtMs: now };
      try {
        this.store.transact((tx) => tx.putKey(updated));
      } catch (error) {
        await this.provider.destroy(record.id, [version]);
        throw error;
      }
      meta.details = { keyVersion: version, previousVersion: version - 1, trigger, imported: record.imported };
      return toRootKeyInfo(updated, keyCrn, now);
    });
  }

  private async notifyRotated(info: RootKeyInfo, rewrapOnly: boolean): Promise<unknown[]> {
    if (!this.hooks.onRotated) return [];
    const tasks = await this.hooks.onRotated(info, { rewrapOnly });
    return Array.isArray(tasks) ? tasks : [];
  }

  /**
   * Intent first (pendingDestroy, so wrap/unwrap refuse at once and a crash is finished on the
   * next open), then the material, then the final Destroyed record.
   */
  private async destroyKeyMaterial(record: KeyRecord, pending: { force: boolean; initiator: string; affectedResources: string[] }): Promise<KeyRecord> {
    const versions = record.versions.filter((v) => v.destroyedAtMs === null).map((v) => v.version);
    const marked: KeyRecord = { ...record, pendingDestroy: { versions, ...pending } };
    this.store.transact((tx) => tx.putKey(marked));
    await this.provider.destroy(record.id, versions);
    const now = this.clock.nowMs();
    const destroyed: KeyRecord = {
      ...record,
      state: KeyState.Destroyed,
      versions: record.versions.map((v) => (v.destroyedAtMs === null ? { ...v, destroyedAtMs: now } : v)),
      destroyedAtMs: now,
      deletionAuthorizedBy: null,
      deletionAuthorizedAtMs: null,
      pendingDestroy: null,
    };
    this.store.transact((tx) => tx.putKey(destroyed));
    return destroyed;
  }

  /**
   * On open: finish destructions a crash interrupted, shred material files no live key version
   * owns (a crash between writing material and its metadata), and shred import-token keys whose
   * token is gone or expired.
   */
  private async recover(): Promise<void> {
    for (const record of this.store.keys()) {
      if (record.pendingDestroy === null) continue;
      const { force, initiator, affectedResources } = record.pendingDestroy;
      const destroyed = await this.destroyKeyMaterial(record, { force, initiator, affectedResources });
      const crn = this.keyCrnOf(destroyed);
      await this.audit.append({ action: 'hs-crypto.secrets.delete', initiator, keyCrn: crn, details: { force, affectedResources, resumedAfterRestart: true } });
      if (this.hooks.onDestroyed) await this.hooks.onDestroyed(toRootKeyInfo(destroyed, crn, this.clock.nowMs()), affectedResources);
    }
    const inventory = await this.provider.inventory();
    const live = new Set<string>();
    for (const record of this.store.keys()) {
      for (const v of record.versions) if (v.destroyedAtMs === null && record.state !== KeyState.Destroyed) live.add(`${record.id}/${v.version}`);
    }
    const strays = new Map<string, number[]>();
    for (const ref of inventory.keyVersions) {
      if (live.has(`${ref.keyId}/${ref.version}`)) continue;
      strays.set(ref.keyId, [...(strays.get(ref.keyId) ?? []), ref.version]);
    }
    for (const [keyId, versions] of strays) await this.provider.destroy(keyId, versions);
    const stored = new Set(inventory.keyVersions.map((r) => `${r.keyId}/${r.version}`));
    for (const id of live) {
      if (!stored.has(id)) process.emitWarning(`blockvault HSM: the sealed material of root key version ${id} is missing from ${'<dir>/hsm/keys'}; operations with it will fail until it is restored`);
    }
    const now = this.clock.nowMs();
    const tokens = new Map(this.store.tokens().map((t) => [t.transportKeyId, t]));
    for (const transportKeyId of inventory.transportKeyIds) {
      const token = tokens.get(transportKeyId);
      if (token === undefined || now >= token.expiresAtMs) await this.provider.destroyTransportKey(transportKeyId);
    }
  }

  private async writeRegistration(
    action: string,
    options: { keyCrn: string; resourceCrn: string; keyVersion?: number; preventKeyDeletion?: boolean },
    ctx: CallerContext,
    create: boolean,
  ): Promise<Registration> {
    this.assertOpen();
    const raw = options as { keyCrn?: unknown; resourceCrn?: unknown } | undefined;
    const meta: AuditMeta = { initiator: roughInitiator(ctx, 'unknown'), keyCrn: roughText(raw?.keyCrn), resourceCrn: roughText(raw?.resourceCrn) };
    return this.exclusive(() =>
      this.audited(action, meta, async () => {
        const opts = optionsObject(options, `${create ? 'create' : 'update'}Registration({ keyCrn, resourceCrn, keyVersion, preventKeyDeletion? }, ctx)`);
        const { record, crn } = this.resolveKey(opts.keyCrn);
        meta.keyCrn = crn;
        meta.initiator = this.checkAuthorized(ctx, record).initiator;
        parseCrn(opts.resourceCrn);
        const resourceCrn = opts.resourceCrn as string;
        assertStateAllows(record, 'register a resource', crn);
        const existing = this.store.registration(record.id, resourceCrn);
        if (!create && existing === undefined) {
          throw new BlockvaultError('NOT_FOUND', `no registration of ${resourceCrn} against root key ${crn}; create it with createRegistration`);
        }
        if (create && opts.keyVersion === undefined) invalid('createRegistration needs keyVersion: the version its data key was wrapped under');
        const keyVersion = opts.keyVersion === undefined ? (existing as RegistrationRecord).keyVersion : this.liveVersion(record, opts.keyVersion, crn);
        const preventKeyDeletion = checkBoolean(opts.preventKeyDeletion, 'preventKeyDeletion', existing?.preventKeyDeletion ?? false);
        const now = this.clock.nowMs();
        const updated: RegistrationRecord = { keyId: record.id, resourceCrn, keyVersion, preventKeyDeletion, createdAtMs: existing?.createdAtMs ?? now, updatedAtMs: now };
        this.store.transact((tx) => tx.putRegistration(updated));
        meta.details = { keyVersion, preventKeyDeletion, ...(existing !== undefined ? { previousKeyVersion: existing.keyVersion } : {}) };
        return this.registrationInfo(updated, crn);
      }),
    );
  }
}
