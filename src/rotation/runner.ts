import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from '../clock.js';
import { assert, isBlockvaultError } from '../errors.js';
import { DATA_KEY_BYTES, type ReencryptBatchRequest } from './batch-protocol.js';
import type { ClusterSnapshot, ReencryptTarget } from '../volume/reencrypt-contract.js';
import type { TaskStore } from './task-store.js';
import {
  ROTATION_AUDIT_ACTIONS,
  type RotationEventHook,
  type TaskError,
  type TaskProgressEvent,
  type TaskRecord,
} from './task-types.js';
import { TokenBucket } from './token-bucket.js';
import type { RotationPool } from './worker-pool.js';
import { Wakeup } from './wakeup.js';

/**
 * The "Syncing KMS state" runner: moves one volume to a fresh DEK generation, online.
 *
 * Compared with LUKS2 online re-encryption (cryptsetup reencrypt), which rewrites a device in
 * place and therefore needs a "hotzone" whose old contents are protected by a checksum, journal
 * or data-shift resilience area before every step, this design needs no hotzone at all: LMDB
 * writes are copy-on-write and atomic per transaction, and every cluster records the generation
 * it is encrypted under. A crash between any two instructions leaves each cluster either wholly
 * old or wholly new, both readable, and the checkpoint (committed in the same transaction as the
 * clusters it covers) only says where to resume scanning, never what a cluster contains. Unlike
 * LUKS2, the volume stays writable throughout (a racing write simply wins, see src/volume/reencrypt-contract.ts), the
 * work runs on all cores, and the old key is destroyed only once a full scan finds no cluster
 * that still needs it.
 */

export interface RunnerOptions {
  /** Most sectors in one batch (one worker job). At least one cluster per batch whatever this says. */
  rotationBatchSectorsMax: number;
  /** Most batches dispatched and not yet committed. Bounds memory: about 2 x this x batch bytes. */
  inFlightBatchesMax: number;
  /** Most completed batches committed in one LMDB transaction. */
  commitBatchesMax: number;
  /**
   * Commits queued at once. Two let LMDB write the next transaction while the previous one is
   * being fsynced (lmdb-js overlappingSync), and keep the main thread's commit work off the
   * critical path; a second one is queued only once it can be a full one.
   */
  commitsInFlightMax: number;
  /** Re-encryption bandwidth cap in stored bytes per second; null for none. */
  bandwidthBytesPerSecond: number | null;
  /** Minimum time between two progress events (state changes are always reported). */
  progressIntervalMs: number;
  /** Safety net: a task fails rather than loop if this many full scans keep finding stale clusters. */
  passesMax: number;
}

export const DEFAULT_RUNNER_OPTIONS: Omit<RunnerOptions, 'inFlightBatchesMax'> = {
  rotationBatchSectorsMax: 256,
  commitBatchesMax: 4,
  commitsInFlightMax: 2,
  bandwidthBytesPerSecond: null,
  progressIntervalMs: 200,
  passesMax: 64,
};

/** Counters for tests and benchmarks. */
export interface RunnerStats {
  batchesDispatched: number;
  batchesCommitted: number;
  commitTransactions: number;
  clustersReencrypted: number;
  /** Clusters a foreground write or trim changed between read and commit: theirs won. */
  clustersLostRace: number;
  maxInFlightBatches: number;
  /** Largest sum of packed batch bytes held at once (the snapshots double it). */
  maxInFlightBytes: number;
  maxBatchSectors: number;
  batchesAborted: number;
}

export type StopKind = 'cancel' | 'pause' | 'abort';

export interface RunnerArgs {
  target: ReencryptTarget;
  task: TaskRecord;
  store: TaskStore;
  pool: RotationPool;
  clock: Clock;
  options: RunnerOptions;
  onProgress?: (event: TaskProgressEvent) => void;
  onEvent?: RotationEventHook;
}

interface Batch {
  /** The scan position this batch's clusters were found from: the checkpoint can not pass it until committed. */
  scanFromIndex: number;
  snapshots: ClusterSnapshot[];
  packedBytes: number;
  keys: ArrayBuffer;
  /** `discarded`: failed or aborted; it stays listed (holding the checkpoint back) until the pass ends. */
  state: 'running' | 'done' | 'committing' | 'discarded';
  outputs: Uint8Array[];
}

