import { BlockvaultError } from '../errors.js';
import { DEFAULT_INITIATOR, roughInitiator, roughText, type AuditMeta, type HsmCore } from './hsm-core.js';
import { assertStateAllows, pendingDeletionBy, toRootKeyInfo } from './key-info.js';
import type { KeyRecord } from './metadata-store.js';
import { checkBoolean, checkInitiator, invalid, optionsObject } from './validate.js';
import { KeyState, type DeleteKeyResult, type RootKeyInfo } from './types.js';

/**
 * Deleting root keys, with dual authorization as an option, and cryptoshredding (force) of keys
 * that still protect registered resources.
 */

export async function setKeyForDeletion(core: HsmCore, crn: string, options: { initiator: string }): Promise<RootKeyInfo> {
  const meta: AuditMeta = { initiator: roughInitiator(options, 'unknown'), keyCrn: roughText(crn) };
  return core.exclusive(() =>
    core.audited('hs-crypto.secrets.setkeyfordeletion', meta, async () => {
      const opts = optionsObject(options, 'setKeyForDeletion(crn, { initiator })');
      if (opts.initiator === undefined) invalid('setKeyForDeletion needs { initiator }: who authorizes the deletion (a different initiator must then delete)');
      const initiator = checkInitiator(opts.initiator, '');
      meta.initiator = initiator;
      const { record, crn: keyCrn } = core.resolveKey(crn);
      meta.keyCrn = keyCrn;
      assertStateAllows(record, 'set key for deletion', keyCrn);
      if (!record.dualAuthDelete) invalid(`root key ${keyCrn} has no dual-authorization policy; delete it directly with deleteKey`);
      return core.saveKey({ ...record, deletionAuthorizedBy: initiator, deletionAuthorizedAtMs: core.clock.nowMs() });
    }),
  );
}

export async function unsetKeyForDeletion(core: HsmCore, crn: string, options: { initiator: string }): Promise<RootKeyInfo> {
  const meta: AuditMeta = { initiator: roughInitiator(options, 'unknown'), keyCrn: roughText(crn) };
  return core.exclusive(() =>
    core.audited('hs-crypto.secrets.unsetkeyfordeletion', meta, async () => {
      const opts = optionsObject(options, 'unsetKeyForDeletion(crn, { initiator })');
      if (opts.initiator === undefined) invalid('unsetKeyForDeletion needs { initiator }');
      meta.initiator = checkInitiator(opts.initiator, '');
      const { record, crn: keyCrn } = core.resolveKey(crn);
      meta.keyCrn = keyCrn;
      assertStateAllows(record, 'set key for deletion', keyCrn);
      if (pendingDeletionBy(record, core.clock.nowMs()) === null) invalid(`root key ${keyCrn} has no pending deletion authorization to withdraw`);
      return core.saveKey({ ...record, deletionAuthorizedBy: null, deletionAuthorizedAtMs: null });
    }),
  );
}

/** Refusals in order: preventKeyDeletion, registrations without force, dual authorization. */
function checkDeletable(core: HsmCore, record: KeyRecord, keyCrn: string, force: boolean, initiator: string | undefined, meta: AuditMeta): string[] {
  const registrations = core.store.registrationsOfKey(record.id);
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
    const by = pendingDeletionBy(record, core.clock.nowMs());
    if (initiator === undefined) {
      throw new BlockvaultError('KEY_DELETION_NOT_AUTHORIZED', `root key ${keyCrn} needs dual authorization to delete: pass { initiator } naming who deletes it (a different initiator from the one who called setKeyForDeletion)`, { keyCrn, missing: 'initiator' });
    }
    if (by === null) {
      throw new BlockvaultError('KEY_DELETION_NOT_AUTHORIZED', `root key ${keyCrn} needs dual authorization to delete: one initiator calls setKeyForDeletion(crn, { initiator }), then a different initiator deletes it within 7 days`, { keyCrn, missing: 'authorization' });
    }
    if (sameInitiator(by, initiator)) {
      throw new BlockvaultError('KEY_DELETION_NOT_AUTHORIZED', `root key ${keyCrn} was set for deletion by '${by}'; a different initiator must delete it (dual authorization)`, { keyCrn, authorizedBy: by });
    }
    (meta.details as Record<string, unknown>).authorizedBy = by;
  }
  return registrations.map((r) => r.resourceCrn);
}

