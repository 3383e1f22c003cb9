/**
 * The task machinery against the real thing, through the engine: engine.hsm.rotateKey starts the
 * task on engine.tasks, which drives the engine's VolumeReencryptTarget (product cluster format,
 * real HSM) with the production ClusterOps module (src/volume/cluster-format + src/cipher) in
 * piscina workers, on every cipher backend. The checkpoint commits with the clusters it covers.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, expect, it } from 'vitest';
import { isBlockvaultError } from '../../src/errors.js';
import type { TestEngineOptions } from '../helpers/engine.js';
import { cipherBackends } from '../helpers/cipher-backends.js';
import { forEachProvider, type ProviderName } from '../helpers/providers.js';
import { openTestEngine, rootKey } from '../helpers/engine.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

afterAll(() => removeTempDirs());

const MIB = 1024 * 1024;

function engineOptions(backend: 'native' | 'ts', provider: ProviderName): TestEngineOptions {
  return { provider, cipher: backend, rotation: { workers: 2, backend, rotationBatchSectorsMax: 64, progressIntervalMs: 0 } };
}

for (const { backend, skipReason } of cipherBackends()) {
  forEachProvider(`rotation of a real engine volume [${backend}]`, (provider) => {
    it('re-encrypts a volume online with racing writes, retires the old DEK, survives a restart', async () => {
      const dir = makeTempDir('bv-rot-engine-');
      let engine = await openTestEngine(dir, engineOptions(backend, provider));
      const key = await rootKey(engine);
      const vol = await engine.createVolume({ name: 'rot', sizeBytes: 4 * MIB, sectorSize: 4096, diskEncryptionKeyCrn: key.crn });
      const model = randomBytes(4 * MIB);
      model.fill(0, MIB, MIB + 128 * 1024); // a hole: unwritten sectors stay unwritten
      await vol.write(0, model.subarray(0, MIB));
      await vol.write(MIB + 128 * 1024, model.subarray(MIB + 128 * 1024));
      const manager = engine.tasks;
      await manager.warmUp();
      const [task] = await engine.hsm.rotateKey(key.crn);
      if (task === undefined) throw new Error('rotateKey started no task');
      expect(task).toMatchObject({ volumeId: vol.info().id, keyCrn: key.crn, fromKeyVersion: 1, toKeyVersion: 2 });
      // Foreground writes race the task until it ends.
      let stop = false;
      const writer = (async () => {
        let i = 0;
        while (!stop) {
          const at = ((i++ * 7919 * 4096) % (4 * MIB - 8192)) + 300;
          const patch = randomBytes(5000);
          patch.copy(model, at);
          await vol.write(at, patch);
          await new Promise((resolve) => setTimeout(resolve, 1)); // racing, not racing ahead
        }
      })();
      let done;
      try {
        done = await manager.wait(task.id, { timeoutMs: 60_000 });
      } finally {
        stop = true;
        await writer;
      }
      expect(done.state).toBe('completed');
      expect(done.targetGeneration).toBe(2);
      expect(vol.info()).toMatchObject({ dataKeyGeneration: 2, dataKeyGenerations: 1, keyVersion: 2 });
      expect(Buffer.from(await vol.read(0, 4 * MIB)).equals(model)).toBe(true);
      expect(manager.runnerStats(task.id)!.clustersReencrypted).toBeGreaterThan(0);
      const events = engine.events.list({ resourceCrn: vol.info().crn }).map((e) => e.action).filter((a) => a.startsWith('blockvault.rotation') || a.startsWith('hs-crypto.secrets-event'));
      expect(events).toEqual(['blockvault.rotation.start', 'hs-crypto.secrets-event.ack', 'blockvault.rotation.complete']);
      await engine.close();

      engine = await openTestEngine(dir, { provider, cipher: backend });
      try {
        const again = await engine.openVolume('rot');
        expect(again.info()).toMatchObject({ dataKeyGeneration: 2, dataKeyGenerations: 1, keyVersion: 2 });
        expect(Buffer.from(await again.read(0, 4 * MIB)).equals(model)).toBe(true);
      } finally {
        await engine.close();
      }
    });

    it('a forced key delete (cryptoshredding) mid-rotation stops the task and leaves the metadata readable', async () => {
      const dir = makeTempDir('bv-rot-engine-');
      const engine = await openTestEngine(dir, engineOptions(backend, provider));
      try {
        const key = await rootKey(engine);
        const vol = await engine.createVolume({ name: 'shred', sizeBytes: 8 * MIB, sectorSize: 4096, diskEncryptionKeyCrn: key.crn });
        await vol.write(0, randomBytes(8 * MIB));
        const manager = engine.tasks;
        const progressed = new Promise<void>((resolve) => {
          manager.on('progress', (event) => {
            if (event.volumeId === vol.info().id && event.sectorsDone > 0) resolve();
          });
        });
        const [task] = await engine.hsm.rotateKey(key.crn);
        if (task === undefined) throw new Error('rotateKey started no task');
        await progressed;
        // The engine's onDestroyed hook locks the volumes and aborts their tasks before deleteKey returns.
        await engine.hsm.deleteKey(key.crn, { force: true });
        const ended = manager.get(task.id);
        expect(ended?.state).toBe('failed');
        expect(ended?.error?.code).toBe('KEY_DESTROYED');
        await expect(manager.wait(task.id)).rejects.toSatisfy((e) => isBlockvaultError(e, 'TASK_FAILED'));
        expect(engine.listVolumes().find((v) => v.id === vol.info().id)).toMatchObject({ name: 'shred', state: 'locked' });
      } finally {
        await engine.close();
      }
    });
  }, skipReason);
}
