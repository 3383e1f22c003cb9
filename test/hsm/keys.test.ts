import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KeyState } from '../../src/hsm/index.js';
import { STORAGE, expectCode, setupKey, forEachProviderHarness } from './helpers.js';

// Every case runs against each key provider, on a fresh harness per test (test/hsm/helpers.ts).
forEachProviderHarness('instances, keys and wrapping', (h) => {
  describe('instances', () => {
    it('creates, lists and gets instances with CRNs; names are unique', async () => {
      const a = await h.hsm.createInstance({ name: 'crypto-1' });
      expect(a.crn).toBe(`crn:v1:local:private:blockvault-hsm:local:a/default:${a.id}:instance:${a.id}`);
      expect(a.createdAtMs).toBe(h.clock.nowMs());
      expect(await h.hsm.getInstance(a.id)).toEqual(a);
      expect((await h.hsm.listInstances()).map((i) => i.name)).toEqual(['crypto-1']);
      await expectCode(h.hsm.createInstance({ name: 'crypto-1' }), 'ALREADY_EXISTS');
      await expectCode(h.hsm.createInstance({ name: 'platform' }), 'ALREADY_EXISTS');
      await expectCode(h.hsm.createInstance({ name: '' }), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.createInstance({ name: 'a\nb' }), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.createInstance(undefined as never), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.getInstance('nope'), 'NOT_FOUND');
      await expectCode(h.hsm.getInstance('../etc'), 'INVALID_ARGUMENT');
    });
  });

  describe('root keys', () => {
    it('creates a key: Active, version 1, full CRN, no material in the answer', async () => {
      const { instance, key } = await setupKey(h.hsm);
      expect(key).toMatchObject({
        name: 'db-root',
        instanceId: instance.id,
        state: KeyState.Active,
        stateName: 'Active',
        version: 1,
        imported: false,
        platformManaged: false,
        dualAuthDelete: false,
        deletionAuthorizedBy: null,
        rotationPolicy: null,
        rotatedAtMs: null,
        destroyedAtMs: null,
      });
      expect(key.crn).toBe(`crn:v1:local:private:blockvault-hsm:local:a/default:${instance.id}:key:${key.id}`);
      expect(key.versions).toEqual([{ version: 1, createdAtMs: h.clock.nowMs(), destroyedAtMs: null }]);
      expect(Object.keys(key).some((k) => /material|secret|bytes/i.test(k))).toBe(false);
      expect(await h.hsm.getKey(key.crn)).toEqual(key);
      expect((await h.hsm.listKeys({ instanceId: instance.id })).map((k) => k.id)).toEqual([key.id]);
    });

    it('refuses bad input: unknown instance, duplicate name, bad policy, bare ids and foreign CRNs', async () => {
      const { instance, key } = await setupKey(h.hsm);
      await expectCode(h.hsm.createRootKey('missing', { name: 'x' }), 'NOT_FOUND');
      await expectCode(h.hsm.createRootKey(instance.id, { name: 'db-root' }), 'ALREADY_EXISTS');
      await expectCode(h.hsm.createRootKey(instance.id, { name: 'x', rotationPolicy: { intervalMs: 1000 } }), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.createRootKey(instance.id, { name: 'x', dualAuthDelete: 'yes' as never }), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.getKey(key.id), 'INVALID_CRN');
      await expectCode(h.hsm.getKey(42 as never), 'INVALID_CRN');
      await expectCode(h.hsm.getKey(key.crn.replace(':key:', ':volume:')), 'INVALID_CRN');
      await expectCode(h.hsm.getKey(key.crn.replace('a/default', 'a/other')), 'NOT_FOUND');
      await expectCode(h.hsm.getKey(key.crn.replace(instance.id, 'other-instance')), 'NOT_FOUND');
      await expectCode(h.hsm.getKey(key.crn.replace('blockvault-hsm', 'hs-crypto')), 'NOT_FOUND');
      await expectCode(h.hsm.wrap(key.id, randomBytes(64), STORAGE), 'INVALID_CRN');
      await expectCode(h.hsm.listKeys({ instanceId: 'missing' }), 'NOT_FOUND');
    });

    it('imports 32 bytes (BYOK) and refuses other sizes and all-zero material', async () => {
      const { instance } = await setupKey(h.hsm);
      const material = randomBytes(32);
      const copy = Buffer.from(material);
      const key = await h.hsm.importRootKey(instance.id, { name: 'byok', material });
      expect(key).toMatchObject({ imported: true, version: 1, state: KeyState.Active });
      expect(material.equals(copy)).toBe(true); // the caller's buffer is left alone
      await expectCode(h.hsm.importRootKey(instance.id, { name: 'short', material: randomBytes(16) }), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.importRootKey(instance.id, { name: 'zero', material: new Uint8Array(32) }), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.importRootKey(instance.id, { name: 'str', material: 'x'.repeat(32) as never }), 'INVALID_ARGUMENT');
    });
  });

  describe('wrap, unwrap, rewrap', () => {
    it('round-trips a 64-byte data key with AES-KWP under the current version', async () => {
      const { key } = await setupKey(h.hsm);
      const dek = randomBytes(64);
      const wrapped = await h.hsm.wrap(key.crn, dek, STORAGE);
      expect(wrapped).toMatchObject({ keyCrn: key.crn, keyVersion: 1 });
      expect(wrapped.wrapped.length).toBe(72);
      const unwrapped = await h.hsm.unwrap(key.crn, wrapped.wrapped, 1, STORAGE);
      expect(Buffer.from(unwrapped.plaintext).equals(dek)).toBe(true);
      expect(unwrapped).toMatchObject({ keyVersion: 1, rewrapRecommended: false });
    });

    it('an imported key wraps exactly as RFC 5649 with that material would', async () => {
      const { instance } = await setupKey(h.hsm);
      const { kwpWrap } = await import('../../src/hsm/kwp.js');
      const material = randomBytes(32);
      const key = await h.hsm.importRootKey(instance.id, { name: 'byok', material });
      const dek = randomBytes(64);
      const wrapped = await h.hsm.wrap(key.crn, dek, STORAGE);
      expect(Buffer.from(wrapped.wrapped).equals(kwpWrap(material, dek))).toBe(true);
    });

    it('after rotation, the old version still unwraps and recommends a rewrap; rewrap moves to the new version', async () => {
      const { key } = await setupKey(h.hsm);
      const dek = randomBytes(64);
      const v1 = await h.hsm.wrap(key.crn, dek, STORAGE);
      expect(await h.hsm.rotateKey(key.crn)).toEqual([]);
      const rotated = await h.hsm.getKey(key.crn);
      expect(rotated.version).toBe(2);
      expect(rotated.rotatedAtMs).toBe(h.clock.nowMs());
      expect(rotated.versions.map((v) => v.version)).toEqual([1, 2]);
      const old = await h.hsm.unwrap(key.crn, v1.wrapped, 1, STORAGE);
      expect(old).toMatchObject({ keyVersion: 1, rewrapRecommended: true });
      expect(Buffer.from(old.plaintext).equals(dek)).toBe(true);
      const v2 = await h.hsm.rewrap(key.crn, v1.wrapped, 1, STORAGE);
      expect(v2.keyVersion).toBe(2);
      expect(Buffer.from(v2.wrapped).equals(Buffer.from(v1.wrapped))).toBe(false);
      const fresh = await h.hsm.unwrap(key.crn, v2.wrapped, 2, STORAGE);
      expect(fresh.rewrapRecommended).toBe(false);
      expect(Buffer.from(fresh.plaintext).equals(dek)).toBe(true);
      expect((await h.hsm.wrap(key.crn, dek, STORAGE)).keyVersion).toBe(2);
    });

    it('refuses a wrong version, altered bytes and bad sizes', async () => {
      const { key } = await setupKey(h.hsm);
      const wrapped = await h.hsm.wrap(key.crn, randomBytes(64), STORAGE);
      await h.hsm.rotateKey(key.crn);
      await expectCode(h.hsm.unwrap(key.crn, wrapped.wrapped, 2, STORAGE), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.unwrap(key.crn, wrapped.wrapped, 3, STORAGE), 'NOT_FOUND');
      await expectCode(h.hsm.unwrap(key.crn, wrapped.wrapped, 0, STORAGE), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.unwrap(key.crn, wrapped.wrapped, 1.5, STORAGE), 'INVALID_ARGUMENT');
      const altered = Buffer.from(wrapped.wrapped);
      altered[10]! ^= 0x80;
      await expectCode(h.hsm.unwrap(key.crn, altered, 1, STORAGE), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.rewrap(key.crn, altered, 1, STORAGE), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.wrap(key.crn, new Uint8Array(0), STORAGE), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.wrap(key.crn, randomBytes(2000), STORAGE), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.wrap(key.crn, 'dek' as never, STORAGE), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.unwrap(key.crn, randomBytes(7), 1, STORAGE), 'INVALID_ARGUMENT');
    });
  });

  describe('authorizations', () => {
    it('wrap, unwrap, rewrap and registrations need a Reader authorization on the instance', async () => {
      const instance = await h.hsm.createInstance({ name: 'crypto-1' });
      const key = await h.hsm.createRootKey(instance.id, { name: 'k' });
      const dek = randomBytes(64);
      await expectCode(h.hsm.wrap(key.crn, dek, STORAGE), 'NOT_AUTHORIZED');
      await expectCode(h.hsm.wrap(key.crn, dek, undefined as never), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.wrap(key.crn, dek, { sourceService: '' }), 'INVALID_ARGUMENT');
      const reg = { keyCrn: key.crn, resourceCrn: 'crn:v1:local:private:blockvault:local:a/default:e:volume:v1', keyVersion: 1 };
      await expectCode(h.hsm.createRegistration(reg, STORAGE), 'NOT_AUTHORIZED');

      // Authorized for one source instance only.
      const narrow = await h.hsm.authorize({ sourceService: 'blockvault', sourceInstance: 'engine-2', targetInstance: instance.id, role: 'Reader' });
      await expectCode(h.hsm.wrap(key.crn, dek, STORAGE), 'NOT_AUTHORIZED');
      const wrapped = await h.hsm.wrap(key.crn, dek, { sourceService: 'blockvault', sourceInstance: 'engine-2' });

      // Authorized for every instance of the service; idempotent.
      const all = await h.hsm.authorize({ sourceService: 'blockvault', targetInstance: instance.id, role: 'Reader' });
      expect(all.sourceInstance).toBe('*');
      expect((await h.hsm.authorize({ sourceService: 'blockvault', targetInstance: instance.id, role: 'Reader' })).id).toBe(all.id);
      await h.hsm.unwrap(key.crn, wrapped.wrapped, 1, STORAGE);
      await h.hsm.createRegistration(reg, STORAGE);
      await expectCode(h.hsm.wrap(key.crn, dek, { sourceService: 'other-service' }), 'NOT_AUTHORIZED');
      expect((await h.hsm.listAuthorizations()).map((a) => a.id).sort()).toEqual([narrow.id, all.id].sort());

      await h.hsm.revoke(all.id);
      await expectCode(h.hsm.unwrap(key.crn, wrapped.wrapped, 1, STORAGE), 'NOT_AUTHORIZED');
      await expectCode(h.hsm.rewrap(key.crn, wrapped.wrapped, 1, STORAGE), 'NOT_AUTHORIZED');
      await expectCode(h.hsm.deleteRegistration(reg.keyCrn, reg.resourceCrn, STORAGE), 'NOT_AUTHORIZED');
      await expectCode(h.hsm.revoke(all.id), 'NOT_FOUND');
    });

    it('refuses malformed authorizations', async () => {
      const instance = await h.hsm.createInstance({ name: 'crypto-1' });
      await expectCode(h.hsm.authorize({ sourceService: 'blockvault', targetInstance: instance.id, role: 'Writer' as never }), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.authorize({ sourceService: 'block vault', targetInstance: instance.id, role: 'Reader' }), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.authorize({ sourceService: 'blockvault', targetInstance: 'missing', role: 'Reader' }), 'NOT_FOUND');
    });
  });

  describe('platform keys', () => {
    it('creates platform-managed keys in the internal instance, usable by the storage service at once', async () => {
      const key = await h.hsm.createPlatformKey();
      expect(key).toMatchObject({ platformManaged: true, instanceId: 'platform', state: KeyState.Active, imported: false });
      const dek = randomBytes(64);
      const wrapped = await h.hsm.wrap(key.crn, dek, STORAGE);
      expect(Buffer.from((await h.hsm.unwrap(key.crn, wrapped.wrapped, 1, STORAGE)).plaintext).equals(dek)).toBe(true);
      const second = await h.hsm.createPlatformKey();
      expect(second.id).not.toBe(key.id);
      const instances = await h.hsm.listInstances();
      expect(instances.filter((i) => i.platformManaged).map((i) => i.id)).toEqual(['platform']);
      const grants = await h.hsm.listAuthorizations({ targetInstance: 'platform' });
      expect(grants).toHaveLength(1);
      await expectCode(h.hsm.revoke(grants[0]!.id), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.createRootKey('platform', { name: 'mine' }), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.wrap(key.crn, dek, { sourceService: 'someone-else' }), 'NOT_AUTHORIZED');
    });
  });

  describe('states (DESIGN.md: Active 1, Suspended 2, Deactivated 3, Destroyed 5)', () => {
    it('Active allows wrap, unwrap, rewrap, rotate; disable -> Suspended', async () => {
      const { key } = await setupKey(h.hsm);
      const w = await h.hsm.wrap(key.crn, randomBytes(64), STORAGE);
      await h.hsm.unwrap(key.crn, w.wrapped, 1, STORAGE);
      await h.hsm.rewrap(key.crn, w.wrapped, 1, STORAGE);
      await h.hsm.rotateKey(key.crn);
      await expectCode(h.hsm.enableKey(key.crn), 'KEY_STATE');
      const suspended = await h.hsm.disableKey(key.crn);
      expect(suspended).toMatchObject({ state: KeyState.Suspended, stateName: 'Suspended' });
    });

    it('Suspended allows reading metadata, enable and delete; refuses the rest with KEY_STATE', async () => {
      const { key } = await setupKey(h.hsm);
      const w = await h.hsm.wrap(key.crn, randomBytes(64), STORAGE);
      await h.hsm.disableKey(key.crn);
      expect((await h.hsm.getKey(key.crn)).state).toBe(KeyState.Suspended);
      const refusal = await expectCode(h.hsm.wrap(key.crn, randomBytes(64), STORAGE), 'KEY_STATE');
      expect(refusal.message).toMatch(/enableKey/);
      await expectCode(h.hsm.unwrap(key.crn, w.wrapped, 1, STORAGE), 'KEY_STATE');
      await expectCode(h.hsm.rewrap(key.crn, w.wrapped, 1, STORAGE), 'KEY_STATE');
      await expectCode(h.hsm.rotateKey(key.crn), 'KEY_STATE');
      await expectCode(h.hsm.disableKey(key.crn), 'KEY_STATE');
      await expectCode(h.hsm.deactivateKey(key.crn), 'KEY_STATE');
      expect((await h.hsm.enableKey(key.crn)).state).toBe(KeyState.Active);
      await h.hsm.unwrap(key.crn, w.wrapped, 1, STORAGE);
      await h.hsm.disableKey(key.crn);
      expect((await h.hsm.deleteKey(key.crn)).key.state).toBe(KeyState.Destroyed);
    });

    it('Deactivated allows unwrap, rewrap and delete only, and never returns to Active', async () => {
      const { key } = await setupKey(h.hsm);
      const w = await h.hsm.wrap(key.crn, randomBytes(64), STORAGE);
      const deactivated = await h.hsm.deactivateKey(key.crn);
      expect(deactivated).toMatchObject({ state: KeyState.Deactivated, stateName: 'Deactivated' });
      await h.hsm.unwrap(key.crn, w.wrapped, 1, STORAGE);
      await h.hsm.rewrap(key.crn, w.wrapped, 1, STORAGE);
      await expectCode(h.hsm.wrap(key.crn, randomBytes(64), STORAGE), 'KEY_STATE');
      await expectCode(h.hsm.rotateKey(key.crn), 'KEY_STATE');
      await expectCode(h.hsm.enableKey(key.crn), 'KEY_STATE');
      await expectCode(h.hsm.disableKey(key.crn), 'KEY_STATE');
      await expectCode(h.hsm.deactivateKey(key.crn), 'KEY_STATE');
      expect((await h.hsm.deleteKey(key.crn)).key.state).toBe(KeyState.Destroyed);
    });

    it('Destroyed allows reading metadata only; everything else is KEY_DESTROYED', async () => {
      const { key } = await setupKey(h.hsm);
      const w = await h.hsm.wrap(key.crn, randomBytes(64), STORAGE);
      const { key: destroyed } = await h.hsm.deleteKey(key.crn);
      expect(destroyed).toMatchObject({ state: KeyState.Destroyed, stateName: 'Destroyed', destroyedAtMs: h.clock.nowMs() });
      expect(destroyed.versions.every((v) => v.destroyedAtMs === h.clock.nowMs())).toBe(true);
      expect(await h.hsm.getKey(key.crn)).toEqual(destroyed);
      await expectCode(h.hsm.wrap(key.crn, randomBytes(64), STORAGE), 'KEY_DESTROYED');
      await expectCode(h.hsm.unwrap(key.crn, w.wrapped, 1, STORAGE), 'KEY_DESTROYED');
      await expectCode(h.hsm.rewrap(key.crn, w.wrapped, 1, STORAGE), 'KEY_DESTROYED');
      await expectCode(h.hsm.rotateKey(key.crn), 'KEY_DESTROYED');
      await expectCode(h.hsm.enableKey(key.crn), 'KEY_DESTROYED');
      await expectCode(h.hsm.disableKey(key.crn), 'KEY_DESTROYED');
      await expectCode(h.hsm.deactivateKey(key.crn), 'KEY_DESTROYED');
      await expectCode(h.hsm.deleteKey(key.crn, { force: true }), 'KEY_DESTROYED');
      await expectCode(h.hsm.setRotationPolicy(key.crn, { intervalMs: 3_600_000 }), 'KEY_DESTROYED');
      await expectCode(h.hsm.createRegistration({ keyCrn: key.crn, resourceCrn: 'crn:v1:a:b:c:d:a/e:f:volume:g', keyVersion: 1 }, STORAGE), 'KEY_DESTROYED');
      // The name is free again for a new key.
      await h.hsm.createRootKey(key.instanceId, { name: key.name });
    });
  });

  describe('rotation', () => {
    it('created keys rotate with HSM material; imported keys only with new material', async () => {
      const { instance, key } = await setupKey(h.hsm);
      await expectCode(h.hsm.rotateKey(key.crn, { material: randomBytes(32) }), 'INVALID_ARGUMENT');
      const first = randomBytes(32);
      const imported = await h.hsm.importRootKey(instance.id, { name: 'byok', material: first });
      await expectCode(h.hsm.rotateKey(imported.crn), 'INVALID_ARGUMENT');
      await expectCode(h.hsm.rotateKey(imported.crn, { material: first }), 'INVALID_ARGUMENT'); // same material again
      await expectCode(h.hsm.rotateKey(imported.crn, { material: randomBytes(31) }), 'INVALID_ARGUMENT');
      await h.hsm.rotateKey(imported.crn, { material: randomBytes(32) });
      expect((await h.hsm.getKey(imported.crn)).version).toBe(2);
      await expectCode(h.hsm.rotateKey(key.crn, { rewrapOnly: 'yes' as never }), 'INVALID_ARGUMENT');
    });

    it('returns what hooks.onRotated returns and passes rewrapOnly', async () => {
      const { key } = await setupKey(h.hsm);
      const calls: unknown[] = [];
      h.hsm.setHooks({
        onRotated: async (info, options) => {
          calls.push([info.version, options]);
          return [{ id: 'task-1' }];
        },
      });
      expect(await h.hsm.rotateKey(key.crn, { rewrapOnly: true })).toEqual([{ id: 'task-1' }]);
      expect(calls).toEqual([[2, { rewrapOnly: true }]]);
    });
  });
});
