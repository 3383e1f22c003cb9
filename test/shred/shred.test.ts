/**
 * Cryptoshredding through the engine (issue 6): a forced delete of a key in use destroys every
 * version's material, locks every volume of the key (soft-deleted ones too) before it returns,
 * settles in-flight I/O without a hang and without data after the lock, zeroizes the data keys on
 * the main thread and in the rotation workers, stops running rotations, is audited, and survives a
 * restart with metadata readable and data unreachable by any API. preventKeyDeletion wins over
 * force.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import type { Engine } from '../../src/engine.js';
import { BlockvaultError, isBlockvaultError } from '../../src/errors.js';
import { KeyState } from '../../src/hsm/types.js';
import { RotationPool } from '../../src/rotation/worker-pool.js';
import { cipherBackends } from '../helpers/cipher-backends.js';
import { forEachProvider, type ProviderName } from '../helpers/providers.js';
import { radosSkipReason, radosStoreOf } from '../helpers/rados-store.js';
import { useCephCluster } from '../helpers/use-ceph-cluster.js';
import type { VolumeStoreOptions } from '../../src/store/volume-store.js';
import { openTestEngine, rootKey } from '../helpers/engine.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { MIB, allZero, captureDataKeys, codeOf, observe, expectStoredVersions, readVolumeRecord, settleAll, type Outcome } from './helpers.js';
import { engineInternals } from '../../src/engine-internals.js';

afterAll(() => removeTempDirs());
afterEach(() => vi.restoreAllMocks());

const SHRED_CODES = ['KEY_DESTROYED', 'VOLUME_LOCKED'];
const CALLER = { sourceService: 'blockvault', initiator: 'shred-test' };

/** Rotation workers load the probing ops module (the product format plus a key-hygiene probe). */
function useProbingWorkers(delayMs: number): void {
  const url = `${pathToFileURL(fileURLToPath(new URL('./fixtures/probing-ops.ts', import.meta.url))).href}?delayMs=${delayMs}`;
  const create = RotationPool.create.bind(RotationPool);
  vi.spyOn(RotationPool, 'create').mockImplementation((options = {}) => create({ ...options, clusterOpsModule: url }));
}

