import { randomUUID } from 'node:crypto';
import { BlockvaultError } from '../errors.js';
import { DEFAULT_INITIATOR, ROOT_KEY_BYTES, STORAGE_SERVICE_NAME, PLATFORM_INSTANCE_ID, roughInitiator, roughText, type AuditMeta, type HsmCore } from './hsm-core.js';
import { ensurePlatformInstance } from './instances.js';
import { assertStateAllows } from './key-info.js';
import type { InstanceRecord, KeyRecord } from './metadata-store.js';
import type { ImportMaterial } from './provider.js';
import { checkBoolean, checkBytes, checkName, checkRotationPolicy, checkText, invalid, optionsObject } from './validate.js';
import { KeyState, type RootKeyInfo, type RotationPolicy } from './types.js';

/** Creating, importing, reading and changing the state and policies of root keys. */

export interface NewKeySpec {
  instance: InstanceRecord;
  name: string;
  dualAuthDelete: boolean;
  rotationPolicy: RotationPolicy | null;
  platformManaged: boolean;
}

export type NewKeyOptions = { name: string; dualAuthDelete?: boolean; rotationPolicy?: RotationPolicy | null; initiator?: string };

/** Validate what every new customer key needs: instance, unique name, policies. */
export function newKeySpec(core: HsmCore, instanceId: unknown, options: Partial<NewKeyOptions> | undefined, call: string, meta: AuditMeta): NewKeySpec {
  const opts = optionsObject(options, call);
  meta.initiator = checkText(opts.initiator, 'initiator', DEFAULT_INITIATOR);
  const instance = core.requireCustomerInstance(instanceId);
  meta.instanceId = instance.id;
  const name = checkName(opts.name, 'key name');
  const dualAuthDelete = checkBoolean(opts.dualAuthDelete, 'dualAuthDelete', false);
  const rotationPolicy = opts.rotationPolicy === undefined ? null : checkRotationPolicy(opts.rotationPolicy);
  if (core.store.keys().some((k) => k.instanceId === instance.id && k.name === name && k.state !== KeyState.Destroyed)) {
    throw new BlockvaultError('ALREADY_EXISTS', `instance ${instance.name} already has a root key named '${name}'; choose another name`);
  }
  meta.details = { name, dualAuthDelete, rotationPolicy };
  return { instance, name, dualAuthDelete, rotationPolicy, platformManaged: false };
}

/** Material first, then metadata: a crash in between leaves a stray file that recovery shreds. */
export async function addKey(
  core: HsmCore,
  spec: NewKeySpec,
  source: { kind: 'create' } | { kind: 'import'; material: ImportMaterial },
  meta: AuditMeta,
  keyId: string = randomUUID(),
): Promise<RootKeyInfo> {
  const ref = { keyId, version: 1 };
  if (source.kind === 'create') await core.provider.create(ref);
  else await core.provider.import(ref, source.material);
  const now = core.clock.nowMs();
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
    core.store.transact((tx) => tx.putKey(record));
  } catch (error) {
    await core.provider.destroy(keyId, [1]);
    throw error;
  }
  meta.keyCrn = core.keyCrnOf(record);
  meta.details = { ...meta.details, keyVersion: 1 };
  return core.keyInfo(record);
}

export async function createRootKey(core: HsmCore, instanceId: string, options: NewKeyOptions): Promise<RootKeyInfo> {
  const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR), instanceId: roughText(instanceId) };
  return core.exclusive(() =>
    core.audited('hs-crypto.secrets.create', meta, async () => {
      const spec = newKeySpec(core, instanceId, options, 'createRootKey(instanceId, { name })', meta);
      return addKey(core, spec, { kind: 'create' }, meta);
    }),
  );
}

export async function importRootKey(core: HsmCore, instanceId: string, options: NewKeyOptions & { material: Uint8Array }): Promise<RootKeyInfo> {
  const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR), instanceId: roughText(instanceId) };
  return core.exclusive(() =>
    core.audited('hs-crypto.secrets.import', meta, async () => {
      const spec = newKeySpec(core, instanceId, options, 'importRootKey(instanceId, { name, material })', meta);
      const material = checkBytes((options as { material?: unknown }).material, 'material', ROOT_KEY_BYTES, ROOT_KEY_BYTES);
      meta.details = { ...meta.details, viaImportToken: false };
      return addKey(core, spec, { kind: 'import', material: { material } }, meta);
    }),
  );
}

