import { constants, publicEncrypt, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kwpWrap } from '../../src/hsm/kwp.js';
import type { ImportTokenInfo } from '../../src/hsm/index.js';
import { STORAGE, expectCode, providerInventory, setupKey, forEachProviderHarness } from './helpers.js';

// Every case runs against each key provider, on a fresh harness per test (test/hsm/helpers.ts).
forEachProviderHarness('import tokens', (h, provider) => {
  const encryptTo = (token: ImportTokenInfo, material: Uint8Array): Buffer =>
    publicEncrypt({ key: token.publicKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, material);

  /** The stored import-token private keys: sealed files (software), private data objects on the token (PKCS#11). */
  const transportFiles = async (dir: string): Promise<string[]> =>
    provider === 'software' ? readdirSync(join(dir, 'hsm', 'transport')) : (await providerInventory(h)).transportKeyIds;

  describe('import tokens (secure BYOK)', () => {
    it('imports material encrypted with RSA-OAEP-SHA256 to the token; the token is then used up', async () => {
      const { instance } = await setupKey(h.hsm);
      const status = await h.hsm.createImportToken(instance.id);
      expect(status).toEqual({ instanceId: instance.id, createdAtMs: h.clock.nowMs(), expiresAtMs: h.clock.nowMs() + 600_000, maxRetrievals: 1, retrievals: 0 });
      expect('publicKeyPem' in status).toBe(false);
      const token = await h.hsm.getImportToken(instance.id);
      expect(token.retrievals).toBe(1);
      expect(token.publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
      const material = randomBytes(32);
      const key = await h.hsm.importRootKeyWithToken(instance.id, { name: 'secure-byok', encryptedMaterial: encryptTo(token, material) });
      expect(key).toMatchObject({ imported: true, version: 1 });
      // It is really that material: wrapping matches RFC 5649 under it.
      const dek = randomBytes(64);
      expect(Buffer.from((await h.hsm.wrap(key.crn, dek, STORAGE)).wrapped).equals(kwpWrap(material, dek))).toBe(true);
      expect(await transportFiles(h.dir)).toEqual([]);
      await expectCode(h.hsm.getImportToken(instance.id), 'NOT_FOUND');
      await expectCode(h.hsm.importRootKeyWithToken(instance.id, { name: 'again', encryptedMaterial: encryptTo(token, randomBytes(32)) }), 'NOT_FOUND');
      const event = h.audit.list({ action: 'hs-crypto.secrets.import' })[0]!;
      expect(event).toMatchObject({ outcome: 'success', keyCrn: key.crn, details: { viaImportToken: true } });
      expect(h.audit.list({ action: 'hs-crypto.import-token.create' })).toHaveLength(1);
    });

    it('expires by the clock (default 10 minutes) and then gives IMPORT_TOKEN_EXPIRED and shreds its key', async () => {
      const { instance } = await setupKey(h.hsm);
      await h.hsm.createImportToken(instance.id, { maxRetrievals: 3 });
      const token = await h.hsm.getImportToken(instance.id);
      h.clock.advanceMs(600_000 - 1);
      await h.hsm.getImportToken(instance.id);
      expect(await transportFiles(h.dir)).toHaveLength(1);
      h.clock.advanceMs(1);
      const expired = await expectCode(h.hsm.getImportToken(instance.id), 'IMPORT_TOKEN_EXPIRED');
      expect(expired.message).toMatch(/createImportToken/);
      await expectCode(h.hsm.importRootKeyWithToken(instance.id, { name: 'late', encryptedMaterial: encryptTo(token, randomBytes(32)) }), 'IMPORT_TOKEN_EXPIRED');
      expect(await transportFiles(h.dir)).toEqual([]);
    });

    it('honours expiresInMs and the retrieval limit', async () => {
      const { instance } = await setupKey(h.hsm);
      await h.hsm.createImportToken(instance.id, { expiresInMs: 60_000, maxRetrievals: 2 });
      await h.hsm.getImportToken(instance.id);
      const second = await h.hsm.getImportToken(instance.id);
      expect(second).toMatchObject({ retrievals: 2, maxRetrievals: 2 });
      const exhausted = await expectCode(h.hsm.getImportToken(instance.id), 'IMPORT_TOKEN_EXPIRED');
      expect(exhausted.message).toMatch(/retrieved 2 time/);
      // Retrieval limit spent, but the token still imports until it expires.
      const key = await h.hsm.importRootKeyWithToken(instance.id, { name: 'k', encryptedMaterial: encryptTo(second, randomBytes(32)) });
      expect(key.imported).toBe(true);
      await h.hsm.createImportToken(instance.id, { expiresInMs: 60_000 });
      h.clock.advanceMs(60_000);
      await expectCode(h.hsm.getImportToken(instance.id), 'IMPORT_TOKEN_EXPIRED');
      const failures = h.audit.list({ action: 'hs-crypto.import-token.read', outcome: 'failure' });
      expect(failures.map((e) => e.code)).toEqual(['IMPORT_TOKEN_EXPIRED', 'IMPORT_TOKEN_EXPIRED']);
    });

    it('a new token replaces the old one and shreds its private key', async () => {
      const { instance } = await setupKey(h.hsm);
      await h.hsm.createImportToken(instance.id, { maxRetrievals: 5 });
      const old = await h.hsm.getImportToken(instance.id);
      await h.hsm.createImportToken(instance.id);
      expect(await transportFiles(h.dir)).toHaveLength(1);
      // Material encrypted to the replaced token no longer decrypts.
      await expectCode(h.hsm.importRootKeyWithToken(instance.id, { name: 'k', encryptedMaterial: encryptTo(old, randomBytes(32)) }), 'INVALID_ARGUMENT');
    });

    it('refuses bad requests', async () => {
      const { instance } = await setupKey(h.hsm);
      await expectCode(h.hsm.createImportToken('missing'), 'NOT_FOUND');
      await expectCode(h.hsm.getImportToken(instance.id), 'NOT_FOUND');
      await expectCode(h.hsm.createImportToken(instance.id, { expiresInMs: 10 }), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.createImportToken(instance.id, { maxRetrievals: 0 }), 'INVALID_ARGUMENT');
      await h.hsm.createImportToken(instance.id);
      const token = await h.hsm.getImportToken(instance.id);
      await expectCode(h.hsm.importRootKeyWithToken(instance.id, { name: 'k', encryptedMaterial: randomBytes(32) }), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.importRootKeyWithToken(instance.id, { name: 'k', encryptedMaterial: randomBytes(256) }), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.importRootKeyWithToken(instance.id, { name: 'k', encryptedMaterial: encryptTo(token, randomBytes(16)) }), 'INVALID_ARGUMENT');
      // A failed import leaves the token usable.
      await h.hsm.importRootKeyWithToken(instance.id, { name: 'k', encryptedMaterial: encryptTo(token, randomBytes(32)) });
    });

    it('survives a reopen, and an expired token\'s key is shredded on open', async () => {
      const { instance } = await setupKey(h.hsm);
      await h.hsm.createImportToken(instance.id, { maxRetrievals: 2 });
      const token = await h.hsm.getImportToken(instance.id);
      await h.reopen();
      expect((await h.hsm.getImportToken(instance.id)).retrievals).toBe(2);
      await h.hsm.importRootKeyWithToken(instance.id, { name: 'k', encryptedMaterial: encryptTo(token, randomBytes(32)) });
      await h.hsm.createImportToken(instance.id);
      expect(await transportFiles(h.dir)).toHaveLength(1);
      h.clock.advanceMs(600_000);
      await h.reopen();
      expect(await transportFiles(h.dir)).toEqual([]);
      if (provider === 'software') expect(existsSync(join(h.dir, 'hsm', 'transport'))).toBe(true);
    });
  });
});
