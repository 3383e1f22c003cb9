import { randomUUID } from 'node:crypto';
import { BlockvaultError, isBlockvaultError } from '../errors.js';
import { DEFAULT_INITIATOR, roughInitiator, roughText, type AuditMeta, type HsmCore } from './hsm-core.js';
import type { ImportTokenRecord } from './metadata-store.js';
import { addKey, newKeySpec, type NewKeyOptions } from './root-keys.js';
import { checkBytes, checkIntegerRange, checkText, optionsObject } from './validate.js';
import type { ImportTokenInfo, ImportTokenStatus, RootKeyInfo } from './types.js';

/**
 * Secure BYOK through import tokens: per instance, an RSA-OAEP-SHA256 2048-bit key pair (its
 * private key sealed like root keys) with an expiry (default 10 minutes) and a retrieval limit
 * (default 1). The caller fetches the public key (getImportToken counts a retrieval), encrypts the
 * 32-byte material to it, and imports; a successful import uses the token up.
 */
const EXPIRES_IN_MS_DEFAULT = 10 * 60_000;
const EXPIRES_IN_MS_MAX = 24 * 3_600_000;
const RETRIEVALS_MAX = 100;
const RSA_CIPHERTEXT_BYTES = 256;

function status(record: ImportTokenRecord): ImportTokenStatus {
  return { instanceId: record.instanceId, createdAtMs: record.createdAtMs, expiresAtMs: record.expiresAtMs, maxRetrievals: record.maxRetrievals, retrievals: record.retrievals };
}

/** The instance's token if it exists and has not expired by the clock (its key is shredded once it has). */
async function usableToken(core: HsmCore, instanceId: unknown): Promise<ImportTokenRecord> {
  const instance = core.requireCustomerInstance(instanceId);
  const token = core.store.token(instance.id);
  if (token === undefined) throw new BlockvaultError('NOT_FOUND', `instance ${instance.id} has no import token; create one with createImportToken(instanceId)`);
  if (core.clock.nowMs() >= token.expiresAtMs) {
    await core.provider.destroyTransportKey(token.transportKeyId);
    throw new BlockvaultError('IMPORT_TOKEN_EXPIRED', `the import token of instance ${instance.id} expired at ${new Date(token.expiresAtMs).toISOString()}; create a new one with createImportToken`);
  }
  return token;
}

