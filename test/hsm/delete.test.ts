import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { BlockvaultError } from '../../src/errors.js';
import { KeyState, type RootKeyInfo } from '../../src/hsm/index.js';
import { STORAGE, expectCode, setupKey, volumeCrn, forEachProviderHarness } from './helpers.js';

// Every case runs against each key provider, on a fresh harness per test (test/hsm/helpers.ts).
forEachProviderHarness('registrations and deletion', (h) => {
  describe('registrations', () => {
    it('creates, updates, lists by key and by resource, and deletes', async () => {
      const { key } = await setupKey(h.hsm);
      const other = await h.hsm.createRootKey(key.instanceId, { name: 'other' });
      const created = await h.hsm.createRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('a'), keyVersion: 1 }, STORAGE);
      expect(created).toMatchObject({ keyCrn: key.crn, resourceCrn: volumeCrn('a'), keyVersion: 1, preventKeyDeletion: false, createdAtMs: h.clock.nowMs() });
      await h.hsm.createRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('b'), keyVersion: 1 }, STORAGE);
      await h.hsm.createRegistration({ keyCrn: other.crn, resourceCrn: volumeCrn('a'), keyVersion: 1 }, STORAGE);
      expect((await h.hsm.listRegistrations({ keyCrn: key.crn })).map((r) => r.resourceCrn)).toEqual([volumeCrn('a'), volumeCrn('b')]);
      expect((await h.hsm.listRegistrations({ resourceCrn: volumeCrn('a') })).map((r) => r.keyCrn).sort()).toEqual([key.crn, other.crn].sort());
      expect(await h.hsm.listRegistrations()).toHaveLength(3);

      await h.hsm.rotateKey(key.crn);
      h.clock.advanceMs(10);
      const updated = await h.hsm.updateRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('a'), keyVersion: 2 }, STORAGE);
      expect(updated).toMatchObject({ keyVersion: 2, createdAtMs: created.createdAtMs, updatedAtMs: h.clock.nowMs() });
      // Creating an existing pair again updates it (a retried provisioning step is harmless).
      expect((await h.hsm.createRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('a'), keyVersion: 2, preventKeyDeletion: true }, STORAGE)).preventKeyDeletion).toBe(true);

      await h.hsm.deleteRegistration(key.crn, volumeCrn('b'), STORAGE);
      expect((await h.hsm.listRegistrations({ keyCrn: key.crn })).map((r) => r.resourceCrn)).toEqual([volumeCrn('a')]);
    });

    it('refuses bad registrations', async () => {
      const { key } = await setupKey(h.hsm);
      await expectCode(h.hsm.createRegistration({ keyCrn: key.id, resourceCrn: volumeCrn('a'), keyVersion: 1 }, STORAGE), 'INVALID_CRN');
      await expectCode(h.hsm.createRegistration({ keyCrn: key.crn, resourceCrn: 'volume-a', keyVersion: 1 }, STORAGE), 'INVALID_CRN');
      await expectCode(h.hsm.createRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('a'), keyVersion: 2 }, STORAGE), 'NOT_FOUND');
      await expectCode(h.hsm.createRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('a') } as never, STORAGE), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.updateRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('zz'), keyVersion: 1 }, STORAGE), 'NOT_FOUND');
      await expectCode(h.hsm.deleteRegistration(key.crn, volumeCrn('zz'), STORAGE), 'NOT_FOUND');
      await expectCode(h.hsm.listRegistrations({ keyCrn: 'bare-id' }), 'INVALID_CRN');
    });
  });

  describe('deleteKey', () => {
    it('deletes an unused key, destroying its material', async () => {
      const { key } = await setupKey(h.hsm);
      const result = await h.hsm.deleteKey(key.crn);
      expect(result.affectedResources).toEqual([]);
      expect(result.key.state).toBe(KeyState.Destroyed);
    });

    it('refuses with KEY_IN_USE while registrations exist; force cryptoshreds and reports the resources', async () => {
      const { key } = await setupKey(h.hsm);
      const w = await h.hsm.wrap(key.crn, randomBytes(64), STORAGE);
      await h.hsm.rotateKey(key.crn);
      await h.hsm.createRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('a'), keyVersion: 1 }, STORAGE);
      await h.hsm.createRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('b'), keyVersion: 2 }, STORAGE);
      const refusal = await expectCode(h.hsm.deleteKey(key.crn), 'KEY_IN_USE');
      expect(refusal.message).toMatch(/force: true/);
      expect((await h.hsm.getKey(key.crn)).state).toBe(KeyState.Active);

      const destroyedCalls: [RootKeyInfo, string[]][] = [];
      let hookDone = false;
      h.hsm.setHooks({
        onDestroyed: async (info, resources) => {
          destroyedCalls.push([info, resources]);
          // The hook runs after the material is gone: the key already refuses to unwrap.
          await expectCode(h.hsm.unwrap(key.crn, w.wrapped, 1, STORAGE), 'KEY_DESTROYED');
          hookDone = true;
        },
      });
      const result = await h.hsm.deleteKey(key.crn, { force: true });
      expect(hookDone).toBe(true);
      expect(result.affectedResources.sort()).toEqual([volumeCrn('a'), volumeCrn('b')]);
      expect(result.key.versions.map((v) => v.destroyedAtMs)).toEqual([h.clock.nowMs(), h.clock.nowMs()]);
      expect(destroyedCalls).toHaveLength(1);
      expect(destroyedCalls[0]![0].state).toBe(KeyState.Destroyed);
      expect(destroyedCalls[0]![1].sort()).toEqual([volumeCrn('a'), volumeCrn('b')]);
      // Registrations stay listed (which resources were shredded) and can be removed later.
      expect(await h.hsm.listRegistrations({ keyCrn: key.crn })).toHaveLength(2);
      await h.hsm.deleteRegistration(key.crn, volumeCrn('a'), STORAGE);
      const events = h.audit.list({ action: 'hs-crypto.secrets.delete', keyCrn: key.crn });
      expect(events.map((e) => [e.outcome, e.code, e.details.force])).toEqual([
        ['failure', 'KEY_IN_USE', false],
        ['success', null, true],
      ]);
      expect((events[1]!.details.affectedResources as string[]).sort()).toEqual([volumeCrn('a'), volumeCrn('b')]);
    });

    it('preventKeyDeletion blocks even a forced delete until it is cleared', async () => {
      const { key } = await setupKey(h.hsm);
      await h.hsm.createRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('a'), keyVersion: 1, preventKeyDeletion: true }, STORAGE);
      await expectCode(h.hsm.deleteKey(key.crn), 'KEY_DELETION_PREVENTED');
      await expectCode(h.hsm.deleteKey(key.crn, { force: true }), 'KEY_DELETION_PREVENTED');
      await h.hsm.updateRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('a'), preventKeyDeletion: false }, STORAGE);
      expect((await h.hsm.deleteKey(key.crn, { force: true })).affectedResources).toEqual([volumeCrn('a')]);
    });

    it('refuses bad options', async () => {
      const { key } = await setupKey(h.hsm);
      await expectCode(h.hsm.deleteKey(key.crn, { force: 'true' as never }), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.deleteKey(key.id), 'INVALID_CRN');
      expect((await h.hsm.getKey(key.crn)).state).toBe(KeyState.Active);
    });
  });

  describe('dual authorization', () => {
    it('needs setKeyForDeletion by one initiator and delete by another', async () => {
      const { key } = await setupKey(h.hsm, { dualAuthDelete: true });
      expect(key.dualAuthDelete).toBe(true);
      const unset = await expectCode(h.hsm.deleteKey(key.crn, { initiator: 'bob' }), 'KEY_DELETION_NOT_AUTHORIZED');
      // Which step is missing is in the details, for callers (the CLI) that phrase their own advice.
      expect((unset as BlockvaultError).details).toEqual({ keyCrn: key.crn, missing: 'authorization' });
      await expectCode(h.hsm.setKeyForDeletion(key.crn, {} as never), 'INVALID_ARGUMENT');
      const marked = await h.hsm.setKeyForDeletion(key.crn, { initiator: 'alice' });
      expect(marked.deletionAuthorizedBy).toBe('alice');
      expect(marked.deletionAuthorizedUntilMs).toBe(h.clock.nowMs() + 7 * 24 * 3_600_000);
      const same = await expectCode(h.hsm.deleteKey(key.crn, { initiator: 'alice' }), 'KEY_DELETION_NOT_AUTHORIZED');
      expect(same.message).toMatch(/different initiator/);
      expect((same as BlockvaultError).details).toEqual({ keyCrn: key.crn, authorizedBy: 'alice' });
      const anonymous = await expectCode(h.hsm.deleteKey(key.crn), 'KEY_DELETION_NOT_AUTHORIZED'); // dual authorization needs a named initiator
      expect((anonymous as BlockvaultError).details).toEqual({ keyCrn: key.crn, missing: 'initiator' });
      const result = await h.hsm.deleteKey(key.crn, { initiator: 'bob' });
      expect(result.key.state).toBe(KeyState.Destroyed);
      const event = h.audit.list({ action: 'hs-crypto.secrets.delete', outcome: 'success' })[0]!;
      expect(event).toMatchObject({ initiator: 'bob', details: { authorizedBy: 'alice' } });
    });

    it('unsetKeyForDeletion withdraws; the authorization lapses after 7 days; it cannot be turned off', async () => {
      const { key } = await setupKey(h.hsm);
      await expectCode(h.hsm.setKeyForDeletion(key.crn, { initiator: 'alice' }), 'INVALID_ARGUMENT');
      await h.hsm.setDualAuthDelete(key.crn, { enabled: true });
      await expectCode(h.hsm.setDualAuthDelete(key.crn, { enabled: false }), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.unsetKeyForDeletion(key.crn, { initiator: 'alice' }), 'INVALID_ARGUMENT');
      await h.hsm.setKeyForDeletion(key.crn, { initiator: 'alice' });
      expect((await h.hsm.unsetKeyForDeletion(key.crn, { initiator: 'carol' })).deletionAuthorizedBy).toBeNull();
      await expectCode(h.hsm.deleteKey(key.crn, { initiator: 'bob' }), 'KEY_DELETION_NOT_AUTHORIZED');
      await h.hsm.setKeyForDeletion(key.crn, { initiator: 'alice' });
      h.clock.advanceMs(7 * 24 * 3_600_000);
      expect((await h.hsm.getKey(key.crn)).deletionAuthorizedBy).toBeNull();
      await expectCode(h.hsm.deleteKey(key.crn, { initiator: 'bob' }), 'KEY_DELETION_NOT_AUTHORIZED');
      const actions = h.audit.list({ keyCrn: key.crn }).map((e) => `${e.action}:${e.outcome}`);
      expect(actions).toContain('hs-crypto.secrets.setkeyfordeletion:success');
      expect(actions).toContain('hs-crypto.secrets.unsetkeyfordeletion:success');
      expect(actions).toContain('hs-crypto.policies.write:success');
    });
  });
});
