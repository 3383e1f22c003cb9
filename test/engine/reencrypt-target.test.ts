/**
 * engineInternals(engine).reencryptTarget(volumeId) with the real HSM: rewrap under a rotated root key, a new DEK
 * generation wrapped under the newest version, re-encryption of every cluster while the volume
 * stays writable, retirement of the old generation, and the result surviving a restart.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, expect, it } from 'vitest';
import { reencryptCluster } from '../../src/volume/cluster-format.js';
import { cipherBackends } from '../helpers/cipher-backends.js';
import { forEachProvider } from '../helpers/providers.js';
import { openTestEngine, rootKey } from '../helpers/engine.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { engineInternals } from '../../src/engine-internals.js';

afterAll(() => removeTempDirs());

const MIB = 1024 * 1024;

for (const { backend, skipReason } of cipherBackends()) {
  forEachProvider(`engine.reencryptTarget [${backend}]`, (provider) => {
    for (const sectorSize of [4096, 512] as const) {
      it(`rotates a volume's data key online (${sectorSize}-byte sectors)`, async () => {
        const dir = makeTempDir('bv-rot-');
        let engine = await openTestEngine(dir, { provider, cipher: backend });
        const key = await rootKey(engine);
        const vol = await engine.createVolume({ name: 'rot', sizeBytes: 2 * MIB, sectorSize, diskEncryptionKeyCrn: key.crn });
        const model = randomBytes(2 * MIB);
        model.fill(0, MIB, MIB + 64 * 1024); // a hole
        await vol.write(0, model.subarray(0, MIB));
        await vol.write(MIB + 64 * 1024, model.subarray(MIB + 64 * 1024));

        // This test drives the ReencryptTarget contract by hand, so the engine's own task only
        // rewraps (its re-encryption task is tested in rotation.test.ts); wait for it to end.
        for (const task of await engine.hsm.rotateKey(key.crn, { rewrapOnly: true })) await engine.tasks.wait(task.id);
        const target = await engineInternals(engine).reencryptTarget(vol.info().id);
        await target.rewrapAll();
        expect(vol.info().keyVersion).toBe(2);
        expect((await engine.hsm.listRegistrations({ keyCrn: key.crn }))[0]!.keyVersion).toBe(2);

        const generation = await target.beginGeneration(target.writeGeneration());
        expect(generation).toBe(2);
        expect(vol.info()).toMatchObject({ dataKeyGeneration: 2, dataKeyGenerations: 2, keyVersion: 2 });
        const oldKey = target.dataKey(1);
        const newKey = target.dataKey(2);
        let from = 0;
        for (;;) {
          const snapshots = await target.staleClusters(from, generation, 16);
          if (snapshots.length === 0) break;
          // The volume stays online: a write lands in the middle of every batch.
          const at = snapshots[0]!.clusterIndex * target.clusterSectors * sectorSize + 100;
          const patch = randomBytes(700);
          patch.copy(model, at);
          const racing = vol.write(at, patch);
          const items = snapshots.map((expected) => ({
            expected,
            raw: reencryptCluster(engine.cipher, expected.raw, expected.clusterIndex, sectorSize, target.clusterSectors, oldKey, newKey, generation),
          }));
          await target.commitReencrypted(items, () => {});
          await racing;
          from = snapshots[snapshots.length - 1]!.clusterIndex + 1;
        }
        await target.retireGenerations(generation);
        oldKey.fill(0);
        newKey.fill(0);
        expect(vol.info()).toMatchObject({ dataKeyGeneration: 2, dataKeyGenerations: 1, keyVersion: 2 });
        expect(Buffer.from(await vol.read(0, 2 * MIB)).equals(model)).toBe(true);
        await target.close();
        await engine.close();

        engine = await openTestEngine(dir, { provider, cipher: backend });
        try {
          const again = await engine.openVolume('rot');
          expect(again.info()).toMatchObject({ dataKeyGeneration: 2, dataKeyGenerations: 1, keyVersion: 2 });
          expect(Buffer.from(await again.read(0, 2 * MIB)).equals(model)).toBe(true);
        } finally {
          await engine.close();
        }
      });
    }

    it('refuses a target for a deleted or locked volume', async () => {
      const engine = await openTestEngine(makeTempDir('bv-rot-'), { provider, cipher: backend });
      try {
        const a = await engine.createVolume({ name: 'a', sizeBytes: MIB });
        await engine.deleteVolume('a');
        await expect(engineInternals(engine).reencryptTarget(a.info().id)).rejects.toMatchObject({ code: 'VOLUME_DELETED' });
        const key = await rootKey(engine);
        const b = await engine.createVolume({ name: 'b', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn });
        const target = await engineInternals(engine).reencryptTarget(b.info().id);
        await engine.hsm.deleteKey(key.crn, { force: true });
        await expect(target.staleClusters(0, 2, 1)).rejects.toThrow(expect.objectContaining({ code: 'VOLUME_LOCKED' }));
        await expect(engineInternals(engine).reencryptTarget(b.info().id)).rejects.toMatchObject({ code: 'VOLUME_LOCKED' });
      } finally {
        await engine.close();
      }
    });
  }, skipReason);
}
