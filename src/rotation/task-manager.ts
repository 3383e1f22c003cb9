import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { RootDatabase } from 'lmdb';
import { systemClock, type Clock } from '../clock.js';
import { BlockvaultError } from '../errors.js';
import { DEFAULT_RUNNER_OPTIONS, RotationRunner, progressOf, toTaskError, type RunnerOptions, type RunnerStats, type StopKind } from './runner.js';
import type { ReencryptTarget } from '../volume/reencrypt-contract.js';
import { TaskStore } from './task-store.js';
import {
  ROTATION_AUDIT_ACTIONS,
  TASK_MODES,
  TASK_TYPE_SYNCING_KMS_STATE,
  isTerminalTaskState,
  type NewTaskSpec,
  type RotationEventHook,
  type TaskProgressEvent,
  type TaskRecord,
} from './task-types.js';
import { RotationPool } from './worker-pool.js';

/** The engine's `rotation` options. */
export interface RotationOptions {
  /** Worker threads for re-encryption; default os.availableParallelism(). */
  workers?: number;
  /** Volumes re-encrypted at the same time (one task per volume at a time in any case). Default 1. */
  tasksConcurrentMax?: number;
  /** Most sectors per worker job. Default 256 (1 MiB of 4 KiB sectors). */
  rotationBatchSectorsMax?: number;
  /**
   * Most jobs dispatched and not yet committed, per task: with the batch size, the memory bound
   * (about 2 x this x batch bytes). Default 2 x workers + 2 x commitBatchesMax (12 MiB of
   * batches for 2 workers and 4 KiB sectors).
   */
  inFlightBatchesMax?: number;
  /** Most finished jobs per LMDB commit. Default 4. */
  commitBatchesMax?: number;
  /**
   * Commits queued at once, per task. Default 2 (throughput). With 1, and a small
   * rotationBatchSectorsMax, foreground writes wait behind less rotation work (latency).
   */
  commitsInFlightMax?: number;
  /** Cap on re-encryption bandwidth per task, in stored bytes per second. Default none. */
  bandwidthBytesPerSecond?: number | null;
  /** Minimum time between progress events. Default 200 ms. */
  progressIntervalMs?: number;
  /** Cipher backend for the workers: 'native', 'ts', or the cipher's default. */
  backend?: string;
  /** Nice increment of the worker threads, 0..19 (Unix; default 10, see RotationPool). */
  niceIncrement?: number;
}

export interface TaskManagerOptions {
  /** The engine's LMDB environment: tasks go to its sub-database `tasks`. */
  root: RootDatabase;
  /**
   * The volume a task works on, opened for rotation. Called when the task starts or resumes; a
   * throw (the volume is gone, locked, deleted) fails the task with that error.
   */
  openTarget(task: TaskRecord): ReencryptTarget | Promise<ReencryptTarget>;
  /**
   * Called once the task's run ends, whatever the outcome (also when paused by close()), with the
   * task's record at that point. Default: `target.close()` when the target has one (the engine's
   * VolumeReencryptTarget holds its volume open until then).
   */
  closeTarget?(task: TaskRecord, target: ReencryptTarget): void | Promise<void>;
  rotation?: RotationOptions;
  /** The ClusterOps module for the workers (file URL or path); default the volume format. Tests pass their own. */
  clusterOpsModule?: string;
  clock?: Clock;
  /** Audit hook: start, resume, complete, cancel, fail, and the KMS ack (see ROTATION_AUDIT_ACTIONS). */
  onEvent?: RotationEventHook;
}

export interface WaitOptions {
  /** Reject with code TIMEOUT after this long (the task keeps running). Default: no limit. */
  timeoutMs?: number;
}

/** `wait()` gave up; the task itself goes on. A BlockvaultError with code TIMEOUT, like every failure a caller can cause. */
export class TaskWaitTimeoutError extends BlockvaultError {
  constructor(
    readonly taskId: string,
    readonly timeoutMs: number,
  ) {
    super('TIMEOUT', `Rotation task ${taskId} did not finish within ${timeoutMs} ms; it is still running. Wait again or check engine.tasks.get().`, {
      taskId,
      timeoutMs,
    });
    this.name = 'TaskWaitTimeoutError';
  }
}

