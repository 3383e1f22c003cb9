import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlockvaultError, isBlockvaultError } from '../../src/errors.js';
import type { TaskProgressEvent } from '../../src/rotation/task-types.js';
import { bytesEqual, sectorContent } from './helpers/content.js';
import { cipherBackendAvailable } from './helpers/test-cipher.js';
import { KEY_CRN, createFilledVolume, openHarness, removeDir, tempDir, testOpsUrl, type Harness } from './helpers/setup.js';
import { TestKms, type TestVolume } from './helpers/test-volume.js';

function expectContent(volume: TestVolume, expected: (sector: number) => Uint8Array): void {
  for (let s = 0; s < volume.sizeSectors; s++) {
    if (!bytesEqual(volume.read(s), expected(s))) throw new Error(`sector ${s} of ${volume.volumeId} differs from the model`);
  }
}

// Every backend the cipher offers here: node:crypto always, src/cipher's when it loads.
const backends: string[] = ['node'];
for (const backend of ['ts', 'native']) if (await cipherBackendAvailable(backend)) backends.push(backend);

describe.each(backends)('rotation with backend %s', (backend) => {
  let dir: string;
  let h: Harness;

  beforeEach(async () => {
    dir = tempDir();
    h = await openHarness(dir, { backend });
  });
  afterEach(async () => {
    await h.close();
    removeDir(dir);
  });

  it('re-encrypts every cluster, keeps the plaintext, retires the old generation', async () => {
    const volume = await createFilledVolume(h, 'vol-a', { sizeSectors: 8 * 100 });
    const kms = new TestKms(h.root);
    const toVersion = await kms.rotate();
    const progress: TaskProgressEvent[] = [];
    h.manager.on('progress', (event) => progress.push(event));

    const task = await h.manager.create({ volumeId: 'vol-a', keyCrn: KEY_CRN, fromKeyVersion: 1, toKeyVersion: toVersion });
    expect(task.state).toBe('queued');
    const done = await h.manager.wait(task.id, { timeoutMs: 30_000 });

    expect(done.state).toBe('completed');
    expect(done.targetGeneration).toBe(2);
    expect(done.sectorsDone).toBe(800);
    expect(done.sectorsTotal).toBe(800);
    expect(done.startedAtMs).not.toBeNull();
    expect(done.endedAtMs).toBeGreaterThanOrEqual(done.startedAtMs!);
    expect(volume.storedGenerations()).toEqual([2]);
    expect(volume.rootKeyVersions()).toEqual({ 2: toVersion });
    expect([...volume.clusterGenerations()]).toEqual([[2, 100]]);
    expectContent(volume, (s) => sectorContent(512, s, 0));
    expect(volume.calls.rewrapAll).toBe(1);
    expect(volume.keysHandedOut.every((key) => key.every((b) => b === 0))).toBe(true);

    expect(h.manager.get(task.id).state).toBe('completed');
    expect(h.manager.list().map((t) => t.id)).toEqual([task.id]);
    expect(progress.at(-1)).toMatchObject({ taskId: task.id, state: 'completed', sectorsDone: 800, sectorsTotal: 800 });
    expect(progress.some((p) => p.state === 'running')).toBe(true);
    expect(h.events.map((e) => e.action)).toEqual(['blockvault.rotation.start', 'hs-crypto.secrets-event.ack', 'blockvault.rotation.complete']);
    expect(h.events[1]!.details).toMatchObject({ taskId: task.id, volumeId: 'vol-a', keyCrn: KEY_CRN, toKeyVersion: toVersion, eventType: 'rotate' });
  });

  it('rewrap-only rotation rewraps every DEK under the new root key version and moves no cluster', async () => {
    const volume = await createFilledVolume(h, 'vol-r', { sizeSectors: 8 * 20 });
    const toVersion = await new TestKms(h.root).rotate();
    const task = await h.manager.create({ volumeId: 'vol-r', keyCrn: KEY_CRN, fromKeyVersion: 1, toKeyVersion: toVersion, mode: 'rewrap' });
    const done = await h.manager.wait(task.id);
    expect(done).toMatchObject({ state: 'completed', mode: 'rewrap', targetGeneration: null });
    expect(volume.rootKeyVersions()).toEqual({ 1: toVersion });
    expect([...volume.clusterGenerations()]).toEqual([[1, 20]]);
    expect(volume.calls.beginGeneration).toBe(0);
    expect(volume.calls.commitReencrypted).toBe(0);
    expectContent(volume, (s) => sectorContent(512, s, 0));
  });
});