const END_OF_SCAN = Number.MAX_SAFE_INTEGER;
/** How often a task paused by a refused root key checks whether access is back. */
export const ACCESS_POLL_MS = 50;

export class RotationRunner {
  readonly stats: RunnerStats = {
    batchesDispatched: 0,
    batchesCommitted: 0,
    commitTransactions: 0,
    clustersReencrypted: 0,
    clustersLostRace: 0,
    maxInFlightBatches: 0,
    maxInFlightBytes: 0,
    maxBatchSectors: 0,
    batchesAborted: 0,
  };

  private record: TaskRecord;
  private readonly target: ReencryptTarget;
  private readonly store: TaskStore;
  private readonly pool: RotationPool;
  private readonly clock: Clock;
  private readonly options: RunnerOptions;
  private readonly onProgress: ((event: TaskProgressEvent) => void) | undefined;
  private readonly onEvent: RotationEventHook | undefined;

  private stopKind: StopKind | null = null;
  private abortReason: unknown = null;
  private readonly stopController = new AbortController();
  /** Shared with every worker job of this task: set on abort, checked by workers per cluster. */
  private readonly abortFlag = new Int32Array(new SharedArrayBuffer(4));
  private wakeup = new Wakeup();
  private newKey: Uint8Array | null = null;
  private readonly oldKeys = new Map<number, Uint8Array>();
  private readonly inFlight: Batch[] = [];
  private readonly bucket: TokenBucket | null;

  private runStartMs = performance.now();
  private runBytes = 0;
  private lastProgressMs = -Infinity;

  constructor(args: RunnerArgs) {
    this.target = args.target;
    this.record = args.task;
    this.store = args.store;
    this.pool = args.pool;
    this.clock = args.clock;
    this.options = args.options;
    this.onProgress = args.onProgress;
    this.onEvent = args.onEvent;
    assert(args.task.volumeId === args.target.volumeId, 'task and target are the same volume');
    const cap = args.options.bandwidthBytesPerSecond;
    this.bucket = cap === null ? null : new TokenBucket(cap, Math.max(this.maxBatchBytes(), cap / 10));
  }

  get task(): TaskRecord {
    return this.record;
  }

  /** Stop dispatching, let in-flight batches finish and commit, end in `cancelled`. Safe at any point. */
  cancel(): void {
    this.requestStop('cancel');
  }

  /** Like cancel, but the task stays `running` in the store so that the next resumeAll() continues it. */
  pause(): void {
    this.requestStop('pause');
  }

  /**
   * Cryptoshredding: stop within one cluster per worker, commit nothing more, and zeroize every
   * copy of a key this task holds: its own at once, queued jobs' before they reach a worker,
   * running jobs' in the worker as they stop. Ends in `failed` with the reason's code.
   */
  abort(reason: unknown): void {
    if (this.stopKind === 'abort') return;
    this.abortReason = reason;
    this.stopKind = 'abort';
    Atomics.store(this.abortFlag, 0, 1);
    this.wipeKeys();
    for (const batch of this.inFlight) {
      // Not yet transferred (still queued in piscina): wipe it here. Transferred buffers are detached.
      if (batch.keys.byteLength > 0) new Uint8Array(batch.keys).fill(0);
    }
    this.stopController.abort();
    this.wakeup.fire();
  }

  /** Runs the task until it completes, fails, is cancelled, paused or aborted; resolves with its final record. */
  async run(): Promise<TaskRecord> {
    try {
      await this.start();
      if (this.record.mode === 'rewrap') {
        await this.target.rewrapAll();
      } else {
        const completed = await this.reencrypt();
        if (!completed) return await this.stopped();
      }
      // A cancel or pause that arrives once the work is done changes nothing: the task completes.
      if (this.stopKind === 'abort') return await this.stopped();
      return await this.complete();
    } catch (error) {
      if (this.stopKind === 'abort') return await this.stopped();
      return await this.fail(error);
    } finally {
      this.wipeKeys();
    }
  }

  private requestStop(kind: StopKind): void {
    if (this.stopKind !== null) return;
    this.stopKind = kind;
    this.stopController.abort();
    this.wakeup.fire();
  }

  private async start(): Promise<void> {
    const resumed = this.record.startedAtMs !== null;
    const now = this.clock.nowMs();
    await this.update({ state: 'running', startedAtMs: this.record.startedAtMs ?? now }, true);
    await this.onEvent?.(resumed ? ROTATION_AUDIT_ACTIONS.resume : ROTATION_AUDIT_ACTIONS.start, this.auditDetails());
  }

