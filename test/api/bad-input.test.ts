/**
 * Bad input at every public method (DESIGN.md, "Errors": every failure a caller can cause is a
 * typed error with a stable code; bad input never corrupts stored data). Each method of Engine,
 * engine.hsm, engine.tasks, engine.events, Volume handles and XtsCipher is called with wrong
 * types, undefined, NaN, negative and huge numbers, wrong-length keys, unknown ids and bare ids
 * where a CRN is required, and again after close; each call must fail with a BlockvaultError of
 * the named code (the cipher: a TypeError or RangeError carrying code INVALID_ARGUMENT). At the
 * end, everything stored (volumes, their data, keys, instances, authorizations, registrations,
 * tasks, the audit chain) is as it was before the bad calls.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockvaultError, Engine, XtsCipher, type RootKeyInfo, type Volume } from '../../src/index.js';
import { openTestEngine, rootKey, TEST_PASSPHRASE } from '../helpers/engine.js';
import { useTempDirs } from '../helpers/temp-dir.js';

const tempDir = useTempDirs('bv-bad-input-');

const VOLUME_BYTES = 64 * 1024;
const CALLER = { sourceService: 'blockvault' };
/** Values of the wrong type for any parameter; each case adds its own wrong values of the right type. */
const NOT_A_STRING: unknown[] = [undefined, null, 5, {}, [], Symbol('s'), () => 'x'];
const NOT_A_NUMBER: unknown[] = [undefined, null, '5', 5n, {}, Number.NaN];

interface Outcome {
  typed: boolean;
  code: unknown;
  message: string;
}

/** What a call threw or rejected with, in a form whose mismatch prints the message. */
async function outcomeOf(call: () => unknown): Promise<Outcome | 'no error'> {
  try {
    await call();
    return 'no error';
  } catch (error) {
    return {
      typed: error instanceof BlockvaultError,
      code: (error as { code?: unknown } | null)?.code,
      message: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    };
  }
}

async function expectCode(code: string, call: () => unknown, label = String(call)): Promise<void> {
  const outcome = await outcomeOf(call);
  const seen = outcome === 'no error' ? outcome : `${outcome.typed ? 'BlockvaultError' : 'untyped'} ${String(outcome.code)}`;
  expect.soft(seen, `${label}\n  -> ${outcome === 'no error' ? outcome : outcome.message}`).toBe(`BlockvaultError ${code}`);
}

/** expectCode for each bad value, labelled with the value. */
async function expectEach<T>(code: string, values: readonly T[], call: (value: T) => unknown): Promise<void> {
  for (const value of values) await expectCode(code, () => call(value), `${String(call)} with ${cases([value])}`);
}

/** The cipher's documented contract: TypeError for a wrong type, RangeError for a wrong value, both with code INVALID_ARGUMENT. */
async function expectCipherError(kind: typeof TypeError | typeof RangeError, call: () => unknown): Promise<void> {
  let thrown: unknown = null;
  try {
    await call();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, 'expected an error').toBeInstanceOf(kind);
  expect((thrown as { code?: unknown }).code, (thrown as Error).message).toBe('INVALID_ARGUMENT');
}

function cases(values: unknown[]): string {
  const show = (v: unknown): string => {
    if (typeof v === 'symbol' || typeof v === 'function' || typeof v === 'number') return String(v);
    if (typeof v === 'bigint') return `${v}n`;
    try {
      return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'number' && !Number.isFinite(x) ? String(x) : typeof x === 'bigint' ? `${x}n` : x)) ?? String(v);
    } catch {
      return '(a circular object)';
    }
  };
  return values.map(show).join(', ');
}

let engine: Engine;
let dir: string;
let key: RootKeyInfo;
let importedKey: RootKeyInfo;
let instanceId: string;
let vol: Volume;
let volumeId: string;
let taskId: string;
let authorizationId: string;
let unknownKeyCrn: string;
let snapshot: unknown;

/** Everything stored (as plain JSON values): what the bad calls must leave unchanged. */
async function storedState(): Promise<unknown> {
  const data = await vol.read(0, VOLUME_BYTES);
  return JSON.parse(JSON.stringify({
    volumes: engine.listVolumes(),
    data: createHash('sha256').update(data).digest('hex'),
    keys: await engine.hsm.listKeys(),
    instances: await engine.hsm.listInstances(),
    authorizations: await engine.hsm.listAuthorizations(),
    registrations: await engine.hsm.listRegistrations(),
    tasks: engine.tasks.list(),
  }));
}

beforeAll(async () => {
  dir = tempDir();
  engine = await openTestEngine(dir, { rotation: { workers: 1 } });
  key = await rootKey(engine, { name: 'bad-input' });
  instanceId = key.instanceId;
  importedKey = await engine.hsm.importRootKey(instanceId, { name: 'imported', material: new Uint8Array(32).fill(7) });
  authorizationId = (await engine.hsm.listAuthorizations())[0]!.id;
  unknownKeyCrn = key.crn.replace(/[^:]+$/, 'no-such-key');
  vol = await engine.createVolume({ name: 'data', sizeBytes: VOLUME_BYTES, diskEncryptionKeyCrn: key.crn });
  volumeId = vol.info().id;
  await vol.write(0, new Uint8Array(VOLUME_BYTES).map((_, i) => (i * 7) % 251));
  const [task] = await engine.hsm.rotateKey(key.crn);
  taskId = task!.id;
  await engine.tasks.wait(taskId);
  await vol.flush();
  snapshot = await storedState();
});

