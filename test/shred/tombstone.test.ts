/**
 * A volume that was soft-deleted and then cryptoshredded: when its retention ends, the purge
 * removes its sectors and its registration, but its record stays as a tombstone, so the
 * metadata of a shredded volume stays readable for good (DESIGN.md), also after a restart, and
 * nothing can restore it.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { open } from 'lmdb';
import { describe, expect, it } from 'vitest';
import { ManualClock, MS_PER_DAY } from '../../src/clock.js';
import { openTestEngine, rootKey } from '../helpers/engine.js';
import { useTempDirs } from '../helpers/temp-dir.js';

const tempDir = useTempDirs('blockvault-tombstone-');

describe('retention purge of a cryptoshredded volume', () => {
  it('purges the sectors and the registration and keeps the metadata, once', async () => {
    const clock = new ManualClock();
    const dir = tempDir();
    let engine = await openTestEngine(dir, { clock });
    const key = await rootKey(engine);
    const vol = await engine.createVolume({ name: 'shredded', sizeBytes: 1 << 20, diskEncryptionKeyCrn: key.crn });
    const kept = await engine.createVolume({ name: 'plain-deleted', sizeBytes: 1 << 16 }); // platform key
    await vol.write(0, randomBytes(1 << 20));
    await kept.write(0, randomBytes(4096));
    const id = vol.info().id;
    await engine.deleteVolume(id);
    await engine.deleteVolume(kept.info().id);
    await engine.hsm.deleteKey(key.crn, { force: true });
    expect(engine.listVolumes().find((v) => v.id === id)).toMatchObject({ state: 'locked', dataPurgedAtMs: null });

    clock.advanceMs(9 * MS_PER_DAY + 1);
    const { purgedVolumeIds } = await engine.runScheduler();
    expect(purgedVolumeIds.sort()).toEqual([id, kept.info().id].sort());
    // The plain soft-deleted volume is gone; the shredded one is a tombstone.
    expect(engine.listVolumes().map((v) => v.name)).toEqual(['shredded']);
    const tombstone = engine.listVolumes()[0]!;
    expect(tombstone).toMatchObject({ id, name: 'shredded', sizeBytes: 1 << 20, diskEncryptionKeyCrn: key.crn, state: 'locked', dataPurgedAtMs: clock.nowMs() });
    expect(await engine.hsm.listRegistrations({ keyCrn: key.crn })).toEqual([]);
    await expect(engine.restoreVolume(id)).rejects.toMatchObject({ code: 'VOLUME_LOCKED' });
    // Purged once: later scheduler runs leave it alone.
    clock.advanceMs(MS_PER_DAY);
    expect((await engine.runScheduler()).purgedVolumeIds).toEqual([]);
    expect(engine.events.list({ action: 'blockvault.volume.purge', resourceCrn: tombstone.crn })).toHaveLength(1);
    await engine.close();

    // Both volumes were purged, so no sector data is left in the store at all.
    const raw = open({ path: join(dir, 'engine.lmdb'), maxDbs: 32, readOnly: true });
    try {
      for (const name of ['clusters', 'sectors']) {
        const db = raw.openDB(name, { keyEncoding: 'binary', encoding: 'binary' });
        expect(db.getKeysCount(), `${name} entries left after the purge`).toBe(0);
      }
    } finally {
      await raw.close();
    }

    engine = await openTestEngine(dir, { clock });
    try {
      expect(engine.listVolumes()).toEqual([tombstone]);
      const again = await engine.openVolume(id);
      expect(again.info()).toEqual(tombstone);
      await expect(again.read(0, 4096)).rejects.toMatchObject({ code: expect.stringMatching(/VOLUME_LOCKED|KEY_DESTROYED/) });
    } finally {
      await engine.close();
    }
  });
});