  /** Returns false when stopped before the end. */
  private async reencrypt(): Promise<boolean> {
    const target = this.target;
    if (this.record.phase === 'rewrap') {
      // DESIGN.md: the DEK is rewrapped under the new key version first, then the data moves.
      await target.rewrapAll();
      if (this.stopKind !== null) return false;
      await this.update({ phase: 'begin-generation' }, true);
    }
    if (this.record.targetGeneration === null) {
      // baseGeneration is persisted before beginGeneration runs, so that a crash in between
      // makes the resumed call return the generation already created instead of a second one.
      if (this.record.baseGeneration === null) await this.update({ baseGeneration: target.writeGeneration() }, false);
      const generation = await target.beginGeneration(this.record.baseGeneration!);
      assert(generation > this.record.baseGeneration!, 'beginGeneration returns a newer generation');
      const sectorsTotal = (await target.storedClusterCount()) * target.clusterSectors;
      await this.update({ targetGeneration: generation, phase: 'reencrypt', checkpointClusterIndex: 0, sectorsTotal }, true);
    }
    if (this.stopKind !== null) return false;
    const generation = this.record.targetGeneration!;
    this.newKey = target.dataKey(generation);
    assert(this.newKey.length === DATA_KEY_BYTES, 'a DEK is 64 bytes');

    // Scan from the checkpoint to the end, then from 0 until a full scan finds nothing stale: a
    // foreground write that picked the old write generation just before beginGeneration can land
    // behind the scan, and the old DEK must outlive it.
    let fromIndex = this.record.checkpointClusterIndex;
    for (;;) {
      const found = await this.pass(fromIndex, generation);
      if (this.stopKind !== null) return false;
      if (found === 0 && fromIndex === 0) break;
      if (this.record.passCount + 1 >= this.options.passesMax) {
        throw new Error(`blockvault: ${this.options.passesMax} full scans of volume ${target.volumeId} kept finding clusters older than generation ${generation}`);
      }
      fromIndex = 0;
      await this.update({ phase: 'verify', checkpointClusterIndex: 0, passCount: this.record.passCount + 1 }, false);
    }
    await this.update({ phase: 'retire' }, true);
    await target.retireGenerations(generation);
    return true;
  }

  /** One scan from `fromIndex` to the end, re-encrypting what it finds. Returns how many stale clusters it found. */
  private async pass(fromIndex: number, generation: number): Promise<number> {
    const target = this.target;
    const clustersPerBatch = Math.max(1, Math.floor(this.options.rotationBatchSectorsMax / target.clusterSectors));
    let scanIndex = fromIndex;
    let exhausted = false;
    let found = 0;
    let failure: { error: unknown } | null = null;
    let commitsRunning = 0;

    const checkpoint = (committed: Set<Batch>): number => {
      let index = scanIndex;
      for (const batch of this.inFlight) if (!committed.has(batch)) index = Math.min(index, batch.scanFromIndex);
      return index;
    };

    const startCommit = (): void => {
      if (commitsRunning >= this.options.commitsInFlightMax) return;
      const ready = this.inFlight.filter((batch) => batch.state === 'done').slice(0, this.options.commitBatchesMax);
      if (ready.length === 0) return;
      const moreComing = this.inFlight.some((batch) => batch.state === 'running') || (!exhausted && this.stopKind === null);
      // While a commit is running, queue another only when it is full (or nothing more comes).
      if (commitsRunning > 0 && ready.length < this.options.commitBatchesMax && moreComing) return;
      for (const batch of ready) batch.state = 'committing';
      commitsRunning++;
      this.commit(ready, checkpoint)
        .catch((error: unknown) => {
          failure ??= { error };
        })
        .finally(() => {
          for (const batch of ready) {
            const at = this.inFlight.indexOf(batch);
            if (at >= 0) this.inFlight.splice(at, 1);
          }
          commitsRunning--;
          this.wakeup.fire();
        });
    };

    for (;;) {
      // The root key suspended or its authorization revoked: nothing is dispatched or committed
      // until access returns (a stop request still ends the wait).
      const refused = (target.accessRefusal?.() ?? null) !== null;
      if (refused && failure === null && this.stopKind === null) {
        await this.waitForAccess();
        continue;
      }
      // After a failure or an abort nothing more is committed; a cancel or pause commits what is
      // done (unless the key is refused: then it stays for the next run to redo).
      const commitsStopped = failure !== null || this.stopKind === 'abort' || refused;
      if (!commitsStopped) {
        startCommit();
        startCommit();
      }
      if (!exhausted && this.stopKind === null && failure === null && this.inFlight.length < this.options.inFlightBatchesMax) {
        // Whatever throws here (the target, a missing key) must still let in-flight batches drain.
        try {
          const snapshots = await target.staleClusters(scanIndex, generation, clustersPerBatch);
          if (snapshots.length === 0) {
            exhausted = true;
            continue;
          }
          found += snapshots.length;
          const batchFromIndex = scanIndex;
          scanIndex = snapshots[snapshots.length - 1]!.clusterIndex + 1;
          // Only an empty answer ends the scan: the contract bounds a scan's results, not its reach.
          await this.throttle(snapshots);
          if (this.stopKind !== null) continue;
          this.dispatch(batchFromIndex, snapshots, generation, (error) => {
            failure ??= { error };
          });
        } catch (error) {
          failure ??= { error };
        }
        continue;
      }
      const running = this.inFlight.some((batch) => batch.state === 'running');
      const committable = !commitsStopped && this.inFlight.some((batch) => batch.state === 'done');
      if (!running && commitsRunning === 0 && !committable) break;
      await this.wakeup.wait();
    }
    // Whatever is left was discarded (or will not be committed after a failure or an abort).
    this.inFlight.length = 0;
    if (failure !== null) throw (failure as { error: unknown }).error;
    if (this.stopKind === null) await this.update({ checkpointClusterIndex: Math.max(scanIndex, fromIndex) }, false);
    return found;
  }

