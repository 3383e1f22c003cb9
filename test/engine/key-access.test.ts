/**
 * Issue 13: key states and authorizations bind volumes that are already open, and a forced delete
 * locks before it does anything durable.
 * - disableKey (Suspended, 2): I/O on an open volume fails with KEY_STATE at once; enableKey lets it
 *   continue on the same handle. Deactivated (3) keeps unwrap, so I/O continues.
 * - revoking the storage service's Reader authorization: I/O fails with NOT_AUTHORIZED at once (a
 *   cloud service loses the key on its next use); authorizing again resumes it.
 * - deleteKey(force): a read or write started right after the call (before its promise settles)
 *   fails; the volume reports locked in the same turn.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine.js';
import { isBlockvaultError } from '../../src/errors.js';
import { openTestEngine, rootKey } from '../helpers/engine.js';
import { forEachProvider, type ProviderName } from '../helpers/providers.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

afterAll(() => removeTempDirs());

const MIB = 1024 * 1024;

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'ok';
  } catch (error) {
    if (!isBlockvaultError(error)) throw error;
    return error.code;
  }
}

async function setup(provider: ProviderName): Promise<{ engine: Engine; keyCrn: string; instanceId: string; data: Uint8Array; vol: Awaited<ReturnType<Engine['createVolume']>> }> {
  const engine = await openTestEngine(makeTempDir('bv-key-access-'), { provider });
  const key = await rootKey(engine, { name: 'k' });
  const vol = await engine.createVolume({ name: 'v', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn });
  const data = randomBytes(8192);
  await vol.write(0, data);
  return { engine, keyCrn: key.crn, instanceId: key.instanceId, data, vol };
}

// Every case runs against each key provider (test/helpers/providers.ts).
forEachProvider('key access', (provider) => {
  describe('key states bind open volumes', () => {
    it('a suspended key stops reads and writes at once; enabling it resumes them without a reopen', async () => {
      const { engine, keyCrn, data, vol } = await setup(provider);
      const other = await engine.createVolume({ name: 'other', sizeBytes: MIB }); // its own platform key
      await engine.hsm.disableKey(keyCrn);
      expect(await codeOf(vol.read(0, 4096))).toBe('KEY_STATE');
      expect(await codeOf(vol.write(0, randomBytes(4096)))).toBe('KEY_STATE');
      expect(await codeOf(vol.trim(0, 4096))).toBe('KEY_STATE');
      expect(await codeOf(engine.openVolume('v').then((h) => h.read(0, 4096)))).toBe('KEY_STATE');
      expect(await codeOf(other.write(0, randomBytes(4096)))).toBe('ok'); // other keys are untouched
      await engine.hsm.enableKey(keyCrn);
      expect(Buffer.from(await vol.read(0, data.length)).equals(Buffer.from(data))).toBe(true);
      await vol.write(4096, data.subarray(0, 4096));
      // Deactivated keeps unwrap (KMS state 3): the data stays readable and writable.
      await engine.hsm.deactivateKey(keyCrn);
      expect(await codeOf(vol.read(0, 4096))).toBe('ok');
      await engine.close();
    });

    it('revoking the Reader authorization cuts open volumes off; granting it again resumes them', async () => {
      const { engine, instanceId, data, vol } = await setup(provider);
      const [grant] = await engine.hsm.listAuthorizations({ targetInstance: instanceId, sourceService: 'blockvault' });
      await engine.hsm.revoke(grant!.id);
      expect(await codeOf(vol.read(0, 4096))).toBe('NOT_AUTHORIZED');
      expect(await codeOf(vol.write(0, randomBytes(4096)))).toBe('NOT_AUTHORIZED');
      await engine.hsm.authorize({ sourceService: 'blockvault', targetInstance: instanceId, role: 'Reader' });
      expect(Buffer.from(await vol.read(0, data.length)).equals(Buffer.from(data))).toBe(true);
      await engine.close();
    });
  });

  describe('a forced delete locks first', () => {
    it('no read or write started after the call succeeds; the volume is locked in the same turn', async () => {
      const { engine, keyCrn, vol } = await setup(provider);
      const deleting = engine.hsm.deleteKey(keyCrn, { force: true });
      // Same turn as the call: nothing durable has happened yet (the HSM's commits come later).
      expect(vol.info().state).toBe('locked');
      const read = codeOf(vol.read(0, 4096));
      const write = codeOf(vol.write(0, randomBytes(4096)));
      const wrap = codeOf(engine.hsm.wrap(keyCrn, randomBytes(64), { sourceService: 'blockvault' }));
      expect(await read).toBe('VOLUME_LOCKED');
      expect(await write).toBe('VOLUME_LOCKED');
      expect(await wrap).toBe('KEY_DESTROYED');
      const result = await deleting;
      expect(result.key.state).toBe(5);
      expect(await codeOf(engine.hsm.deleteKey(keyCrn, { force: true }))).toBe('KEY_DESTROYED');
      await engine.close();
    });

    it('a refused delete locks nothing and is audited', async () => {
      const { engine, keyCrn, data, vol } = await setup(provider);
      expect(await codeOf(engine.hsm.deleteKey(keyCrn))).toBe('KEY_IN_USE');
      expect(vol.info().state).toBe('active');
      expect(Buffer.from(await vol.read(0, data.length)).equals(Buffer.from(data))).toBe(true);
      const events = await engine.events.list({ action: 'hs-crypto.secrets.delete' });
      expect(events.at(-1)).toMatchObject({ outcome: 'failure', code: 'KEY_IN_USE' });
      await engine.close();
    });
  });

  describe('dual authorization compares people, not strings', () => {
    it("'alice ', 'Alice', full-width 'ａｌｉｃｅ' are alice; 'alice\\u200b' is refused", async () => {
      const engine = await openTestEngine(makeTempDir('bv-dual-'), { provider });
      const instance = await engine.hsm.createInstance({ name: 'i' });
      const key = await engine.hsm.createRootKey(instance.id, { name: 'k', dualAuthDelete: true });
      expect((await engine.hsm.setKeyForDeletion(key.crn, { initiator: '  Alice ' })).deletionAuthorizedBy).toBe('alice');
      for (const same of ['alice ', 'Alice', 'ALICE', '\uff41\uff4c\uff49\uff43\uff45']) {
        expect(await codeOf(engine.hsm.deleteKey(key.crn, { initiator: same }))).toBe('KEY_DELETION_NOT_AUTHORIZED');
      }
      for (const invisible of ['alice\u200b', 'al\u200dice', '\u2066alice', 'alice\u00ad']) {
        expect(await codeOf(engine.hsm.deleteKey(key.crn, { initiator: invisible }))).toBe('INVALID_ARGUMENT');
        expect(await codeOf(engine.hsm.setKeyForDeletion(key.crn, { initiator: invisible }))).toBe('INVALID_ARGUMENT');
      }
      expect((await engine.hsm.getKey(key.crn)).state).toBe(1);
      expect((await engine.hsm.deleteKey(key.crn, { initiator: 'Bob' })).key.state).toBe(5);
      await engine.close();
    });
  });
});