// Every cipher backend with every key provider (test/helpers/providers.ts).
for (const { backend, skipReason } of cipherBackends()) {
  forEachProvider(`cryptoshredding [${backend}]`, (provider) => {
    it('destroys every version, locks every volume before returning, zeroizes keys, audits; after a restart nothing reads', async () => {
      await shredsEverything(backend, provider);
    });

    it('stops a running rotation: the task fails with KEY_DESTROYED, runner and worker keys are zeroized', async () => {
      useProbingWorkers(2);
      const dir = makeTempDir('bv-shred-rot-');
      const engine = await openTestEngine(dir, { provider, cipher: backend, rotation: { workers: 1, rotationBatchSectorsMax: 64, progressIntervalMs: 0, backend } });
      try {
        const keys = captureDataKeys();
        const key = await rootKey(engine);
        const vol = await engine.createVolume({ name: 'busy', sizeBytes: 16 * MIB, diskEncryptionKeyCrn: key.crn });
        await vol.write(0, randomBytes(16 * MIB));
        const [task] = await engine.hsm.rotateKey(key.crn);
        await new Promise<void>((resolve) => {
          const onProgress = (event: { taskId: string; sectorsDone: number }) => {
            if (event.taskId === task!.id && event.sectorsDone > 0) {
              engine.tasks.off('progress', onProgress);
              resolve();
            }
          };
          engine.tasks.on('progress', onProgress);
        });
        expect(engine.tasks.get(task!.id).state).toBe('running');
        expect(vol.info().state).toBe('syncing');
        const writes = Array.from({ length: 20 }, (_, i) => observe(vol.write(i * 65536, randomBytes(4096))));
        const started = performance.now();
        await engine.hsm.deleteKey(key.crn, { force: true });
        const stopMs = performance.now() - started;
        // deleteKey returns once the task has stopped (within a batch: 8 clusters x 2 ms here).
        const ended = engine.tasks.get(task!.id);
        expect(ended).toMatchObject({ state: 'failed', error: { code: 'KEY_DESTROYED' } });
        expect(stopMs).toBeLessThan(10_000);
        await expect(engine.tasks.wait(task!.id)).rejects.toSatisfy((e) => isBlockvaultError(e, 'TASK_FAILED'));
        expect(vol.info().state).toBe('locked');
        for (const outcome of await settleAll(writes, 10_000)) expect(outcome.status === 'ok' || (outcome.status === 'error' && SHRED_CODES.includes(outcome.code))).toBe(true);
        // Every copy of a data key: the volume's ring, the runner's copies, the worker's batch keys.
        expect(keys.runnerCopies.length).toBeGreaterThan(0);
        expect(allZero(keys.ringKeys)).toBe(true);
        expect(allZero(keys.runnerCopies)).toBe(true);
        const probe = (await engine.tasks.probeWorker()) as { keysSeen: number; allZero: boolean };
        expect(probe.keysSeen).toBeGreaterThan(0);
        expect(probe.allZero).toBe(true);
        expect(engine.events.list({ action: 'blockvault.rotation.fail' }).map((e) => e.details.taskId)).toContain(task!.id);
        keys.restore();
      } finally {
        await engine.close();
      }
    });

    it("a task whose own open finds the key destroyed locks the volume and fails (no wait on itself)", async () => {
      const dir = makeTempDir('bv-shred-self-');
      const engine = await openTestEngine(dir, { provider, cipher: backend, rotation: { workers: 1 } });
      try {
        const key = await rootKey(engine);
        const vol = await engine.createVolume({ name: 'closed', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn });
        await vol.write(0, randomBytes(8192));
        await vol.close(); // the task's target opens it: an unwrap
        // The key dies between the rotation and the task's open (as if destroyed by another path).
        vi.spyOn(engine.hsm, 'unwrap').mockRejectedValue(new BlockvaultError('KEY_DESTROYED', `root key ${key.crn} was destroyed`));
        const [task] = await engine.hsm.rotateKey(key.crn);
        const error = await engine.tasks.wait(task!.id, { timeoutMs: 10_000 }).catch((e: unknown) => e);
        expect(isBlockvaultError(error, 'TASK_FAILED')).toBe(true);
        expect(engine.tasks.get(task!.id).state).toBe('failed');
        expect(engine.listVolumes()[0]!.state).toBe('locked');
      } finally {
        await engine.close();
      }
    });

    it('preventKeyDeletion blocks even a forced delete, and nothing is locked', async () => {
      const dir = makeTempDir('bv-shred-prevent-');
      const engine = await openTestEngine(dir, { provider, cipher: backend });
      try {
        const key = await rootKey(engine);
        const kept = await engine.createVolume({ name: 'kept', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn });
        const plain = await engine.createVolume({ name: 'plain', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn });
        const data = randomBytes(8192);
        await kept.write(0, data);
        await engine.hsm.updateRegistration({ keyCrn: key.crn, resourceCrn: kept.info().crn, preventKeyDeletion: true }, CALLER);
        const error = await engine.hsm.deleteKey(key.crn, { force: true }).catch((e: unknown) => e);
        expect(isBlockvaultError(error, 'KEY_DELETION_PREVENTED')).toBe(true);
        expect((error as Error).message).toMatch(/not even with force.*preventKeyDeletion/);
        expect((await engine.hsm.getKey(key.crn)).state).toBe(KeyState.Active);
        expect(engine.listVolumes().map((v) => v.state)).toEqual(['active', 'active']);
        expect(Buffer.from(await kept.read(0, data.length)).equals(data)).toBe(true);
        await plain.write(0, data);
        await expectStoredVersions(dir, key.id, provider, [1]);
        const [refused] = engine.events.list({ action: 'hs-crypto.secrets.delete', keyCrn: key.crn });
        expect(refused).toMatchObject({ outcome: 'failure', code: 'KEY_DELETION_PREVENTED' });
        expect(engine.events.list({ action: 'blockvault.volume.lock' })).toHaveLength(0);
      } finally {
        await engine.close();
      }
    });

    it('an unwrap that passed before the delete but returns after the lock (open, restore) never brings a data key back', async () => {
      const dir = makeTempDir('bv-shred-race-');
      const engine = await openTestEngine(dir, { provider, cipher: backend });
      try {
        const keys = captureDataKeys();
        const key = await rootKey(engine);
        const opened = await engine.createVolume({ name: 'open', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn });
        const restored = await engine.createVolume({ name: 'restore', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn });
        await opened.write(0, randomBytes(4096));
        await opened.close(); // the next open unwraps its data key through the HSM
        await engine.deleteVolume(restored.info().id); // the handle stays: restore unwraps into its core
        // Hold every unwrap's result (it succeeded: the key was alive) until the delete has returned.
        let release!: () => void;
        const gate = new Promise<void>((resolve) => (release = resolve));
        const unwrap = engine.hsm.unwrap.bind(engine.hsm);
        let held = 0;
        vi.spyOn(engine.hsm, 'unwrap').mockImplementation(async (...args) => {
          const result = await unwrap(...args);
          held++;
          await gate;
          return result;
        });
        const opening = observe(engine.openVolume(opened.info().id));
        const restoring = codeOf(engine.restoreVolume(restored.info().id));
        while (held < 2) await new Promise((resolve) => setImmediate(resolve));
        await engine.hsm.deleteKey(key.crn, { force: true });
        release();
        const handle = await opening;
        expect(handle.status).toBe('ok');
        const h = (handle as { value: Awaited<ReturnType<Engine['openVolume']>> }).value;
        expect(await restoring).toBe('VOLUME_LOCKED');
        expect(h.info().state).toBe('locked');
        expect(restored.info()).toMatchObject({ state: 'locked', deletedAtMs: expect.any(Number) });
        expect(await codeOf(h.read(0, 4096))).toBe('VOLUME_LOCKED');
        expect(await codeOf(restored.read(0, 4096))).toBe('VOLUME_LOCKED');
        // Both unwrapped keys reached a key ring and were zeroized there.
        expect(keys.ringKeys.length).toBeGreaterThanOrEqual(4);
        expect(allZero(keys.ringKeys)).toBe(true);
        await h.close();
        keys.restore();
      } finally {
        await engine.close();
      }
    });

    it('opens and restores racing the delete at random points end locked with every key zeroized', async () => {
      const dir = makeTempDir('bv-shred-race-');
      const engine = await openTestEngine(dir, { provider, cipher: backend });
      try {
        const keys = captureDataKeys();
        for (let trial = 0; trial < 8; trial++) {
          const key = await rootKey(engine, { name: `race-${trial}` });
          const opened = await engine.createVolume({ name: `open-${trial}`, sizeBytes: MIB, diskEncryptionKeyCrn: key.crn });
          const restored = await engine.createVolume({ name: `restore-${trial}`, sizeBytes: MIB, diskEncryptionKeyCrn: key.crn });
          await opened.close();
          await engine.deleteVolume(restored.info().id);
          const opening = observe(engine.openVolume(opened.info().id));
          const restoring = codeOf(engine.restoreVolume(restored.info().id));
          for (let i = 0; i < trial % 4; i++) await new Promise((resolve) => setImmediate(resolve));
          await engine.hsm.deleteKey(key.crn, { force: true });
          const handle = await opening;
          expect(handle.status).toBe('ok');
          expect(['OK', 'VOLUME_LOCKED', 'KEY_DESTROYED']).toContain(await restoring);
          expect(engine.listVolumes().filter((v) => v.diskEncryptionKeyCrn === key.crn).map((v) => v.state)).toEqual(['locked', 'locked']);
          await (handle as { value: { close(): Promise<void> } }).value.close();
        }
        expect(allZero(keys.ringKeys)).toBe(true);
        keys.restore();
      } finally {
        await engine.close();
      }
    });
  }, skipReason);
}

