import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AuditLog } from '../../src/audit/index.js';
import { ManualClock } from '../../src/clock.js';
import { KeyState, SoftHsm } from '../../src/hsm/index.js';
import { HSM_DB_NAME } from '../../src/hsm/metadata-store.js';
import { SoftwareKeyProvider } from '../../src/hsm/software-provider.js';
import { PASSPHRASE, STORAGE, expectCode, openHarness, forEachProvider, setupKey, volumeCrn, type Harness } from './helpers.js';

const harnesses: Harness[] = [];
async function harness(...args: Parameters<typeof openHarness>): Promise<Harness> {
  const h = await openHarness(...args);
  harnesses.push(h);
  return h;
}
afterEach(async () => {
  for (const h of harnesses.splice(0)) await h.cleanup();
});

/** Every regular file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(path));
    else if (entry.isFile()) out.push(path);
  }
  return out;
}

function keyFiles(dir: string): string[] {
  return readdirSync(join(dir, 'hsm', 'keys')).sort();
}

describe('keystore at rest', () => {
  it('a wrong passphrase gives WRONG_PASSPHRASE at once and changes nothing', async () => {
    const h = await harness();
    const { key } = await setupKey(h.hsm);
    await h.close();
    const before = filesUnder(join(h.dir, 'hsm')).map((f) => [f, readFileSync(f).toString('hex')]);
    const error = await expectCode(h.reopen({ passphrase: 'wrong passphrase' }), 'WRONG_PASSPHRASE');
    expect(error.message).toMatch(/wrong HSM passphrase.*nothing was opened or changed/);
    expect(filesUnder(join(h.dir, 'hsm')).map((f) => [f, readFileSync(f).toString('hex')])).toEqual(before);
    await h.reopen();
    expect((await h.hsm.getKey(key.crn)).state).toBe(KeyState.Active);
  });

  it('refuses a missing secret, both secrets, an empty passphrase and the wrong kind of secret', async () => {
    const h = await harness();
    await h.close();
    const keyFile = join(h.dir, 'master.key');
    writeFileSync(keyFile, randomBytes(32));
    await expectCode(h.reopen({ passphrase: '' }), 'INVALID_ARGUMENT');
    await expectCode(h.reopen({ keyFile }), 'WRONG_PASSPHRASE');
    const root = open({ path: join(h.dir, 'engine.lmdb') });
    try {
      const audit = await AuditLog.open({ root, clock: h.clock });
      await expectCode(SoftHsm.open({ root, dir: h.dir, clock: h.clock, audit }), 'INVALID_ARGUMENT');
      await expectCode(SoftHsm.open({ root, dir: h.dir, clock: h.clock, audit, passphrase: PASSPHRASE, keyFile }), 'INVALID_ARGUMENT');
    } finally {
      await root.close();
    }
  });

  it('key-file mode: 32 raw bytes or 64 hex digits; a different key file is WRONG_PASSPHRASE', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bv-hsm-keyfile-'));
    const keyFile = join(dir, 'master.key');
    const raw = randomBytes(32);
    writeFileSync(keyFile, raw);
    const h = await harness({ keyFile }, dir);
    const { key } = await setupKey(h.hsm);
    const wrapped = await h.hsm.wrap(key.crn, randomBytes(64), STORAGE);
    const keystore = JSON.parse(readFileSync(join(dir, 'hsm', 'keystore.json'), 'utf8'));
    expect(keystore.kdf.type).toBe('keyfile');
    writeFileSync(keyFile, `${raw.toString('hex')}\n`);
    await h.reopen({ keyFile });
    await h.hsm.unwrap(key.crn, wrapped.wrapped, 1, STORAGE);
    writeFileSync(keyFile, randomBytes(32));
    await expectCode(h.reopen({ keyFile }), 'WRONG_PASSPHRASE');
    writeFileSync(keyFile, randomBytes(31));
    await expectCode(h.reopen({ keyFile }), 'INVALID_ARGUMENT');
    await expectCode(h.reopen({ keyFile: join(dir, 'missing.key') }), 'INVALID_ARGUMENT');
    await expectCode(h.reopen({ passphrase: PASSPHRASE, keyFile: undefined }), 'WRONG_PASSPHRASE');
    writeFileSync(keyFile, raw);
    await h.reopen({ keyFile });
  });

  it('uses scrypt N=2^15, r=8, p=1 by default and stores only parameters, salt and a verifier', async () => {
    const h = await harness({ scryptN: undefined });
    const keystore = JSON.parse(readFileSync(join(h.dir, 'hsm', 'keystore.json'), 'utf8'));
    expect(keystore.kdf).toMatchObject({ type: 'scrypt', N: 32768, r: 8, p: 1 });
    expect(Object.keys(keystore).sort()).toEqual(['createdAtMs', 'format', 'kdf', 'verifier', 'version']);
    await h.reopen({ scryptN: undefined });
  });

  it('a damaged or missing keystore.json is KEYSTORE_CORRUPT, not a fresh keystore', async () => {
    const h = await harness();
    await setupKey(h.hsm);
    await h.close();
    const path = join(h.dir, 'hsm', 'keystore.json');
    const original = readFileSync(path);
    writeFileSync(path, '{ not json');
    await expectCode(h.reopen(), 'KEYSTORE_CORRUPT');
    rmSync(path);
    await expectCode(h.reopen(), 'KEYSTORE_CORRUPT');
    expect(existsSync(path)).toBe(false);
    writeFileSync(path, original);
    await h.reopen();
  });

  it('root-key material never appears unsealed in any file under the directory', async () => {
    const h = await harness();
    const { instance } = await setupKey(h.hsm);
    // Known, recognisable material: any copy in a file would be found.
    const material = Buffer.from('6b6e6f776e2d6d6174657269616c2d31deadbeefcafebabe0123456789abcdef', 'hex');
    const key = await h.hsm.importRootKey(instance.id, { name: 'known', material });
    await h.hsm.createRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('a'), keyVersion: 1 }, STORAGE);
    for (let i = 0; i < 20; i += 1) {
      const w = await h.hsm.wrap(key.crn, randomBytes(64), STORAGE);
      await h.hsm.unwrap(key.crn, w.wrapped, 1, STORAGE);
    }
    const second = Buffer.from(material);
    second[0]! ^= 0xff;
    await h.hsm.rotateKey(key.crn, { material: second });
    await h.close();
    const needles = [material, second, Buffer.from(material.toString('hex')), Buffer.from(material.toString('base64'))];
    const files = filesUnder(h.dir);
    expect(files.some((f) => f.endsWith('.sealed'))).toBe(true);
    for (const file of files) {
      const bytes = readFileSync(file);
      for (const needle of needles) expect(bytes.indexOf(needle), `${file} holds the material`).toBe(-1);
    }

    // Force delete: every version's sealed file is gone, and the directory still holds no copy.
    await h.reopen();
    const sealedBefore = keyFiles(h.dir).filter((f) => f.startsWith(key.id));
    expect(sealedBefore).toEqual([`${key.id}.v1.sealed`, `${key.id}.v2.sealed`]);
    await h.hsm.deleteKey(key.crn, { force: true });
    expect(keyFiles(h.dir).filter((f) => f.startsWith(key.id))).toEqual([]);
    await h.close();
    for (const file of filesUnder(h.dir)) {
      const bytes = readFileSync(file);
      for (const needle of needles) expect(bytes.indexOf(needle), `${file} holds the material`).toBe(-1);
    }
  });

  it('sealed files are bound to their key and version: a swapped file fails as KEYSTORE_CORRUPT', async () => {
    const h = await harness();
    const { key, instance } = await setupKey(h.hsm);
    const other = await h.hsm.createRootKey(instance.id, { name: 'other' });
    const w = await h.hsm.wrap(key.crn, randomBytes(64), STORAGE);
    await h.close();
    const keysDir = join(h.dir, 'hsm', 'keys');
    writeFileSync(join(keysDir, `${key.id}.v1.sealed`), readFileSync(join(keysDir, `${other.id}.v1.sealed`)));
    expect(statSync(join(keysDir, `${key.id}.v1.sealed`)).mode & 0o077).toBe(0);
    await h.reopen();
    await expectCode(h.hsm.unwrap(key.crn, w.wrapped, 1, STORAGE), 'KEYSTORE_CORRUPT');
  });
});

describe('persistence', () => {
  // On each key provider (test/helpers/providers.ts).
  forEachProvider('survives close and reopen', (provider) => {
    it('instances, keys, versions, states, policies, authorizations and registrations survive close and reopen', async () => {
      const h = await harness({}, undefined, provider);
      const { instance, key } = await setupKey(h.hsm, { dualAuthDelete: true });
      const dek = randomBytes(64);
      const v1 = await h.hsm.wrap(key.crn, dek, STORAGE);
      await h.hsm.rotateKey(key.crn);
      await h.hsm.createRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('a'), keyVersion: 1, preventKeyDeletion: true }, STORAGE);
      const suspended = await h.hsm.createRootKey(instance.id, { name: 'suspended' });
      await h.hsm.disableKey(suspended.crn);
      const gone = await h.hsm.createRootKey(instance.id, { name: 'gone' });
      await h.hsm.deleteKey(gone.crn);
      await h.hsm.setKeyForDeletion(key.crn, { initiator: 'alice' });
      const before = {
        instances: await h.hsm.listInstances(),
        keys: await h.hsm.listKeys(),
        authorizations: await h.hsm.listAuthorizations(),
        registrations: await h.hsm.listRegistrations(),
      };
      const eventCount = h.audit.list({ limit: 10_000 }).length;
      await h.reopen();
      expect({
        instances: await h.hsm.listInstances(),
        keys: await h.hsm.listKeys(),
        authorizations: await h.hsm.listAuthorizations(),
        registrations: await h.hsm.listRegistrations(),
      }).toEqual(before);
      const unwrapped = await h.hsm.unwrap(key.crn, v1.wrapped, 1, STORAGE);
      expect(Buffer.from(unwrapped.plaintext).equals(dek)).toBe(true);
      expect(unwrapped.rewrapRecommended).toBe(true);
      expect(h.audit.list({ limit: 10_000 }).length).toBe(eventCount + 1);
      expect(h.audit.verify()).toMatchObject({ ok: true });
    });

    it('the HSM refuses use after close with ENGINE_CLOSED and close is idempotent', async () => {
      const h = await harness({}, undefined, provider);
      const { key } = await setupKey(h.hsm);
      await h.hsm.close();
      await h.hsm.close();
      await expectCode(h.hsm.getKey(key.crn), 'ENGINE_CLOSED');
      await expectCode(h.hsm.wrap(key.crn, randomBytes(64), STORAGE), 'ENGINE_CLOSED');
      await expectCode(h.hsm.createInstance({ name: 'x' }), 'ENGINE_CLOSED');
    });
  });

  // Software keystore files; the PKCS#11 counterpart is in pkcs11-provider.test.ts.
  it('finishes a destruction interrupted by a crash, and shreds stray material on open', async () => {
    const h = await harness();
    const { key } = await setupKey(h.hsm);
    await h.hsm.createRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('a'), keyVersion: 1 }, STORAGE);
    // A crash after the intent was recorded but before the material was shredded: the provider
    // fails the destruction, and the process goes away without retrying.
    const destroy = vi.spyOn(SoftwareKeyProvider.prototype, 'destroy').mockRejectedValueOnce(new Error('simulated crash'));
    await expect(h.hsm.deleteKey(key.crn, { force: true, initiator: 'alice' })).rejects.toThrow('simulated crash');
    destroy.mockRestore();
    await h.close();
    expect(keyFiles(h.dir)).not.toEqual([]);
    // And a stray sealed file whose key never made it into the metadata.
    const stray = join(h.dir, 'hsm', 'keys', 'stray-key.v1.sealed');
    writeFileSync(stray, randomBytes(60));
    const tmp = join(h.dir, 'hsm', 'keys', '.half-written.sealed.abc.tmp');
    writeFileSync(tmp, randomBytes(60));

    const destroyed: string[][] = [];
    await h.reopen({ hooks: { onDestroyed: (_key, resources) => void destroyed.push(resources) } });
    expect(existsSync(stray)).toBe(false);
    expect(existsSync(tmp)).toBe(false);
    expect(keyFiles(h.dir)).toEqual([]);
    const info = await h.hsm.getKey(key.crn);
    expect(info.state).toBe(KeyState.Destroyed);
    expect(destroyed).toEqual([[volumeCrn('a')]]);
    const event = h.audit.list({ action: 'hs-crypto.secrets.delete', outcome: 'success' })[0]!;
    expect(event).toMatchObject({ initiator: 'alice', details: { force: true, resumedAfterRestart: true } });
  });
});

describe('authenticated metadata (issue 13)', () => {
  // On each key provider (test/helpers/providers.ts).
  forEachProvider('refuses edited metadata', (provider) => {
    /** Edit the HSM's LMDB records of a closed HSM. */
    async function editMetadata(dir: string, edit: (db: import('lmdb').Database<{ r: Record<string, unknown>; m: string }, string[]>) => void): Promise<void> {
      const root = open({ path: join(dir, 'engine.lmdb') });
      const db = root.openDB<{ r: Record<string, unknown>; m: string }, string[]>(HSM_DB_NAME, { encoding: 'json' });
      root.transactionSync(() => edit(db));
      await root.close();
    }

    it('a Suspended key edited back to Active on disk is refused at open with KEYSTORE_CORRUPT', async () => {
      const h = await harness({}, undefined, provider);
      const { key } = await setupKey(h.hsm);
      await h.hsm.disableKey(key.crn);
      await h.close();
      await editMetadata(h.dir, (db) => {
        const stored = db.get(['key', key.id])!;
        db.putSync(['key', key.id], { ...stored, r: { ...stored.r, state: KeyState.Active } });
      });
      const error = await expectCode(h.reopen(), 'KEYSTORE_CORRUPT');
      expect(error.message).toContain(key.id);
    });

    it('an older genuine record put back (a replay), a removed record, or a record moved to another key are refused', async () => {
      const h = await harness({}, undefined, provider);
      const { key } = await setupKey(h.hsm);
      await h.hsm.createRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('a'), keyVersion: 1 }, STORAGE);
      await h.close();
      let activeRecord: { r: Record<string, unknown>; m: string } | undefined;
      await editMetadata(h.dir, (db) => void (activeRecord = db.get(['key', key.id])));
      await h.reopen();
      await h.hsm.disableKey(key.crn);
      await h.close();
      await editMetadata(h.dir, (db) => db.putSync(['key', key.id], activeRecord!));
      const replay = await expectCode(h.reopen(), 'KEYSTORE_CORRUPT');
      expect(replay.message).toMatch(/older version|removed|added/);

      const h2 = await harness({}, undefined, provider);
      const { key: key2 } = await setupKey(h2.hsm);
      await h2.hsm.createRegistration({ keyCrn: key2.crn, resourceCrn: volumeCrn('b'), keyVersion: 1 }, STORAGE);
      await h2.close();
      await editMetadata(h2.dir, (db) => db.removeSync(['reg', key2.id, volumeCrn('b')]));
      await expectCode(h2.reopen(), 'KEYSTORE_CORRUPT');

      const h3 = await harness({}, undefined, provider);
      const { key: key3 } = await setupKey(h3.hsm);
      await h3.close();
      await editMetadata(h3.dir, (db) => {
        const stored = db.get(['key', key3.id])!;
        db.putSync(['key', 'other-id'], stored);
      });
      await expectCode(h3.reopen(), 'KEYSTORE_CORRUPT');
    });
  });
});

describe('clock', () => {
  it('stamps keys with the injected clock', async () => {
    const clock = new ManualClock(Date.UTC(2030, 5, 1));
    const h = await harness({ clock });
    const { key } = await setupKey(h.hsm);
    expect(key.createdAtMs).toBe(Date.UTC(2030, 5, 1));
  });
});
