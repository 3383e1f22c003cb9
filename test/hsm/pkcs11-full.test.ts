/**
 * A full PKCS#11 token, end to end: a real module answering CKR_DEVICE_MEMORY.
 *
 * SoftHSM2 has no object limit (and a full file system gives CKR_FUNCTION_FAILED, not
 * CKR_DEVICE_MEMORY), so the engine runs on the quota module (test/hsm/fixtures/quota-pkcs11.c,
 * built by test/helpers/quota-pkcs11.ts): SoftHSM2 itself, the same token, behind a module that
 * answers CKR_DEVICE_MEMORY to any call that would make a token object past QUOTA_OBJECTS. Session
 * objects (the provider's temporary data-key objects, CKA_TOKEN false) are not limited, as on a
 * real HSM whose session objects live in RAM and whose token objects live in its key store.
 *
 * Each test gives itself a fixed amount of room: the test tops the token up to the quota with
 * filler data objects of its own (leaveRoom), so the engine's objects and those of earlier tests
 * need no bookkeeping. What must hold once the token is full:
 *
 * - every operation that needs a new token object (createRootKey, importRootKey, rotateKey, a
 *   volume without a key, which makes a platform key, createImportToken) fails with HSM_FULL and a
 *   message that says the token has no room and what to do;
 * - nothing is half made: no key, version, volume or import token in the metadata, no new token
 *   object, no session object left on the token, and the audit log records the failure with its code;
 * - what exists goes on: keys wrap and unwrap (session objects only), volumes open and read, a new
 *   volume under an existing key is created;
 * - deleting a key (normal or forced) destroys its objects, and creating works again;
 * - a new engine directory on a full token fails to open with HSM_FULL and opens once there is room.
 */
import { constants, publicEncrypt, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine.js';
import { isBlockvaultError } from '../../src/errors.js';
import { resolvePkcs11Options, type Pkcs11Options } from '../../src/hsm/pkcs11/index.js';
import { Pkcs11Token } from '../../src/hsm/pkcs11/session-pool.js';
import { KeyState, type RootKeyInfo } from '../../src/hsm/types.js';
import { openTestEngine, rootKey } from '../helpers/engine.js';
import { quotaModule, quotaModuleCheck, setQuota } from '../helpers/quota-pkcs11.js';
import { softHsmToken } from '../helpers/softhsm.js';

const MIB = 1024 * 1024;
/** The quota module's limit for this process (it reads it once, at load). */
const QUOTA_OBJECTS = 24;
const FILLER_LABEL = 'quota-test/filler';
/** Room each test starts with, for its engine's metadata key and the keys it sets up. */
const ROOM_TO_SET_UP = 8;

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** The code `promise` fails with, or 'ok'. */
async function outcome(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => 'ok',
    (error: unknown) => (isBlockvaultError(error) ? error.code : `untyped: ${String((error as Error)?.stack ?? error)}`),
  );
}

async function failure(promise: Promise<unknown>): Promise<Error & { code?: string; details?: Record<string, unknown> }> {
  return promise.then(
    () => {
      throw new Error('expected the operation to fail');
    },
    (error: unknown) => error as Error,
  );
}

/** Name to current version of the keys that are not destroyed. */
function keyVersions(keys: RootKeyInfo[]): Record<string, number> {
  return Object.fromEntries(keys.filter((k) => k.state !== KeyState.Destroyed).map((k) => [k.name, k.version]));
}

const title = quotaModuleCheck.ok ? 'a full PKCS#11 token (SoftHSM2 behind a quota module)' : `a full PKCS#11 token (skipped: ${quotaModuleCheck.reason})`;

