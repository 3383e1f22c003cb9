import { join } from 'node:path';
import type { RootDatabase } from 'lmdb';
import type { AuditLog } from '../audit/audit-log.js';
import { systemClock, type Clock } from '../clock.js';
import type { BlockvaultError } from '../errors.js';
import * as cryptoOps from './crypto-ops.js';
import * as deletion from './deletion.js';
import { HsmCore } from './hsm-core.js';
import * as tokens from './import-tokens.js';
import * as instances from './instances.js';
import { keystoreExists, openMasterKey } from './master-key.js';
import { MetadataStore } from './metadata-store.js';
import { deriveRecordKey } from '../util/record-mac.js';
import type { KeyProvider } from './provider.js';
import { Pkcs11KeyProvider, pkcs11MarkerExists, resolvePkcs11Options, type Pkcs11Options } from './pkcs11/index.js';
import { recover } from './recovery.js';
import * as registrations from './registrations.js';
import * as rootKeys from './root-keys.js';
import * as rotation from './rotation.js';
import { SoftwareKeyProvider } from './software-provider.js';
import { invalid, optionsObject } from './validate.js';
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

export { HSM_SERVICE, PLATFORM_INSTANCE_ID, STORAGE_SERVICE_NAME } from './hsm-core.js';

export interface SoftHsmOptions {
  /** The LMDB root database of the engine directory (the HSM opens its own sub-database in it). */
  root: RootDatabase;
  /** The engine directory; sealed material goes to `<dir>/hsm/`. */
  dir: string;
  /** Exactly one of passphrase, keyFile (a file of 32 random bytes, or 64 hex digits) and pkcs11. */
  passphrase?: string;
  keyFile?: string;
  /** Keep root keys on a PKCS#11 token instead of the software keystore (src/hsm/pkcs11). */
  pkcs11?: Pkcs11Options;
  clock?: Clock;
  audit: AuditLog;
  hooks?: HsmHooks;
  /** The account in key CRNs (a/<account>); 'default' unless given. */
  account?: string;
  /** scrypt cost N for a new keystore (default 2^15; tests use less). */
  scryptN?: number;
  /** Replace the software key provider (for example with a PKCS#11 one). */
  createProvider?: (args: { hsmDir: string; masterKey: Uint8Array }) => KeyProvider;
}

/**
 * The software HSM (DESIGN.md, "Key hierarchy"): HSM instances, root keys and their states,
 * authorizations, registrations, import tokens, rotation policies and dual-authorization
 * deletion, with every operation in the audit log. Root-key material is reached only through a
 * KeyProvider; no method returns it. `engine.hsm` is this object.
 *
 * Concurrency: operations that change metadata run one at a time (an async mutex); wrap, unwrap
 * and rewrap only read metadata and do not queue behind them. Hooks are called outside the
 * mutex, so a hook may call back into the HSM.
 */
export class SoftHsm {
  private constructor(
    private readonly core: HsmCore,
    /** The provider's metadata key; zeroized on close. */
    private readonly metadataKey: Buffer,
    /** Hooks were given to open: setHooks refuses. */
    private readonly hooksFinal: boolean,
  ) {}

