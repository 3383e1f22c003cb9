/**
 * The PKCS#11 provider on a real token (SoftHSM2): the attributes of root keys, that their value
 * cannot be read or wrapped out, KWP byte-identical to the software provider, temporary objects
 * destroyed also on errors, and the typed errors for a missing module or token and a wrong PIN.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { BlockvaultError } from '../../src/errors.js';
import { kwpWrap } from '../../src/hsm/kwp.js';
import { mapPkcs11Error } from '../../src/hsm/pkcs11/errors.js';
import { resolvePkcs11Options, type ResolvedPkcs11Options } from '../../src/hsm/pkcs11/index.js';
import { readPkcs11Marker } from '../../src/hsm/pkcs11/marker.js';
import { labels, rootKeyAttributes } from '../../src/hsm/pkcs11/mechanisms.js';
import { Pkcs11KeyProvider } from '../../src/hsm/pkcs11/provider.js';
import { KeyState } from '../../src/hsm/types.js';
import { Pkcs11Token } from '../../src/hsm/pkcs11/session-pool.js';
import { softHsmCheck, softHsmToken } from '../helpers/softhsm.js';
import { STORAGE, expectCode, openHarness, setupKey, volumeCrn, type Harness } from './helpers.js';

const title = softHsmCheck.ok ? 'PKCS#11 provider on SoftHSM2' : `PKCS#11 provider on SoftHSM2 (skipped: ${softHsmCheck.reason})`;

describe.skipIf(!softHsmCheck.ok)(title, () => {
  let h: Harness;
  let options: ResolvedPkcs11Options;
  /** The test's own reference to the shared, logged-in token, to inspect objects. */
  let token: Pkcs11Token;

  beforeAll(async () => {
    h = await openHarness({}, undefined, 'pkcs11');
    options = resolvePkcs11Options(softHsmToken().options);
    token = Pkcs11Token.acquire(options);
  });
  afterAll(async () => {
    token.release();
    await h.cleanup();
  });

  const namespace = (): string => readPkcs11Marker(join(h.dir, 'hsm'))!.namespace;
  const find = (label: string): Promise<Buffer[]> =>
    token.withSession((s) => {
      token.module.C_FindObjectsInit(s, [{ type: token.p.CKA_LABEL, value: label }]);
      try {
        return token.module.C_FindObjects(s, 16);
      } finally {
        token.module.C_FindObjectsFinal(s);
      }
    });
  /** Session objects (CKA_TOKEN false) left on the token: the provider's temporaries. */
  const sessionObjects = (): Promise<number> =>
    token.withSession((s) => {
      token.module.C_FindObjectsInit(s, [{ type: token.p.CKA_TOKEN, value: false }]);
      try {
        return token.module.C_FindObjects(s, 64).length;
      } finally {
        token.module.C_FindObjectsFinal(s);
      }
    });
  const bool = (b: unknown): boolean => (b as Buffer)[0] === 1;
  const attributes = (handle: Buffer) =>
    token.withSession((s) => {
      const p = token.p;
      const types = [p.CKA_TOKEN, p.CKA_SENSITIVE, p.CKA_EXTRACTABLE, p.CKA_WRAP, p.CKA_UNWRAP, p.CKA_ENCRYPT, p.CKA_DECRYPT, p.CKA_ALWAYS_SENSITIVE, p.CKA_NEVER_EXTRACTABLE];
      const values = token.module.C_GetAttributeValue(s, handle, types.map((type) => ({ type })));
      const [tokenObject, sensitive, extractable, wrap, unwrap, encrypt, decrypt, alwaysSensitive, neverExtractable] = values.map((a) => bool(a.value));
      const keyType = (token.module.C_GetAttributeValue(s, handle, [{ type: p.CKA_KEY_TYPE }])[0]!.value as Buffer).readUIntLE(0, 4);
      const valueLen = (token.module.C_GetAttributeValue(s, handle, [{ type: p.CKA_VALUE_LEN }])[0]!.value as Buffer).readUIntLE(0, 4);
      return { keyType, valueLen, tokenObject, sensitive, extractable, wrap, unwrap, encrypt, decrypt, alwaysSensitive, neverExtractable };
    });

  it('generates root keys in the token as AES-256, sensitive, never extractable, wrap/unwrap only; CKA_VALUE and wrapping out are refused', async () => {
    const { key } = await setupKey(h.hsm);
    const [handle, ...more] = await find(labels.rootKey(namespace(), key.id, 1));
    expect(more).toEqual([]);
    expect(await attributes(handle!)).toEqual({
      keyType: token.p.CKK_AES, valueLen: 32, tokenObject: true, sensitive: true, extractable: false,
      wrap: true, unwrap: true, encrypt: false, decrypt: false, alwaysSensitive: true, neverExtractable: true,
    });
    await token.withSession(async (s) => {
      expect(() => token.module.C_GetAttributeValue(s, handle!, [{ type: token.p.CKA_VALUE }])).toThrow('CKR_ATTRIBUTE_SENSITIVE');
      // Wrapping the root key out, under itself or another key of the token, is refused.
      expect(() => token.module.C_WrapKey(s, { mechanism: options.kwpMechanism }, handle!, handle!, Buffer.alloc(64))).toThrow('CKR_KEY_UNEXTRACTABLE');
    });
  });

  it('imported (BYOK) material lands in the token with the same attributes (not ALWAYS_SENSITIVE: it was seen in the clear)', async () => {
    const { instance } = await setupKey(h.hsm);
    const key = await h.hsm.importRootKey(instance.id, { name: 'byok', material: randomBytes(32) });
    const [handle] = await find(labels.rootKey(namespace(), key.id, 1));
    const a = await attributes(handle!);
    expect(a).toMatchObject({ keyType: token.p.CKK_AES, valueLen: 32, tokenObject: true, sensitive: true, extractable: false, wrap: true, unwrap: true, encrypt: false, decrypt: false });
    await token.withSession((s) => expect(() => token.module.C_GetAttributeValue(s, handle!, [{ type: token.p.CKA_VALUE }])).toThrow('CKR_ATTRIBUTE_SENSITIVE'));
  });

  it('wraps data keys with RFC 5649 byte-identical to the software provider\'s AES-KWP, and unwraps the software\'s output', async () => {
    const { instance } = await setupKey(h.hsm);
    const material = randomBytes(32);
    const key = await h.hsm.importRootKey(instance.id, { name: 'same-as-software', material: Buffer.from(material) });
    for (let i = 0; i < 4; i += 1) {
      const dek = randomBytes(64);
      const { wrapped, keyVersion: version } = await h.hsm.wrap(key.crn, dek, STORAGE);
      expect(Buffer.from(wrapped).toString('hex')).toBe(kwpWrap(material, dek).toString('hex'));
      const fromSoftware = kwpWrap(material, dek);
      expect(Buffer.from((await h.hsm.unwrap(key.crn, fromSoftware, version, STORAGE)).plaintext).equals(dek)).toBe(true);
    }
    expect(await sessionObjects()).toBe(0);
  });

  it('rewraps inside the token to the new version, and destroys every temporary object, also when an unwrap fails', async () => {
    const { key } = await setupKey(h.hsm);
    const dek = randomBytes(64);
    const first = await h.hsm.wrap(key.crn, dek, STORAGE);
    await h.hsm.rotateKey(key.crn);
    const rewrapped = await h.hsm.rewrap(key.crn, first.wrapped, first.keyVersion, STORAGE);
    expect(rewrapped.keyVersion).toBe(2);
    expect(Buffer.from((await h.hsm.unwrap(key.crn, rewrapped.wrapped, 2, STORAGE)).plaintext).equals(dek)).toBe(true);
    const altered = Buffer.from(first.wrapped);
    altered[5] = (altered[5] as number) ^ 1;
    await expectCode(h.hsm.unwrap(key.crn, altered, 1, STORAGE), 'INVALID_ARGUMENT');
    await expectCode(h.hsm.rewrap(key.crn, altered, 1, STORAGE), 'INVALID_ARGUMENT');
    await expectCode(h.hsm.unwrap(key.crn, first.wrapped, 2, STORAGE), 'INVALID_ARGUMENT');
    expect(await sessionObjects()).toBe(0);
  });

  it('refuses data keys whose length is not a multiple of 8 (SoftHSM 2.6.1 wraps those wrongly)', async () => {
    const { key } = await setupKey(h.hsm);
    const error = await expectCode(h.hsm.wrap(key.crn, randomBytes(60), STORAGE), 'INVALID_ARGUMENT');
    expect(error.message).toMatch(/multiple|8-byte/);
    expect(await sessionObjects()).toBe(0);
  });

  it('a forced delete destroys every version\'s object in the token', async () => {
    const { key } = await setupKey(h.hsm);
    await h.hsm.rotateKey(key.crn);
    await h.hsm.rotateKey(key.crn);
    for (const v of [1, 2, 3]) expect(await find(labels.rootKey(namespace(), key.id, v))).toHaveLength(1);
    await h.hsm.deleteKey(key.crn, { force: true });
    for (const v of [1, 2, 3]) expect(await find(labels.rootKey(namespace(), key.id, v))).toEqual([]);
  });

  it('refuses rotation material equal to an earlier version without reading any version', async () => {
    const { instance } = await setupKey(h.hsm);
    const material = randomBytes(32);
    const key = await h.hsm.importRootKey(instance.id, { name: 'byok-rotate', material: Buffer.from(material) });
    await expectCode(h.hsm.rotateKey(key.crn, { material: Buffer.from(material) }), 'INVALID_ARGUMENT');
    await h.hsm.rotateKey(key.crn, { material: randomBytes(32) });
    expect((await h.hsm.getKey(key.crn)).version).toBe(2);
    expect(await sessionObjects()).toBe(0);
  });

  it('a wrong PIN is WRONG_PASSPHRASE, a missing token or module HSM_UNAVAILABLE, bad options INVALID_ARGUMENT', async () => {
    const other = mkdtempSync(join(tmpdir(), 'bv-p11-'));
    try {
      const good = softHsmToken().options;
      await expectCode(openHarness({ pkcs11: { ...good, pin: 'not-the-pin' } }, other, 'pkcs11'), 'WRONG_PASSPHRASE');
      await expectCode(openHarness({ pkcs11: { ...good, tokenLabel: 'no-such-token' } }, other, 'pkcs11'), 'HSM_UNAVAILABLE');
      await expectCode(openHarness({ pkcs11: { ...good, module: '/nonexistent/libpkcs11.so' } }, other, 'pkcs11'), 'HSM_UNAVAILABLE');
      await expectCode(openHarness({ pkcs11: { ...good, slot: 1 } }, other, 'pkcs11'), 'INVALID_ARGUMENT');
      await expectCode(openHarness({ pkcs11: { ...good, sessionsMax: 0 } }, other, 'pkcs11'), 'INVALID_ARGUMENT');
      // The software keystore of a directory is not opened with a token, nor the other way round.
      await expectCode(openHarness({ passphrase: 'x' }, h.dir), 'INVALID_ARGUMENT');
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('a directory whose marker names another token is HSM_UNAVAILABLE; a lost marker or metadata key is KEYSTORE_CORRUPT', async () => {
    const other = await openHarness({}, undefined, 'pkcs11');
    try {
      await setupKey(other.hsm);
      await other.close();
      const markerPath = join(other.dir, 'hsm', 'pkcs11.json');
      const original = readFileSync(markerPath, 'utf8');
      writeFileSync(markerPath, original.replace(/"tokenSerial": "[^"]*"/, '"tokenSerial": "0000000000000000"'));
      const wrongToken = await expectCode(other.reopen(), 'HSM_UNAVAILABLE');
      expect(wrongToken.message).toMatch(/serial 0000000000000000/);
      rmSync(markerPath);
      await expectCode(other.reopen(), 'KEYSTORE_CORRUPT');
      writeFileSync(markerPath, original);
      await other.reopen();
      await other.close();
      const ns = readPkcs11Marker(join(other.dir, 'hsm'))!.namespace;
      await token.withSession(async (s) => {
        for (const handle of await find(labels.metadataKey(ns))) token.module.C_DestroyObject(s, handle);
      });
      await expectCode(other.reopen(), 'KEYSTORE_CORRUPT');
    } finally {
      await other.cleanup();
    }
  });

  it('a full token is HSM_FULL', () => {
    // The error pkcs11js throws, mapped; test/hsm/pkcs11-full.test.ts provokes a real one end to end
    // (SoftHSM2 itself has no object limit, so there it runs behind a quota module).
    const full = Object.assign(new Error('CKR_DEVICE_MEMORY'), { name: 'Pkcs11Error', code: 0x31 });
    const mapped = mapPkcs11Error(full, 'generating a root key');
    expect(mapped).toBeInstanceOf(BlockvaultError);
    expect((mapped as BlockvaultError).code).toBe('HSM_FULL');
  });

  it('on open, finishes a destruction interrupted by a crash and destroys stray token objects of this directory only', async () => {
    const { key } = await setupKey(h.hsm);
    await h.hsm.createRegistration({ keyCrn: key.crn, resourceCrn: volumeCrn('a'), keyVersion: 1 }, STORAGE);
    const destroy = vi.spyOn(Pkcs11KeyProvider.prototype, 'destroy').mockRejectedValueOnce(new Error('simulated crash'));
    await expect(h.hsm.deleteKey(key.crn, { force: true, initiator: 'alice' })).rejects.toThrow('simulated crash');
    destroy.mockRestore();
    await h.close();
    expect(await find(labels.rootKey(namespace(), key.id, 1))).toHaveLength(1);
    // A stray version whose key never made it into the metadata, and another directory's object.
    const strayLabel = labels.rootKey(namespace(), 'stray-key', 1);
    const foreignLabel = labels.rootKey('0123456789abcdef', 'foreign-key', 1);
    await token.withSession(async (s) => {
      for (const label of [strayLabel, foreignLabel]) {
        await token.module.C_GenerateKeyAsync(s, { mechanism: token.p.CKM_AES_KEY_GEN }, [...rootKeyAttributes(token.p, label), { type: token.p.CKA_VALUE_LEN, value: 32 }]);
      }
    });
    await h.reopen();
    expect(await find(strayLabel)).toEqual([]);
    expect(await find(foreignLabel)).toHaveLength(1);
    expect(await find(labels.rootKey(namespace(), key.id, 1))).toEqual([]);
    expect((await h.hsm.getKey(key.crn)).state).toBe(KeyState.Destroyed);
    const event = h.audit.list({ action: 'hs-crypto.secrets.delete', outcome: 'success' }).find((e) => e.keyCrn === key.crn)!;
    expect(event).toMatchObject({ initiator: 'alice', details: { force: true, resumedAfterRestart: true } });
    await token.withSession((s) => {
      for (const handle of (() => {
        token.module.C_FindObjectsInit(s, [{ type: token.p.CKA_LABEL, value: foreignLabel }]);
        try {
          return token.module.C_FindObjects(s, 4);
        } finally {
          token.module.C_FindObjectsFinal(s);
        }
      })()) token.module.C_DestroyObject(s, handle);
    });
  });

  it('concurrent operations share a bounded pool of sessions', async () => {
    const { key } = await setupKey(h.hsm);
    const deks = Array.from({ length: 64 }, () => randomBytes(64));
    const wrapped = await Promise.all(deks.map((dek) => h.hsm.wrap(key.crn, dek, STORAGE)));
    const back = await Promise.all(wrapped.map((w) => h.hsm.unwrap(key.crn, w.wrapped, w.keyVersion, STORAGE)));
    back.forEach((b, i) => expect(Buffer.from(b.plaintext).equals(deks[i]!)).toBe(true));
    const opened = (token as unknown as { opened: number }).opened;
    expect(opened).toBeLessThanOrEqual(options.sessionsMax);
    expect(await sessionObjects()).toBe(0);
  });
});