  /** One poll interval while the key is refused (the gate has no event to wait on; a stop ends it). */
  private async waitForAccess(): Promise<void> {
    try {
      await sleep(ACCESS_POLL_MS, undefined, { signal: this.stopController.signal });
    } catch {
      // Stopped while waiting: the caller sees stopKind.
    }
  }

  private async throttle(snapshots: ClusterSnapshot[]): Promise<void> {
    if (this.bucket === null) return;
    const waitMs = this.bucket.reserve(snapshots.reduce((sum, snapshot) => sum + snapshot.raw.length, 0));
    if (waitMs <= 0) return;
    try {
      await sleep(waitMs, undefined, { signal: this.stopController.signal });
    } catch {
      // Stopped while waiting: the caller sees stopKind.
    }
  }

  private dispatch(scanFromIndex: number, snapshots: ClusterSnapshot[], generation: number, onError: (error: unknown) => void): void {
    const target = this.target;
    const slots = new Map<number, number>();
    const keySlots = snapshots.map((snapshot) => {
      assert(snapshot.generation < generation, 'staleClusters returns clusters older than the target generation');
      let slot = slots.get(snapshot.generation);
      if (slot === undefined) {
        slot = slots.size + 1;
        slots.set(snapshot.generation, slot);
      }
      return slot;
    });
    const keys = new ArrayBuffer(DATA_KEY_BYTES * (slots.size + 1));
    const keyBytes = new Uint8Array(keys);
    keyBytes.set(this.newKey!, 0);
    for (const [oldGeneration, slot] of slots) keyBytes.set(this.oldKey(oldGeneration), slot * DATA_KEY_BYTES);

    // Each snapshot's bytes go to the worker by transfer (copied only when they share a buffer
    // with something else) and come back with the result, for the commit's comparison.
    const clusters = snapshots.map((snapshot) => transferableCopyOf(snapshot.raw));
    const packedBytes = snapshots.reduce((sum, snapshot) => sum + snapshot.raw.length, 0);
    const batch: Batch = { scanFromIndex, snapshots, packedBytes, keys, state: 'running', outputs: [] };
    this.inFlight.push(batch);
    const stats = this.stats;
    stats.batchesDispatched++;
    stats.maxInFlightBatches = Math.max(stats.maxInFlightBatches, this.inFlight.length);
    stats.maxInFlightBytes = Math.max(stats.maxInFlightBytes, this.inFlight.reduce((sum, b) => sum + b.packedBytes, 0));
    stats.maxBatchSectors = Math.max(stats.maxBatchSectors, snapshots.length * target.clusterSectors);

    const request: ReencryptBatchRequest = {
      kind: 'reencrypt',
      clusters,
      clusterIndexes: snapshots.map((snapshot) => snapshot.clusterIndex),
      keySlots,
      keys,
      newGeneration: generation,
      sectorSize: target.sectorSize,
      clusterSectors: target.clusterSectors,
      abortFlag: this.abortFlag.buffer as SharedArrayBuffer,
    };
    this.pool.reencrypt(request).then(
      (result) => {
        if (result.aborted || this.stopKind === 'abort') {
          stats.batchesAborted++;
          batch.state = 'discarded';
        } else {
          assert(result.inputs.length === snapshots.length && result.outputs.length === snapshots.length, 'a worker returns every cluster of its batch');
          batch.snapshots = snapshots.map((snapshot, i) => ({ ...snapshot, raw: new Uint8Array(result.inputs[i]!) }));
          batch.outputs = result.outputs.map((buffer) => new Uint8Array(buffer));
          batch.state = 'done';
        }
        this.wakeup.fire();
      },
      (error: unknown) => {
        batch.state = 'discarded';
        onError(error);
        this.wakeup.fire();
      },
    );
  }