  /**
   * A 32-byte key for authenticating records of one kind outside the HSM (the engine's volume
   * records), derived from the HSM's metadata key: only whoever holds the master key or the token
   * can make a record that verifies. The caller zeroizes it.
   */
  recordKey(purpose: string): Buffer {
    this.core.assertOpen();
    if (typeof purpose !== 'string' || !/^[a-z][a-z0-9-]{0,63}$/.test(purpose) || purpose === 'hsm-metadata') invalid(`recordKey purpose must be a lower-case name other than 'hsm-metadata', got ${JSON.stringify(purpose)}`);
    return deriveRecordKey(this.metadataKey, purpose);
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
    // A keystore is created only for an HSM that holds nothing; otherwise a missing one is an error.
    const create = !keystoreExists(hsmDir) && store.isEmpty();
    const source = {
      ...(options.passphrase !== undefined ? { passphrase: options.passphrase } : {}),
      ...(options.keyFile !== undefined ? { keyFile: options.keyFile } : {}),
      ...(options.scryptN !== undefined ? { scryptN: options.scryptN } : {}),
    };
    let provider: KeyProvider;
    if (options.pkcs11 !== undefined) {
      if (options.passphrase !== undefined || options.keyFile !== undefined) invalid('give the HSM either pkcs11 or a passphrase / keyFile, not both');
      const pkcs11 = resolvePkcs11Options(options.pkcs11);
      if (keystoreExists(hsmDir)) invalid(`${hsmDir} keeps its root keys in the software keystore (keystore.json); open it with hsm.passphrase or hsm.keyFile, not hsm.pkcs11`);
      // Not `!pkcs11MarkerExists(hsmDir) && ...` as for the keystore: a first open writes the marker
      // and then makes the metadata key on the token, and a crash between the two leaves a marker
      // whose namespace has no metadata key. While the metadata store is empty nothing depends on
      // that key yet, so the open completes the first one (test/hsm/pkcs11-crash.test.ts).
      provider = await Pkcs11KeyProvider.open({ hsmDir, pkcs11, create: store.isEmpty(), nowMs: clock.nowMs() });
    } else {
      if (pkcs11MarkerExists(hsmDir)) invalid(`${hsmDir} keeps its root keys on a PKCS#11 token (pkcs11.json); open it with hsm.pkcs11 { module, slot | tokenLabel, pin }`);
      const masterKey = await openMasterKey(hsmDir, source, { create, nowMs: clock.nowMs() });
      try {
        provider = options.createProvider ? options.createProvider({ hsmDir, masterKey }) : new SoftwareKeyProvider({ hsmDir, masterKey });
      } finally {
        masterKey.fill(0);
      }
    }
    let metadataKey: Buffer;
    try {
      const fromProvider = await provider.metadataKey();
      metadataKey = Buffer.from(fromProvider);
      fromProvider.fill(0);
      const storeKey = deriveRecordKey(metadataKey, 'hsm-metadata');
      store.authenticate(storeKey); // KEYSTORE_CORRUPT for an edited record, before anything trusts one
      storeKey.fill(0);
    } catch (error) {
      await provider.close();
      throw error;
    }
    const core = new HsmCore(store, provider, audit, clock, account, options.hooks ?? {});
    const hsm = new SoftHsm(core, metadataKey, options.hooks !== undefined);
    try {
      await recover(core);
    } catch (error) {
      await hsm.close();
      throw error;
    }
    return hsm;
  }

  /**
   * Set the hooks of an HSM opened without any (test harnesses). Hooks given to open are final:
   * an engine's hooks lock volumes when their key is destroyed (cryptoshred), so replacing them
   * through engine.hsm would quietly turn that off.
   */
  setHooks(hooks: HsmHooks): void {
    if (hooks === null || typeof hooks !== 'object') invalid('hooks must be an object');
    if (this.hooksFinal) invalid('this HSM was opened with its hooks (an engine\'s cryptoshred and rotation hooks); they cannot be replaced');
    this.core.hooks = hooks;
  }

  /** Zeroize all material in memory once pending metadata operations finish. Idempotent. */
  async close(): Promise<void> {
    if (this.core.closed) return;
    await this.core.exclusive(async () => {
      this.core.closed = true;
    });
    this.metadataKey.fill(0);
    await this.core.provider.close();
  }

  // Instances and authorizations.

  async createInstance(options: { name: string; initiator?: string }): Promise<HsmInstanceInfo> {
    this.core.assertOpen();
    return instances.createInstance(this.core, options);
  }

  async listInstances(): Promise<HsmInstanceInfo[]> {
    this.core.assertOpen();
    return instances.listInstances(this.core);
  }

  async getInstance(instanceId: string): Promise<HsmInstanceInfo> {
    this.core.assertOpen();
    return this.core.instanceInfo(this.core.requireInstance(instanceId));
  }

  /** Let a service (all its instances by default, or one) use an instance's keys. Idempotent. */
  async authorize(options: { sourceService: string; sourceInstance?: string; targetInstance: string; role: 'Reader'; initiator?: string }): Promise<Authorization> {
    this.core.assertOpen();
    return instances.authorize(this.core, options);
  }

  /** Remove an authorization; later wrap, unwrap and registration requests it covered fail. */
  async revoke(id: string, options?: { initiator?: string }): Promise<Authorization> {
    this.core.assertOpen();
    return instances.revoke(this.core, id, options);
  }

  async listAuthorizations(filter?: { targetInstance?: string; sourceService?: string }): Promise<Authorization[]> {
    this.core.assertOpen();
    return instances.listAuthorizations(this.core, filter);
  }

