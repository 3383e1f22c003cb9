import { BlockvaultError, isBlockvaultError } from '../errors.js';
import { roughInitiator, roughText, type AuditMeta, type HsmCore } from './hsm-core.js';
import { assertStateAllows } from './key-info.js';
import { checkBytes } from './validate.js';
import type { CallerContext, UnwrapResult, WrapResult } from './types.js';

/**
 * Wrap, unwrap and rewrap data keys with AES-KWP (RFC 5649) under a root-key version. These only
 * read metadata, so they do not queue behind metadata changes; the provider does its work in the
 * same event-loop turn as the state check, so a concurrent destruction is either entirely before
 * or entirely after it.
 */
const DATA_KEY_BYTES_MAX = 1024;

export async function wrap(core: HsmCore, crn: string, plaintext: Uint8Array, ctx: CallerContext): Promise<WrapResult> {
  const meta: AuditMeta = { initiator: roughInitiator(ctx, 'unknown'), keyCrn: roughText(crn) };
  return core.audited('hs-crypto.secrets.wrap', meta, async () => {
    const { record, crn: keyCrn } = core.resolveAuthorizedKey(crn, ctx, meta);
    assertStateAllows(record, 'wrap', keyCrn);
    checkBytes(plaintext, 'plaintext (the data key)', 1, DATA_KEY_BYTES_MAX);
    const keyVersion = core.currentVersion(record);
    const wrapped = await core.provider.wrap({ keyId: record.id, version: keyVersion }, plaintext);
    meta.details = { keyVersion };
    return { keyCrn, keyVersion, wrapped };
  });
}

export async function unwrap(core: HsmCore, crn: string, wrapped: Uint8Array, version: number, ctx: CallerContext): Promise<UnwrapResult> {
  const meta: AuditMeta = { initiator: roughInitiator(ctx, 'unknown'), keyCrn: roughText(crn) };
  return core.audited('hs-crypto.secrets.unwrap', meta, async () => {
    const { record, crn: keyCrn } = core.resolveAuthorizedKey(crn, ctx, meta);
    assertStateAllows(record, 'unwrap', keyCrn);
    checkBytes(wrapped, 'wrapped', 16, DATA_KEY_BYTES_MAX + 8);
    const keyVersion = core.liveVersion(record, version, keyCrn);
    const plaintext = await core.provider.unwrap({ keyId: record.id, version: keyVersion }, wrapped);
    const rewrapRecommended = keyVersion < core.currentVersion(record);
    meta.details = { keyVersion, rewrapRecommended };
    return { plaintext, keyVersion, rewrapRecommended };
  });
}

export async function rewrap(core: HsmCore, crn: string, wrapped: Uint8Array, version: number, ctx: CallerContext): Promise<WrapResult> {
  const meta: AuditMeta = { initiator: roughInitiator(ctx, 'unknown'), keyCrn: roughText(crn) };
  return core.audited('hs-crypto.secrets.rewrap', meta, async () => {
    const { record, crn: keyCrn } = core.resolveAuthorizedKey(crn, ctx, meta);
    assertStateAllows(record, 'rewrap', keyCrn);
    checkBytes(wrapped, 'wrapped', 16, DATA_KEY_BYTES_MAX + 8);
    const fromVersion = core.liveVersion(record, version, keyCrn);
    const keyVersion = core.currentVersion(record);
    const rewrapped = await core.provider.rewrap({ keyId: record.id, version: fromVersion }, { keyId: record.id, version: keyVersion }, wrapped);
    meta.details = { fromVersion, keyVersion };
    return { keyCrn, keyVersion, wrapped: rewrapped };
  });
}

/**
 * The refusal an unwrap by `ctx` under `crn` would meet right now (destroyed, a state that does not
 * allow unwrap, no Reader authorization, unknown key), or null: synchronous and unaudited, since
 * it reads only metadata and uses no material. Open resources ask this whenever the HSM's metadata
 * changes, so a suspended key or a revoked authorization cuts them off at once.
 */
export function accessError(core: HsmCore, crn: string, ctx: CallerContext): BlockvaultError | null {
  try {
    core.assertOpen();
    const { record, crn: keyCrn } = core.resolveKey(crn);
    core.checkAuthorized(ctx, record);
    assertStateAllows(record, 'unwrap', keyCrn);
    return null;
  } catch (error) {
    if (isBlockvaultError(error)) return error;
    throw error;
  }
}
