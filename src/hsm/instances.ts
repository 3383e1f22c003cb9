import { randomUUID } from 'node:crypto';
import { BlockvaultError } from '../errors.js';
import { DEFAULT_INITIATOR, PLATFORM_INSTANCE_ID, STORAGE_SERVICE_NAME, roughInitiator, type AuditMeta, type HsmCore } from './hsm-core.js';
import type { InstanceRecord } from './metadata-store.js';
import { checkId, checkName, checkService, checkText, invalid, optionsObject } from './validate.js';
import type { Authorization, HsmInstanceInfo } from './types.js';

/** HSM instances and the authorizations that let a service use an instance's keys. */

export async function createInstance(core: HsmCore, options: { name: string; initiator?: string }): Promise<HsmInstanceInfo> {
  const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR) };
  return core.exclusive(() =>
    core.audited('hs-crypto.instances.create', meta, async () => {
      const opts = optionsObject(options, 'createInstance({ name })');
      meta.initiator = checkText(opts.initiator, 'initiator', DEFAULT_INITIATOR);
      const name = checkName(opts.name, 'instance name');
      if (name === PLATFORM_INSTANCE_ID) throw new BlockvaultError('ALREADY_EXISTS', `the instance name '${PLATFORM_INSTANCE_ID}' is reserved for platform-managed keys; choose another`);
      if (core.store.instances().some((i) => i.name === name)) throw new BlockvaultError('ALREADY_EXISTS', `an HSM instance named '${name}' exists already; choose another name or use it`);
      const record: InstanceRecord = { id: randomUUID(), name, createdAtMs: core.clock.nowMs(), platformManaged: false };
      core.store.transact((tx) => tx.putInstance(record));
      meta.instanceId = record.id;
      meta.details = { name };
      return core.instanceInfo(record);
    }),
  );
}

export function listInstances(core: HsmCore): HsmInstanceInfo[] {
  return core.store
    .instances()
    .sort((a, b) => a.createdAtMs - b.createdAtMs || a.id.localeCompare(b.id))
    .map((r) => core.instanceInfo(r));
}

/** The internal 'platform' instance, created with the storage service's authorization on first use. */
export function ensurePlatformInstance(core: HsmCore): InstanceRecord {
  const existing = core.store.instance(PLATFORM_INSTANCE_ID);
  if (existing !== undefined) return existing;
  const now = core.clock.nowMs();
  const instance: InstanceRecord = { id: PLATFORM_INSTANCE_ID, name: PLATFORM_INSTANCE_ID, createdAtMs: now, platformManaged: true };
  const grant: Authorization = { id: randomUUID(), sourceService: STORAGE_SERVICE_NAME, sourceInstance: '*', targetInstance: PLATFORM_INSTANCE_ID, role: 'Reader', createdAtMs: now };
  core.store.transact((tx) => {
    tx.putInstance(instance);
    tx.putAuthorization(grant);
  });
  return instance;
}

export async function authorize(
  core: HsmCore,
  options: { sourceService: string; sourceInstance?: string; targetInstance: string; role: 'Reader'; initiator?: string },
): Promise<Authorization> {
  const meta: AuditMeta = { initiator: roughInitiator({ initiator: (options as { initiator?: unknown } | null | undefined)?.initiator }, DEFAULT_INITIATOR) };
  return core.exclusive(() =>
    core.audited('hs-crypto.authorizations.create', meta, async () => {
      const opts = optionsObject(options, "authorize({ sourceService, sourceInstance?, targetInstance, role: 'Reader' })");
      meta.initiator = checkText(opts.initiator, 'initiator', DEFAULT_INITIATOR);
      const sourceService = checkService(opts.sourceService, 'sourceService');
      const sourceInstance = checkText(opts.sourceInstance, 'sourceInstance', '*');
      if (opts.role !== 'Reader') invalid(`role must be 'Reader', got ${JSON.stringify(opts.role)}`);
      const target = core.requireInstance(opts.targetInstance);
      meta.instanceId = target.id;
      meta.details = { sourceService, sourceInstance, role: 'Reader' };
      const existing = core.store
        .authorizations()
        .find((a) => a.sourceService === sourceService && a.sourceInstance === sourceInstance && a.targetInstance === target.id && a.role === 'Reader');
      if (existing !== undefined) return existing;
      const record: Authorization = { id: randomUUID(), sourceService, sourceInstance, targetInstance: target.id, role: 'Reader', createdAtMs: core.clock.nowMs() };
      core.store.transact((tx) => tx.putAuthorization(record));
      meta.details.authorizationId = record.id;
      return record;
    }),
  );
}

export async function revoke(core: HsmCore, id: string, options?: { initiator?: string }): Promise<Authorization> {
  const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR) };
  return core.exclusive(() =>
    core.audited('hs-crypto.authorizations.delete', meta, async () => {
      meta.initiator = checkText(optionsObject(options, 'revoke(id)').initiator, 'initiator', DEFAULT_INITIATOR);
      const authId = checkId(id, 'authorization id');
      const record = core.store.authorization(authId);
      if (record === undefined) throw new BlockvaultError('NOT_FOUND', `no authorization ${authId}; list them with listAuthorizations()`);
      meta.instanceId = record.targetInstance;
      meta.details = { authorizationId: authId, sourceService: record.sourceService, sourceInstance: record.sourceInstance };
      if (record.targetInstance === PLATFORM_INSTANCE_ID && record.sourceService === STORAGE_SERVICE_NAME) {
        invalid("the storage service's authorization on the platform instance is managed by blockvault and cannot be revoked");
      }
      core.store.transact((tx) => tx.removeAuthorization(authId));
      return record;
    }),
  );
}

export function listAuthorizations(core: HsmCore, filter?: { targetInstance?: string; sourceService?: string }): Authorization[] {
  const opts = optionsObject(filter, 'listAuthorizations({ targetInstance?, sourceService? })');
  for (const name of ['targetInstance', 'sourceService'] as const) {
    if (opts[name] !== undefined && typeof opts[name] !== 'string') invalid(`listAuthorizations: ${name} must be a string, got ${typeof opts[name]}`);
  }
  return core.store
    .authorizations()
    .filter((a) => (opts.targetInstance === undefined || a.targetInstance === opts.targetInstance) && (opts.sourceService === undefined || a.sourceService === opts.sourceService))
    .sort((a, b) => a.createdAtMs - b.createdAtMs || a.id.localeCompare(b.id));
}
