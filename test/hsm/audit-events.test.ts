import { constants, publicEncrypt, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MS_PER_DAY } from '../../src/clock.js';
import { STORAGE, expectCode, volumeCrn, forEachProviderHarness } from './helpers.js';

// Every case runs against each key provider, on a fresh harness per test (test/hsm/helpers.ts).
forEachProviderHarness('HSM audit events', (h) => {
  describe('HSM audit events', () => {
    it('every operation appends its KMS-named event with time, initiator, outcome and key CRN', async () => {
      const instance = await h.hsm.createInstance({ name: 'crypto-1', initiator: 'alice' });
      await h.hsm.authorize({ sourceService: 'blockvault', targetInstance: instance.id, role: 'Reader' });
      h.clock.advanceMs(1000);
      const key = await h.hsm.createRootKey(instance.id, { name: 'k', initiator: 'alice' });
      const imported = await h.hsm.importRootKey(instance.id, { name: 'byok', material: randomBytes(32) });
      const w = await h.hsm.wrap(key.crn, randomBytes(64), STORAGE);
      await h.hsm.unwrap(key.crn, w.wrapped, 1, STORAGE);
      await h.hsm.rewrap(key.crn, w.wrapped, 1, STORAGE);
      await h.hsm.rotateKey(key.crn, { initiator: 'bob' });
      await h.hsm.disableKey(key.crn);
      await h.hsm.enableKey(key.crn);
      await h.hsm.setRotationPolicy(key.crn, { intervalMs: 30 * MS_PER_DAY });
      await h.hsm.setDualAuthDelete(key.crn, { enabled: true });
      await h.hsm.createRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('a'), keyVersion: 2 }, STORAGE);
      await h.hsm.updateRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('a'), keyVersion: 2 }, STORAGE);
      await h.hsm.deleteRegistration(key.crn, volumeCrn('a'), STORAGE);
      await h.hsm.setKeyForDeletion(key.crn, { initiator: 'alice' });
      await h.hsm.unsetKeyForDeletion(key.crn, { initiator: 'alice' });
      await h.hsm.setKeyForDeletion(key.crn, { initiator: 'alice' });
      await h.hsm.deleteKey(key.crn, { initiator: 'bob' });
      await h.hsm.createImportToken(instance.id);
      const token = await h.hsm.getImportToken(instance.id);
      const encrypted = publicEncrypt({ key: token.publicKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, randomBytes(32));
      await h.hsm.importRootKeyWithToken(instance.id, { name: 'secure', encryptedMaterial: encrypted });
      const deactivated = await h.hsm.deactivateKey(imported.crn);
      expect(deactivated.stateName).toBe('Deactivated');

      const events = h.audit.list({ limit: 10_000 });
      expect(events.every((e) => e.outcome === 'success' && e.timeMs >= Date.UTC(2026, 0, 1))).toBe(true);
      const keyEvents = h.audit.list({ keyCrn: key.crn }).map((e) => [e.action, e.initiator]);
      expect(keyEvents).toEqual([
        ['hs-crypto.secrets.create', 'alice'],
        ['hs-crypto.secrets.wrap', 'blockvault-engine'],
        ['hs-crypto.secrets.unwrap', 'blockvault-engine'],
        ['hs-crypto.secrets.rewrap', 'blockvault-engine'],
        ['hs-crypto.secrets.rotate', 'bob'],
        ['hs-crypto.secrets.disable', 'operator'],
        ['hs-crypto.secrets.enable', 'operator'],
        ['hs-crypto.policies.write', 'operator'],
        ['hs-crypto.policies.write', 'operator'],
        ['hs-crypto.registrations.create', 'blockvault-engine'],
        ['hs-crypto.registrations.update', 'blockvault-engine'],
        ['hs-crypto.registrations.delete', 'blockvault-engine'],
        ['hs-crypto.secrets.setkeyfordeletion', 'alice'],
        ['hs-crypto.secrets.unsetkeyfordeletion', 'alice'],
        ['hs-crypto.secrets.setkeyfordeletion', 'alice'],
        ['hs-crypto.secrets.delete', 'bob'],
      ]);
      const created = h.audit.list({ action: 'hs-crypto.secrets.create', keyCrn: key.crn })[0]!;
      expect(created.timeMs).toBe(Date.UTC(2026, 0, 1) + 1000);
      expect(h.audit.list({ action: 'hs-crypto.secrets.import' }).map((e) => e.details.viaImportToken)).toEqual([false, true]);
      expect(h.audit.list({ action: 'hs-crypto.import-token.create' })).toHaveLength(1);
      expect(h.audit.list({ action: 'hs-crypto.secrets.deactivate', keyCrn: imported.crn })).toHaveLength(1);
      expect(h.audit.list({ action: 'hs-crypto.secrets.delete' })[0]).toMatchObject({ details: { force: false, affectedResources: [] } });
      expect(h.audit.list({ action: 'hs-crypto.registrations.create' })[0]).toMatchObject({ resourceCrn: volumeCrn('a'), details: { keyVersion: 2 } });
      expect(h.audit.verify()).toMatchObject({ ok: true, count: events.length });
    });

    it('failed operations are logged with their code and reason', async () => {
      const instance = await h.hsm.createInstance({ name: 'crypto-1' });
      const key = await h.hsm.createRootKey(instance.id, { name: 'k' });
      await expectCode(h.hsm.wrap(key.crn, randomBytes(64), STORAGE), 'NOT_AUTHORIZED');
      await expectCode(h.hsm.wrap(key.id, randomBytes(64), STORAGE), 'INVALID_CRN');
      await expectCode(h.hsm.enableKey(key.crn), 'KEY_STATE');
      await expectCode(h.hsm.createRootKey(instance.id, { name: 'k' }), 'ALREADY_EXISTS');
      const failures = h.audit.list({ outcome: 'failure' });
      expect(failures.map((e) => [e.action, e.code, e.keyCrn])).toEqual([
        ['hs-crypto.secrets.wrap', 'NOT_AUTHORIZED', key.crn],
        ['hs-crypto.secrets.wrap', 'INVALID_CRN', key.id],
        ['hs-crypto.secrets.enable', 'KEY_STATE', key.crn],
        ['hs-crypto.secrets.create', 'ALREADY_EXISTS', null],
      ]);
      expect(failures[0]!.reason).toMatch(/authorize/);
      expect(failures[0]!.initiator).toBe('blockvault-engine');
      expect(failures[3]!.instanceId).toBe(instance.id);
    });

    it('events.list({ action: "hs-crypto.secrets.delete" }) finds force deletions with their resources', async () => {
      const instance = await h.hsm.createInstance({ name: 'crypto-1' });
      await h.hsm.authorize({ sourceService: 'blockvault', targetInstance: instance.id, role: 'Reader' });
      const key = await h.hsm.createRootKey(instance.id, { name: 'k' });
      await h.hsm.createRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('a'), keyVersion: 1 }, STORAGE);
      await h.hsm.deleteKey(key.crn, { force: true, initiator: 'carol' });
      const [event] = h.audit.list({ action: 'hs-crypto.secrets.delete' });
      expect(event).toMatchObject({ outcome: 'success', initiator: 'carol', keyCrn: key.crn, details: { force: true, affectedResources: [volumeCrn('a')] } });
    });
  });
});
