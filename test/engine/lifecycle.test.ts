/**
 * Volume lifecycle (issue 4): soft delete, restore, purge after the retention period (ManualClock),
 * an interrupted purge completing on the next open, locking when the key is destroyed, and
 * metadata in every state, also after a restart.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { open } from 'lmdb';
import { afterAll, expect, it } from 'vitest';
import { MS_PER_DAY, ManualClock } from '../../src/clock.js';
import { storeKeyRange } from '../../src/volume/cluster-format.js';
import type { VolumeRecord } from '../../src/volume/record.js';
import { cipherBackends } from '../helpers/cipher-backends.js';
import { forEachProvider } from '../helpers/providers.js';
import { openTestEngine, rootKey } from '../helpers/engine.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { engineInternals } from '../../src/engine-internals.js';

afterAll(() => removeTempDirs());

const MIB = 1024 * 1024;

async function codeOf(promise: Promise<unknown>): Promise<string | null> {
  return promise.then(
    () => null,
    (e: unknown) => (e as { code?: string }).code ?? String(e),
  );
}

/** Stored keys of a volume (clusters, metas, bodies), read from the closed engine's LMDB file. */
async function storedKeys(dir: string, storeId: number): Promise<number> {
  const env = open({ path: join(dir, 'engine.lmdb'), maxDbs: 32 });
  try {
    let count = 0;
    for (const name of ['clusters', 'sectors']) {
      const db = env.openDB<Buffer, Buffer>(name, { keyEncoding: 'binary', encoding: 'binary' });
      count += db.getKeysCount(storeKeyRange(storeId));
    }
    return count;
  } finally {
    await env.close();
  }
}

async function readRecord(dir: string, id: string): Promise<VolumeRecord | undefined> {
  const env = open({ path: join(dir, 'engine.lmdb'), maxDbs: 32 });
  try {
    return env.openDB<VolumeRecord, string>('volumes', {}).get(id);
  } finally {
    await env.close();
  }
}