/**
 * Delete a root key. The order is the cryptoshred promise (DESIGN.md, "Deletion and
 * cryptoshredding"): everything that decides and everything that makes the key unusable runs
 * synchronously in the call itself, before its first await:
 *
 *   1. validate, resolve, and check that the key may be deleted (registrations, force, dual
 *      authorization) against the metadata as it stands at the call;
 *   2. doom the key in memory (HsmCore.doom): from here wrap, unwrap, rewrap, rotation and every
 *      state change refuse it with KEY_DESTROYED;
 *   3. hooks.onDestroying: the engine locks every affected volume and wipes its data keys, and
 *      signals the volumes' rotation tasks to stop.
 *
 * No read or write that starts after the call can succeed. Only then does the durable
 * destruction run, under the HSM mutex: the pendingDestroy intent (one fsynced commit: a crash
 * after it is finished by the next open, recovery.ts), every version's material, the final
 * Destroyed record, the audit event, and hooks.onDestroyed (the engine persists the volume locks
 * and waits for the tasks to end). A crash before the intent commit leaves the key as it was:
 * the call never returned, and nothing was destroyed.
 *
 * Operations queued in the mutex ahead of the durable part run after the doom, so they see the key
 * destroyed; an operation already half-way through (awaiting its provider) finishes first.
 */
export async function deleteKey(core: HsmCore, crn: string, options?: { force?: boolean; initiator?: string }): Promise<DeleteKeyResult> {
  const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR), keyCrn: roughText(crn) };
  let decided: { record: KeyRecord; keyCrn: string; force: boolean; initiator: string; affectedResources: string[] };
  try {
    core.assertOpen();
    const opts = optionsObject(options, 'deleteKey(crn, { force?, initiator? })');
    const force = checkBoolean(opts.force, 'force', false);
    const initiator = checkInitiator(opts.initiator, DEFAULT_INITIATOR);
    meta.initiator = initiator;
    meta.details = { force, affectedResources: [] };
    const { record, crn: keyCrn } = core.resolveKey(crn);
    meta.keyCrn = keyCrn;
    assertStateAllows(record, 'delete', keyCrn);
    const affectedResources = checkDeletable(core, record, keyCrn, force, opts.initiator === undefined ? undefined : initiator, meta);
    meta.details.affectedResources = affectedResources;
    decided = { record, keyCrn, force, initiator, affectedResources };
  } catch (error) {
    // A refusal changes nothing; it is audited like any failed operation (after the mutex, in order).
    return core.exclusive(() => core.audited('hs-crypto.secrets.delete', meta, () => Promise.reject(error)));
  }
  const { record, keyCrn, force, initiator, affectedResources } = decided;
  const pending = { versions: liveVersions(record), force, initiator, affectedResources };
  core.doom(record.id, pending);
  if (core.hooks.onDestroying) {
    try {
      core.hooks.onDestroying(keyCrn, affectedResources);
    } catch (error) {
      // The lock is in memory and best effort here; the durable destruction below must still run.
      process.emitWarning(`blockvault HSM: locking the resources of ${keyCrn} failed before its destruction: ${(error as Error).message}`);
    }
  }
  const result = await core.exclusive(() =>
    core.audited('hs-crypto.secrets.delete', meta, async () => {
      // Re-read: a rotation that was half-way through may have added a version meanwhile.
      const current = core.store.key(record.id) ?? record;
      const destroyed = current.state === KeyState.Destroyed ? current : await destroyKeyMaterial(core, current, { force, initiator, affectedResources });
      return { key: toRootKeyInfo(destroyed, keyCrn, core.clock.nowMs()), affectedResources };
    }),
  );
  // Outside the mutex, so the engine's hook may call back into the HSM.
  if (core.hooks.onDestroyed) await core.hooks.onDestroyed(result.key, result.affectedResources);
  return result;
}

const liveVersions = (record: KeyRecord): number[] => record.versions.filter((v) => v.destroyedAtMs === null).map((v) => v.version);

/**
 * Intent first (pendingDestroy: wrap and unwrap refuse at once, and a crash is finished on the
 * next open), then every version's material, then the final Destroyed record. Registrations stay:
 * they say which resources were shredded, and their owners remove them when they purge.
 */
export async function destroyKeyMaterial(core: HsmCore, record: KeyRecord, pending: { force: boolean; initiator: string; affectedResources: string[] }): Promise<KeyRecord> {
  const versions = liveVersions(record);
  core.doom(record.id, { versions, ...pending });
  core.store.transact((tx) => tx.putKey({ ...record, pendingDestroy: { versions, ...pending } }));
  await core.provider.destroy(record.id, versions);
  const now = core.clock.nowMs();
  const destroyed: KeyRecord = {
    ...record,
    state: KeyState.Destroyed,
    versions: record.versions.map((v) => (v.destroyedAtMs === null ? { ...v, destroyedAtMs: now } : v)),
    destroyedAtMs: now,
    deletionAuthorizedBy: null,
    deletionAuthorizedAtMs: null,
    pendingDestroy: null,
  };
  core.store.transact((tx) => tx.putKey(destroyed));
  core.undoom(record.id);
  return destroyed;
}

/** Records written before initiators were normalised hold the raw text: compare normalised forms. */
function sameInitiator(stored: string, initiator: string): boolean {
  try {
    return checkInitiator(stored, '') === initiator;
  } catch {
    return false; // a stored name with invisible characters is nobody's normalised name
  }
}