  // Root keys.

  async createRootKey(instanceId: string, options: rootKeys.NewKeyOptions): Promise<RootKeyInfo> {
    this.core.assertOpen();
    return rootKeys.createRootKey(this.core, instanceId, options);
  }

  /** BYOK: 32 bytes of caller material become a new root key. The caller zeroizes its copy. */
  async importRootKey(instanceId: string, options: rootKeys.NewKeyOptions & { material: Uint8Array }): Promise<RootKeyInfo> {
    this.core.assertOpen();
    return rootKeys.importRootKey(this.core, instanceId, options);
  }

  /** A new import token (replacing any previous one); its public key comes from getImportToken. */
  async createImportToken(instanceId: string, options?: { expiresInMs?: number; maxRetrievals?: number; initiator?: string }): Promise<ImportTokenStatus> {
    this.core.assertOpen();
    return tokens.createImportToken(this.core, instanceId, options);
  }

  /** The import token with its public key; counts a retrieval. Expired or used up: IMPORT_TOKEN_EXPIRED. */
  async getImportToken(instanceId: string, options?: { initiator?: string }): Promise<ImportTokenInfo> {
    this.core.assertOpen();
    return tokens.getImportToken(this.core, instanceId, options);
  }

  /** Secure BYOK: the 32-byte material RSA-OAEP-SHA256-encrypted to the import token's public key. */
  async importRootKeyWithToken(instanceId: string, options: rootKeys.NewKeyOptions & { encryptedMaterial: Uint8Array }): Promise<RootKeyInfo> {
    this.core.assertOpen();
    return tokens.importRootKeyWithToken(this.core, instanceId, options);
  }

  /** A random platform-managed key in the internal 'platform' instance ('blockvault' is authorized on it). */
  async createPlatformKey(): Promise<RootKeyInfo> {
    this.core.assertOpen();
    return rootKeys.createPlatformKey(this.core);
  }

  async getKey(crn: string): Promise<RootKeyInfo> {
    this.core.assertOpen();
    return this.core.keyInfo(this.core.resolveKey(crn).record);
  }

  async listKeys(filter?: { instanceId?: string }): Promise<RootKeyInfo[]> {
    this.core.assertOpen();
    return rootKeys.listKeys(this.core, filter);
  }

  // Wrap, unwrap, rewrap (AES-KWP, RFC 5649).

  /** Wrap a data key under the current version (Active keys; Reader authorization needed). */
  async wrap(crn: string, plaintext: Uint8Array, ctx: CallerContext): Promise<WrapResult> {
    this.core.assertOpen();
    return cryptoOps.wrap(this.core, crn, plaintext, ctx);
  }

  /** Unwrap under `version`; older versions work and set rewrapRecommended (Active or Deactivated keys). */
  async unwrap(crn: string, wrapped: Uint8Array, version: number, ctx: CallerContext): Promise<UnwrapResult> {
    this.core.assertOpen();
    return cryptoOps.unwrap(this.core, crn, wrapped, version, ctx);
  }

  /**
   * Synchronously, without touching material: the error an unwrap by `ctx` under `crn` would fail
   * with right now (KEY_DESTROYED, KEY_STATE, NOT_AUTHORIZED, NOT_FOUND), or null. The engine asks
   * this whenever hooks.onAccessChanged fires, to cut off or resume volumes that are open.
   */
  keyAccessError(crn: string, ctx: CallerContext): BlockvaultError | null {
    return cryptoOps.accessError(this.core, crn, ctx);
  }

  /** Unwrap under `version`, wrap under the current one; the data key stays inside the HSM. */
  async rewrap(crn: string, wrapped: Uint8Array, version: number, ctx: CallerContext): Promise<WrapResult> {
    this.core.assertOpen();
    return cryptoOps.rewrap(this.core, crn, wrapped, version, ctx);
  }

  // Rotation.

  /**
   * A new key version (Active keys only): fresh HSM material, or for imported keys the new
   * `material` (required for them). Returns what hooks.onRotated returns, [] without that hook.
   */
  async rotateKey(crn: string, options?: { material?: Uint8Array; rewrapOnly?: boolean; initiator?: string }): Promise<unknown[]> {
    this.core.assertOpen();
    const opts = optionsObject(options, 'rotateKey(crn, { material?, rewrapOnly? })');
    // rotateLocked validates every option (rewrapOnly included) inside its audit record.
    const info = await this.core.exclusive(() => rotation.rotateLocked(this.core, crn, opts, 'manual'));
    return rotation.notifyRotated(this.core, info, opts.rewrapOnly === true);
  }