/** setTimeout's largest delay (2^31 - 1 ms). */
const WAIT_TIMEOUT_MS_MAX = 2 ** 31 - 1;
/** Task ids are UUIDs (36 characters); LMDB keys must stay far below its 1978-byte limit. */
const TASK_ID_LENGTH_MAX = 128;

interface Waiter {
  resolve(task: TaskRecord): void;
  reject(error: unknown): void;
}

interface Active {
  volumeId: string;
  /** Held here so that abortTasks, called inside the cryptoshred lock's turn, reads no store. */
  keyCrn: string;
  runner: RotationRunner | null;
  done: Promise<TaskRecord>;
  /** A stop that arrived while the target or the pool was still opening; applied when the runner exists. */
  pendingStop?: { kind: StopKind; reason?: unknown };
}

export interface TaskManagerEvents {
  progress: [TaskProgressEvent];
}

/**
 * engine.tasks: creates, schedules, persists and reports "Syncing KMS state" tasks. One task per
 * volume runs at a time (a later rotation of the same volume waits for the earlier one), and at
 * most `tasksConcurrentMax` volumes at once; all tasks share one piscina pool.
 */
export class TaskManager extends EventEmitter<TaskManagerEvents> {
  private readonly store: TaskStore;
  private readonly root: RootDatabase;
  private readonly openTarget: TaskManagerOptions['openTarget'];
  private readonly closeTarget: NonNullable<TaskManagerOptions['closeTarget']>;
  private readonly rotation: RotationOptions;
  private readonly clusterOpsModule: string | undefined;
  private readonly clock: Clock;
  private readonly onEvent: RotationEventHook | undefined;
  private readonly tasksConcurrentMax: number;

  private readonly pending: string[] = [];
  private readonly active = new Map<string, Active>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  private readonly lastStats = new Map<string, RunnerStats>();
  private pool: Promise<RotationPool> | null = null;
  private closed = false;

  constructor(options: TaskManagerOptions) {
    super();
    this.root = options.root;
    this.store = new TaskStore(options.root);
    this.openTarget = options.openTarget;
    this.closeTarget = options.closeTarget ?? ((_task, target) => (target as { close?: () => unknown }).close?.() as void | Promise<void>);
    this.rotation = validateRotationOptions(options.rotation ?? {});
    this.clusterOpsModule = options.clusterOpsModule;
    this.clock = options.clock ?? systemClock;
    this.onEvent = options.onEvent;
    this.tasksConcurrentMax = this.rotation.tasksConcurrentMax ?? 1;
  }

  /** Persist a queued task and schedule it. */
  async create(spec: NewTaskSpec): Promise<TaskRecord> {
    const [task] = await this.createMany([spec]);
    return task!;
  }

  /** Persist several tasks in one transaction (one per volume of a rotated key), then schedule them. */
  async createMany(specs: NewTaskSpec[]): Promise<TaskRecord[]> {
    this.assertOpen();
    if (!Array.isArray(specs)) throw invalid('createMany takes an array of task specs { volumeId, keyCrn, fromKeyVersion, toKeyVersion, mode? }.');
    const now = this.clock.nowMs();
    const tasks = specs.map((spec) => newTaskRecord(validateSpec(spec), now));
    await this.root.transaction(() => {
      for (const task of tasks) this.store.putInCurrentTxn(task);
    });
    for (const task of tasks) {
      this.pending.push(task.id);
      this.emit('progress', progressOf(task, 0, 0, 0));
    }
    this.pump();
    return tasks;
  }

  /** Every task, oldest first, in every state (persisted across restarts). */
  list(): TaskRecord[] {
    this.assertOpen();
    return this.store.list();
  }

  get(id: string): TaskRecord {
    this.assertOpen();
    return this.store.require(checkTaskId(id));
  }