describe('rotation tasks', () => {
  let dir: string;
  const harnesses: Harness[] = [];
  async function harness(options: Parameters<typeof openHarness>[1] = {}): Promise<Harness> {
    const h = await openHarness(dir, options);
    harnesses.push(h);
    return h;
  }

  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(async () => {
    for (const h of harnesses.splice(0)) await h.close();
    removeDir(dir);
  });

  it('keeps in-flight batches and batch sizes within their bounds', async () => {
    const h = await harness({ opsUrl: testOpsUrl({ delayMs: 2 }), rotation: { workers: 2, rotationBatchSectorsMax: 32, inFlightBatchesMax: 3, commitBatchesMax: 2 } });
    const volume = await createFilledVolume(h, 'vol-m', { sizeSectors: 8 * 120 });
    // Slow commits, so that batches finish while one is under way and get coalesced.
    volume.hooks.beforeCommit = () => new Promise((resolve) => setTimeout(resolve, 25));
    const task = await h.manager.create({ volumeId: 'vol-m', keyCrn: KEY_CRN, fromKeyVersion: 1, toKeyVersion: 2 });
    await h.manager.wait(task.id);
    const stats = h.manager.runnerStats(task.id)!;
    expect(stats.maxBatchSectors).toBe(32);
    expect(stats.maxInFlightBatches).toBe(3); // reached, never exceeded
    expect(stats.maxInFlightBytes).toBeLessThanOrEqual(3 * 4 * (8 + 8 * 512));
    expect(stats.batchesDispatched).toBe(30);
    expect(stats.clustersReencrypted).toBe(120);
    // Commits are batched: several worker batches per LMDB transaction, never more than commitBatchesMax.
    expect(stats.commitTransactions).toBeGreaterThanOrEqual(15);
    expect(stats.commitTransactions).toBeLessThan(25);
    expectContent(volume, (s) => sectorContent(512, s, 0));
  });

  it('a foreground write racing the re-encryption of the same cluster always wins', async () => {
    const h = await harness({ opsUrl: testOpsUrl({ delayMs: 3 }), rotation: { workers: 2, rotationBatchSectorsMax: 16 } });
    const volume = await createFilledVolume(h, 'vol-w', { sizeSectors: 8 * 64 });
    const model = new Map<number, number>(); // sector -> version
    let version = 0;
    const writes: Promise<void>[] = [];
    // Deterministic race: right after the runner reads a batch, overwrite one of its sectors.
    volume.hooks.afterStaleClusters = (snapshots) => {
      const victim = snapshots[0];
      if (victim === undefined) return;
      const sector = victim.clusterIndex * 8 + 3;
      const v = ++version;
      model.set(sector, v);
      writes.push(volume.write(sector, sectorContent(512, sector, v)));
    };
    const task = await h.manager.create({ volumeId: 'vol-w', keyCrn: KEY_CRN, fromKeyVersion: 1, toKeyVersion: 2 });
    await h.manager.wait(task.id);
    await Promise.all(writes);
    const stats = h.manager.runnerStats(task.id)!;
    expect(stats.clustersLostRace).toBeGreaterThan(0);
    expectContent(volume, (s) => sectorContent(512, s, model.get(s) ?? 0));
    expect([...volume.clusterGenerations().keys()]).toEqual([2]);
    expect(volume.storedGenerations()).toEqual([2]);
  });

  it('many concurrent writers and readers during a rotation: no lost update against a reference model', async () => {
    const h = await harness({ opsUrl: testOpsUrl({ delayMs: 1 }), rotation: { workers: 2, rotationBatchSectorsMax: 16 } });
    const sizeSectors = 8 * 96;
    const volume = await createFilledVolume(h, 'vol-c', { sizeSectors });
    const acked = new Map<number, number>();
    const inFlight = new Map<number, number>();
    let nextVersion = 1;
    let rng = 12345;
    const random = (n: number): number => {
      rng = (Math.imul(rng, 1103515245) + 12345) >>> 0;
      return rng % n;
    };
    let stop = false;
    let readChecks = 0;
    const writer = async (): Promise<void> => {
      while (!stop) {
        const sector = random(sizeSectors);
        if (inFlight.has(sector)) continue;
        const v = nextVersion++;
        inFlight.set(sector, v);
        await volume.write(sector, sectorContent(512, sector, v));
        inFlight.delete(sector);
        acked.set(sector, v);
      }
    };
    const reader = async (): Promise<void> => {
      while (!stop) {
        const sector = random(sizeSectors);
        const expectedVersion = acked.get(sector) ?? 0;
        const pending = inFlight.get(sector);
        const got = volume.read(sector);
        const ok = bytesEqual(got, sectorContent(512, sector, expectedVersion)) || (pending !== undefined && bytesEqual(got, sectorContent(512, sector, pending)));
        if (!ok) throw new Error(`read of sector ${sector} returned neither acknowledged version ${expectedVersion} nor pending ${pending}`);
        readChecks++;
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    const task = await h.manager.create({ volumeId: 'vol-c', keyCrn: KEY_CRN, fromKeyVersion: 1, toKeyVersion: 2 });
    const load = [writer(), writer(), writer(), writer(), reader(), reader()];
    let done;
    try {
      done = await h.manager.wait(task.id);
    } finally {
      stop = true;
      await Promise.all(load);
    }
    expect(done.state).toBe('completed');
    expect(nextVersion).toBeGreaterThan(50);
    expect(readChecks).toBeGreaterThan(50);
    expectContent(volume, (s) => sectorContent(512, s, acked.get(s) ?? 0));
    expect([...volume.clusterGenerations().keys()]).toEqual([2]);
    expect(volume.storedGenerations()).toEqual([2]);
  });

  it('cancel leaves the volume readable with mixed generations; a later rotation finishes the job', async () => {
    const h = await harness({ opsUrl: testOpsUrl({ delayMs: 5 }), rotation: { workers: 2, rotationBatchSectorsMax: 16 } });
    const volume = await createFilledVolume(h, 'vol-x', { sizeSectors: 8 * 80 });
    const first = await h.manager.create({ volumeId: 'vol-x', keyCrn: KEY_CRN, fromKeyVersion: 1, toKeyVersion: 2 });
    await new Promise<void>((resolve) => {
      h.manager.on('progress', (event) => {
        if (event.taskId === first.id && event.sectorsDone >= 64) resolve();
      });
    });
    const cancelled = await h.manager.cancel(first.id);
    expect(cancelled.state).toBe('cancelled');
    await expect(h.manager.wait(first.id)).rejects.toSatisfy((e) => isBlockvaultError(e, 'TASK_CANCELLED'));
    const mixed = volume.clusterGenerations();
    expect(mixed.get(1)).toBeGreaterThan(0);
    expect(mixed.get(2)).toBeGreaterThan(0);
    expect(volume.storedGenerations()).toEqual([1, 2]); // the old DEK stays until a rotation completes
    expectContent(volume, (s) => sectorContent(512, s, 0));
    expect(h.events.map((e) => e.action)).toContain('blockvault.rotation.cancel');

    const second = await h.manager.create({ volumeId: 'vol-x', keyCrn: KEY_CRN, fromKeyVersion: 2, toKeyVersion: 3 });
    const done = await h.manager.wait(second.id);
    expect(done.targetGeneration).toBe(3);
    expect(volume.storedGenerations()).toEqual([3]);
    expect([...volume.clusterGenerations()]).toEqual([[3, 80]]);
    expectContent(volume, (s) => sectorContent(512, s, 0));
  });

  it('abort (cryptoshredding) stops within one batch, commits nothing more and wipes every key copy', async () => {
    const h = await harness({ opsUrl: testOpsUrl({ delayMs: 20 }), rotation: { workers: 1, rotationBatchSectorsMax: 40 } });
    const volume = await createFilledVolume(h, 'vol-k', { sizeSectors: 8 * 100 });
    const task = await h.manager.create({ volumeId: 'vol-k', keyCrn: KEY_CRN, fromKeyVersion: 1, toKeyVersion: 2 });
    await new Promise<void>((resolve) => {
      h.manager.on('progress', (event) => {
        if (event.taskId === task.id && event.sectorsDone > 0) resolve();
      });
    });
    const commitsBefore = volume.calls.commitReencrypted;
    const started = performance.now();
    const reason = Object.assign(new Error('key destroyed'), { code: 'KEY_DESTROYED' });
    const aborted = await h.manager.abortTasks({ keyCrn: KEY_CRN }, reason);
    const stoppedMs = performance.now() - started;
    // One batch is 5 clusters x 20 ms; the worker checks the flag per cluster.
    expect(stoppedMs).toBeLessThan(5 * 20 + 150);
    expect(aborted.map((t) => t.state)).toEqual(['failed']);
    expect(h.manager.get(task.id).error).toMatchObject({ message: 'key destroyed' });
    expect(volume.calls.commitReencrypted).toBeLessThanOrEqual(commitsBefore + 1); // at most the commit already under way
    expect(volume.calls.retireGenerations).toBe(0);
    expect(volume.keysHandedOut.length).toBeGreaterThan(0);
    expect(volume.keysHandedOut.every((key) => key.every((b) => b === 0))).toBe(true);
    const probe = (await h.manager.probeWorker()) as { keysSeen: number; allZero: boolean };
    expect(probe.keysSeen).toBeGreaterThan(0);
    expect(probe.allZero).toBe(true);
    await expect(h.manager.wait(task.id)).rejects.toSatisfy((e) => isBlockvaultError(e, 'TASK_FAILED'));
  });

  it('an abort (cryptoshred) that catches a task while its volume is still opening fails it with the abort reason, not the open\'s VOLUME_LOCKED', async () => {
    let entered!: () => void;
    const entering = new Promise<void>((resolve) => (entered = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const h = await harness({
      // As the engine's open does once the shred lock holds the volume.
      beforeOpenTarget: async () => {
        entered();
        await released;
        throw new BlockvaultError('VOLUME_LOCKED', 'volume vol-o is locked');
      },
    });
    await createFilledVolume(h, 'vol-o', { sizeSectors: 8 * 10 });
    const task = await h.manager.create({ volumeId: 'vol-o', keyCrn: KEY_CRN, fromKeyVersion: 1, toKeyVersion: 2 });
    await entering;
    const aborting = h.manager.abortTasks({ keyCrn: KEY_CRN }, new BlockvaultError('KEY_DESTROYED', 'key destroyed'));
    release();
    expect((await aborting).map((t) => t.state)).toEqual(['failed']);
    expect(h.manager.get(task.id).error).toEqual({ code: 'KEY_DESTROYED', message: 'key destroyed' });
  });

  it('a failing batch fails the task with the error; wait rejects with TASK_FAILED', async () => {
    const h = await harness({ opsUrl: testOpsUrl({ failAtCluster: 37 }), rotation: { workers: 2, rotationBatchSectorsMax: 16 } });
    const volume = await createFilledVolume(h, 'vol-f', { sizeSectors: 8 * 60 });
    const task = await h.manager.create({ volumeId: 'vol-f', keyCrn: KEY_CRN, fromKeyVersion: 1, toKeyVersion: 2 });
    const error = await h.manager.wait(task.id).catch((e: unknown) => e);
    expect(isBlockvaultError(error, 'TASK_FAILED')).toBe(true);
    const failed = h.manager.get(task.id);
    expect(failed.state).toBe('failed');
    expect(failed.error?.message).toContain('test fault: cluster 37');
    expect(failed.checkpointClusterIndex).toBeLessThanOrEqual(37);
    expect(volume.storedGenerations()).toEqual([1, 2]);
    expectContent(volume, (s) => sectorContent(512, s, 0));
    expect(h.events.map((e) => e.action)).toContain('blockvault.rotation.fail');
  });

  it('the bandwidth cap slows re-encryption down', async () => {
    // One pool, warmed up first, and durations from the tasks' own start and end, so that worker
    // start-up does not count.
    const sizeSectors = 8 * 24; // 24 clusters of 4104 bytes: about 98 KB
    const capBytesPerSecond = 48 * 1024;
    const rotate = async (h: Harness, volumeId: string) => {
      const task = await h.manager.create({ volumeId, keyCrn: KEY_CRN, fromKeyVersion: 1, toKeyVersion: 2 });
      const done = await h.manager.wait(task.id);
      return { done, ms: done.endedAtMs! - done.startedAtMs! };
    };
    const h1 = await harness({ rotation: { workers: 2, rotationBatchSectorsMax: 16 } });
    await createFilledVolume(h1, 'warm', { sizeSectors: 8 * 4 });
    await createFilledVolume(h1, 'vol-b', { sizeSectors });
    await rotate(h1, 'warm');
    const uncapped = await rotate(h1, 'vol-b');

    const h2 = await harness({ rotation: { workers: 2, rotationBatchSectorsMax: 16, bandwidthBytesPerSecond: capBytesPerSecond } });
    await createFilledVolume(h2, 'warm2', { sizeSectors: 8 * 2 });
    const volume = await createFilledVolume(h2, 'vol-b2', { sizeSectors });
    await rotate(h2, 'warm2');
    const capped = await rotate(h2, 'vol-b2');
    const storedBytes = 24 * (8 + 8 * 512);
    const burstBytes = 2 * (8 + 8 * 512); // one batch
    const floorMs = ((storedBytes - burstBytes) / capBytesPerSecond) * 1000;
    expect(capped.ms).toBeGreaterThan(floorMs * 0.9);
    expect(capped.ms).toBeGreaterThan(2 * uncapped.ms);
    expect(capped.done.bytesPerSecond).toBeLessThan(capBytesPerSecond * 1.25);
    expect([...volume.clusterGenerations().keys()]).toEqual([2]);
  });

  it('runs one task per volume at a time, and at most tasksConcurrentMax volumes', async () => {
    const h = await harness({ opsUrl: testOpsUrl({ delayMs: 1 }), rotation: { workers: 2, tasksConcurrentMax: 1, rotationBatchSectorsMax: 16 } });
    await createFilledVolume(h, 'vol-1', { sizeSectors: 8 * 16 });
    await createFilledVolume(h, 'vol-2', { sizeSectors: 8 * 16 });
    let running = 0;
    let maxRunning = 0;
    const states = new Map<string, string>();
    h.manager.on('progress', (event) => {
      states.set(event.taskId, event.state);
      running = [...states.values()].filter((s) => s === 'running').length;
      maxRunning = Math.max(maxRunning, running);
    });
    const tasks = await h.manager.createMany([
      { volumeId: 'vol-1', keyCrn: KEY_CRN, fromKeyVersion: 1, toKeyVersion: 2 },
      { volumeId: 'vol-2', keyCrn: KEY_CRN, fromKeyVersion: 1, toKeyVersion: 2 },
      { volumeId: 'vol-1', keyCrn: KEY_CRN, fromKeyVersion: 2, toKeyVersion: 3 },
    ]);
    const done = await Promise.all(tasks.map((t) => h.manager.wait(t.id)));
    expect(done.map((t) => t.state)).toEqual(['completed', 'completed', 'completed']);
    expect(maxRunning).toBe(1);
    expect(done[2]!.targetGeneration).toBe(3);
    expect(h.volumes.get('vol-1')!.storedGenerations()).toEqual([3]);
  });

  it('close pauses a running task; resumeAll on a new manager finishes it from its checkpoint', async () => {
    const h = await harness({ opsUrl: testOpsUrl({ delayMs: 5 }), rotation: { workers: 2, rotationBatchSectorsMax: 16 } });
    await createFilledVolume(h, 'vol-p', { sizeSectors: 8 * 80 });
    const task = await h.manager.create({ volumeId: 'vol-p', keyCrn: KEY_CRN, fromKeyVersion: 1, toKeyVersion: 2 });
    const waiting = h.manager.wait(task.id).catch((e: unknown) => e);
    await new Promise<void>((resolve) => {
      h.manager.on('progress', (event) => {
        if (event.taskId === task.id && event.sectorsDone >= 64) resolve();
      });
    });
    await h.close();
    harnesses.splice(harnesses.indexOf(h), 1);
    expect(isBlockvaultError(await waiting, 'ENGINE_CLOSED')).toBe(true);

    const h2 = await harness({ rotation: { workers: 2, rotationBatchSectorsMax: 16 } });
    const paused = h2.manager.get(task.id);
    expect(paused.state).toBe('running');
    expect(paused.checkpointClusterIndex).toBeGreaterThan(0);
    const resumed = await h2.manager.resumeAll();
    expect(resumed.map((t) => t.id)).toEqual([task.id]);
    const done = await h2.manager.wait(task.id);
    expect(done.state).toBe('completed');
    const volume = h2.volumes.get('vol-p')!;
    expect(volume.storedGenerations()).toEqual([2]);
    expectContent(volume, (s) => sectorContent(512, s, 0));
    expect(h2.events.map((e) => e.action)).toEqual(['blockvault.rotation.resume', 'hs-crypto.secrets-event.ack', 'blockvault.rotation.complete']);
  });

  it('validates task specs and options with typed errors', async () => {
    const h = await harness();
    await expect(h.manager.create({ volumeId: '', keyCrn: KEY_CRN, fromKeyVersion: 1, toKeyVersion: 2 })).rejects.toSatisfy((e) => isBlockvaultError(e, 'INVALID_ARGUMENT'));
    await expect(h.manager.create({ volumeId: 'v', keyCrn: KEY_CRN, fromKeyVersion: 0, toKeyVersion: 2 })).rejects.toSatisfy((e) => isBlockvaultError(e, 'INVALID_ARGUMENT'));
    await expect(h.manager.create({ volumeId: 'v', keyCrn: KEY_CRN, fromKeyVersion: 1, toKeyVersion: 2, mode: 'bogus' as never })).rejects.toSatisfy((e) =>
      isBlockvaultError(e, 'INVALID_ARGUMENT'),
    );
    expect(() => h.manager.get('nope')).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
    await expect(openHarness(dir, { rotation: { workers: 0 } })).rejects.toSatisfy((e) => isBlockvaultError(e, 'INVALID_ARGUMENT'));
    // A task whose volume cannot be opened fails with that error.
    const task = await h.manager.create({ volumeId: 'missing', keyCrn: KEY_CRN, fromKeyVersion: 1, toKeyVersion: 2 });
    await expect(h.manager.wait(task.id)).rejects.toSatisfy((e) => isBlockvaultError(e, 'TASK_FAILED'));
    expect(h.manager.get(task.id).error?.message).toContain('no test volume missing');
  });

  it('wait with timeoutMs rejects with code TIMEOUT while the task goes on', async () => {
    const h = await harness({ opsUrl: testOpsUrl({ delayMs: 5 }), rotation: { workers: 1, rotationBatchSectorsMax: 8 } });
    await createFilledVolume(h, 'vol-t', { sizeSectors: 8 * 40 });
    const task = await h.manager.create({ volumeId: 'vol-t', keyCrn: KEY_CRN, fromKeyVersion: 1, toKeyVersion: 2 });
    const timedOut = await h.manager.wait(task.id, { timeoutMs: 20 }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isBlockvaultError(timedOut, 'TIMEOUT')).toBe(true);
    expect((timedOut as BlockvaultError).details).toEqual({ taskId: task.id, timeoutMs: 20 });
    expect((await h.manager.wait(task.id)).state).toBe('completed');
  });
});