afterAll(async () => {
  await engine?.close();
});

describe('Engine.open', () => {
  const open = (options: unknown): Promise<Engine> => Engine.open(options as Parameters<typeof Engine.open>[0]);

  it.each([undefined, null, 5, 'dir'])('refuses options %j', async (options) => {
    await expectCode('INVALID_ARGUMENT', () => open(options));
  });

  it(`refuses dir ${cases([...NOT_A_STRING, ''])}`, async () => {
    await expectEach('INVALID_ARGUMENT', [...NOT_A_STRING, ''], (value) => open({ dir: value, hsm: { passphrase: TEST_PASSPHRASE } }));
  });

  it('refuses a missing, empty, doubled or mistyped hsm secret', async () => {
    await expectEach('INVALID_ARGUMENT', [undefined, null, {}, 'pass', { passphrase: 5 }, { keyFile: 5 }, { passphrase: 'p', keyFile: 'k' }], (hsm) => open({ dir: join(tempDir(), 'e'), hsm }));
  });

  it.each([Number.NaN, -1, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1.5, '100', 2 ** 53])('refuses lockWaitMs %s', async (lockWaitMs) => {
    await expectCode('INVALID_ARGUMENT', () => open({ dir: join(tempDir(), 'e'), hsm: { passphrase: TEST_PASSPHRASE }, lockWaitMs }));
  });

  it('refuses a bad cipher, clock, volume layout and rotation options', async () => {
    await expectEach('INVALID_ARGUMENT', [
      { cipher: 'aes' },
      { cipher: 5 },
      { clock: {} },
      { clock: 5 },
      { volumeLayout: 'tiled' },
      { rotation: 5 },
      { rotation: { workers: 0 } },
      { rotation: { workers: Number.NaN } },
      { rotation: { bandwidthBytesPerSecond: -1 } },
    ], (extra) => open({ dir: join(tempDir(), 'e'), hsm: { passphrase: TEST_PASSPHRASE }, ...extra }));
  });

  it('refuses a directory another engine has open (ENGINE_BUSY)', async () => {
    await expectCode('ENGINE_BUSY', () => open({ dir, hsm: { passphrase: TEST_PASSPHRASE } }));
  });

  it('refuses a key file that is missing or not 32 bytes (INVALID_ARGUMENT, saying why)', async () => {
    const short = join(tempDir(), 'short.key');
    writeFileSync(short, Buffer.alloc(31, 1));
    await expectCode('INVALID_ARGUMENT', () => open({ dir: join(tempDir(), 'e'), hsm: { keyFile: join(tempDir(), 'missing.key') } }));
    await expectCode('INVALID_ARGUMENT', () => open({ dir: join(tempDir(), 'e'), hsm: { keyFile: short } }));
  });
});

describe('engine volumes', () => {
  const create = (options: unknown): Promise<Volume> => engine.createVolume(options as Parameters<Engine['createVolume']>[0]);

  it.each([undefined, null, 5, 'v'])('createVolume(%j) is INVALID_ARGUMENT', async (options) => {
    await expectCode('INVALID_ARGUMENT', () => create(options));
  });

  it(`createVolume refuses names ${cases([...NOT_A_STRING, '', ' ', 'a\u0000b', 'x'.repeat(1000)])}`, async () => {
    await expectEach('INVALID_ARGUMENT', [...NOT_A_STRING, '', ' ', 'a\u0000b', 'x'.repeat(1000)], (name) => create({ name, sizeBytes: 4096 }));
  });

  it('createVolume refuses bad sizes and sector sizes', async () => {
    await expectEach('INVALID_ARGUMENT', [...NOT_A_NUMBER, 0, -4096, 4096.5, 1000, Number.POSITIVE_INFINITY, 2 ** 60], (sizeBytes) => create({ name: 'bad-size', sizeBytes }));
    await expectEach('INVALID_ARGUMENT', [1024, 0, -512, '4096', Number.NaN], (sectorSize) => create({ name: 'bad-sector', sizeBytes: 8192, sectorSize }));
  });

  it('createVolume refuses a bare key id or malformed CRN (INVALID_CRN), an unknown key (NOT_FOUND), a taken name (ALREADY_EXISTS)', async () => {
    await expectEach('INVALID_CRN', [key.crn.split(':').at(-1), '', 5, null, 'crn:v1:x', key.crn.replace(':key:', ':volume:')], (crn) => create({ name: 'bad-key', sizeBytes: 4096, diskEncryptionKeyCrn: crn }));
    await expectCode('NOT_FOUND', () => create({ name: 'unknown-key', sizeBytes: 4096, diskEncryptionKeyCrn: unknownKeyCrn }));
    await expectCode('ALREADY_EXISTS', () => create({ name: 'data', sizeBytes: 4096 }));
  });

  it('openVolume, deleteVolume and restoreVolume refuse non-strings (INVALID_ARGUMENT) and unknown volumes (NOT_FOUND)', async () => {
    for (const method of ['openVolume', 'deleteVolume', 'restoreVolume'] as const) {
      await expectEach('INVALID_ARGUMENT', [...NOT_A_STRING, ''], (value) => engine[method](value as string));
      await expectCode('NOT_FOUND', () => engine[method]('no-such-volume'));
      await expectCode('NOT_FOUND', () => engine[method](vol.info().crn));
    }
  });

  it('restoreVolume of a live volume (like deleteVolume of a deleted one) changes nothing', async () => {
    const before = engine.listVolumes().find((v) => v.id === volumeId);
    expect(await engine.restoreVolume(volumeId)).toEqual(before);
  });
});