  /**
   * Resolves with the task once completed; rejects with TASK_FAILED or TASK_CANCELLED (details:
   * the task), ENGINE_CLOSED when the engine closes first, or TIMEOUT after `timeoutMs`.
   */
  wait(id: string, options: WaitOptions = {}): Promise<TaskRecord> {
    let task: TaskRecord;
    try {
      this.assertOpen();
      task = this.store.require(checkTaskId(id));
      checkWaitOptions(options);
    } catch (error) {
      return Promise.reject(error);
    }
    if (isTerminalTaskState(task.state)) return settle(task);
    return new Promise<TaskRecord>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      let set = this.waiters.get(id);
      if (set === undefined) this.waiters.set(id, (set = new Set()));
      set.add(waiter);
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.waiters.get(id)?.delete(waiter);
          reject(new TaskWaitTimeoutError(id, options.timeoutMs!));
        }, options.timeoutMs);
      }
    });
  }

  /** Safe at any point: the volume stays readable, the old DEK stays until a later rotation finishes. */
  async cancel(id: string): Promise<TaskRecord> {
    this.assertOpen();
    const task = this.store.require(checkTaskId(id));
    if (isTerminalTaskState(task.state)) return task;
    const active = this.active.get(id);
    if (active !== undefined) {
      stopActive(active, { kind: 'cancel' });
      return active.done;
    }
    this.dequeue(id);
    const cancelled: TaskRecord = { ...task, state: 'cancelled', endedAtMs: this.clock.nowMs(), updatedAtMs: this.clock.nowMs() };
    await this.store.put(cancelled);
    this.finished(cancelled);
    return cancelled;
  }

  /**
   * Cryptoshredding: stop every matching task now. The synchronous part (flags set, keys wiped,
   * queued tasks dropped) happens before this returns its promise, so a caller inside a forced
   * key delete can fire and forget; await it to know that every worker has let go.
   */
  abortTasks(filter: { keyCrn?: string; volumeId?: string }, reason: unknown): Promise<TaskRecord[]> {
    if (typeof filter !== 'object' || filter === null) return Promise.reject(invalid('abortTasks takes a filter { keyCrn?, volumeId? }.'));
    for (const name of ['keyCrn', 'volumeId'] as const) {
      if (filter[name] !== undefined && typeof filter[name] !== 'string') return Promise.reject(invalid(`abortTasks: ${name} must be a string.`));
    }
    const matches = (task: { keyCrn: string; volumeId: string }): boolean =>
      (filter.keyCrn === undefined || task.keyCrn === filter.keyCrn) && (filter.volumeId === undefined || task.volumeId === filter.volumeId);
    const waits: Promise<TaskRecord>[] = [];
    for (const active of this.active.values()) {
      if (!matches(active)) continue;
      stopActive(active, { kind: 'abort', reason });
      waits.push(active.done);
    }
    const error = toTaskError(reason);
    for (const id of [...this.pending]) {
      const task = this.store.get(id);
      if (task === undefined || !matches(task)) continue;
      this.dequeue(id);
      const failed: TaskRecord = { ...task, state: 'failed', error, endedAtMs: this.clock.nowMs(), updatedAtMs: this.clock.nowMs() };
      waits.push(this.store.put(failed).then(() => (this.finished(failed), failed)));
    }
    return Promise.all(waits);
  }

  /** For Engine.open: every task left queued or running (by a crash or a close) continues from its checkpoint. */
  async resumeAll(): Promise<TaskRecord[]> {
    this.assertOpen();
    const resumed = this.store.list().filter((task) => task.state === 'queued' || task.state === 'running');
    for (const task of resumed) if (!this.pending.includes(task.id) && !this.active.has(task.id)) this.pending.push(task.id);
    this.pump();
    return resumed;
  }

  /** Counters of a task's last run in this process (tests, benchmarks). */
  runnerStats(id: string): RunnerStats | undefined {
    return this.lastStats.get(id);
  }

  /** Start the worker threads now rather than on the first batch (benchmarks, or right after open). */
  async warmUp(): Promise<void> {
    this.assertOpen();
    await (await this.ensurePool()).warmUp();
  }

  /** Tests: a worker's ClusterOps.probe() report. */
  async probeWorker(): Promise<unknown> {
    return (await this.ensurePool()).probe();
  }

  /**
   * Pause running tasks (they stay `running` and resume on the next resumeAll), reject waiters
   * with ENGINE_CLOSED, and stop the worker threads. Call before closing the LMDB environment.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.pending.length = 0;
    for (const active of this.active.values()) stopActive(active, { kind: 'pause' });
    await Promise.allSettled([...this.active.values()].map((active) => active.done));
    for (const set of this.waiters.values()) for (const waiter of set) waiter.reject(engineClosed());
    this.waiters.clear();
    const pool = this.pool;
    this.pool = null;
    if (pool !== null) await (await pool.catch(() => null))?.destroy();
  }

  private pump(): void {
    if (this.closed) return;
    for (let i = 0; i < this.pending.length && this.active.size < this.tasksConcurrentMax; ) {
      const id = this.pending[i]!;
      const task = this.store.get(id);
      if (task === undefined || isTerminalTaskState(task.state)) {
        this.pending.splice(i, 1);
        continue;
      }
      const busy = [...this.active.values()].some((active) => active.volumeId === task.volumeId);
      if (busy) {
        i++;
        continue;
      }
      this.pending.splice(i, 1);
      this.startTask(task);
    }
  }

  private startTask(task: TaskRecord): void {
    const active: Active = { volumeId: task.volumeId, keyCrn: task.keyCrn, runner: null, done: Promise.resolve(task) };
    this.active.set(task.id, active);
    active.done = this.runTask(task, active).then(
      (record) => {
        this.active.delete(task.id);
        if (isTerminalTaskState(record.state)) this.finished(record, false);
        this.pump();
        return record;
      },
      (error: unknown) => {
        // Only a failing store gets here; the task's own errors end in `failed`.
        this.active.delete(task.id);
        for (const waiter of this.waiters.get(task.id) ?? []) waiter.reject(error);
        this.waiters.delete(task.id);
        this.pump();
        throw error;
      },
    );
    active.done.catch(() => undefined);
  }

  private async runTask(task: TaskRecord, active: Active): Promise<TaskRecord> {
    let target: ReencryptTarget;
    let pool: RotationPool;
    // An abort that arrived while the task was still opening is why it fails, whatever the open
    // then said: a cryptoshred locks the volume before it aborts the tasks, so the open of a
    // task it caught half way is refused with VOLUME_LOCKED, and the task must say KEY_DESTROYED.
    const cause = (error: unknown): unknown => (active.pendingStop?.kind === 'abort' && active.pendingStop.reason !== undefined ? active.pendingStop.reason : error);
    try {
      target = await this.openTarget(task);
    } catch (error) {
      return this.failBeforeStart(task, cause(error));
    }
    try {
      pool = await this.ensurePool();
    } catch (error) {
      await this.closeQuietly(task, target);
      return this.failBeforeStart(task, cause(error));
    }
    const runner = new RotationRunner({
      target,
      task: this.store.get(task.id) ?? task,
      store: this.store,
      pool,
      clock: this.clock,
      options: this.runnerOptions(pool),
      onProgress: (event) => this.emit('progress', event),
      onEvent: this.onEvent,
    });
    active.runner = runner;
    if (active.pendingStop !== undefined) stopActive(active, active.pendingStop);
    try {
      return await runner.run();
    } finally {
      this.lastStats.set(task.id, runner.stats);
      await this.closeQuietly(runner.task, target);
    }
  }

  private async closeQuietly(task: TaskRecord, target: ReencryptTarget): Promise<void> {
    try {
      await this.closeTarget(task, target);
    } catch {
      // The task's outcome is persisted already; a target that fails to close must not change it.
    }
  }

  private async failBeforeStart(task: TaskRecord, error: unknown): Promise<TaskRecord> {
    const failed: TaskRecord = { ...task, state: 'failed', error: toTaskError(error), endedAtMs: this.clock.nowMs(), updatedAtMs: this.clock.nowMs() };
    await this.store.put(failed);
    this.emit('progress', progressOf(failed, 0, 0, 0));
    try {
      await this.onEvent?.(ROTATION_AUDIT_ACTIONS.fail, { taskId: task.id, volumeId: task.volumeId, keyCrn: task.keyCrn, error: failed.error });
    } catch {
      // The failure is persisted; an audit sink that is down must not hide it.
    }
    return failed;
  }

  private runnerOptions(pool: RotationPool): RunnerOptions {
    const r = this.rotation;
    return {
      rotationBatchSectorsMax: r.rotationBatchSectorsMax ?? DEFAULT_RUNNER_OPTIONS.rotationBatchSectorsMax,
      // Enough for every worker to hold a batch and queue one, plus full commits queued behind each other.
      inFlightBatchesMax:
        r.inFlightBatchesMax ??
        2 * pool.size + (r.commitBatchesMax ?? DEFAULT_RUNNER_OPTIONS.commitBatchesMax) * (r.commitsInFlightMax ?? DEFAULT_RUNNER_OPTIONS.commitsInFlightMax),
      commitBatchesMax: r.commitBatchesMax ?? DEFAULT_RUNNER_OPTIONS.commitBatchesMax,
      commitsInFlightMax: r.commitsInFlightMax ?? DEFAULT_RUNNER_OPTIONS.commitsInFlightMax,
      bandwidthBytesPerSecond: r.bandwidthBytesPerSecond ?? DEFAULT_RUNNER_OPTIONS.bandwidthBytesPerSecond,
      progressIntervalMs: r.progressIntervalMs ?? DEFAULT_RUNNER_OPTIONS.progressIntervalMs,
      passesMax: DEFAULT_RUNNER_OPTIONS.passesMax,
    };
  }

  private ensurePool(): Promise<RotationPool> {
    if (this.pool === null) {
      const pool = RotationPool.create({ workers: this.rotation.workers, clusterOpsModule: this.clusterOpsModule, backend: this.rotation.backend, niceIncrement: this.rotation.niceIncrement });
      this.pool = pool;
      // A pool that failed to start is not cached: the next task tries again.
      pool.catch(() => {
        if (this.pool === pool) this.pool = null;
      });
    }
    return this.pool;
  }

  private dequeue(id: string): void {
    const at = this.pending.indexOf(id);
    if (at >= 0) this.pending.splice(at, 1);
  }

  /** `report`: emit a progress event too (the runner already did for the tasks it ran). */
  private finished(task: TaskRecord, report = true): void {
    if (report) this.emit('progress', progressOf(task, 0, 0, 0));
    const set = this.waiters.get(task.id);
    if (set === undefined) return;
    this.waiters.delete(task.id);
    for (const waiter of set) settle(task).then(waiter.resolve, waiter.reject);
  }

  private assertOpen(): void {
    if (this.closed) throw engineClosed();
  }
}