  /** Set, or with null remove, the rotation policy (an interval of at least one hour). */
  async setRotationPolicy(crn: string, policy: RotationPolicy | null, options?: { initiator?: string }): Promise<RootKeyInfo> {
    this.core.assertOpen();
    return rootKeys.setRotationPolicy(this.core, crn, policy, options);
  }

  /** Rotate every Active, HSM-generated key whose policy is due by the clock; imported ones are reported as skipped. */
  async runScheduler(): Promise<RotationSchedulerResult> {
    this.core.assertOpen();
    return rotation.runScheduler(this.core);
  }

  // States.

  /** Suspended -> Active. */
  async enableKey(crn: string, options?: { initiator?: string }): Promise<RootKeyInfo> {
    this.core.assertOpen();
    return rootKeys.transition(this.core, crn, options, 'enable', KeyState.Active);
  }

  /** Active -> Suspended: no wrap, unwrap or rewrap until enabled again. */
  async disableKey(crn: string, options?: { initiator?: string }): Promise<RootKeyInfo> {
    this.core.assertOpen();
    return rootKeys.transition(this.core, crn, options, 'disable', KeyState.Suspended);
  }

  /** Active -> Deactivated: unwrap and rewrap only, for good. */
  async deactivateKey(crn: string, options?: { initiator?: string }): Promise<RootKeyInfo> {
    this.core.assertOpen();
    return rootKeys.transition(this.core, crn, options, 'deactivate', KeyState.Deactivated);
  }

  // Deletion.

  /** Turn on dual authorization for deletion (it cannot be turned off). */
  async setDualAuthDelete(crn: string, options: { enabled: boolean; initiator?: string }): Promise<RootKeyInfo> {
    this.core.assertOpen();
    return rootKeys.setDualAuthDelete(this.core, crn, options);
  }

  /** Dual authorization, step one: who authorizes the deletion (valid 7 days). */
  async setKeyForDeletion(crn: string, options: { initiator: string }): Promise<RootKeyInfo> {
    this.core.assertOpen();
    return deletion.setKeyForDeletion(this.core, crn, options);
  }

  async unsetKeyForDeletion(crn: string, options: { initiator: string }): Promise<RootKeyInfo> {
    this.core.assertOpen();
    return deletion.unsetKeyForDeletion(this.core, crn, options);
  }

  /**
   * Destroy every version's material (overwritten in the keystore, zeroized in memory); metadata
   * stays readable. KEY_IN_USE while registrations exist unless `force` (cryptoshredding: the
   * result lists the resources); KEY_DELETION_PREVENTED if any registration prevents it, even
   * with force. hooks.onDestroyed runs before this returns.
   */
  async deleteKey(crn: string, options?: { force?: boolean; initiator?: string }): Promise<DeleteKeyResult> {
    this.core.assertOpen();
    return deletion.deleteKey(this.core, crn, options);
  }

  // Registrations.

  /** Record that a resource's data keys are wrapped by the key at keyVersion (an existing pair is updated). */
  async createRegistration(options: { keyCrn: string; resourceCrn: string; keyVersion: number; preventKeyDeletion?: boolean }, ctx: CallerContext): Promise<Registration> {
    this.core.assertOpen();
    return registrations.writeRegistration(this.core, options, ctx, true);
  }

  /** Change keyVersion (after a rewrap) or preventKeyDeletion. */
  async updateRegistration(options: { keyCrn: string; resourceCrn: string; keyVersion?: number; preventKeyDeletion?: boolean }, ctx: CallerContext): Promise<Registration> {
    this.core.assertOpen();
    return registrations.writeRegistration(this.core, options, ctx, false);
  }

  /** Remove a registration (also after the key was destroyed); NOT_FOUND when absent. */
  async deleteRegistration(keyCrn: string, resourceCrn: string, ctx: CallerContext): Promise<Registration> {
    this.core.assertOpen();
    return registrations.deleteRegistration(this.core, keyCrn, resourceCrn, ctx);
  }

  async listRegistrations(filter?: { keyCrn?: string; resourceCrn?: string }): Promise<Registration[]> {
    this.core.assertOpen();
    return registrations.listRegistrations(this.core, filter);
  }
}
