import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import { formatCrn, parseCrn } from '../crn.js';
import { BlockvaultError, assert, isBlockvaultError } from '../errors.js';
import { toRootKeyInfo } from './key-info.js';
import type { InstanceRecord, KeyRecord, MetadataStore, PendingDestroy, RegistrationRecord } from './metadata-store.js';
import type { KeyProvider } from './provider.js';
import { checkCaller, checkId, checkVersion, invalid } from './validate.js';
import type { HsmHooks, HsmInstanceInfo, Registration, RootKeyInfo } from './types.js';

/** The CRN fields of this HSM: crn:v1:local:private:blockvault-hsm:local:a/<account>:<instance>:key:<id>. */
export const HSM_SERVICE = 'blockvault-hsm';
const CRN_CLOUD = 'local';
const CRN_SCOPE = 'private';
const CRN_REGION = 'local';
/** The storage service's name in caller contexts and authorizations. */
export const STORAGE_SERVICE_NAME = 'blockvault';
/** The internal instance that holds platform-managed root keys. */
export const PLATFORM_INSTANCE_ID = 'platform';
/** Who an administrative operation is attributed to when the caller names nobody. */
export const DEFAULT_INITIATOR = 'operator';
export const ROOT_KEY_BYTES = 32;

/** What an operation tells the audit log about itself; filled in as the operation learns it. */
export interface AuditMeta {
  initiator: string;
  keyCrn?: string | null;
  instanceId?: string | null;
  resourceCrn?: string | null;
  details?: Record<string, unknown>;
}

/** Best-effort text for the audit record of a request that may be malformed. */
export const roughText = (value: unknown): string | null => (typeof value === 'string' ? value.slice(0, 512) : null);

/** Best-effort initiator (options.initiator, else ctx.sourceService) before the input is validated. */
export function roughInitiator(value: unknown, fallback: string): string {
  const initiator = (value as { initiator?: unknown } | null | undefined)?.initiator;
  if (typeof initiator === 'string' && initiator.length > 0) return initiator.slice(0, 256);
  const service = (value as { sourceService?: unknown } | null | undefined)?.sourceService;
  return typeof service === 'string' && service.length > 0 ? service.slice(0, 256) : fallback;
}

/**
 * The state every HSM operation shares: metadata, the key provider, the audit log, the clock,
 * the hooks, and the mutex that runs metadata-changing operations one at a time. The operation
 * modules (instances, keys, deletion, crypto, registrations, import tokens) are functions over it;
 * SoftHsm is the public face.
 */
export class HsmCore {
  closed = false;
  private queue: Promise<unknown> = Promise.resolve();
  /**
   * Keys whose deletion was called but whose destruction is not durable yet (deletion.ts): every
   * lookup sees them as pendingDestroy, so they refuse all use from the moment deleteKey is called.
   */
  private readonly doomed = new Map<string, PendingDestroy>();

  constructor(
    readonly store: MetadataStore,
    readonly provider: KeyProvider,
    readonly audit: AuditLog,
    readonly clock: Clock,
    readonly account: string,
    public hooks: HsmHooks,
  ) {
    // Every committed metadata change may change who can use which key (state, authorization).
    store.onCommit = (changed) => {
      if (this.hooks.onAccessChanged === undefined || (changed.keys.length === 0 && !changed.authorizations)) return;
      this.hooks.onAccessChanged({ keyCrns: changed.keys.map((k) => this.keyCrnOf(k)), authorizations: changed.authorizations });
    };
  }

  /** Make a key unusable in memory now, ahead of its durable destruction. */
  doom(keyId: string, pending: PendingDestroy): void {
    this.doomed.set(keyId, pending);
  }

  /** The destruction is durable: the record itself says Destroyed from here. */
  undoom(keyId: string): void {
    this.doomed.delete(keyId);
  }

  /** The key record as every operation must see it: a doomed key is pendingDestroy. */
  key(keyId: string): KeyRecord | undefined {
    const record = this.store.key(keyId);
    const pending = this.doomed.get(keyId);
    if (record === undefined || pending === undefined || record.pendingDestroy !== null) return record;
    return { ...record, pendingDestroy: pending };
  }

  assertOpen(): void {
    if (this.closed) throw new BlockvaultError('ENGINE_CLOSED', 'the HSM is closed; reopen the engine');
  }