/** Abort wins over cancel and pause; before the runner exists the stop is remembered. */
function stopActive(active: Active, stop: { kind: StopKind; reason?: unknown }): void {
  if (active.runner === null) {
    if (active.pendingStop?.kind !== 'abort') active.pendingStop = stop;
    return;
  }
  if (stop.kind === 'abort') active.runner.abort(stop.reason);
  else if (stop.kind === 'cancel') active.runner.cancel();
  else active.runner.pause();
}

function settle(task: TaskRecord): Promise<TaskRecord> {
  if (task.state === 'completed') return Promise.resolve(task);
  if (task.state === 'cancelled') {
    return Promise.reject(new BlockvaultError('TASK_CANCELLED', `Rotation task ${task.id} of volume ${task.volumeId} was cancelled; the volume keeps its old data key until a later rotation completes.`, { task }));
  }
  const cause = task.error ? `${task.error.code}: ${task.error.message}` : 'unknown error';
  return Promise.reject(new BlockvaultError('TASK_FAILED', `Rotation task ${task.id} of volume ${task.volumeId} failed (${cause}). Rotate the key again to retry.`, { task }));
}

function engineClosed(): BlockvaultError {
  return new BlockvaultError('ENGINE_CLOSED', 'The engine was closed; running rotation tasks resume on the next Engine.open.');
}

