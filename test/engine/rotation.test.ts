/**
 * Rotation through the engine (issue 5) on the product's own volume format: engine.hsm.rotateKey
 * starts one "Syncing KMS state" task per volume registered against the key; tasks re-encrypt
 * online, survive a SIGKILL of the process and resume on the next open, and the old data key is
 * retired once no cluster uses it. The runner's own suites (test/rotation) cover races,
 * cancellation and the bandwidth cap in depth.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { ManualClock, MS_PER_HOUR } from '../../src/clock.js';
import type { Engine } from '../../src/engine.js';
import type { Volume } from '../../src/volume/volume.js';
import { cipherBackends } from '../helpers/cipher-backends.js';
import { forEachProvider, type ProviderName } from '../helpers/providers.js';
import { openTestEngine, rootKey, testHsmOptions } from '../helpers/engine.js';
import { useTempDirs } from '../helpers/temp-dir.js';
import { runRotationCrashTrials } from './fixtures/rotation-crash-trials.js';

const tempDir = useTempDirs('blockvault-rotation-');

async function fill(volume: Volume, seed: number): Promise<Buffer> {
  const { sizeBytes } = volume.info();
  const data = randomBytes(sizeBytes);
  // Leave holes: every 5th 64 KiB stretch unwritten, so sparse clusters rotate too.
  for (let offset = 0; offset < sizeBytes; offset += 65536) {
    if ((offset / 65536 + seed) % 5 === 0) data.fill(0, offset, Math.min(sizeBytes, offset + 65536));
    else await volume.write(offset, data.subarray(offset, Math.min(sizeBytes, offset + 65536)));
  }
  return data;
}

// Every cipher backend with every key provider (test/helpers/providers.ts).
for (const { backend, skipReason } of cipherBackends()) {
  forEachProvider(`rotation through the engine [${backend}]`, (provider) => {
    it('re-encrypts every volume on the key while they stay online, then retires the old data key', async () => {
      const engine = await openTestEngine(tempDir(), { provider, cipher: backend, rotation: { workers: 2 } });
      try {
        const key = await rootKey(engine);
        const a = await engine.createVolume({ name: 'a', sizeBytes: 1 << 20, diskEncryptionKeyCrn: key.crn });
        const b = await engine.createVolume({ name: 'b', sizeBytes: 1 << 19, sectorSize: 512, diskEncryptionKeyCrn: key.crn });
        const other = await engine.createVolume({ name: 'other', sizeBytes: 1 << 16 }); // platform key: not rotated
        const dataA = await fill(a, 1);
        const dataB = await fill(b, 2);
        const before = a.info().dataKeyGeneration;

        const tasks = await engine.hsm.rotateKey(key.crn);
        expect(tasks.map((t) => t.volumeId).sort()).toEqual([a.info().id, b.info().id].sort());
        // Online: a write racing the task lands and is read back after it.
        const fresh = randomBytes(4096);
        await a.write(8192, fresh);
        fresh.copy(dataA, 8192);
        for (const task of tasks) await engine.tasks.wait(task.id, { timeoutMs: 60_000 });

        for (const task of tasks) {
          const done = engine.tasks.get(task.id);
          expect(done?.state).toBe('completed');
          expect(done?.toKeyVersion).toBe(2);
        }
        expect(Buffer.from(await a.read(0, dataA.length)).equals(dataA)).toBe(true);
        expect(Buffer.from(await b.read(0, dataB.length)).equals(dataB)).toBe(true);
        expect(a.info()).toMatchObject({ state: 'active', keyVersion: 2, dataKeyGenerations: 1 });
        expect(a.info().dataKeyGeneration).toBeGreaterThan(before);
        expect(other.info().keyVersion).toBe(1);
        const registrations = await engine.hsm.listRegistrations({ keyCrn: key.crn });
        expect(registrations.map((r) => r.keyVersion)).toEqual([2, 2]);
        const actions = engine.events.list({ keyCrn: key.crn }).map((e) => e.action);
        expect(actions).toContain('hs-crypto.secrets.rotate');
        expect(actions.filter((a) => a === 'blockvault.rotation.complete')).toHaveLength(2);
      } finally {
        await engine.close();
      }
    });
  }, skipReason);
}

forEachProvider('rotation modes and policy', (provider) => {
  it('rewrap-only rotation moves the data key to the new key version without re-encrypting', async () => {
    const engine = await openTestEngine(tempDir(), { provider, rotation: { workers: 1 } });
    try {
      const key = await rootKey(engine);
      const vol = await engine.createVolume({ name: 'r', sizeBytes: 1 << 18, diskEncryptionKeyCrn: key.crn });
      const data = await fill(vol, 3);
      const generation = vol.info().dataKeyGeneration;
      const [task] = await engine.hsm.rotateKey(key.crn, { rewrapOnly: true });
      const done = await engine.tasks.wait(task!.id);
      expect(done).toMatchObject({ state: 'completed', mode: 'rewrap' });
      expect(vol.info()).toMatchObject({ keyVersion: 2, dataKeyGeneration: generation });
      expect(Buffer.from(await vol.read(0, data.length)).equals(data)).toBe(true);
    } finally {
      await engine.close();
    }
  });

  it('a rotation policy rotates the key when the scheduler runs after the interval, and starts the tasks', async () => {
    const clock = new ManualClock();
    const dir = tempDir();
    let engine: Engine = await openTestEngine(dir, { provider, clock, rotation: { workers: 1 } });
    try {
      const instance = await engine.hsm.createInstance({ name: 'policy' });
      await engine.hsm.authorize({ sourceService: 'blockvault', targetInstance: instance.id, role: 'Reader' });
      const key = await engine.hsm.createRootKey(instance.id, { name: 'monthly', rotationPolicy: { intervalMs: 30 * 24 * MS_PER_HOUR } });
      const vol = await engine.createVolume({ name: 'p', sizeBytes: 1 << 18, diskEncryptionKeyCrn: key.crn });
      const data = await fill(vol, 4);

      clock.advanceMs(29 * 24 * MS_PER_HOUR);
      expect((await engine.runScheduler()).rotation.rotated).toHaveLength(0);
      clock.advanceMs(2 * 24 * MS_PER_HOUR);
      const { rotation } = await engine.runScheduler();
      expect(rotation.rotated).toHaveLength(1);
      const [task] = engine.tasks.list();
      expect(task).toMatchObject({ volumeId: vol.info().id, toKeyVersion: 2 });
      await engine.tasks.wait(task!.id);
      await engine.close();
      engine = await openTestEngine(dir, { provider, clock });
      const again = await engine.openVolume('p');
      expect(again.info()).toMatchObject({ keyVersion: 2, dataKeyGenerations: 1, state: 'active' });
      expect(Buffer.from(await again.read(0, data.length)).equals(data)).toBe(true);
      expect(engine.tasks.get(task!.id)?.state).toBe('completed');
    } finally {
      await engine.close();
    }
  });
});

forEachProvider('rotation survives SIGKILL at random points and resumes on open', (provider) => {
  const trials = Number(process.env.ENGINE_ROTATION_CRASH_TRIALS ?? 10);
  it(`${trials} kill/reopen/resume trials on the product format`, async () => {
    await runRotationCrashTrials({ dir: tempDir(), trials, provider });
  }, 300_000);
});
