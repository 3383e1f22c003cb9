import { parseCrn } from '../crn.js';
import { BlockvaultError } from '../errors.js';
import { roughInitiator, roughText, type AuditMeta, type HsmCore } from './hsm-core.js';
import { assertStateAllows } from './key-info.js';
import type { RegistrationRecord } from './metadata-store.js';
import { checkBoolean, invalid, optionsObject } from './validate.js';
import type { CallerContext, Registration } from './types.js';

/**
 * Registrations: which resources (volumes) have data keys wrapped by which root key, at which
 * version, and whether they prevent the key's deletion. Requests need a Reader authorization.
 */

export interface RegistrationInput {
  keyCrn: string;
  resourceCrn: string;
  keyVersion?: number;
  preventKeyDeletion?: boolean;
}

/** create (an existing pair is updated, so a retried step is harmless) or update (NOT_FOUND when absent). */
export async function writeRegistration(core: HsmCore, options: RegistrationInput, ctx: CallerContext, create: boolean): Promise<Registration> {
  const raw = options as { keyCrn?: unknown; resourceCrn?: unknown } | undefined;
  const meta: AuditMeta = { initiator: roughInitiator(ctx, 'unknown'), keyCrn: roughText(raw?.keyCrn), resourceCrn: roughText(raw?.resourceCrn) };
  return core.exclusive(() =>
    core.audited(create ? 'hs-crypto.registrations.create' : 'hs-crypto.registrations.update', meta, async () => {
      const opts = optionsObject(options, `${create ? 'create' : 'update'}Registration({ keyCrn, resourceCrn, keyVersion, preventKeyDeletion? }, ctx)`);
      const { record, crn } = core.resolveAuthorizedKey(opts.keyCrn, ctx, meta);
      parseCrn(opts.resourceCrn);
      const resourceCrn = opts.resourceCrn as string;
      assertStateAllows(record, 'register a resource', crn);
      const existing = core.store.registration(record.id, resourceCrn);
      if (!create && existing === undefined) {
        throw new BlockvaultError('NOT_FOUND', `no registration of ${resourceCrn} against root key ${crn}; create it with createRegistration`);
      }
      if (create && opts.keyVersion === undefined) invalid('createRegistration needs keyVersion: the version its data key was wrapped under');
      const keyVersion = opts.keyVersion === undefined ? (existing as RegistrationRecord).keyVersion : core.liveVersion(record, opts.keyVersion, crn);
      const preventKeyDeletion = checkBoolean(opts.preventKeyDeletion, 'preventKeyDeletion', existing?.preventKeyDeletion ?? false);
      const now = core.clock.nowMs();
      const updated: RegistrationRecord = { keyId: record.id, resourceCrn, keyVersion, preventKeyDeletion, createdAtMs: existing?.createdAtMs ?? now, updatedAtMs: now };
      core.store.transact((tx) => tx.putRegistration(updated));
      meta.details = { keyVersion, preventKeyDeletion, ...(existing !== undefined ? { previousKeyVersion: existing.keyVersion } : {}) };
      return core.registrationInfo(updated, crn);
    }),
  );
}

/** Also allowed after the key was destroyed (purging a shredded volume removes its registration). */
export async function deleteRegistration(core: HsmCore, keyCrn: string, resourceCrn: string, ctx: CallerContext): Promise<Registration> {
  const meta: AuditMeta = { initiator: roughInitiator(ctx, 'unknown'), keyCrn: roughText(keyCrn), resourceCrn: roughText(resourceCrn) };
  return core.exclusive(() =>
    core.audited('hs-crypto.registrations.delete', meta, async () => {
      const { record, crn } = core.resolveAuthorizedKey(keyCrn, ctx, meta);
      parseCrn(resourceCrn);
      const existing = core.store.registration(record.id, resourceCrn);
      if (existing === undefined) throw new BlockvaultError('NOT_FOUND', `no registration of ${resourceCrn} against root key ${crn}`);
      core.store.transact((tx) => tx.removeRegistration(record.id, resourceCrn));
      return core.registrationInfo(existing, crn);
    }),
  );
}

export function listRegistrations(core: HsmCore, filter?: { keyCrn?: string; resourceCrn?: string }): Registration[] {
  const opts = optionsObject(filter, 'listRegistrations({ keyCrn?, resourceCrn? })');
  let records: RegistrationRecord[];
  if (opts.keyCrn !== undefined) records = core.store.registrationsOfKey(core.resolveKey(opts.keyCrn).record.id);
  else records = core.store.registrations();
  if (opts.resourceCrn !== undefined) {
    if (typeof opts.resourceCrn !== 'string') invalid('resourceCrn must be a CRN string');
    records = records.filter((r) => r.resourceCrn === opts.resourceCrn);
  }
  const crnOf = new Map<string, string>();
  return records.map((r) => {
    let crn = crnOf.get(r.keyId);
    if (crn === undefined) {
      const key = core.store.key(r.keyId);
      crn = key ? core.keyCrnOf(key) : r.keyId;
      crnOf.set(r.keyId, crn);
    }
    return core.registrationInfo(r, crn);
  });
}