function newTaskRecord(spec: Required<NewTaskSpec>, now: number): TaskRecord {
  return {
    id: randomUUID(),
    type: TASK_TYPE_SYNCING_KMS_STATE,
    volumeId: spec.volumeId,
    keyCrn: spec.keyCrn,
    fromKeyVersion: spec.fromKeyVersion,
    toKeyVersion: spec.toKeyVersion,
    mode: spec.mode,
    state: 'queued',
    phase: 'rewrap',
    baseGeneration: null,
    targetGeneration: null,
    checkpointClusterIndex: 0,
    passCount: 0,
    sectorsDone: 0,
    sectorsTotal: 0,
    bytesDone: 0,
    bytesPerSecond: 0,
    etaMs: null,
    createdAtMs: now,
    startedAtMs: null,
    endedAtMs: null,
    updatedAtMs: now,
    error: null,
  };
}

function invalid(message: string, details?: Record<string, unknown>): BlockvaultError {
  return new BlockvaultError('INVALID_ARGUMENT', message, details);
}

/** Task ids are the UUIDs create() returned; anything else is refused before LMDB sees it. */
function checkTaskId(id: unknown): string {
  if (typeof id !== 'string' || id.length === 0 || id.length > TASK_ID_LENGTH_MAX) {
    throw invalid(`a task id must be a non-empty string (the id a rotation returned; see engine.tasks.list()), got ${typeof id === 'string' ? JSON.stringify(id) : typeof id}.`);
  }
  return id;
}