export async function createImportToken(core: HsmCore, instanceId: string, options?: { expiresInMs?: number; maxRetrievals?: number; initiator?: string }): Promise<ImportTokenStatus> {
  const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR), instanceId: roughText(instanceId) };
  return core.exclusive(() =>
    core.audited('hs-crypto.import-token.create', meta, async () => {
      const opts = optionsObject(options, 'createImportToken(instanceId, { expiresInMs?, maxRetrievals? })');
      meta.initiator = checkText(opts.initiator, 'initiator', DEFAULT_INITIATOR);
      const instance = core.requireCustomerInstance(instanceId);
      const expiresInMs = checkIntegerRange(opts.expiresInMs, 'expiresInMs', 1000, EXPIRES_IN_MS_MAX, EXPIRES_IN_MS_DEFAULT);
      const maxRetrievals = checkIntegerRange(opts.maxRetrievals, 'maxRetrievals', 1, RETRIEVALS_MAX, 1);
      let previous = core.store.token(instance.id);
      let transportKeyId = randomUUID();
      let publicKeyPem: string;
      let madeRoom = false;
      try {
        ({ publicKeyPem } = await core.provider.createTransportKey(transportKeyId));
      } catch (error) {
        // A replacement needs no more room than the token it replaces: on a full HSM the previous
        // token goes first (its record, then its key, so a crash between leaves no record naming
        // a destroyed key), and the new one is made in its place. Should that fail too, the
        // instance has no token, which the error says.
        if (previous === undefined || !isBlockvaultError(error, 'HSM_FULL')) throw error;
        core.store.transact((tx) => tx.removeToken(previous!.instanceId));
        madeRoom = true;
        meta.details = { replacedPrevious: true, previousRemovedForRoom: true };
        const removedKeyId = previous.transportKeyId;
        previous = undefined;
        transportKeyId = randomUUID();
        try {
          await core.provider.destroyTransportKey(removedKeyId);
          ({ publicKeyPem } = await core.provider.createTransportKey(transportKeyId));
        } catch (retryError) {
          // (A transport key left by a failed destroy has no record any more; recovery at open removes it.)
          if (isBlockvaultError(retryError)) {
            throw new BlockvaultError(retryError.code, `${retryError.message} (the previous import token of instance ${instance.id} was removed to make room for this one, so the instance has none now)`, retryError.details, { cause: retryError });
          }
          throw retryError;
        }
      }
      const now = core.clock.nowMs();
      const record: ImportTokenRecord = { instanceId: instance.id, transportKeyId, publicKeyPem, createdAtMs: now, expiresAtMs: now + expiresInMs, maxRetrievals, retrievals: 0 };
      try {
        core.store.transact((tx) => tx.putToken(record));
      } catch (error) {
        await core.provider.destroyTransportKey(transportKeyId);
        throw error;
      }
      if (previous !== undefined) await core.provider.destroyTransportKey(previous.transportKeyId);
      meta.details = { expiresAtMs: record.expiresAtMs, maxRetrievals, replacedPrevious: previous !== undefined || madeRoom, ...(madeRoom ? { previousRemovedForRoom: true } : {}) };
      return status(record);
    }),
  );
}

export async function getImportToken(core: HsmCore, instanceId: string, options?: { initiator?: string }): Promise<ImportTokenInfo> {
  const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR), instanceId: roughText(instanceId) };
  return core.exclusive(() =>
    core.audited('hs-crypto.import-token.read', meta, async () => {
      meta.initiator = checkText(optionsObject(options, 'getImportToken(instanceId)').initiator, 'initiator', DEFAULT_INITIATOR);
      const token = await usableToken(core, instanceId);
      if (token.retrievals >= token.maxRetrievals) {
        throw new BlockvaultError('IMPORT_TOKEN_EXPIRED', `the import token of instance ${token.instanceId} was retrieved ${token.retrievals} time(s), its limit; create a new one with createImportToken`);
      }
      const updated: ImportTokenRecord = { ...token, retrievals: token.retrievals + 1 };
      core.store.transact((tx) => tx.putToken(updated));
      meta.details = { retrievals: updated.retrievals, maxRetrievals: updated.maxRetrievals };
      return { ...status(updated), publicKeyPem: updated.publicKeyPem };
    }),
  );
}

export async function importRootKeyWithToken(core: HsmCore, instanceId: string, options: NewKeyOptions & { encryptedMaterial: Uint8Array }): Promise<RootKeyInfo> {
  const meta: AuditMeta = { initiator: roughInitiator(options, DEFAULT_INITIATOR), instanceId: roughText(instanceId) };
  return core.exclusive(() =>
    core.audited('hs-crypto.secrets.import', meta, async () => {
      const spec = newKeySpec(core, instanceId, options, 'importRootKeyWithToken(instanceId, { name, encryptedMaterial })', meta);
      const encryptedMaterial = checkBytes((options as { encryptedMaterial?: unknown }).encryptedMaterial, 'encryptedMaterial', RSA_CIPHERTEXT_BYTES, RSA_CIPHERTEXT_BYTES);
      meta.details = { ...meta.details, viaImportToken: true };
      const token = await usableToken(core, spec.instance.id);
      const info = await addKey(core, spec, { kind: 'import', material: { transportKeyId: token.transportKeyId, encryptedMaterial } }, meta);
      core.store.transact((tx) => tx.removeToken(token.instanceId));
      await core.provider.destroyTransportKey(token.transportKeyId);
      return info;
    }),
  );
}