/**
 * The whole cryptoshred: every version destroyed, every volume of the key locked before deleteKey
 * returns (a soft-deleted one too) while I/O is in flight, keys zeroized, audited, and after a
 * restart nothing reads. On LMDB for every backend and provider, and with the sectors in RADOS.
 */
async function shredsEverything(backend: 'native' | 'ts', provider: ProviderName, store?: VolumeStoreOptions): Promise<void> {
  const storeOption = store === undefined ? {} : { store };
  const dir = makeTempDir('bv-shred-');
  let engine: Engine = await openTestEngine(dir, { provider, cipher: backend, rotation: { workers: 1 }, ...storeOption });
  const otherKey = await rootKey(engine, { name: 'other' });
  const other = await engine.createVolume({ name: 'other', sizeBytes: MIB, diskEncryptionKeyCrn: otherKey.crn });
  const otherData = randomBytes(64 * 1024);
  await other.write(0, otherData);
  const keys = captureDataKeys();
  const key = await rootKey(engine, { name: 'doomed' });
  const a = await engine.createVolume({ name: 'a', sizeBytes: 4 * MIB, diskEncryptionKeyCrn: key.crn });
  const b = await engine.createVolume({ name: 'b', sizeBytes: 4 * MIB, sectorSize: 512, diskEncryptionKeyCrn: key.crn });
  const c = await engine.createVolume({ name: 'c', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn });
  for (const vol of [a, b, c]) await vol.write(0, randomBytes(MIB));
  // Two key versions: the volumes' data keys move to v2 (rewrap), v1 stays for unwrap.
  for (const task of await engine.hsm.rotateKey(key.crn, { rewrapOnly: true })) await engine.tasks.wait(task.id);
  await engine.deleteVolume('c'); // soft-deleted: still registered, must be locked too
  await expectStoredVersions(dir, key.id, provider, [1, 2]);
  const ids = [a, b, c].map((v) => v.info().id);

  // I/O in flight when the delete is called, and more while it runs.
  const ops: Promise<Outcome<unknown>>[] = [];
  const readsAfterReturn: Promise<Outcome<unknown>>[] = [];
  const issue = (n: number) => {
    for (let i = 0; i < n; i++) {
      const vol = i % 2 === 0 ? a : b;
      ops.push(observe<unknown>(i % 3 === 0 ? vol.write((i * 4096) % (3 * MIB), randomBytes(4096 + 512)) : vol.read((i * 8192) % (3 * MIB), 8192)));
    }
  };
  issue(60);
  const deleting = engine.hsm.deleteKey(key.crn, { force: true, initiator: 'shred-test' });
  const feeder = setInterval(() => issue(4), 1);
  const result = await deleting.finally(() => clearInterval(feeder));
  // Before deleteKey returned, every volume of the key was locked, the soft-deleted one too.
  const states = Object.fromEntries(engine.listVolumes().map((v) => [v.name, v.state]));
  expect(states).toEqual({ other: 'active', a: 'locked', b: 'locked', c: 'locked' });
  for (let i = 0; i < 10; i++) readsAfterReturn.push(observe<unknown>(a.read(0, 4096)), observe<unknown>(b.read(0, 512)));
  expect(result.key.state).toBe(KeyState.Destroyed);
  expect(result.affectedResources.sort()).toEqual([a, b, c].map((v) => v.info().crn).sort());

  // None hangs; each completes or fails with a shred code; nothing read after the return has data.
  const outcomes = await settleAll(ops, 10_000);
  expect(outcomes.filter((o) => o.status === 'hung')).toHaveLength(0);
  const codes = new Set(outcomes.flatMap((o) => (o.status === 'error' ? [o.code] : [])));
  expect([...codes].filter((code) => !SHRED_CODES.includes(code))).toEqual([]);
  expect(codes.size).toBeGreaterThan(0); // the feeder kept issuing until the return: some were refused
  for (const outcome of await settleAll(readsAfterReturn, 5_000)) expect(outcome).toMatchObject({ status: 'error', code: 'VOLUME_LOCKED' });

  // Material: every version destroyed, the sealed files gone; data keys zeroized in memory.
  const destroyed = await engine.hsm.getKey(key.crn);
  expect(destroyed.versions.map((v) => v.destroyedAtMs !== null && v.destroyedAtMs !== undefined)).toEqual([true, true]);
  await expectStoredVersions(dir, key.id, provider, []);
  expect(keys.ringKeys.length).toBeGreaterThanOrEqual(3);
  expect(allZero(keys.ringKeys)).toBe(true);
  keys.restore();

  // Audit: the delete with force and the volumes it shredded; a lock event per volume.
  const [event] = engine.events.list({ action: 'hs-crypto.secrets.delete', keyCrn: key.crn });
  expect(event).toMatchObject({ outcome: 'success', initiator: 'shred-test' });
  expect(event!.details.force).toBe(true);
  expect([...(event!.details.affectedResources as string[])].sort()).toEqual([a, b, c].map((v) => v.info().crn).sort());
  const lockEvents = engine.events.list({ action: 'blockvault.volume.lock' });
  expect(lockEvents.map((e) => e.resourceCrn).sort()).toEqual([a, b, c].map((v) => v.info().crn).sort());
  await engine.close();

  // After a restart: locked, metadata readable, data unreachable through every door.
  const record = (await readVolumeRecord(dir, ids[0]!))!;
  expect(record.generations.length).toBeGreaterThan(0);
  engine = await openTestEngine(dir, { provider, cipher: backend, ...storeOption });
  try {
    const infos = Object.fromEntries(engine.listVolumes().map((v) => [v.name, v]));
    expect(infos.a).toMatchObject({ state: 'locked', sizeBytes: 4 * MIB, sectorSize: 4096, diskEncryptionKeyCrn: key.crn, keyVersion: 2, platformManaged: false, lockReason: expect.any(String) });
    expect(infos.b).toMatchObject({ state: 'locked', sizeBytes: 4 * MIB, sectorSize: 512, layout: 'compact', diskEncryptionKeyCrn: key.crn });
    expect(infos.c).toMatchObject({ state: 'locked', deletedAtMs: expect.any(Number), purgeAtMs: expect.any(Number) });
    expect(infos.other!.state).toBe('active');
    for (const id of ids) {
      const vol = await engine.openVolume(id);
      expect(vol.info().state).toBe('locked');
      expect(await codeOf(vol.read(0, 512))).toBe('VOLUME_LOCKED');
      expect(await codeOf(vol.write(0, Buffer.alloc(512, 1)))).toBe('VOLUME_LOCKED');
      expect(await codeOf(vol.trim(0, 512))).toBe('VOLUME_LOCKED');
      expect(await codeOf(engineInternals(engine).reencryptTarget(id))).toBe('VOLUME_LOCKED');
      await vol.close();
    }
    expect(await codeOf(engine.restoreVolume('c'))).toBe('VOLUME_LOCKED');
    expect(await codeOf(engine.hsm.rotateKey(key.crn))).toBe('KEY_DESTROYED');
    expect(await codeOf(engine.createVolume({ name: 'again', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn }))).toBe('KEY_DESTROYED');
    for (const generation of record.generations) {
      expect(await codeOf(engine.hsm.unwrap(key.crn, generation.wrapped, generation.keyVersion, CALLER))).toBe('KEY_DESTROYED');
    }
    await expectStoredVersions(dir, key.id, provider, []);
    const stillThere = await engine.openVolume('other');
    expect(Buffer.from(await stillThere.read(0, otherData.length)).equals(otherData)).toBe(true);
  } finally {
    await engine.close();
  }
}

const radosReason = radosSkipReason();
describe.skipIf(radosReason !== '')(`cryptoshredding with the sectors in RADOS${radosReason === '' ? '' : ` (skipped: ${radosReason})`}`, () => {
  const ceph = useCephCluster();
  it('destroys every version, locks every volume before returning, zeroizes keys, audits; after a restart nothing reads', async () => {
    await shredsEverything('native', 'software', radosStoreOf(ceph()));
  }, 60_000);
});
