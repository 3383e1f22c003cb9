/**
 * Provisioning (issue 4): BYOK with an authorized key, a platform key without one, refusals that
 * leave nothing behind, the registration, and the data key (fresh, 512-bit, halves distinct,
 * stored only wrapped).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { open } from 'lmdb';
import { XtsCipher } from '../../src/cipher/index.js';
import { clusterKey } from '../../src/volume/cluster-format.js';
import type { Engine } from '../../src/engine.js';
import { KeyState } from '../../src/hsm/types.js';
import { cipherBackends } from '../helpers/cipher-backends.js';
import { forEachProvider, type ProviderName } from '../helpers/providers.js';
import { openTestEngine, rootKey } from '../helpers/engine.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

afterAll(() => removeTempDirs());

const MIB = 1024 * 1024;

async function expectCode(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error, `expected a ${code} error`).toMatchObject({ code });
  if (message !== undefined) expect((error as Error).message).toMatch(message);
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

async function withEngine<T>(backend: 'native' | 'ts', provider: ProviderName, run: (engine: Engine, dir: string) => Promise<T>): Promise<T> {
  const dir = makeTempDir('bv-prov-');
  const engine = await openTestEngine(dir, { provider, cipher: backend });
  try {
    return await run(engine, dir);
  } finally {
    await engine.close();
  }
}

// Every cipher backend with every key provider (test/helpers/providers.ts).
for (const { backend, skipReason } of cipherBackends()) {
  forEachProvider(`provisioning [${backend}]`, (provider) => {
    it('creates a volume with a customer key: registration with the key version, metadata, usable I/O', async () => {
      await withEngine(backend, provider, async (engine) => {
        const key = await rootKey(engine);
        const vol = await engine.createVolume({ name: 'pg-data', sizeBytes: 4 * MIB, diskEncryptionKeyCrn: key.crn });
        const info = vol.info();
        expect(info).toMatchObject({
          name: 'pg-data',
          sizeBytes: 4 * MIB,
          sectorSize: 4096,
          diskEncryptionKeyCrn: key.crn,
          keyVersion: key.version,
          platformManaged: false,
          state: 'active',
          deletedAtMs: null,
          purgeAtMs: null,
        });
        expect(info.crn).toMatch(/^crn:v1:.*:blockvault:.*:volume:/);
        expect(info.crn.endsWith(info.id)).toBe(true);
        const registrations = await engine.hsm.listRegistrations({ keyCrn: key.crn });
        expect(registrations).toEqual([expect.objectContaining({ keyCrn: key.crn, resourceCrn: info.crn, keyVersion: key.version })]);
        await vol.write(0, Buffer.from('hello'));
        expect(Buffer.from(await vol.read(0, 5)).toString()).toBe('hello');
        expect(engine.listVolumes()).toEqual([info]);
      });
    });

    it('creates a platform-managed root key when no key is given', async () => {
      await withEngine(backend, provider, async (engine) => {
        const vol = await engine.createVolume({ name: 'scratch', sizeBytes: MIB, sectorSize: 512 });
        const info = vol.info();
        expect(info.platformManaged).toBe(true);
        expect(info.sectorSize).toBe(512);
        const key = await engine.hsm.getKey(info.diskEncryptionKeyCrn);
        expect(key.platformManaged).toBe(true);
        expect(key.state).toBe(KeyState.Active);
        expect(await engine.hsm.listRegistrations({ resourceCrn: info.crn })).toHaveLength(1);
        // Each volume gets its own platform key.
        const other = await engine.createVolume({ name: 'scratch-2', sizeBytes: MIB });
        expect(other.info().diskEncryptionKeyCrn).not.toBe(info.diskEncryptionKeyCrn);
      });
    });

    it('refuses a key the storage service is not authorized for, and leaves nothing behind', async () => {
      await withEngine(backend, provider, async (engine) => {
        const key = await rootKey(engine, { authorize: false });
        await expectCode(engine.createVolume({ name: 'denied', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn }), 'NOT_AUTHORIZED', /authoriz/i);
        expect(engine.listVolumes()).toEqual([]);
        expect(await engine.hsm.listRegistrations({ keyCrn: key.crn })).toEqual([]);
        // The refusal is audited; no volume event is.
        expect((await engine.events.list({ action: 'blockvault.volume.create' })).length).toBe(0);
        // The name is free, and the same key works once authorized.
        await engine.hsm.authorize({ sourceService: 'blockvault', targetInstance: key.instanceId, role: 'Reader' });
        const vol = await engine.createVolume({ name: 'denied', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn });
        expect(vol.info().state).toBe('active');
      });
    });

    it('refuses a bare key id and malformed CRNs with INVALID_CRN', async () => {
      await withEngine(backend, provider, async (engine) => {
        const key = await rootKey(engine);
        for (const bad of [key.id, 'crn:v1:too:short', `${key.crn}:extra`, key.crn.replace(':key:', ':volume:'), '', 'crn:v2:a:b:c:d:a/e:f:key:g']) {
          await expectCode(engine.createVolume({ name: 'x', sizeBytes: MIB, diskEncryptionKeyCrn: bad }), 'INVALID_CRN');
        }
        expect(engine.listVolumes()).toEqual([]);
      });
    });

    it('refuses unknown, suspended and destroyed keys with clear errors', async () => {
      await withEngine(backend, provider, async (engine) => {
        const key = await rootKey(engine);
        await expectCode(
          engine.createVolume({ name: 'x', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn.replace(/key:[^:]+$/, 'key:no-such-key') }),
          'NOT_FOUND',
        );
        await engine.hsm.disableKey(key.crn);
        await expectCode(engine.createVolume({ name: 'x', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn }), 'KEY_STATE', /suspended/);
        await engine.hsm.enableKey(key.crn);
        await engine.hsm.deleteKey(key.crn, { force: true });
        await expectCode(engine.createVolume({ name: 'x', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn }), 'KEY_DESTROYED');
        expect(engine.listVolumes()).toEqual([]);
      });
    });

    it('validates name, size and sector size', async () => {
      await withEngine(backend, provider, async (engine) => {
        await engine.createVolume({ name: 'taken', sizeBytes: MIB });
        await expectCode(engine.createVolume({ name: 'taken', sizeBytes: MIB }), 'ALREADY_EXISTS');
        await expectCode(engine.createVolume({ name: '', sizeBytes: MIB }), 'INVALID_ARGUMENT');
        await expectCode(engine.createVolume({ name: 'a', sizeBytes: 0 }), 'INVALID_ARGUMENT');
        await expectCode(engine.createVolume({ name: 'a', sizeBytes: 4097 }), 'INVALID_ARGUMENT');
        await expectCode(engine.createVolume({ name: 'a', sizeBytes: 1.5 * 4096 }), 'INVALID_ARGUMENT');
        await expectCode(engine.createVolume({ name: 'a', sizeBytes: MIB, sectorSize: 1024 as 512 }), 'INVALID_ARGUMENT');
        expect(engine.listVolumes().map((v) => v.name)).toEqual(['taken']);
      });
    });

    it('gives each volume a fresh 512-bit data key with distinct halves, stored only wrapped', async () => {
      const dir = makeTempDir('bv-prov-dek-');
      // Compact layout: a cluster's stored value is header + ciphertext, easy to check by hand.
      const engine = await openTestEngine(dir, { provider, cipher: backend, volumeLayout: 'compact' });
      const key = await rootKey(engine);
      const sector = Buffer.alloc(4096, 0x5a);
      for (const name of ['a', 'b']) {
        const vol = await engine.createVolume({ name, sizeBytes: MIB, diskEncryptionKeyCrn: key.crn });
        await vol.write(0, sector);
      }
      const volumes = engine.listVolumes();
      await engine.close();

      // What is on disk: the records' wrapped keys and the clusters.
      const env = open({ path: join(dir, 'engine.lmdb'), maxDbs: 32 });
      const records = env.openDB<{ id: string; storeId: number; generations: { wrapped: Uint8Array; keyVersion: number }[] }, string>('volumes', {});
      const clusters = env.openDB<Buffer, Buffer>('clusters', { keyEncoding: 'binary', encoding: 'binary' });
      const stored = volumes.map((v) => {
        const record = records.get(v.id)!;
        expect(record.generations).toHaveLength(1);
        const value = clusters.getBinary(clusterKey(record.storeId, 0))!;
        return { wrapped: Buffer.from(record.generations[0]!.wrapped), keyVersion: record.generations[0]!.keyVersion, ciphertext: Buffer.from(value.subarray(16, 16 + 4096)) };
      });
      await env.close();

      const reopened = await openTestEngine(dir, { provider, cipher: backend });
      const dataKeys: Buffer[] = [];
      try {
        for (const s of stored) {
          expect(s.wrapped.length).toBe(88); // AES-KWP (RFC 5649) of 64 key bytes + the 16-byte volume binding (dek-binding.ts)
          const { plaintext } = await reopened.hsm.unwrap(key.crn, s.wrapped, s.keyVersion, { sourceService: 'blockvault' });
          expect(plaintext.length).toBe(80);
          const dek = Buffer.from(plaintext.subarray(0, 64));
          expect(dek.length).toBe(64);
          expect(dek.subarray(0, 32).equals(dek.subarray(32))).toBe(false);
          expect(Buffer.from(XtsCipher.create({ backend }).decryptSectors(dek, 0, 4096, s.ciphertext)).equals(sector)).toBe(true);
          dataKeys.push(dek);
        }
      } finally {
        await reopened.close();
      }
      expect(dataKeys[0]!.equals(dataKeys[1]!)).toBe(false);
      // Neither data key nor the plaintext sector appears in any file under the engine directory.
      for (const file of filesUnder(dir)) {
        const bytes = readFileSync(file);
        for (const dek of dataKeys) {
          expect(bytes.includes(dek.subarray(0, 32)), file).toBe(false);
          expect(bytes.includes(dek.subarray(32)), file).toBe(false);
        }
        expect(bytes.includes(sector.subarray(0, 64)), file).toBe(false);
      }
    });
  }, skipReason);
}