describe('Volume handles', () => {
  const call = (method: 'read' | 'trim', offset: unknown, length: unknown): Promise<unknown> =>
    (vol[method] as (o: unknown, l: unknown) => Promise<unknown>).call(vol, offset, length);

  it('read and trim refuse bad offsets and lengths with OUT_OF_RANGE', async () => {
    for (const method of ['read', 'trim'] as const) {
      const bad = [...NOT_A_NUMBER, -1, 1.5, Number.POSITIVE_INFINITY, 2 ** 53, VOLUME_BYTES + 1];
      await expectEach('OUT_OF_RANGE', bad, (offset) => call(method, offset, 512));
      await expectEach('OUT_OF_RANGE', bad, (length) => call(method, 0, length));
      await expectCode('OUT_OF_RANGE', () => call(method, VOLUME_BYTES - 512, 1024));
    }
  });

  it('write refuses data that is not a Uint8Array (INVALID_ARGUMENT) and bad offsets (OUT_OF_RANGE)', async () => {
    await expectEach('INVALID_ARGUMENT', [undefined, null, 'abc', [1, 2, 3], 5, {}, new ArrayBuffer(512), new DataView(new ArrayBuffer(512)), new Uint16Array(256)], (data) => vol.write(0, data as Uint8Array));
    await expectEach('OUT_OF_RANGE', [...NOT_A_NUMBER, -1, 0.5, VOLUME_BYTES], (offset) => vol.write(offset as number, new Uint8Array(512)));
  });

  it('write refuses a view of a SharedArrayBuffer (another thread could change it mid-write) with INVALID_ARGUMENT', async () => {
    await expectCode('INVALID_ARGUMENT', () => vol.write(0, new Uint8Array(new SharedArrayBuffer(4096))));
    await expectCode('INVALID_ARGUMENT', () => vol.write(100, new Uint8Array(new SharedArrayBuffer(8192), 4096, 10)));
  });

  it('a closed handle refuses I/O with VOLUME_CLOSED and still gives its metadata', async () => {
    const handle = await engine.openVolume('data');
    await handle.close();
    await handle.close();
    await expectCode('VOLUME_CLOSED', () => handle.read(0, 512));
    await expectCode('VOLUME_CLOSED', () => handle.write(0, new Uint8Array(512)));
    await expectCode('VOLUME_CLOSED', () => handle.trim(0, 512));
    await expectCode('VOLUME_CLOSED', () => handle.flush());
    expect(handle.info().id).toBe(volumeId);
  });
});