describe.skipIf(!quotaModuleCheck.ok)(title, () => {
  let options: Pkcs11Options;
  /** The test's own reference to the engine's token: same module, same login, same pool. */
  let token: Pkcs11Token;

  beforeAll(() => {
    const softHsm = softHsmToken(); // SOFTHSM2_CONF before the inner module is first loaded
    setQuota(QUOTA_OBJECTS);
    options = { ...softHsm.options, module: quotaModule() };
    token = Pkcs11Token.acquire(resolvePkcs11Options(options));
  });
  afterAll(() => token?.release());

  /** Objects on the token this login sees: token objects (CKA_TOKEN true) or session objects. */
  function countObjects(session: Buffer, onToken: boolean, label?: string): number {
    const template = [{ type: token.p.CKA_TOKEN, value: onToken }, ...(label === undefined ? [] : [{ type: token.p.CKA_LABEL, value: label }])];
    token.module.C_FindObjectsInit(session, template);
    try {
      return token.module.C_FindObjects(session, 1 << 16).length;
    } finally {
      token.module.C_FindObjectsFinal(session);
    }
  }

  const tokenObjects = (): Promise<number> => token.withSession((s) => countObjects(s, true));
  const sessionObjects = (): Promise<number> => token.withSession((s) => countObjects(s, false));

  /**
   * Filler data objects added or removed so that exactly `room` more token objects fit. Fillers
   * go through the quota module too, so they can never overfill it.
   */
  async function leaveRoom(room: number): Promise<void> {
    await token.withSession((s) => {
      let count = countObjects(s, true);
      while (count + room > QUOTA_OBJECTS) {
        token.module.C_FindObjectsInit(s, [{ type: token.p.CKA_TOKEN, value: true }, { type: token.p.CKA_LABEL, value: FILLER_LABEL }]);
        const [filler] = token.module.C_FindObjects(s, 1);
        token.module.C_FindObjectsFinal(s);
        if (filler === undefined) throw new Error(`the token holds ${count} objects and no filler: raise QUOTA_OBJECTS`);
        token.module.C_DestroyObject(s, filler);
        count -= 1;
      }
      for (; count + room < QUOTA_OBJECTS; count += 1) {
        token.module.C_CreateObject(s, [
          { type: token.p.CKA_CLASS, value: token.p.CKO_DATA },
          { type: token.p.CKA_TOKEN, value: true },
          { type: token.p.CKA_PRIVATE, value: true },
          { type: token.p.CKA_LABEL, value: FILLER_LABEL },
          { type: token.p.CKA_VALUE, value: Buffer.from('filler') },
        ]);
      }
    });
  }

  function engineDir(): string {
    const dir = mkdtempSync(join(tmpdir(), 'bv-p11-full-'));
    dirs.push(dir);
    return dir;
  }

  const openEngine = (dir: string = engineDir()): Promise<Engine> => openTestEngine(dir, { hsm: { pkcs11: options } });

  /** The audit log's last event of `action`. */
  async function lastEvent(engine: Engine, action: string): Promise<{ outcome: string; code: string | null; reason: string | null } | undefined> {
    const events = (await engine.events.list({ action })) as Array<{ outcome: string; code: string | null; reason: string | null }>;
    return events.at(-1);
  }

  it('the quota module refuses token objects past its limit with CKR_DEVICE_MEMORY and lets session objects through', async () => {
    await leaveRoom(0);
    await token.withSession((s) => {
      const data = (onToken: boolean) => [
        { type: token.p.CKA_CLASS, value: token.p.CKO_DATA },
        { type: token.p.CKA_TOKEN, value: onToken },
        { type: token.p.CKA_PRIVATE, value: true },
        { type: token.p.CKA_LABEL, value: 'quota-test/probe' },
      ];
      expect(() => token.module.C_CreateObject(s, data(true))).toThrow(/^CKR_DEVICE_MEMORY/);
      // A session object passes, and another session's find sees it: the leak checks below rely on that.
      const object = token.module.C_CreateObject(s, data(false));
      return object;
    }).then(async (object) => {
      expect(await sessionObjects()).toBe(1);
      await token.withSession((s) => token.module.C_DestroyObject(s, object));
    });
    expect(await sessionObjects()).toBe(0);
    expect(await tokenObjects()).toBe(QUOTA_OBJECTS);
  });

  it('on a full token, every operation that needs a token object fails with HSM_FULL and leaves nothing behind; existing keys and volumes go on working', async () => {
    await leaveRoom(ROOM_TO_SET_UP);
    const engine = await openEngine();
    try {
      const created = await rootKey(engine, { name: 'created' });
      const imported = await rootKey(engine, { name: 'imported', material: randomBytes(32) });
      const vol = await engine.createVolume({ name: 'v', sizeBytes: MIB, diskEncryptionKeyCrn: created.crn });
      const data = randomBytes(64 * 1024);
      await vol.write(0, data);
      await vol.flush();
      await vol.close(); // so that opening it again unwraps its data key on the full token
      const spare = await engine.hsm.createInstance({ name: 'spare' });

      await leaveRoom(0);
      const keysBefore = await engine.hsm.listKeys();
      const volumesBefore = engine.listVolumes();
      const objectsBefore = await tokenObjects();

      const full = await failure(engine.hsm.createRootKey(spare.id, { name: 'one-too-many' }));
      expect(full.code).toBe('HSM_FULL');
      expect(full.details).toEqual({ pkcs11: 'CKR_DEVICE_MEMORY' });
      expect(full.message).toMatch(/token is full/);
      expect(full.message).toMatch(/delete .*keys|token with more room/);
      expect(await lastEvent(engine, 'hs-crypto.secrets.create')).toMatchObject({ outcome: 'failure', code: 'HSM_FULL' });

      expect(await outcome(engine.hsm.importRootKey(spare.id, { name: 'byok-too-many', material: randomBytes(32) }))).toBe('HSM_FULL');
      expect(await lastEvent(engine, 'hs-crypto.secrets.import')).toMatchObject({ outcome: 'failure', code: 'HSM_FULL' });

      // A created key rotates with fresh material (C_GenerateKey); an imported one with new material
      // (C_CreateObject), after the duplicate check wrapped a probe session object under each version.
      expect(await outcome(engine.hsm.rotateKey(created.crn))).toBe('HSM_FULL');
      expect(await outcome(engine.hsm.rotateKey(imported.crn, { material: randomBytes(32) }))).toBe('HSM_FULL');
      expect(await lastEvent(engine, 'hs-crypto.secrets.rotate')).toMatchObject({ outcome: 'failure', code: 'HSM_FULL' });

      // A volume without a key needs a platform key first: no key, and no volume either.
      expect(await outcome(engine.createVolume({ name: 'platform-too-many', sizeBytes: MIB }))).toBe('HSM_FULL');
      // An import token's private key is a token object too.
      expect(await outcome(engine.hsm.createImportToken(spare.id))).toBe('HSM_FULL');

      // Nothing half made: metadata, token objects, session objects.
      expect(await engine.hsm.listKeys()).toEqual(keysBefore);
      expect(keyVersions(await engine.hsm.listKeys())).toEqual({ created: 1, imported: 1 });
      expect(engine.listVolumes()).toEqual(volumesBefore);
      expect(await outcome(engine.hsm.getImportToken(spare.id))).toBe('NOT_FOUND');
      expect(await tokenObjects()).toBe(objectsBefore);
      expect(await sessionObjects()).toBe(0);
      expect(engine.events.verify()).toMatchObject({ ok: true });

      // What exists goes on: unwrap (open the volume), read, write; wrap (a new volume under a key).
      const again = await engine.openVolume('v');
      expect(Buffer.from(await again.read(0, data.length)).equals(data)).toBe(true);
      await again.write(data.length, data);
      expect(Buffer.from(await again.read(data.length, data.length)).equals(data)).toBe(true);
      await again.close();
      const second = await engine.createVolume({ name: 'v2', sizeBytes: MIB, diskEncryptionKeyCrn: imported.crn });
      await second.write(0, data);
      await second.close();
      expect(Buffer.from(await (await engine.openVolume('v2')).read(0, data.length)).equals(data)).toBe(true);
      expect(engine.listVolumes().map((v) => [v.name, v.state])).toEqual([
        ['v', 'active'],
        ['v2', 'active'],
      ]);
      expect(await sessionObjects()).toBe(0);
      expect(await tokenObjects()).toBe(objectsBefore);
    } finally {
      await engine.close();
    }
  });

  it('on a full token, createImportToken still replaces an instance\'s import token: the old one makes room for the new one, which works; the old public key no longer does', async () => {
    await leaveRoom(ROOM_TO_SET_UP);
    const engine = await openEngine();
    try {
      const instance = await engine.hsm.createInstance({ name: 'byok' });
      await engine.hsm.createImportToken(instance.id, { maxRetrievals: 2 });
      const old = await engine.hsm.getImportToken(instance.id);
      const material = randomBytes(32);
      const toOld = publicEncrypt({ key: old.publicKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, material);

      await leaveRoom(0);
      const objectsBefore = await tokenObjects();
      // A new instance's first token needs room that is not there...
      const other = await engine.hsm.createInstance({ name: 'no-room' });
      expect(await outcome(engine.hsm.createImportToken(other.id))).toBe('HSM_FULL');
      // ...but a replacement does not.
      const replaced = await engine.hsm.createImportToken(instance.id);
      expect(replaced.retrievals).toBe(0);
      const events = (await engine.events.list({ action: 'hs-crypto.import-token.create' })) as Array<{ outcome: string; details: Record<string, unknown> | null }>;
      expect(events.at(-1)).toMatchObject({ outcome: 'success', details: { replacedPrevious: true, previousRemovedForRoom: true } });
      expect(await tokenObjects()).toBe(objectsBefore);
      expect(await sessionObjects()).toBe(0);
      const fresh = await engine.hsm.getImportToken(instance.id);
      expect(fresh.publicKeyPem).not.toBe(old.publicKeyPem);

      // The import itself makes the root key object: give it that one object of room.
      await leaveRoom(1);
      expect(await outcome(engine.hsm.importRootKeyWithToken(instance.id, { name: 'via-old-token', encryptedMaterial: toOld }))).toBe('INVALID_ARGUMENT');
      const toFresh = publicEncrypt({ key: fresh.publicKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, material);
      const key = await engine.hsm.importRootKeyWithToken(instance.id, { name: 'via-new-token', encryptedMaterial: toFresh });
      expect(key.name).toBe('via-new-token');
      expect(await sessionObjects()).toBe(0);
      expect(engine.events.verify()).toMatchObject({ ok: true });
    } finally {
      await engine.close();
    }
  });

  it('deleting a key makes room again: after a normal delete a new key is created, after a forced delete (cryptoshred) a rotation succeeds', async () => {
    await leaveRoom(ROOM_TO_SET_UP);
    const engine = await openEngine();
    try {
      const unused = await rootKey(engine, { name: 'unused' });
      const inUse = await rootKey(engine, { name: 'in-use' });
      const other = await rootKey(engine, { name: 'other' });
      // Two versions of the key in use, so that the forced delete frees two objects.
      const tasks = await engine.hsm.rotateKey(inUse.crn);
      expect(tasks).toEqual([]);
      const vol = await engine.createVolume({ name: 'v', sizeBytes: MIB, diskEncryptionKeyCrn: inUse.crn });
      await vol.write(0, randomBytes(4096));
      const spare = await engine.hsm.createInstance({ name: 'spare' });

      await leaveRoom(0);
      expect(await outcome(engine.hsm.createRootKey(spare.id, { name: 'after-delete' }))).toBe('HSM_FULL');
      await engine.hsm.deleteKey(unused.crn);
      const objects = await tokenObjects();
      expect(objects).toBe(QUOTA_OBJECTS - 1);
      // The name refused before is free: nothing of the failed attempt was kept.
      const fresh = await engine.hsm.createRootKey(spare.id, { name: 'after-delete' });
      expect(fresh.version).toBe(1);
      expect(await outcome(engine.hsm.rotateKey(other.crn))).toBe('HSM_FULL');

      await engine.hsm.deleteKey(inUse.crn, { force: true });
      expect(engine.listVolumes().map((v) => [v.name, v.state])).toEqual([['v', 'locked']]);
      expect(await tokenObjects()).toBe(QUOTA_OBJECTS - 2);
      await engine.hsm.rotateKey(other.crn);
      await engine.hsm.rotateKey(fresh.crn);
      expect(keyVersions(await engine.hsm.listKeys())).toEqual({ other: 2, 'after-delete': 2 });
      expect(await outcome(engine.hsm.rotateKey(other.crn))).toBe('HSM_FULL');
      expect(await sessionObjects()).toBe(0);
    } finally {
      await engine.close();
    }
  });

  it('a new engine directory on a full token: Engine.open fails with HSM_FULL (no room for its metadata key), and the same directory opens once there is room', async () => {
    await leaveRoom(0);
    const dir = engineDir();
    const full = await failure(openEngine(dir));
    expect(full.code).toBe('HSM_FULL');
    expect(full.message).toMatch(/token is full .*metadata key/);
    expect(await sessionObjects()).toBe(0);
    // No marker naming a namespace without its metadata key: that would be KEYSTORE_CORRUPT forever.
    expect(existsSync(join(dir, 'hsm', 'pkcs11.json'))).toBe(false);

    await leaveRoom(2);
    const engine = await openEngine(dir);
    try {
      const key = await rootKey(engine);
      const vol = await engine.createVolume({ name: 'v', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn });
      await vol.write(0, Buffer.from('after the token had room'));
      await vol.close();
      expect(await tokenObjects()).toBe(QUOTA_OBJECTS);
    } finally {
      await engine.close();
    }
    const reopened = await openEngine(dir);
    try {
      expect(Buffer.from(await (await reopened.openVolume('v')).read(0, 24)).toString()).toBe('after the token had room');
    } finally {
      await reopened.close();
    }
  });
});
