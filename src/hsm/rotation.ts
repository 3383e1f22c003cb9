import { isBlockvaultError } from '../errors.js';
import { DEFAULT_INITIATOR, ROOT_KEY_BYTES, roughInitiator, roughText, type AuditMeta, type HsmCore } from './hsm-core.js';
import { assertStateAllows, toRootKeyInfo } from './key-info.js';
import type { KeyRecord } from './metadata-store.js';
import type { ImportMaterial } from './provider.js';
import { checkBoolean, checkBytes, checkText, invalid } from './validate.js';
import { KeyState, type RootKeyInfo, type RotationSchedulerResult } from './types.js';

/**
 * Key rotation: a new version; older versions keep unwrapping (and say a rewrap is due) until the
 * key itself is destroyed. Rotation policies are applied by runScheduler with the injected clock.
 */

/** Rotate under the HSM mutex; the caller notifies the hooks afterwards, outside it. */
export async function rotateLocked(core: HsmCore, crn: string, opts: { material?: unknown; initiator?: unknown; rewrapOnly?: unknown }, trigger: 'manual' | 'policy'): Promise<RootKeyInfo> {
  const meta: AuditMeta = { initiator: roughInitiator(opts, DEFAULT_INITIATOR), keyCrn: roughText(crn) };
  return core.audited('hs-crypto.secrets.rotate', meta, async () => {
    meta.initiator = checkText(opts.initiator, 'initiator', DEFAULT_INITIATOR);
    const { record, crn: keyCrn } = core.resolveKey(crn);
    meta.keyCrn = keyCrn;
    checkBoolean(opts.rewrapOnly, 'rewrapOnly', false);
    assertStateAllows(record, 'rotate', keyCrn);
    let material: ImportMaterial | undefined;
    if (opts.material !== undefined) {
      if (!record.imported) invalid(`root key ${keyCrn} was created in the HSM; it rotates with fresh HSM material, so do not pass material`);
      material = { material: checkBytes(opts.material, 'material', ROOT_KEY_BYTES, ROOT_KEY_BYTES) };
    } else if (record.imported) {
      invalid(`root key ${keyCrn} was imported: it rotates only with new material, rotateKey(crn, { material }) with 32 new bytes`);
    }
    const version = core.currentVersion(record) + 1;
    await core.provider.rotate({ keyId: record.id, version }, material);
    const now = core.clock.nowMs();
    const updated: KeyRecord = { ...record, versions: [...record.versions, { version, createdAtMs: now, destroyedAtMs: null }], rotatedAtMs: now };
    try {
      core.store.transact((tx) => tx.putKey(updated));
    } catch (error) {
      await core.provider.destroy(record.id, [version]);
      throw error;
    }
    meta.details = { keyVersion: version, previousVersion: version - 1, trigger, imported: record.imported };
    return toRootKeyInfo(updated, keyCrn, now);
  });
}

/** What hooks.onRotated returns (the "Syncing KMS state" tasks), or [] without the hook. */
export async function notifyRotated(core: HsmCore, info: RootKeyInfo, rewrapOnly: boolean): Promise<unknown[]> {
  if (!core.hooks.onRotated) return [];
  const tasks = await core.hooks.onRotated(info, { rewrapOnly });
  return Array.isArray(tasks) ? tasks : [];
}

const dueAtMs = (record: KeyRecord & { rotationPolicy: { intervalMs: number } }): number => (record.rotatedAtMs ?? record.createdAtMs) + record.rotationPolicy.intervalMs;

/**
 * Rotate every Active key whose policy is due (interval counted from its last rotation or its
 * creation), oldest key first. Imported keys are skipped: they rotate only with new material.
 */
export async function runScheduler(core: HsmCore): Promise<RotationSchedulerResult> {
  const result: RotationSchedulerResult = { rotated: [], skipped: [], failed: [], nextDueAtMs: null };
  const byAge = core.store.keys().sort((a, b) => a.createdAtMs - b.createdAtMs || a.id.localeCompare(b.id));
  for (const record of byAge) {
    if (record.rotationPolicy === null || record.state === KeyState.Destroyed || record.pendingDestroy !== null) continue;
    const keyCrn = core.keyCrnOf(record);
    if (core.clock.nowMs() < dueAtMs(record as KeyRecord & { rotationPolicy: { intervalMs: number } })) continue;
    if (record.imported) {
      result.skipped.push({ keyCrn, reason: 'imported key: it rotates only when new material is supplied (rotateKey(crn, { material }))' });
      continue;
    }
    if (record.state !== KeyState.Active) {
      result.skipped.push({ keyCrn, reason: `the key is ${record.state === KeyState.Suspended ? 'Suspended' : 'Deactivated'}; only Active keys rotate` });
      continue;
    }
    try {
      const info = await core.exclusive(() => rotateLocked(core, keyCrn, { initiator: 'rotation-scheduler' }, 'policy'));
      const tasks = await notifyRotated(core, info, false);
      result.rotated.push({ keyCrn, version: info.version, tasks });
    } catch (error) {
      if (core.closed) throw error;
      result.failed.push({ keyCrn, code: isBlockvaultError(error) ? error.code : 'INTERNAL', message: (error as Error).message });
    }
  }
  for (const record of core.store.keys()) {
    if (record.rotationPolicy === null || record.state !== KeyState.Active || record.imported || record.pendingDestroy !== null) continue;
    const due = dueAtMs(record as KeyRecord & { rotationPolicy: { intervalMs: number } });
    result.nextDueAtMs = result.nextDueAtMs === null ? due : Math.min(result.nextDueAtMs, due);
  }
  return result;
}