describe('engine.hsm', () => {
  const hsm = (): Record<string, (...args: unknown[]) => Promise<unknown>> => engine.hsm as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;

  it('instances: createInstance, getInstance', async () => {
    await expectEach('INVALID_ARGUMENT', [undefined, null, 5, {}, { name: '' }, { name: 5 }, { name: 'a\u0007' }, { name: 'x'.repeat(1000) }, { name: 'ok', initiator: 5 }], (options) => hsm().createInstance!(options));
    await expectEach('INVALID_ARGUMENT', [...NOT_A_STRING, '', '../etc'], (id) => hsm().getInstance!(id));
    await expectCode('NOT_FOUND', () => hsm().getInstance!('no-such-instance'));
  });

  it('authorizations: authorize, revoke, listAuthorizations', async () => {
    await expectEach('INVALID_ARGUMENT', [
      undefined,
      null,
      {},
      { sourceService: 'blockvault', targetInstance: instanceId, role: 'Writer' },
      { sourceService: '', targetInstance: instanceId, role: 'Reader' },
      { sourceService: 5, targetInstance: instanceId, role: 'Reader' },
      { sourceService: 'blockvault', targetInstance: 5, role: 'Reader' },
      { sourceService: 'blockvault', sourceInstance: 5, targetInstance: instanceId, role: 'Reader' },
    ], (options) => hsm().authorize!(options));
    await expectCode('NOT_FOUND', () => hsm().authorize!({ sourceService: 'blockvault', targetInstance: 'no-such-instance', role: 'Reader' }));
    await expectEach('INVALID_ARGUMENT', [...NOT_A_STRING, ''], (id) => hsm().revoke!(id));
    await expectCode('NOT_FOUND', () => hsm().revoke!('no-such-authorization'));
    await expectCode('INVALID_ARGUMENT', () => hsm().revoke!(authorizationId, 5));
    await expectEach('INVALID_ARGUMENT', [null, 5, { targetInstance: 5 }, { sourceService: {} }], (filter) => hsm().listAuthorizations!(filter));
  });

  it('root keys: createRootKey, importRootKey, getKey, listKeys', async () => {
    await expectEach('INVALID_ARGUMENT', [undefined, null, {}, { name: '' }, { name: 'k', dualAuthDelete: 'yes' }, { name: 'k', rotationPolicy: { intervalMs: 5 } }, { name: 'k', rotationPolicy: 5 }], (options) => hsm().createRootKey!(instanceId, options));
    await expectEach('INVALID_ARGUMENT', [...NOT_A_STRING, ''], (id) => hsm().createRootKey!(id, { name: 'k' }));
    await expectCode('NOT_FOUND', () => hsm().createRootKey!('no-such-instance', { name: 'k' }));
    await expectEach('INVALID_ARGUMENT', [undefined, null, 'x'.repeat(32), new Uint8Array(0), new Uint8Array(16), new Uint8Array(31), new Uint8Array(33), new Uint8Array(64), new Array(32).fill(1)], (material) => hsm().importRootKey!(instanceId, { name: 'imp', material }));
    await expectEach('INVALID_CRN', [key.id, '', 'crn:v1', key.crn.replace(':key:', ':instance:'), ...NOT_A_STRING], (crn) => hsm().getKey!(crn));
    await expectCode('NOT_FOUND', () => hsm().getKey!(unknownKeyCrn));
    await expectEach('INVALID_ARGUMENT', [null, 5, { instanceId: 5 }], (filter) => hsm().listKeys!(filter));
  });

  it('import tokens: createImportToken, getImportToken, importRootKeyWithToken', async () => {
    await expectEach('INVALID_ARGUMENT', [null, 5, { expiresInMs: -1 }, { expiresInMs: Number.NaN }, { expiresInMs: '1h' }, { maxRetrievals: 0 }, { maxRetrievals: 1.5 }, { maxRetrievals: 2 ** 60 }], (options) => hsm().createImportToken!(instanceId, options));
    await expectCode('NOT_FOUND', () => hsm().createImportToken!('no-such-instance', {}));
    await expectCode('NOT_FOUND', () => hsm().getImportToken!('no-such-instance'));
    await expectEach('INVALID_ARGUMENT', [...NOT_A_STRING, ''], (id) => hsm().getImportToken!(id));
    await hsm().createImportToken!(instanceId, {});
    await expectEach('INVALID_ARGUMENT', [undefined, 'abc', new Uint8Array(0), new Uint8Array(10), new Uint8Array(1 << 20)], (encryptedMaterial) => hsm().importRootKeyWithToken!(instanceId, { name: 'tok', encryptedMaterial }));
  });

  it('wrap, unwrap, rewrap', async () => {
    await expectEach('INVALID_CRN', [key.id, undefined, 5], (crn) => hsm().wrap!(crn, new Uint8Array(64), CALLER));
    await expectCode('NOT_FOUND', () => hsm().wrap!(unknownKeyCrn, new Uint8Array(64), CALLER));
    await expectEach('INVALID_ARGUMENT', [undefined, 'x', new Uint8Array(0), new Uint8Array(1 << 20)], (plaintext) => hsm().wrap!(key.crn, plaintext, CALLER));
    await expectEach('INVALID_ARGUMENT', [undefined, null, 5, {}, { sourceService: '' }, { sourceService: 'blockvault', initiator: 5 }], (ctx) => hsm().wrap!(key.crn, new Uint8Array(64), ctx));
    await expectCode('NOT_AUTHORIZED', () => hsm().wrap!(key.crn, new Uint8Array(64), { sourceService: 'someone-else' }));
    const { wrapped, keyVersion } = (await engine.hsm.wrap(key.crn, new Uint8Array(64).fill(3), CALLER)) as { wrapped: Uint8Array; keyVersion: number };
    for (const method of ['unwrap', 'rewrap'] as const) {
      await expectEach('INVALID_ARGUMENT', [...NOT_A_NUMBER, 0, -1, 1.5], (version) => hsm()[method]!(key.crn, wrapped, version, CALLER));
      await expectCode('NOT_FOUND', () => hsm()[method]!(key.crn, wrapped, keyVersion + 100, CALLER));
      await expectEach('INVALID_ARGUMENT', [undefined, 'x', new Uint8Array(0), new Uint8Array(7)], (bad) => hsm()[method]!(key.crn, bad, keyVersion, CALLER));
      const tampered = Uint8Array.from(wrapped);
      tampered[5]! ^= 1;
      await expectCode('INVALID_ARGUMENT', () => hsm()[method]!(key.crn, tampered, keyVersion, CALLER));
      await expectCode('INVALID_CRN', () => hsm()[method]!(key.id, wrapped, keyVersion, CALLER));
      await expectCode('INVALID_ARGUMENT', () => hsm()[method]!(key.crn, wrapped, keyVersion, undefined));
    }
  });

  it('rotation: rotateKey, setRotationPolicy', async () => {
    await expectEach('INVALID_CRN', [key.id, undefined, 5, ''], (crn) => hsm().rotateKey!(crn));
    await expectCode('NOT_FOUND', () => hsm().rotateKey!(unknownKeyCrn));
    await expectEach('INVALID_ARGUMENT', [null, 5, { rewrapOnly: 'yes' }, { material: new Uint8Array(32) }, { initiator: 5 }], (options) => hsm().rotateKey!(key.crn, options));
    await expectEach('INVALID_ARGUMENT', [undefined, new Uint8Array(31), 'x'], (material) => hsm().rotateKey!(importedKey.crn, { material }));
    await expectEach('INVALID_ARGUMENT', [undefined, 5, {}, { intervalMs: Number.NaN }, { intervalMs: -1 }, { intervalMs: 1000 }, { intervalMs: Number.POSITIVE_INFINITY }], (policy) => hsm().setRotationPolicy!(key.crn, policy));
    await expectCode('INVALID_CRN', () => hsm().setRotationPolicy!(key.id, null));
  });

  it('states: enableKey, disableKey, deactivateKey', async () => {
    for (const method of ['enableKey', 'disableKey', 'deactivateKey'] as const) {
      await expectEach('INVALID_CRN', [key.id, undefined, 5], (crn) => hsm()[method]!(crn));
      await expectCode('NOT_FOUND', () => hsm()[method]!(unknownKeyCrn));
      await expectCode('INVALID_ARGUMENT', () => hsm()[method]!(key.crn, 5));
      await expectCode('INVALID_ARGUMENT', () => hsm()[method]!(key.crn, { initiator: 5 }));
    }
    // An Active key cannot be enabled.
    await expectCode('KEY_STATE', () => hsm().enableKey!(key.crn));
  });

  it('deletion: setDualAuthDelete, setKeyForDeletion, unsetKeyForDeletion, deleteKey', async () => {
    // Without `enabled` it turns dual authorization on (its documented default), so only wrong values here.
    await expectEach('INVALID_ARGUMENT', [null, 5, { enabled: 'yes' }, { enabled: 1 }, { enabled: true, initiator: 5 }], (options) => hsm().setDualAuthDelete!(key.crn, options));
    await expectCode('INVALID_CRN', () => hsm().setDualAuthDelete!(key.id, { enabled: true }));
    for (const method of ['setKeyForDeletion', 'unsetKeyForDeletion'] as const) {
      await expectCode('INVALID_CRN', () => hsm()[method]!(key.id, { initiator: 'alice' }));
      await expectCode('NOT_FOUND', () => hsm()[method]!(unknownKeyCrn, { initiator: 'alice' }));
      await expectEach('INVALID_ARGUMENT', [undefined, null, {}, { initiator: '' }, { initiator: 5 }], (options) => hsm()[method]!(key.crn, options));
    }
    await expectEach('INVALID_CRN', [key.id, undefined, 5, ''], (crn) => hsm().deleteKey!(crn, { force: true }));
    await expectCode('NOT_FOUND', () => hsm().deleteKey!(unknownKeyCrn));
    await expectEach('INVALID_ARGUMENT', [null, 5, { force: 'yes' }, { force: 1 }, { initiator: 5 }], (options) => hsm().deleteKey!(key.crn, options));
    // In use: refused without force, and nothing is destroyed.
    await expectCode('KEY_IN_USE', () => hsm().deleteKey!(key.crn));
  });

  it('registrations: createRegistration, updateRegistration, deleteRegistration, listRegistrations', async () => {
    const resourceCrn = vol.info().crn;
    for (const method of ['createRegistration', 'updateRegistration'] as const) {
      const bad = [
        null,
        5,
        { keyCrn: key.crn, resourceCrn, keyVersion: 0 },
        { keyCrn: key.crn, resourceCrn, keyVersion: Number.NaN },
        { keyCrn: key.crn, resourceCrn, keyVersion: 1, preventKeyDeletion: 'no' },
      ];
      await expectEach('INVALID_ARGUMENT', bad, (options) => hsm()[method]!(options, CALLER));
      await expectEach('INVALID_CRN', [undefined, {}, { keyCrn: key.id, resourceCrn, keyVersion: 1 }, { keyCrn: key.crn, resourceCrn: 5, keyVersion: 1 }], (options) => hsm()[method]!(options, CALLER));
      await expectCode('INVALID_ARGUMENT', () => hsm()[method]!({ keyCrn: key.crn, resourceCrn, keyVersion: 1 }, undefined));
    }
    await expectCode('INVALID_CRN', () => hsm().deleteRegistration!(key.id, resourceCrn, CALLER));
    await expectCode('INVALID_CRN', () => hsm().deleteRegistration!(key.crn, 5, CALLER));
    await expectCode('INVALID_ARGUMENT', () => hsm().deleteRegistration!(key.crn, resourceCrn, undefined));
    await expectCode('NOT_FOUND', () => hsm().deleteRegistration!(key.crn, resourceCrn.replace(/[^:]+$/, 'no-such-volume'), CALLER));
    await expectEach('INVALID_ARGUMENT', [null, 5], (filter) => hsm().listRegistrations!(filter));
    await expectEach('INVALID_CRN', [{ keyCrn: 5 }, { keyCrn: key.id }], (filter) => hsm().listRegistrations!(filter));
    await expectCode('INVALID_ARGUMENT', () => hsm().listRegistrations!({ resourceCrn: {} }));
  });

  it('setHooks refuses a non-object, and on an engine\'s HSM refuses to replace the engine\'s hooks at all', async () => {
    const setHooks = (hooks: unknown): unknown => (engine.hsm as unknown as { setHooks(h: unknown): void }).setHooks(hooks);
    await expectEach('INVALID_ARGUMENT', [undefined, null, 5, {}], setHooks);
    await expectCode('INVALID_ARGUMENT', () => setHooks({ onDestroying: () => {} }));
  });
});