// Every cipher backend with every key provider (test/helpers/providers.ts).
for (const { backend, skipReason } of cipherBackends()) {
  forEachProvider(`volume lifecycle [${backend}]`, (provider) => {
    it('soft-deletes, refuses I/O with VOLUME_DELETED, restores with data intact', async () => {
      const clock = new ManualClock();
      const engine = await openTestEngine(makeTempDir('bv-life-'), { provider, cipher: backend, clock });
      try {
        const key = await rootKey(engine);
        const vol = await engine.createVolume({ name: 'db', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn });
        const data = randomBytes(50_000);
        const write = vol.write(1000, data);
        const deleted = await engine.deleteVolume(vol.info().id);
        await write; // called before the delete: completes
        expect(deleted).toMatchObject({ state: 'deleted', deletedAtMs: clock.nowMs(), purgeAtMs: clock.nowMs() + 9 * MS_PER_DAY });
        expect(vol.info().state).toBe('deleted');
        for (const op of [vol.read(0, 1), vol.write(0, Buffer.alloc(1)), vol.trim(0, 1)]) expect(await codeOf(op)).toBe('VOLUME_DELETED');
        expect(engine.listVolumes()[0]).toMatchObject({ state: 'deleted' });
        // Still registered against its key during the retention period.
        expect(await engine.hsm.listRegistrations({ keyCrn: key.crn })).toHaveLength(1);
        // A new volume may take the name meanwhile, which then blocks the restore.
        const other = await engine.createVolume({ name: 'db', sizeBytes: MIB });
        expect(await codeOf(engine.restoreVolume(vol.info().id))).toBe('ALREADY_EXISTS');
        await engine.deleteVolume(other.info().id);
        clock.advanceMs(9 * MS_PER_DAY - 1);
        expect(await engine.purgeExpired()).toEqual([]);
        const restored = await engine.restoreVolume(vol.info().id);
        expect(restored).toMatchObject({ state: 'active', deletedAtMs: null, purgeAtMs: null });
        expect(Buffer.from(await vol.read(1000, data.length)).equals(data)).toBe(true);
        const reopened = await engine.openVolume('db');
        expect(reopened.info().id).toBe(vol.info().id);
      } finally {
        await engine.close();
      }
    });

    it('purges after the retention period: sectors, registration and record; the platform key goes too', async () => {
      const clock = new ManualClock();
      const dir = makeTempDir('bv-life-');
      const engine = await openTestEngine(dir, { provider, cipher: backend, clock, retentionMs: 2 * MS_PER_DAY });
      let storeId = 0;
      let platformKeyCrn = '';
      try {
        const vol = await engine.createVolume({ name: 'tmp', sizeBytes: 4 * MIB });
        platformKeyCrn = vol.info().diskEncryptionKeyCrn;
        await vol.write(0, randomBytes(4 * MIB));
        await engine.deleteVolume('tmp');
        clock.advanceMs(2 * MS_PER_DAY);
        expect(await engine.purgeExpired()).toEqual([vol.info().id]);
        expect(engine.listVolumes()).toEqual([]);
        expect(await engine.hsm.listRegistrations({ resourceCrn: vol.info().crn })).toEqual([]);
        expect((await engine.hsm.getKey(platformKeyCrn)).stateName).toBe('Destroyed');
        expect(await codeOf(engine.openVolume(vol.info().id))).toBe('NOT_FOUND');
        expect(await codeOf(engine.restoreVolume(vol.info().id))).toBe('NOT_FOUND');
        expect(await codeOf(vol.read(0, 1))).toMatch(/VOLUME_DELETED|VOLUME_CLOSED/);
        storeId = 1; // the first volume of a fresh engine
      } finally {
        await engine.close();
      }
      expect(await storedKeys(dir, storeId)).toBe(0);
    });

    it('completes an interrupted purge on the next open', async () => {
      const clock = new ManualClock();
      const dir = makeTempDir('bv-life-');
      let engine = await openTestEngine(dir, { provider, cipher: backend, clock });
      const key = await rootKey(engine);
      const vol = await engine.createVolume({ name: 'half', sizeBytes: 8 * MIB, diskEncryptionKeyCrn: key.crn });
      const keep = await engine.createVolume({ name: 'keep', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn });
      await vol.write(0, randomBytes(8 * MIB));
      const keepData = randomBytes(MIB);
      await keep.write(0, keepData);
      const id = vol.info().id;
      await engine.deleteVolume(id);
      await engine.close();

      // The state a crash in the middle of a purge leaves: the marker persisted (as the purger
      // stores it, authenticated), some data gone.
      const { mac: _mac, ...deleted } = (await readRecord(dir, id))! as VolumeRecord & { mac?: Uint8Array };
      engine = await openTestEngine(dir, { provider, cipher: backend, clock });
      await engineInternals(engine).saveRecord({ ...deleted, purgingSinceMs: clock.nowMs() });
      await engine.close();

      const record = (await readRecord(dir, id))!;
      expect(record.purgingSinceMs).toBe(clock.nowMs());
      expect(await storedKeys(dir, record.storeId)).toBeGreaterThan(0);
      const env = open({ path: join(dir, 'engine.lmdb'), maxDbs: 32 });
      const sectors = env.openDB<Buffer, Buffer>('sectors', { keyEncoding: 'binary', encoding: 'binary' });
      const clusters = env.openDB<Buffer, Buffer>('clusters', { keyEncoding: 'binary', encoding: 'binary' });
      for (const db of [sectors, clusters]) {
        const keys = [...db.getKeys({ ...storeKeyRange(record.storeId), limit: 100 })];
        for (const k of keys) db.removeSync(k);
      }
      await env.close();

      // Retention has not passed, yet the purge that had started completes on open.
      engine = await openTestEngine(dir, { provider, cipher: backend, clock });
      try {
        expect(engine.listVolumes().map((v) => v.name)).toEqual(['keep']);
        expect(await engine.hsm.listRegistrations({ keyCrn: key.crn })).toHaveLength(1);
        const again = await engine.openVolume('keep');
        expect(Buffer.from(await again.read(0, MIB)).equals(keepData)).toBe(true);
      } finally {
        await engine.close();
      }
      expect(await storedKeys(dir, record.storeId)).toBe(0);
      expect(await readRecord(dir, id)).toBeUndefined();
    });

    it('locks every volume of a destroyed key: I/O fails, metadata stays readable after restart', async () => {
      const clock = new ManualClock();
      const dir = makeTempDir('bv-life-');
      let engine = await openTestEngine(dir, { provider, cipher: backend, clock });
      const key = await rootKey(engine);
      const a = await engine.createVolume({ name: 'a', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn });
      const b = await engine.createVolume({ name: 'b', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn });
      const other = await engine.createVolume({ name: 'other', sizeBytes: MIB });
      await a.write(0, randomBytes(4096));
      await engine.deleteVolume('b'); // soft-deleted volumes are locked too
      // Writes in flight when the volume is locked fail (the lock itself is synchronous).
      const inFlight = Array.from({ length: 20 }, (_, i) => a.write(i * 4096, randomBytes(4096)));
      const locking = engineInternals(engine).lockVolumesForKey(key.crn);
      expect(a.info().state).toBe('locked');
      const results = await Promise.allSettled(inFlight);
      for (const r of results) expect(r.status === 'rejected' && (r.reason as { code: string }).code).toBe('VOLUME_LOCKED');
      expect((await locking).map((v) => v.name).sort()).toEqual(['a', 'b']);
      // The HSM's forced delete reaches the same lock through its onDestroyed hook.
      const second = await rootKey(engine, { name: 'second' });
      const c = await engine.createVolume({ name: 'c', sizeBytes: MIB, diskEncryptionKeyCrn: second.crn });
      await c.write(0, randomBytes(4096));
      await engine.hsm.deleteKey(second.crn, { force: true });
      expect(c.info().state).toBe('locked');
      expect(await codeOf(c.read(0, 1))).toBe('VOLUME_LOCKED');
      await engine.hsm.deleteKey(key.crn, { force: true });
      for (const op of [a.read(0, 1), a.write(0, Buffer.alloc(1)), a.flush().then(() => a.read(0, 1))]) {
        expect(await codeOf(op)).toBe('VOLUME_LOCKED');
      }
      expect(a.info()).toMatchObject({ state: 'locked', name: 'a', diskEncryptionKeyCrn: key.crn, lockedAtMs: clock.nowMs() });
      expect(b.info().state).toBe('locked');
      expect(await codeOf(engine.restoreVolume('b'))).toBe('VOLUME_LOCKED');
      expect(other.info().state).toBe('active');
      await engine.close();

      engine = await openTestEngine(dir, { provider, cipher: backend, clock });
      try {
        const infos = Object.fromEntries(engine.listVolumes().map((v) => [v.name, v]));
        expect(infos.a).toMatchObject({ state: 'locked', sizeBytes: MIB, sectorSize: 4096, diskEncryptionKeyCrn: key.crn, keyVersion: 1 });
        expect(infos.b).toMatchObject({ state: 'locked' });
        expect(infos.b!.purgeAtMs).not.toBeNull();
        expect(infos.other).toMatchObject({ state: 'active' });
        const locked = await engine.openVolume('a');
        expect(locked.info().state).toBe('locked');
        expect(await codeOf(locked.read(0, 1))).toBe('VOLUME_LOCKED');
      } finally {
        await engine.close();
      }
    });

    it('lists metadata in every state: active, syncing, locked, deleted', async () => {
      const clock = new ManualClock();
      const dir = makeTempDir('bv-life-');
      let engine = await openTestEngine(dir, { provider, cipher: backend, clock });
      const doomed = await rootKey(engine, { name: 'doomed' });
      await engine.createVolume({ name: 'active', sizeBytes: MIB });
      const syncing = await engine.createVolume({ name: 'syncing', sizeBytes: MIB });
      await engineInternals(engine).markSyncing(syncing.info().id, 'task-1');
      await engine.createVolume({ name: 'locked', sizeBytes: MIB, diskEncryptionKeyCrn: doomed.crn });
      await engine.createVolume({ name: 'deleted', sizeBytes: MIB, sectorSize: 512 });
      await engine.deleteVolume('deleted');
      await engineInternals(engine).lockVolumesForKey(doomed.crn);
      const expected = { active: 'active', syncing: 'syncing', locked: 'locked', deleted: 'deleted' };
      const states = () => Object.fromEntries(engine.listVolumes().map((v) => [v.name, v.state]));
      expect(states()).toEqual(expected);
      expect(syncing.info()).toMatchObject({ state: 'syncing', syncTaskId: 'task-1' });
      await syncing.write(0, Buffer.alloc(10, 1)); // still writable while syncing
      await engine.close();
      engine = await openTestEngine(dir, { provider, cipher: backend, clock });
      try {
        expect(states()).toEqual(expected);
        for (const info of engine.listVolumes()) {
          expect(info).toEqual(
            expect.objectContaining({ id: expect.any(String), crn: expect.any(String), sizeBytes: MIB, diskEncryptionKeyCrn: expect.any(String), keyVersion: 1, createdAtMs: clock.nowMs() }),
          );
        }
        await engineInternals(engine).markSyncing(syncing.info().id, null);
        expect(states().syncing).toBe('active');
      } finally {
        await engine.close();
      }
    });
  }, skipReason);
}
