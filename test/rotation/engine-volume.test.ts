/**
 * The task machinery against the real thing: the engine's VolumeReencryptTarget (product cluster
 * format, real HSM), the production ClusterOps module (src/volume/cluster-format + src/cipher) in
 * piscina workers, on every cipher backend. Until the engine wires engine.tasks, the tasks live in
 * an LMDB environment of their own here (the engine keeps its root private); the checkpoint then
 * commits right after the clusters instead of with them, which the runner tolerates by design.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import { afterAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine.js';
import { isBlockvaultError } from '../../src/errors.js';
import { TaskManager } from '../../src/rotation/task-manager.js';
import { cipherBackends } from '../helpers/cipher-backends.js';
import { openTestEngine, rootKey } from '../helpers/engine.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

afterAll(() => removeTempDirs());

const MIB = 1024 * 1024;

function taskManager(engine: Engine, tasksRoot: RootDatabase, backend: string, events: string[] = []): TaskManager {
  return new TaskManager({
    root: tasksRoot,
    openTarget: (task) => engine.reencryptTarget(task.volumeId),
    rotation: { workers: 2, backend, rotationBatchSectorsMax: 64, progressIntervalMs: 0 },
    onEvent: (action) => {
      events.push(action);
    },
  });
}

for (const { backend, skipReason } of cipherBackends()) {
  describe.skipIf(skipReason !== null)(`rotation of a real engine volume [${backend}]`, () => {
    it('re-encrypts a volume online with racing writes, retires the old DEK, survives a restart', async () => {
      const dir = makeTempDir('bv-rot-engine-');
      const tasksRoot = open({ path: join(dir, 'tasks.mdb'), maxDbs: 4 });
      let engine = await openTestEngine(dir, { cipher: backend });
      const key = await rootKey(engine);
      const vol = await engine.createVolume({ name: 'rot', sizeBytes: 4 * MIB, sectorSize: 4096, diskEncryptionKeyCrn: key.crn });
      const model = randomBytes(4 * MIB);
      model.fill(0, MIB, MIB + 128 * 1024); // a hole: unwritten sectors stay unwritten
      await vol.write(0, model.subarray(0, MIB));
      await vol.write(MIB + 128 * 1024, model.subarray(MIB + 128 * 1024));
      const rotated = await engine.hsm.rotateKey(key.crn);
      void rotated;

      const events: string[] = [];
      const manager = taskManager(engine, tasksRoot, backend, events);
      await manager.warmUp();
      const task = await manager.create({ volumeId: vol.info().id, keyCrn: key.crn, fromKeyVersion: 1, toKeyVersion: 2 });
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
      expect(events).toEqual(['blockvault.rotation.start', 'hs-crypto.secrets-event.ack', 'blockvault.rotation.complete']);
      await manager.close();
      await engine.close();

      engine = await openTestEngine(dir, { cipher: backend });
      try {
        const again = await engine.openVolume('rot');
        expect(again.info()).toMatchObject({ dataKeyGeneration: 2, dataKeyGenerations: 1, keyVersion: 2 });
        expect(Buffer.from(await again.read(0, 4 * MIB)).equals(model)).toBe(true);
      } finally {
        await engine.close();
        await tasksRoot.close();
      }
    });

    it('a forced key delete (cryptoshredding) mid-rotation stops the task and leaves the metadata readable', async () => {
      const dir = makeTempDir('bv-rot-engine-');
      const tasksRoot = open({ path: join(dir, 'tasks.mdb'), maxDbs: 4 });
      const engine = await openTestEngine(dir, { cipher: backend });
      try {
        const key = await rootKey(engine);
        const vol = await engine.createVolume({ name: 'shred', sizeBytes: 8 * MIB, sectorSize: 4096, diskEncryptionKeyCrn: key.crn });
        await vol.write(0, randomBytes(8 * MIB));
        await engine.hsm.rotateKey(key.crn);
        const manager = taskManager(engine, tasksRoot, backend);
        const task = await manager.create({ volumeId: vol.info().id, keyCrn: key.crn, fromKeyVersion: 1, toKeyVersion: 2 });
        await new Promise<void>((resolve) => {
          manager.on('progress', (event) => {
            if (event.taskId === task.id && event.sectorsDone > 0) resolve();
          });
        });
        // What the engine's onDestroyed hook will do: lock the volumes (the HSM does that), abort their tasks.
        await engine.hsm.deleteKey(key.crn, { force: true });
        const reason = Object.assign(new Error('root key destroyed'), { code: 'KEY_DESTROYED' });
        await manager.abortTasks({ keyCrn: key.crn }, reason);
        const ended = manager.get(task.id);
        expect(ended.state).toBe('failed');
        await expect(manager.wait(task.id)).rejects.toSatisfy((e) => isBlockvaultError(e, 'TASK_FAILED'));
        expect(engine.listVolumes().find((v) => v.id === vol.info().id)).toMatchObject({ name: 'shred', state: 'locked' });
        await manager.close();
      } finally {
        await engine.close();
        await tasksRoot.close();
      }
    });
  });
}