function checkWaitOptions(options: WaitOptions): void {
  if (typeof options !== 'object' || options === null) throw invalid('wait(id, { timeoutMs? }) takes an options object.');
  const timeoutMs = options.timeoutMs;
  // setTimeout's limit: a longer delay would fire at once (Node clamps it to 1 ms).
  if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !Number.isSafeInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > WAIT_TIMEOUT_MS_MAX)) {
    throw invalid(`timeoutMs must be a whole number of milliseconds from 0 to ${WAIT_TIMEOUT_MS_MAX} (about 24.8 days), got ${String(timeoutMs)}.`);
  }
}

function validateSpec(spec: NewTaskSpec): Required<NewTaskSpec> {
  if (typeof spec !== 'object' || spec === null) throw invalid('A rotation task needs { volumeId, keyCrn, fromKeyVersion, toKeyVersion, mode? }.');
  if (typeof spec.volumeId !== 'string' || spec.volumeId === '') throw invalid('volumeId must be a non-empty string.', { volumeId: spec.volumeId });
  if (typeof spec.keyCrn !== 'string' || spec.keyCrn === '') throw invalid('keyCrn must be the root key CRN.', { keyCrn: spec.keyCrn });
  for (const name of ['fromKeyVersion', 'toKeyVersion'] as const) {
    const value = spec[name];
    if (!Number.isSafeInteger(value) || value < 1) throw invalid(`${name} must be an integer >= 1, got ${String(value)}.`);
  }
  const mode = spec.mode ?? 'reencrypt';
  if (!TASK_MODES.includes(mode)) throw invalid(`mode must be one of ${TASK_MODES.join(', ')}, got ${String(mode)}.`);
  return { ...spec, mode };
}

/** The `rotation` options, checked once (Engine.open calls this before it creates anything). */
export function validateRotationOptions(options: RotationOptions): RotationOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw invalid(`rotation must be an options object, got ${String(options)}.`);
  const positiveInt = (name: keyof RotationOptions, max: number): void => {
    const value = options[name];
    if (value === undefined) return;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
      throw invalid(`rotation.${name} must be an integer in 1..${max}, got ${String(value)}.`);
    }
  };
  positiveInt('workers', 256);
  positiveInt('tasksConcurrentMax', 64);
  positiveInt('rotationBatchSectorsMax', 1 << 20);
  positiveInt('inFlightBatchesMax', 4096);
  positiveInt('commitBatchesMax', 4096);
  positiveInt('commitsInFlightMax', 16);
  const nice = options.niceIncrement;
  if (nice !== undefined && (typeof nice !== 'number' || !Number.isInteger(nice) || nice < 0 || nice > 19)) {
    throw invalid(`rotation.niceIncrement must be an integer in 0..19, got ${String(nice)}.`);
  }
  const cap = options.bandwidthBytesPerSecond;
  if (cap !== undefined && cap !== null && (typeof cap !== 'number' || !Number.isFinite(cap) || cap <= 0)) {
    throw invalid(`rotation.bandwidthBytesPerSecond must be a number > 0 or null, got ${String(cap)}.`);
  }
  const interval = options.progressIntervalMs;
  if (interval !== undefined && (typeof interval !== 'number' || !Number.isFinite(interval) || interval < 0)) {
    throw invalid(`rotation.progressIntervalMs must be a number >= 0, got ${String(interval)}.`);
  }
  // Passed to ClusterOps.createCipher, which checks it (src/cipher knows 'native' and 'ts').
  if (options.backend !== undefined && (typeof options.backend !== 'string' || options.backend === '')) {
    throw invalid(`rotation.backend must be a cipher backend name such as 'native' or 'ts', got ${String(options.backend)}.`);
  }
  return { ...options };
}