export async function createPlatformKey(core: HsmCore): Promise<RootKeyInfo> {
  const meta: AuditMeta = { initiator: STORAGE_SERVICE_NAME, instanceId: PLATFORM_INSTANCE_ID };
  return core.exclusive(() =>
    core.audited('hs-crypto.secrets.create', meta, async () => {
      const instance = ensurePlatformInstance(core);
      const keyId = randomUUID();
      meta.details = { platformManaged: true };
      const spec: NewKeySpec = { instance, name: `platform-${keyId.slice(0, 8)}`, dualAuthDelete: false, rotationPolicy: null, platformManaged: true };
      return addKey(core, spec, { kind: 'create' }, meta, keyId);
    }),
  );
}

export function listKeys(core: HsmCore, filter?: { instanceId?: string }): RootKeyInfo[] {
  const opts = optionsObject(filter, 'listKeys({ instanceId? })');
  let records = core.store.keys();
  if (opts.instanceId !== undefined) {
    const instance = core.requireInstance(opts.instanceId);
    records = records.filter((r) => r.instanceId === instance.id);
  }
  return records.sort((a, b) => a.createdAtMs - b.createdAtMs || a.id.localeCompare(b.id)).map((r) => core.keyInfo(r));
}

/** enable (Suspended -> Active), disable (Active -> Suspended), deactivate (Active -> Deactivated). */
export async function transition(
  core: HsmCore,
  crn: string,
  options: { initiator?: string } | undefined,
  operation: 'enable' | 'disable' | 'deactivate',
  to: KeyState,
): Promise<RootKeyInfo> {
  const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR), keyCrn: roughText(crn) };
  return core.exclusive(() =>
    core.audited(`hs-crypto.secrets.${operation}`, meta, async () => {
      meta.initiator = checkText(optionsObject(options, `${operation}Key(crn)`).initiator, 'initiator', DEFAULT_INITIATOR);
      const { record, crn: keyCrn } = core.resolveKey(crn);
      meta.keyCrn = keyCrn;
      assertStateAllows(record, operation, keyCrn);
      meta.details = { from: record.state, to };
      return core.saveKey({ ...record, state: to });
    }),
  );
}

export async function setRotationPolicy(core: HsmCore, crn: string, policy: RotationPolicy | null, options?: { initiator?: string }): Promise<RootKeyInfo> {
  const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR), keyCrn: roughText(crn) };
  return core.exclusive(() =>
    core.audited('hs-crypto.policies.write', meta, async () => {
      meta.initiator = checkText(optionsObject(options, 'setRotationPolicy(crn, policy, options?)').initiator, 'initiator', DEFAULT_INITIATOR);
      const { record, crn: keyCrn } = core.resolveKey(crn);
      meta.keyCrn = keyCrn;
      const rotationPolicy = checkRotationPolicy(policy);
      assertStateAllows(record, 'write a policy', keyCrn);
      meta.details = { policy: 'rotation', rotationPolicy, imported: record.imported };
      return core.saveKey({ ...record, rotationPolicy });
    }),
  );
}

export async function setDualAuthDelete(core: HsmCore, crn: string, options: { enabled: boolean; initiator?: string }): Promise<RootKeyInfo> {
  const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR), keyCrn: roughText(crn) };
  return core.exclusive(() =>
    core.audited('hs-crypto.policies.write', meta, async () => {
      const opts = optionsObject(options, 'setDualAuthDelete(crn, { enabled })');
      meta.initiator = checkText(opts.initiator, 'initiator', DEFAULT_INITIATOR);
      const { record, crn: keyCrn } = core.resolveKey(crn);
      meta.keyCrn = keyCrn;
      const enabled = checkBoolean(opts.enabled, 'enabled', true);
      assertStateAllows(record, 'write a policy', keyCrn);
      meta.details = { policy: 'dualAuthDelete', enabled };
      if (!enabled && record.dualAuthDelete) invalid('dual authorization for deletion cannot be turned off once on; delete the key with two initiators instead');
      return core.saveKey({ ...record, dualAuthDelete: enabled || record.dualAuthDelete });
    }),
  );
}