describe('engine.tasks', () => {
  const tasks = (): Record<string, (...args: unknown[]) => unknown> => engine.tasks as unknown as Record<string, (...args: unknown[]) => unknown>;

  it('get, wait and cancel refuse non-string ids (INVALID_ARGUMENT) and unknown ids (NOT_FOUND)', async () => {
    for (const method of ['get', 'wait', 'cancel'] as const) {
      await expectEach('INVALID_ARGUMENT', [...NOT_A_STRING, ''], (id) => tasks()[method]!(id));
      await expectCode('NOT_FOUND', () => tasks()[method]!('no-such-task'));
    }
  });

  it('wait refuses bad options and timeouts', async () => {
    await expectEach('INVALID_ARGUMENT', [null, 5, { timeoutMs: Number.NaN }, { timeoutMs: -1 }, { timeoutMs: '10' }, { timeoutMs: Number.POSITIVE_INFINITY }, { timeoutMs: 2 ** 40 }], (options) => tasks().wait!(taskId, options));
  });

  it('create and createMany refuse bad specs', async () => {
    await expectEach('INVALID_ARGUMENT', [undefined, null, {}, { volumeId, keyCrn: key.crn, fromKeyVersion: 0, toKeyVersion: 1 }, { volumeId, keyCrn: key.crn, fromKeyVersion: 1, toKeyVersion: 2, mode: 'shred' }], (spec) => tasks().create!(spec));
    await expectEach('INVALID_ARGUMENT', [undefined, null, 5, {}, [null]], (specs) => tasks().createMany!(specs));
  });

  it("on/off with a non-function listener is Node's EventEmitter error (TypeError, code ERR_INVALID_ARG_TYPE)", () => {
    expect(() => engine.tasks.on('progress', 5 as unknown as () => void)).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }));
  });

  it('abortTasks refuses a filter that is not an object', async () => {
    await expectEach('INVALID_ARGUMENT', [undefined, null, 5, { keyCrn: 5 }], (filter) => tasks().abortTasks!(filter, new Error('x')));
  });
});