  private async commit(batches: Batch[], checkpoint: (committed: Set<Batch>) => number): Promise<void> {
    const target = this.target;
    const items: { expected: ClusterSnapshot; raw: Uint8Array }[] = [];
    for (const batch of batches) batch.snapshots.forEach((expected, i) => items.push({ expected, raw: batch.outputs[i]! }));
    const committed = new Set(batches);
    const sectors = items.length * target.clusterSectors;
    let next: TaskRecord | null = null;
    const nextRecord = (): TaskRecord => {
      const sectorsDone = this.record.sectorsDone + sectors;
      const next: TaskRecord = {
        ...this.record,
        checkpointClusterIndex: Math.max(this.record.checkpointClusterIndex, Math.min(checkpoint(committed), END_OF_SCAN)),
        sectorsDone,
        sectorsTotal: Math.max(this.record.sectorsTotal, sectorsDone),
        bytesDone: this.record.bytesDone + sectors * target.sectorSize,
        updatedAtMs: this.clock.nowMs(),
      };
      const rate = progressOf(next, this.runBytes + sectors * target.sectorSize, performance.now() - this.runStartMs, target.sectorSize);
      next.bytesPerSecond = rate.bytesPerSecond;
      next.etaMs = rate.etaMs;
      return next;
    };
    // The record advances inside the callback: queued commits run their callbacks in order, each
    // building on the previous one's record.
    const stored = await target.commitReencrypted(items, () => {
      next = nextRecord();
      this.store.putInCurrentTxn(next);
      this.record = next;
    });
    if (next === null) {
      // The target did not call back: persisting after its commit is still safe, since a
      // checkpoint that trails the data only makes a resume scan a little more.
      next = nextRecord();
      this.record = next;
      await this.store.put(next);
    }
    this.runBytes += sectors * target.sectorSize;
    this.stats.commitTransactions++;
    this.stats.batchesCommitted += batches.length;
    this.stats.clustersReencrypted += stored;
    this.stats.clustersLostRace += items.length - stored;
    this.reportProgress(false);
  }

  private oldKey(generation: number): Uint8Array {
    let key = this.oldKeys.get(generation);
    if (key === undefined) {
      key = this.target.dataKey(generation);
      assert(key.length === DATA_KEY_BYTES, 'a DEK is 64 bytes');
      this.oldKeys.set(generation, key);
    }
    return key;
  }

  private wipeKeys(): void {
    this.newKey?.fill(0);
    this.newKey = null;
    for (const key of this.oldKeys.values()) key.fill(0);
    this.oldKeys.clear();
  }

  private maxBatchBytes(): number {
    const clusters = Math.max(1, Math.floor(this.options.rotationBatchSectorsMax / this.target.clusterSectors));
    return clusters * this.target.clusterSectors * this.target.sectorSize;
  }

