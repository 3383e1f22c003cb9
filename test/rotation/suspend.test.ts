/**
 * A suspended root key (or a revoked Reader authorization) stops a running re-encryption as it
 * stops foreground I/O: the task stays `running` but moves no cluster until access is back, then
 * finishes on its own; the data is intact. A forced delete while paused still aborts it.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine.js';
import { openTestEngine, rootKey } from '../helpers/engine.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

afterAll(() => removeTempDirs());

const MIB = 1024 * 1024;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** An 8 MiB volume, fully written, and a rotation slowed to about 2 MiB/s so it is caught mid-way. */
async function rotating(): Promise<{ engine: Engine; keyCrn: string; instanceId: string; data: Buffer; taskId: string }> {
  const engine = await openTestEngine(makeTempDir('bv-rot-suspend-'), { rotation: { bandwidthBytesPerSecond: 2 * MIB, rotationBatchSectorsMax: 16 } });
  const key = await rootKey(engine);
  const vol = await engine.createVolume({ name: 'v', sizeBytes: 8 * MIB, diskEncryptionKeyCrn: key.crn });
  const data = randomBytes(8 * MIB);
  await vol.write(0, data);
  await vol.close();
  const [task] = await engine.hsm.rotateKey(key.crn);
  const deadline = Date.now() + 20_000;
  while (engine.tasks.get(task!.id).sectorsDone === 0) {
    if (Date.now() > deadline) throw new Error('the rotation made no progress');
    await sleep(20);
  }
  return { engine, keyCrn: key.crn, instanceId: key.instanceId, data, taskId: task!.id };
}

/** sectorsDone after in-flight work settled, and again `ms` later. */
async function progressOver(engine: Engine, taskId: string, ms: number): Promise<[number, number]> {
  await sleep(200); // batches already dispatched may finish; they are not committed
  const before = engine.tasks.get(taskId).sectorsDone;
  await sleep(ms);
  return [before, engine.tasks.get(taskId).sectorsDone];
}

describe('re-encryption and key access', () => {
  it('disableKey pauses a running re-encryption; enableKey lets it finish with the data intact', async () => {
    const { engine, keyCrn, data, taskId } = await rotating();
    try {
      await engine.hsm.disableKey(keyCrn);
      const [before, after] = await progressOver(engine, taskId, 700);
      expect(after).toBe(before);
      expect(before).toBeLessThan(engine.tasks.get(taskId).sectorsTotal);
      expect(engine.tasks.get(taskId).state).toBe('running');
      await engine.hsm.enableKey(keyCrn);
      const done = await engine.tasks.wait(taskId, { timeoutMs: 30_000 });
      expect(done.state).toBe('completed');
      const vol = await engine.openVolume('v');
      expect(Buffer.from(await vol.read(0, data.length)).equals(data)).toBe(true);
      await vol.close();
    } finally {
      await engine.close();
    }
  });

  it('a revoked authorization pauses it too; a forced delete while paused aborts it', async () => {
    const { engine, keyCrn, instanceId, taskId } = await rotating();
    try {
      const [grant] = await engine.hsm.listAuthorizations({ targetInstance: instanceId, sourceService: 'blockvault' });
      await engine.hsm.revoke(grant!.id);
      const [before, after] = await progressOver(engine, taskId, 500);
      expect(after).toBe(before);
      expect(engine.tasks.get(taskId).state).toBe('running');
      await engine.hsm.deleteKey(keyCrn, { force: true });
      const ended = await engine.tasks.wait(taskId, { timeoutMs: 10_000 }).catch((error: unknown) => error);
      expect(engine.tasks.get(taskId).state).not.toBe('running');
      expect(engine.tasks.get(taskId).state).not.toBe('completed');
      expect(ended).toBeDefined();
      expect(engine.listVolumes()[0]!.state).toBe('locked');
    } finally {
      await engine.close();
    }
  });
});