describe('engine.events', () => {
  it('list refuses bad filters', async () => {
    await expectEach('INVALID_ARGUMENT', [
      null,
      5,
      'x',
      { limit: 0 },
      { limit: -1 },
      { limit: 1.5 },
      { limit: Number.NaN },
      { limit: 10 ** 9 },
      { limit: '5' },
      { sinceMs: 'yesterday' },
      { untilMs: Number.NaN },
      { afterSeq: '1' },
      { order: 'up' },
      { action: 5 },
      { keyCrn: {} },
    ], (filter) => engine.events.list(filter as Parameters<Engine['events']['list']>[0]));
  });

  it('append refuses malformed events', async () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    await expectEach('INVALID_ARGUMENT', [
      undefined,
      null,
      5,
      {},
      { action: '' },
      { action: 'has space' },
      { action: 'x'.repeat(200) },
      { action: 'test.bad', outcome: 'maybe' },
      { action: 'test.bad', details: [1] },
      { action: 'test.bad', details: 'x' },
      { action: 'test.bad', details: { big: 5n } },
      { action: 'test.bad', details: circular },
      { action: 'test.bad', initiator: 5 },
    ], (event) => engine.events.append(event as Parameters<Engine['events']['append']>[0]));
  });
});

describe('XtsCipher', () => {
  const cipher = XtsCipher.create({ backend: 'ts' });
  const goodKey = Uint8Array.from({ length: 64 }, (_, i) => i);
  const sector = new Uint8Array(512);

  it('create refuses unknown backends and option shapes', async () => {
    await expectCipherError(RangeError, () => XtsCipher.create({ backend: 'aes' as 'ts' }));
    await expectCipherError(TypeError, () => XtsCipher.create({ backend: 5 as unknown as 'ts' }));
  });

  it('refuses bad keys: wrong type, wrong length, equal halves, shared memory', async () => {
    for (const bad of [undefined, 'k'.repeat(64), new Array(64).fill(1), new Uint8Array(new SharedArrayBuffer(64))]) {
      await expectCipherError(TypeError, () => cipher.encryptSectors(bad as Uint8Array, 0, 512, sector));
      await expectCipherError(TypeError, () => cipher.keyed(bad as Uint8Array));
    }
    for (const length of [0, 32, 63, 65, 128]) {
      await expectCipherError(RangeError, () => cipher.encryptSectors(new Uint8Array(length).fill(1), 0, 512, sector));
      await expectCipherError(RangeError, () => cipher.decryptSectors(new Uint8Array(length).fill(1), 0, 512, sector));
    }
    await expectCipherError(RangeError, () => cipher.encryptSectors(new Uint8Array(64).fill(9), 0, 512, sector));
  });

  it('refuses bad sector numbers, sector sizes and data, sync and async', async () => {
    for (const first of [Number.NaN, -1, 1.5, 2 ** 53, -1n, 2n ** 64n]) {
      await expectCipherError(RangeError, () => cipher.encryptSectors(goodKey, first, 512, sector));
      await expectCipherError(RangeError, () => cipher.decryptSectorsAsync(goodKey, first, 512, sector));
    }
    for (const first of [undefined, '0', null]) await expectCipherError(TypeError, () => cipher.encryptSectors(goodKey, first as unknown as number, 512, sector));
    for (const size of [0, 1024, 513, -512]) await expectCipherError(RangeError, () => cipher.encryptSectors(goodKey, 0, size, sector));
    await expectCipherError(TypeError, () => cipher.encryptSectors(goodKey, 0, '512' as unknown as number, sector));
    await expectCipherError(RangeError, () => cipher.encryptSectors(goodKey, 0, 512, new Uint8Array(500)));
    await expectCipherError(TypeError, () => cipher.encryptSectors(goodKey, 0, 512, 'data' as unknown as Uint8Array));
    await expectCipherError(TypeError, () => cipher.encryptSectorsAsync(goodKey, 0, 512, new Uint8Array(new SharedArrayBuffer(512))));
    await expectCipherError(RangeError, () => cipher.encryptSectorsInto(goodKey, 0, 512, sector, new Uint8Array(1024)));
    await expectCipherError(RangeError, () => cipher.encryptDataUnits(goodKey, new Uint8Array(15), 512, sector));
    await expectCipherError(RangeError, () => cipher.decryptDataUnits(goodKey, new Uint8Array(16), 8, sector));
  });

  it('keyed handles refuse bad arguments and use after wipe', async () => {
    const handle = cipher.keyed(goodKey);
    await expectCipherError(RangeError, () => handle.encryptSectorsInto(-1, 512, sector, new Uint8Array(512)));
    await expectCipherError(RangeError, () => handle.decryptSectorInPlace(0, new Uint8Array(100)));
    handle.wipe();
    let error: unknown = null;
    try {
      handle.encryptSectorsInto(0, 512, sector, new Uint8Array(512));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(Error);
    expect((error as { code?: unknown }).code).toBe('INVALID_ARGUMENT');
  });
});

describe('stored data', () => {
  it('is unchanged by every bad call above, and the audit chain verifies', async () => {
    expect(await storedState()).toEqual(snapshot);
    expect(engine.events.verify().ok).toBe(true);
  });
});

describe('dual-authorization initiators', () => {
  // Issue 13: dual authorization compares people: the second initiator is normalised (trim, NFKC, case fold) and invisible characters are refused.
  it.each(['Alice', 'alice ', 'alice\u200b'])('refuses %j as the second initiator after alice', async (second) => {
    const instance = await engine.hsm.createInstance({ name: `dual-auth-${encodeURIComponent(second)}` });
    const dual = await engine.hsm.createRootKey(instance.id, { name: 'dual', dualAuthDelete: true });
    await engine.hsm.setKeyForDeletion(dual.crn, { initiator: 'alice' });
    const outcome = await outcomeOf(() => engine.hsm.deleteKey(dual.crn, { initiator: second }));
    expect(outcome).toMatchObject({ typed: true, code: expect.stringMatching(/^(KEY_DELETION_NOT_AUTHORIZED|INVALID_ARGUMENT)$/) });
    expect((await engine.hsm.getKey(dual.crn)).stateName).not.toBe('Destroyed');
  });
});

describe('after engine.close()', () => {
  let closed: Engine;
  let handle: Volume;
  let closedKey: RootKeyInfo;
  let closedTaskId: string;
  let closedDir: string;
  let closedSnapshot: string;

  const reopenedState = async (e: Engine): Promise<string> =>
    JSON.stringify({ volumes: e.listVolumes(), keys: await e.hsm.listKeys(), registrations: await e.hsm.listRegistrations(), tasks: e.tasks.list() });

  beforeAll(async () => {
    closedDir = tempDir();
    closed = await openTestEngine(closedDir, { rotation: { workers: 1 } });
    closedKey = await rootKey(closed, { name: 'closed' });
    handle = await closed.createVolume({ name: 'c', sizeBytes: 8192, diskEncryptionKeyCrn: closedKey.crn });
    const [task] = await closed.hsm.rotateKey(closedKey.crn);
    closedTaskId = task!.id;
    await closed.tasks.wait(closedTaskId);
    closedSnapshot = await reopenedState(closed);
    await closed.close();
  });

  it('engine methods fail with ENGINE_CLOSED; close() again is fine', async () => {
    await expectCode('ENGINE_CLOSED', () => closed.createVolume({ name: 'x', sizeBytes: 4096 }));
    await expectCode('ENGINE_CLOSED', () => closed.openVolume('c'));
    await expectCode('ENGINE_CLOSED', () => closed.deleteVolume('c'));
    await expectCode('ENGINE_CLOSED', () => closed.restoreVolume('c'));
    await expectCode('ENGINE_CLOSED', () => closed.purgeExpired());
    await expectCode('ENGINE_CLOSED', () => closed.runScheduler());
    await expectCode('ENGINE_CLOSED', () => closed.listVolumes());
    await closed.close();
  });

  it('volume handles fail with ENGINE_CLOSED (VOLUME_CLOSED once closed themselves)', async () => {
    await expectCode('ENGINE_CLOSED', () => handle.read(0, 512));
    await expectCode('ENGINE_CLOSED', () => handle.write(0, new Uint8Array(512)));
    await expectCode('ENGINE_CLOSED', () => handle.trim(0, 512));
    await expectCode('ENGINE_CLOSED', () => handle.flush());
    await handle.close();
    await expectCode('VOLUME_CLOSED', () => handle.read(0, 512));
  });

  it('engine.tasks fails with ENGINE_CLOSED', async () => {
    await expectCode('ENGINE_CLOSED', () => closed.tasks.list());
    await expectCode('ENGINE_CLOSED', () => closed.tasks.get(closedTaskId));
    await expectCode('ENGINE_CLOSED', () => closed.tasks.wait(closedTaskId));
    await expectCode('ENGINE_CLOSED', () => closed.tasks.cancel(closedTaskId));
    await expectCode('ENGINE_CLOSED', () => closed.tasks.resumeAll());
    await expectCode('ENGINE_CLOSED', () => closed.tasks.warmUp());
    await expectCode('ENGINE_CLOSED', () => closed.tasks.create({ volumeId: 'v', keyCrn: closedKey.crn, fromKeyVersion: 1, toKeyVersion: 2 }));
  });

  it('engine.events fails with ENGINE_CLOSED', async () => {
    await expectCode('ENGINE_CLOSED', () => closed.events.list());
    await expectCode('ENGINE_CLOSED', () => closed.events.verify());
    await expectCode('ENGINE_CLOSED', () => closed.events.append({ action: 'test.after-close' }));
  });

  it('engine.hsm fails with ENGINE_CLOSED', async () => {
    const hsm = closed.hsm as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const calls: [string, unknown[]][] = [
      ['createInstance', [{ name: 'x' }]],
      ['listInstances', []],
      ['getInstance', [closedKey.instanceId]],
      ['authorize', [{ sourceService: 'blockvault', targetInstance: closedKey.instanceId, role: 'Reader' }]],
      ['revoke', ['some-id']],
      ['listAuthorizations', []],
      ['createRootKey', [closedKey.instanceId, { name: 'x' }]],
      ['importRootKey', [closedKey.instanceId, { name: 'x', material: new Uint8Array(32).fill(1) }]],
      ['createImportToken', [closedKey.instanceId, {}]],
      ['getImportToken', [closedKey.instanceId]],
      ['importRootKeyWithToken', [closedKey.instanceId, { name: 'x', encryptedMaterial: new Uint8Array(256) }]],
      ['createPlatformKey', []],
      ['getKey', [closedKey.crn]],
      ['listKeys', []],
      ['wrap', [closedKey.crn, new Uint8Array(64), CALLER]],
      ['unwrap', [closedKey.crn, new Uint8Array(72), 1, CALLER]],
      ['rewrap', [closedKey.crn, new Uint8Array(72), 1, CALLER]],
      ['rotateKey', [closedKey.crn]],
      ['setRotationPolicy', [closedKey.crn, null]],
      ['runScheduler', []],
      ['enableKey', [closedKey.crn]],
      ['disableKey', [closedKey.crn]],
      ['deactivateKey', [closedKey.crn]],
      ['setDualAuthDelete', [closedKey.crn, { enabled: true }]],
      ['setKeyForDeletion', [closedKey.crn, { initiator: 'alice' }]],
      ['unsetKeyForDeletion', [closedKey.crn, { initiator: 'alice' }]],
      ['deleteKey', [closedKey.crn, { force: true }]],
      ['createRegistration', [{ keyCrn: closedKey.crn, resourceCrn: handle.info().crn, keyVersion: 1 }, CALLER]],
      ['updateRegistration', [{ keyCrn: closedKey.crn, resourceCrn: handle.info().crn, keyVersion: 1 }, CALLER]],
      ['deleteRegistration', [closedKey.crn, handle.info().crn, CALLER]],
      ['listRegistrations', []],
    ];
    for (const [method, args] of calls) {
      expect({ method, outcome: await outcomeOf(() => hsm[method]!(...args)) }).toMatchObject({ method, outcome: { typed: true, code: 'ENGINE_CLOSED' } });
    }
  });

  it('after a reopen, the directory holds exactly what it held at close', async () => {
    await expectCode('WRONG_PASSPHRASE', () => openTestEngine(closedDir, { hsm: { passphrase: 'not the passphrase' } }));
    const reopened = await openTestEngine(closedDir);
    try {
      expect(await reopenedState(reopened)).toBe(closedSnapshot);
      expect(reopened.events.verify().ok).toBe(true);
    } finally {
      await reopened.close();
    }
  });
});