  /** Run metadata-changing operations one at a time, in call order. */
  exclusive<T>(run: () => Promise<T>): Promise<T> {
    const guarded = async (): Promise<T> => {
      this.assertOpen();
      return run();
    };
    const result = this.queue.then(guarded, guarded);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Append a success or failure event for `action` around `run` (which fills in `meta`). */
  async audited<T>(action: string, meta: AuditMeta, run: () => Promise<T>): Promise<T> {
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

  crn(instance: string, resourceType: string, resource: string): string {
    return formatCrn({ cloud: CRN_CLOUD, scope: CRN_SCOPE, service: HSM_SERVICE, region: CRN_REGION, account: this.account, instance, resourceType, resource });
  }

  keyCrnOf(record: KeyRecord): string {
    return this.crn(record.instanceId, 'key', record.id);
  }

  keyInfo(record: KeyRecord): RootKeyInfo {
    return toRootKeyInfo(record, this.keyCrnOf(record), this.clock.nowMs());
  }

  instanceInfo(record: InstanceRecord): HsmInstanceInfo {
    return { id: record.id, name: record.name, crn: this.crn(record.id, 'instance', record.id), createdAtMs: record.createdAtMs, platformManaged: record.platformManaged };
  }

  registrationInfo(record: RegistrationRecord, keyCrn: string): Registration {
    return { keyCrn, resourceCrn: record.resourceCrn, keyVersion: record.keyVersion, preventKeyDeletion: record.preventKeyDeletion, createdAtMs: record.createdAtMs, updatedAtMs: record.updatedAtMs };
  }

  /** A key CRN (never a bare id: INVALID_CRN) that names a key of this HSM (else NOT_FOUND). */
  resolveKey(text: unknown): { record: KeyRecord; crn: string } {
    const parsed = parseCrn(text, 'key');
    const ours = parsed.cloud === CRN_CLOUD && parsed.scope === CRN_SCOPE && parsed.service === HSM_SERVICE && parsed.region === CRN_REGION && parsed.account === this.account;
    const record = ours ? this.key(parsed.resource) : undefined;
    if (record === undefined || record.instanceId !== parsed.instance) {
      throw new BlockvaultError('NOT_FOUND', `no root key ${String(text)} in this HSM; list the keys with listKeys() and pass one's full CRN`);
    }
    return { record, crn: this.keyCrnOf(record) };
  }

  requireInstance(instanceId: unknown): InstanceRecord {
    const id = checkId(instanceId, 'instanceId');
    const record = this.store.instance(id);
    if (record === undefined) throw new BlockvaultError('NOT_FOUND', `no HSM instance ${id}; create one with createInstance({ name }) or list them with listInstances()`);
    return record;
  }

  /** An instance the customer owns (not the internal platform instance). */
  requireCustomerInstance(instanceId: unknown): InstanceRecord {
    const record = this.requireInstance(instanceId);
    if (record.platformManaged) invalid(`the '${PLATFORM_INSTANCE_ID}' instance is managed by blockvault; use an instance of your own`);
    return record;
  }

  /** NOT_AUTHORIZED unless the caller's service holds a Reader authorization on the key's instance. */
  checkAuthorized(ctx: unknown, record: KeyRecord): { initiator: string } {
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

  /**
   * The key a service asks to use, for an audited operation: resolves the CRN, records the
   * resolved CRN in `meta` before the authorization check (so a NOT_AUTHORIZED refusal is
   * logged against the key), then records the caller's initiator.
   */
  resolveAuthorizedKey(text: unknown, ctx: unknown, meta: AuditMeta): { record: KeyRecord; crn: string } {
    const resolved = this.resolveKey(text);
    meta.keyCrn = resolved.crn;
    meta.initiator = this.checkAuthorized(ctx, resolved.record).initiator;
    return resolved;
  }

  currentVersion(record: KeyRecord): number {
    const current = record.versions[record.versions.length - 1];
    assert(current !== undefined, `root key ${record.id} has no versions`);
    return current.version;
  }

  /** A version that exists and still has material. */
  liveVersion(record: KeyRecord, version: unknown, keyCrn: string): number {
    const wanted = checkVersion(version);
    const found = record.versions.find((v) => v.version === wanted);
    if (found === undefined) {
      throw new BlockvaultError('NOT_FOUND', `root key ${keyCrn} has no version ${wanted} (its versions are 1 to ${this.currentVersion(record)}); pass the keyVersion that wrap returned`);
    }
    if (found.destroyedAtMs !== null) throw new BlockvaultError('KEY_DESTROYED', `version ${wanted} of root key ${keyCrn} was destroyed`, { keyCrn });
    return wanted;
  }

  saveKey(record: KeyRecord): RootKeyInfo {
    this.store.transact((tx) => tx.putKey(record));
    return this.keyInfo(record);
  }
}