  private async complete(): Promise<TaskRecord> {
    // The KMS ack and the completion are recorded before the state says completed: after a
    // crash in between, the resumed task records them again (at least once, never lost).
    await this.onEvent?.(ROTATION_AUDIT_ACTIONS.kmsAck, { ...this.auditDetails(), eventType: 'rotate' });
    const now = this.clock.nowMs();
    await this.onEvent?.(ROTATION_AUDIT_ACTIONS.complete, { ...this.auditDetails(), durationMs: now - (this.record.startedAtMs ?? now) });
    const rate = progressOf(this.record, this.runBytes, performance.now() - this.runStartMs, this.target.sectorSize);
    await this.update(
      { state: 'completed', phase: 'done', endedAtMs: now, sectorsDone: this.record.sectorsTotal, bytesPerSecond: rate.bytesPerSecond, etaMs: 0, error: null },
      true,
    );
    return this.record;
  }

  private async stopped(): Promise<TaskRecord> {
    if (this.stopKind === 'pause') return this.record;
    if (this.stopKind === 'abort') return this.fail(this.abortReason);
    await this.update({ state: 'cancelled', endedAtMs: this.clock.nowMs() }, true);
    await this.emitQuietly(ROTATION_AUDIT_ACTIONS.cancel, this.auditDetails());
    return this.record;
  }

  private async fail(error: unknown): Promise<TaskRecord> {
    const taskError = toTaskError(error);
    await this.update({ state: 'failed', endedAtMs: this.clock.nowMs(), error: taskError }, true);
    await this.emitQuietly(ROTATION_AUDIT_ACTIONS.fail, { ...this.auditDetails(), error: taskError });
    return this.record;
  }

  /** Cancel and fail events must not turn into a second failure. */
  private async emitQuietly(action: Parameters<RotationEventHook>[0], details: Record<string, unknown>): Promise<void> {
    try {
      await this.onEvent?.(action, details);
    } catch {
      // The state is already persisted; an audit sink that is down must not hide it.
    }
  }

  private auditDetails(): Record<string, unknown> {
    const task = this.record;
    return {
      taskId: task.id,
      volumeId: task.volumeId,
      keyCrn: task.keyCrn,
      fromKeyVersion: task.fromKeyVersion,
      toKeyVersion: task.toKeyVersion,
      mode: task.mode,
    };
  }

  private async update(patch: Partial<TaskRecord>, report: boolean): Promise<void> {
    const next: TaskRecord = { ...this.record, ...patch, updatedAtMs: this.clock.nowMs() };
    await this.store.put(next);
    this.record = next;
    if (report) this.reportProgress(true);
  }

  private reportProgress(force: boolean): void {
    if (this.onProgress === undefined) return;
    const nowMs = performance.now();
    if (!force && nowMs - this.lastProgressMs < this.options.progressIntervalMs) return;
    this.lastProgressMs = nowMs;
    this.onProgress(progressOf(this.record, this.runBytes, nowMs - this.runStartMs, this.target.sectorSize));
  }
}

export function progressOf(task: TaskRecord, runBytes: number, runElapsedMs: number, sectorSize: number): TaskProgressEvent {
  const bytesPerSecond = runElapsedMs > 0 ? (runBytes * 1000) / runElapsedMs : 0;
  const remainingBytes = Math.max(0, task.sectorsTotal - task.sectorsDone) * sectorSize;
  const etaMs = task.state === 'completed' ? 0 : bytesPerSecond > 0 ? Math.round((remainingBytes * 1000) / bytesPerSecond) : null;
  return {
    taskId: task.id,
    volumeId: task.volumeId,
    state: task.state,
    phase: task.phase,
    sectorsDone: task.sectorsDone,
    sectorsTotal: task.sectorsTotal,
    bytesPerSecond,
    etaMs,
  };
}

export function toTaskError(error: unknown): TaskError {
  if (isBlockvaultError(error)) return { code: error.code, message: error.message };
  if (error instanceof Error) return { code: 'INTERNAL', message: error.message };
  return { code: 'INTERNAL', message: String(error) };
}

/**
 * The snapshot's bytes as an ArrayBuffer to transfer: its own buffer when the view spans all of it
 * (staleClusters hands the caller fresh copies, see src/volume/reencrypt-contract.ts), else a copy. Transferring detaches
 * the snapshot's view; the worker sends the buffer back.
 */
function transferableCopyOf(raw: Uint8Array): ArrayBuffer {
  if (raw.byteOffset === 0 && raw.byteLength === raw.buffer.byteLength && raw.buffer instanceof ArrayBuffer && raw.byteLength > 0) return raw.buffer;
  return Uint8Array.from(raw).buffer;
}
