/**
 * The cryptoshredding stress harness (issue 6): writers and readers hammer several volumes on one
 * root key, optionally while rotations keep re-encrypting them, and at a seeded moment the key is
 * force-deleted. The report says what happened around the lock and checks what must never
 * happen: data returned after the lock, operations that hang, unhandled errors, plaintext (or
 * root-key material) in any file of the engine directory, and data readable after a restart.
 *
 * A library function so that the CLI (`blockvault stress shred`), the bench script
 * (bench/stress-shred.ts) and the test suite run the same code. Timing definitions: ledger.ts.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Engine, type HsmSecretOptions } from '../engine.js';
import { engineInternals } from '../engine-internals.js';
import { BlockvaultError } from '../errors.js';
import type { RootKeyInfo } from '../hsm/types.js';
import { isTerminalTaskState } from '../rotation/task-types.js';
import type { ShredLock } from '../volume/shred-lock.js';
import type { Volume } from '../volume/volume.js';
import { OpLedger, codeOf, type LedgerSummary, type LockTimeline, type OpKind, type UnexpectedError } from './ledger.js';
import { MARKER_BYTES, firstForeignChunk, markerPattern, runNeedle } from './markers.js';
import { Prng } from './prng.js';
import { scanForNeedles, type ScanHit } from './scan.js';
import { checkAfterRestart, type AfterRestartReport } from './verify-restart.js';
import { trackProcessErrors } from './process-errors.js';

export interface ShredStressOptions {
  /** Engine directory; created if missing. Default: a fresh temporary directory, removed afterwards. */
  dir?: string;
  /** Keep the temporary directory (ignored when `dir` is given: a given directory is always kept). */
  keepDir?: boolean;
  /** Unseals the engine's HSM. Default: a random passphrase (only right for a new directory). */
  hsm?: HsmSecretOptions;
  /** Volumes on the key, hammered by the writers and readers. Default 4. */
  volumes?: number;
  /** Concurrent writer loops. Default 8. */
  writers?: number;
  /** Concurrent reader loops. Default 8. */
  readers?: number;
  /** How long the load runs; the delete falls at a seeded moment between 30% and 60% of it. Default 10 s. */
  durationMs?: number;
  /** Size of each volume in bytes (a multiple of the sector size, at least 64 KiB). Default 16 MiB. */
  sizeBytes?: number;
  sectorSize?: 512 | 4096;
  /** Seed of every random choice (volumes, offsets, sizes, the delete moment). Default 1. */
  seed?: number;
  /** Keep rotations (re-encryption) running on the volumes until the delete. Default false. */
  rotate?: boolean;
  /** Cipher backend. Default: the engine's default. */
  cipher?: 'native' | 'ts';
  /** Rotation worker threads. Default: the engine's default (the core count). */
  rotationWorkers?: number;
  /** Largest write and read in bytes (multiple of 16). Default 128 KiB. */
  ioBytesMax?: number;
  /** An operation not settled after this long counts as a hang. Default 10 s. */
  opTimeoutMs?: number;
  /** Also open, use and close a volume in a loop, so that keys are unwrapped while the key dies. Default true. */
  churn?: boolean;
  /** Reopen the engine after the run and check that nothing is readable. Default true. */
  verifyRestart?: boolean;
  /** Progress lines (phases, the delete), for the CLI and the bench script. */
  log?: (line: string) => void;
}

export interface ShredStressReport {
  /** Every must-be-zero counter is zero, the audit event is there, and the rotations stopped. */
  ok: boolean;
  /** Names of must-be-zero counters that were not, and other failed checks. */
  violations: string[];
  seed: number;
  volumes: number;
  writers: number;
  readers: number;
  durationMs: number;
  sizeBytes: number;
  sectorSize: number;
  rotate: boolean;
  cipher: string;
  /** The engine directory, or null when it was a temporary one that has been removed. */
  dir: string | null;

  // Must be zero.
  readsReturningDataAfterLock: number;
  readsStartedAfterLockReturningData: number;
  writesAcknowledgedAfterLock: number;
  writesStartedAfterLockAcknowledged: number;
  readsCorrupt: number;
  unexpectedErrors: number;
  unhandledErrors: number;
  hangs: number;
  plaintextHits: number;
  keyMaterialHits: number;
  volumesNotLockedWhenDeleteReturned: number;
  dataReadableAfterRestart: number;

  // What happened.
  writesAcknowledgedBeforeLock: number;
  writesRejectedAfterLock: number;
  writesRejectedAfterLockByCode: Record<string, number>;
  readsReturnedDataBeforeLock: number;
  readsRejectedAfterLock: number;
  readsRejectedAfterLockByCode: Record<string, number>;
  /** Decided before the lock, seen by their caller after it took effect but before it was persisted (allowed; see ledger.ts). */
  opsResolvedInLockWindow: number;
  bytesWrittenBeforeLock: number;
  bytesReadBeforeLock: number;
  prefilledBytes: number;

  // Timing (milliseconds).
  /** When the delete was called, from the start of the load. */
  deleteAtMs: number;
  /** From the delete call until every volume was locked (keys wiped, I/O refused). */
  lockEffectiveMs: number;
  /** From the delete call until the engine's cryptoshred lock resolved: the lock persisted and the volumes' rotation tasks stopped. */
  lockPersistedMs: number;
  /** From the delete call until deleteKey returned (rotation tasks stopped by then). */
  deleteKeyMs: number;
  /** Whether the lock's moments were observed on the engine's cryptoshred lock; if not, the delete's return stands in. */
  lockObserved: boolean;

  rotation: {
    rotations: number;
    tasks: number;
    completedBeforeDelete: number;
    runningAtDelete: number;
    /** Tasks that ended failed with KEY_DESTROYED (or VOLUME_LOCKED) after the delete. */
    stoppedByShred: number;
    /** Tasks not in a final state when the run ended: must be zero. */
    notStopped: number;
    /** From the delete call until every task running at the delete had ended. */
    stopMs: number | null;
    errorCodes: Record<string, number>;
  };
  audit: { recorded: boolean; force: boolean; affectedVolumes: number; expectedVolumes: number };
  scan: { files: number; bytes: number; hits: number; examples: ScanHit[] };
  afterRestart: AfterRestartReport | null;
  unexpectedErrorExamples: UnexpectedError[];
  unhandledErrorExamples: string[];
}

interface Resolved {
  dir: string;
  ownDir: boolean;
  keepDir: boolean;
  hsm: HsmSecretOptions;
  volumes: number;
  writers: number;
  readers: number;
  durationMs: number;
  sizeBytes: number;
  sectorSize: 512 | 4096;
  seed: number;
  rotate: boolean;
  cipher: 'native' | 'ts' | undefined;
  rotationWorkers: number | undefined;
  ioBytesMax: number;
  opTimeoutMs: number;
  churn: boolean;
  verifyRestart: boolean;
  log: (line: string) => void;
}

const KIB = 1024;
const PREFILL_STEP_BYTES = 1024 * KIB;
const CLUSTER_BYTES = 32 * KIB; // the engine's default cluster size
const CLOSE_TIMEOUT_MS = 60_000;
/** What runOp returns for an operation that did not settle in time. */
const HUNG = Symbol('hung');

/** Run the harness once; see ShredStressOptions for the knobs and ShredStressReport for the findings. */
export async function runShredStress(options: ShredStressOptions = {}): Promise<ShredStressReport> {
  const o = resolveOptions(options);
  const errors = trackProcessErrors();
  try {
    return await runOnce(o, errors);
  } finally {
    errors.stop();
    if (o.ownDir && !o.keepDir) rmSync(o.dir, { recursive: true, force: true });
  }
}

async function runOnce(o: Resolved, processErrors: ReturnType<typeof trackProcessErrors>): Promise<ShredStressReport> {
  const ledger = new OpLedger();
  const needle = runNeedle(o.seed);
  const keyMaterials: Buffer[] = [];
  const runTag = `${o.seed}-${Date.now().toString(36)}`;
  const clusterSectors = Math.max(1, CLUSTER_BYTES / o.sectorSize);
  // A full re-encryption pass of a volume at this cap takes about the run's duration, so the
  // delete finds rotations under way (foreground writes shorten them; the rotator starts another).
  const capBytesPerSecond = Math.max(64 * KIB, Math.round(o.sizeBytes / Math.max(0.5, o.durationMs / 1000)));
  const engine = await Engine.open({
    dir: o.dir,
    hsm: o.hsm,
    purgeIntervalMs: 0,
    ...(o.cipher === undefined ? {} : { cipher: o.cipher }),
    rotation: {
      ...(o.rotationWorkers === undefined ? {} : { workers: o.rotationWorkers }),
      tasksConcurrentMax: Math.min(64, o.volumes),
      rotationBatchSectorsMax: 2 * clusterSectors,
      bandwidthBytesPerSecond: capBytesPerSecond,
      progressIntervalMs: 100,
    },
  });
  let engineOpen = true;
  const closeEngine = async (): Promise<boolean> => {
    if (!engineOpen) return true;
    engineOpen = false;
    const closed = await settleWithin(engine.close(), CLOSE_TIMEOUT_MS);
    if ('hung' in closed) ledger.hung();
    else if (!closed.ok) ledger.unexpected('write', codeOf(closed.error), `engine.close failed: ${(closed.error as Error).message}`, performance.now());
    return 'ok' in closed && closed.ok;
  };

  try {
    // ---------------------------------------------------------------------------------------
    // Setup: a BYOK root key (its material is a needle of the at-rest scan), volumes, prefill.
    o.log(`shred stress: seed ${o.seed}, ${o.volumes} volumes of ${o.sizeBytes} bytes, ${o.writers} writers, ${o.readers} readers, ${o.durationMs} ms${o.rotate ? ', rotating' : ''}`);
    const instance = await engine.hsm.createInstance({ name: `shred-${runTag}` });
    await engine.hsm.authorize({ sourceService: 'blockvault', targetInstance: instance.id, role: 'Reader' });
    const material = randomBytes(32);
    keyMaterials.push(Buffer.from(material));
    const key: RootKeyInfo = await engine.hsm.importRootKey(instance.id, { name: `shred-${runTag}`, material });
    material.fill(0);
    const create = (name: string) => engine.createVolume({ name, sizeBytes: o.sizeBytes, sectorSize: o.sectorSize, diskEncryptionKeyCrn: key.crn });
    const hot: Volume[] = [];
    for (let i = 0; i < o.volumes; i++) hot.push(await create(`shred-${runTag}-v${i}`));
    const soft = await create(`shred-${runTag}-deleted`);
    const churnVolume = o.churn ? await create(`shred-${runTag}-churn`) : null;
    let sequence = 0;
    let prefilledBytes = 0;
    for (const vol of [...hot, soft, ...(churnVolume ? [churnVolume] : [])]) {
      for (let at = 0; at < o.sizeBytes; at += PREFILL_STEP_BYTES) {
        const length = Math.min(PREFILL_STEP_BYTES, o.sizeBytes - at);
        await vol.write(at, markerPattern(o.seed, sequence++, length));
        prefilledBytes += length;
      }
    }
    // A soft-deleted volume stays registered against the key: the shred must lock it too.
    await engine.deleteVolume(soft.info().id);
    await churnVolume?.close();
    const allIds = [...hot.map((v) => v.info().id), soft.info().id, ...(churnVolume ? [churnVolume.info().id] : [])];
    const allCrns = new Set([...hot.map((v) => v.info().crn), soft.info().crn, ...(churnVolume ? [churnVolume.info().crn] : [])]);
    o.log(`shred stress: prefilled ${prefilledBytes} bytes`);

    // ---------------------------------------------------------------------------------------
    // Load: writers, readers, churn, rotator. Each op yields to the event loop once it settles,
    // so loops whose operations fail at once (after the lock) never starve timers.
    let stopping = false;
    const loadStartedAt = performance.now();
    const deleteAfterMs = Math.round(o.durationMs * Prng.derive(o.seed, 0).between(0.3, 0.6));
    /** Runs one operation and records it; returns its value (undefined if it failed), or HUNG. */
    const runOp = async <T>(kind: OpKind, op: () => Promise<T>, bytes: (value: T) => number, check?: (value: T) => void): Promise<T | undefined | typeof HUNG> => {
      const startedAt = performance.now();
      let outcome: Settled<T>;
      try {
        outcome = await settleWithin(op(), o.opTimeoutMs);
      } catch (error) {
        outcome = { ok: false, error };
      }
      const endedAt = performance.now();
      if ('hung' in outcome) {
        ledger.hung();
        return HUNG;
      }
      let value: T | undefined;
      if (outcome.ok) {
        ledger.succeeded(kind, startedAt, endedAt, bytes(outcome.value));
        check?.(outcome.value);
        value = outcome.value;
      } else {
        ledger.failed(kind, outcome.error, endedAt);
      }
      await yieldToEventLoop();
      return value;
    };
    const pickRange = (prng: Prng): { offset: number; length: number } => {
      const chunks = o.sizeBytes / MARKER_BYTES;
      const maxChunks = Math.min(chunks, (prng.next() < 0.8 ? 8 * KIB : o.ioBytesMax) / MARKER_BYTES);
      const lengthChunks = prng.int(1, maxChunks);
      return { offset: prng.int(0, chunks - lengthChunks) * MARKER_BYTES, length: lengthChunks * MARKER_BYTES };
    };
    const checkRead = (data: Uint8Array): void => {
      if (firstForeignChunk(data, needle) !== -1) ledger.corruptRead();
    };
    const writer = async (index: number): Promise<void> => {
      const prng = Prng.derive(o.seed, 1000 + index);
      while (!stopping) {
        const vol = hot[prng.int(0, hot.length - 1)]!;
        const { offset, length } = pickRange(prng);
        const data = markerPattern(o.seed, sequence++, length);
        if ((await runOp('write', () => vol.write(offset, data), () => length)) === HUNG) return;
      }
    };
    const reader = async (index: number): Promise<void> => {
      const prng = Prng.derive(o.seed, 2000 + index);
      while (!stopping) {
        const vol = hot[prng.int(0, hot.length - 1)]!;
        const { offset, length } = pickRange(prng);
        if ((await runOp('read', () => vol.read(offset, length), (d) => d.length, checkRead)) === HUNG) return;
      }
    };
    // Opening a closed volume unwraps its data key through the HSM (asynchronously): the delete
    // can land in the middle of it.
    const churn = async (): Promise<void> => {
      if (churnVolume === null) return;
      const prng = Prng.derive(o.seed, 3000);
      const id = churnVolume.info().id;
      while (!stopping) {
        const handle = await runOp('open', () => engine.openVolume(id), () => 0);
        if (handle === HUNG) return;
        if (handle === undefined) continue;
        const { offset, length } = pickRange(prng);
        const read = await runOp('read', () => handle.read(offset, length), (d) => d.length, checkRead);
        const data = markerPattern(o.seed, sequence++, length);
        const wrote = read === HUNG ? HUNG : await runOp('write', () => handle.write(offset, data), () => length);
        const closed = await settleWithin(handle.close(), o.opTimeoutMs);
        if ('hung' in closed) ledger.hung();
        else if (!closed.ok) ledger.failed('write', closed.error, performance.now());
        if (read === HUNG || wrote === HUNG || 'hung' in closed) return;
      }
    };

    const taskIds: string[] = [];
    let rotations = 0;
    const rotator = async (): Promise<void> => {
      if (!o.rotate) return;
      while (!stopping && !ledger.deleteCalled) {
        const newMaterial = randomBytes(32);
        keyMaterials.push(Buffer.from(newMaterial));
        let tasks;
        try {
          tasks = await engine.hsm.rotateKey(key.crn, { material: newMaterial });
        } catch (error) {
          // Racing the delete, the rotation is refused: expected. Before it, anything is a bug.
          if (!ledger.deleteCalled || !['KEY_DESTROYED', 'KEY_STATE'].includes(codeOf(error))) ledger.failed('write', error, performance.now());
          return;
        } finally {
          newMaterial.fill(0);
        }
        rotations++;
        if (tasks.length === 0) return;
        taskIds.push(...tasks.map((t) => t.id));
        // Failures show in the task records, checked after the run.
        await Promise.all(tasks.map((t) => engine.tasks.wait(t.id).catch(() => undefined)));
      }
    };

    const loops = [
      ...Array.from({ length: o.writers }, (_, i) => writer(i)),
      ...Array.from({ length: o.readers }, (_, i) => reader(i)),
      churn(),
    ];
    const rotating = rotator();

    // ---------------------------------------------------------------------------------------
    // The delete, at the seeded moment.
    await sleep(Math.max(0, loadStartedAt + deleteAfterMs - performance.now()));
    const tasksAtDelete = taskIds.map((id) => engine.tasks.get(id));
    const runningAtDelete = tasksAtDelete.filter((t) => t.state === 'running' || t.state === 'queued').map((t) => t.id);
    const lockMoments = observeLock(engine, key.crn);
    // Logged before the clock starts: writing the line is not part of the delete.
    o.log(`shred stress: force-deleting the key at ${Math.round(performance.now() - loadStartedAt)} ms (${runningAtDelete.length} rotation tasks running)`);
    const deleteCalledAt = performance.now();
    ledger.markDeleteCalled(deleteCalledAt);
    let deleteReturnedAt: number;
    let volumesNotLocked = 0;
    try {
      await engine.hsm.deleteKey(key.crn, { force: true, initiator: 'shred-stress' });
    } finally {
      deleteReturnedAt = performance.now();
      // Synchronously at the return: every volume of the key is locked, soft-deleted ones included.
      const infos = engine.listVolumes().filter((v) => allIds.includes(v.id));
      volumesNotLocked = allIds.length - infos.filter((v) => v.state === 'locked').length;
      lockMoments.stop();
    }
    const moments = lockMoments.moments();
    const timeline: LockTimeline = {
      deleteCalledAt,
      lockEffectiveAt: moments?.effectiveAt ?? deleteReturnedAt,
      lockSettledAt: moments?.settledAt ?? deleteReturnedAt,
      lockDoneAt: moments?.doneAt ?? deleteReturnedAt,
      deleteReturnedAt,
    };
    const stillRunning = runningAtDelete.filter((id) => !isTerminalTaskState(engine.tasks.get(id).state));
    const rotationStopMs = stillRunning.length === 0 ? deleteReturnedAt - deleteCalledAt : null;

    // Keep the load on after the lock: everything from here must be refused.
    await sleep(Math.max(Math.min(250, o.durationMs / 4), loadStartedAt + o.durationMs - performance.now()));
    stopping = true;
    const loopsDone = await settleWithin(Promise.all([...loops, rotating]), o.opTimeoutMs + 1000);
    if ('hung' in loopsDone) ledger.hung();
    o.log(`shred stress: load stopped; every volume locked ${round(timeline.lockEffectiveAt - deleteCalledAt)} ms after the delete call`);

    // ---------------------------------------------------------------------------------------
    // Checks while open: rotation tasks, the audit event.
    const rotation = summarizeTasks(engine, taskIds, new Set(runningAtDelete), rotations, rotationStopMs);
    const audit = auditOf(engine, key.crn, allCrns);
    const summary = ledger.summarize(timeline);

    // Closed, everything is in its files: scan them, then reopen and try to read.
    const closed = await closeEngine();
    const scanPlain = closed ? scanForNeedles(o.dir, [needle]) : { files: 0, bytes: 0, hits: -1, examples: [] };
    const scanKeys = closed ? scanForNeedles(o.dir, keyMaterials) : { files: 0, bytes: 0, hits: -1, examples: [] };
    for (const m of keyMaterials) m.fill(0);
    o.log(`shred stress: scanned ${scanPlain.files} files (${scanPlain.bytes} bytes): ${scanPlain.hits} plaintext hits, ${scanKeys.hits} key-material hits`);
    const afterRestart = closed && o.verifyRestart ? await checkAfterRestart({ dir: o.dir, hsm: o.hsm, cipher: o.cipher, keyCrn: key.crn, volumeIds: allIds, softDeletedId: soft.info().id }) : null;

    return buildReport(o, {
      summary,
      timeline,
      loadStartedAt,
      lockObserved: moments !== null,
      volumesNotLocked,
      prefilledBytes,
      rotation,
      audit,
      scan: { files: scanPlain.files, bytes: scanPlain.bytes, hits: scanPlain.hits, examples: scanPlain.examples },
      keyMaterialHits: scanKeys.hits,
      afterRestart,
      unhandled: processErrors.list(),
    });
  } finally {
    await closeEngine();
  }
}

// -------------------------------------------------------------------------------------------
// Pieces.

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown } | { hung: true };

/** The promise's outcome, or `hung` if it has not settled after `timeoutMs`. */
async function settleWithin<T>(promise: Promise<T>, timeoutMs: number): Promise<Settled<T>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Settled<T>>((resolve) => {
    timer = setTimeout(() => resolve({ hung: true }), timeoutMs);
  });
  try {
    return await Promise.race([promise.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * The moments the engine's lock took effect and was persisted, observed on the engine's own
 * cryptoshred lock for the duration of the delete: `lockNow` is the synchronous half that deleteKey
 * calls before any durable work (the moment I/O stops), `lockForKey` the durable half the HSM's
 * onDestroyed hook calls once the key material is gone.
 */
function observeLock(engine: Engine, keyCrn: string): { moments(): { effectiveAt: number; settledAt: number; doneAt: number } | null; stop(): void } {
  const lock = engineInternals(engine).shredLock;
  const originalNow = lock.lockNow;
  const originalForKey = lock.lockForKey;
  let effectiveAt: number | null = null;
  let settledAt: number | null = null;
  let doneAt: number | null = null;
  const observedNow: ShredLock['lockNow'] = function (this: ShredLock, crn, ...rest) {
    const locked = originalNow.call(this, crn, ...rest);
    if (crn === keyCrn && effectiveAt === null) {
      effectiveAt = performance.now(); // the synchronous part (records marked, keys wiped) has run
      // The next macrotask: every microtask queued so far (callers seeing earlier decisions) has run.
      setImmediate(() => {
        settledAt = performance.now();
      });
    }
    return locked;
  };
  const observedForKey: ShredLock['lockForKey'] = function (this: ShredLock, crn, ...rest) {
    const promise = originalForKey.call(this, crn, ...rest);
    if (crn !== keyCrn || doneAt !== null) return promise;
    return promise.then((locked) => {
      doneAt ??= performance.now(); // the first durable lock, not a later caller's
      return locked;
    });
  };
  lock.lockNow = observedNow;
  lock.lockForKey = observedForKey;
  return {
    moments: () => (effectiveAt !== null && settledAt !== null && doneAt !== null ? { effectiveAt, settledAt, doneAt } : null),
    stop: () => {
      if (lock.lockNow === observedNow) delete (lock as { lockNow?: unknown }).lockNow;
      if (lock.lockForKey === observedForKey) delete (lock as { lockForKey?: unknown }).lockForKey;
    },
  };
}

function summarizeTasks(engine: Engine, taskIds: string[], runningAtDelete: Set<string>, rotations: number, stopMs: number | null): ShredStressReport['rotation'] {
  const errorCodes: Record<string, number> = {};
  let completedBeforeDelete = 0;
  let stoppedByShred = 0;
  let notStopped = 0;
  for (const id of taskIds) {
    const task = engine.tasks.get(id);
    if (task.error) errorCodes[task.error.code] = (errorCodes[task.error.code] ?? 0) + 1;
    if (!isTerminalTaskState(task.state)) notStopped++;
    else if (task.state === 'completed' && !runningAtDelete.has(id)) completedBeforeDelete++;
    else if (task.state === 'failed' && (task.error?.code === 'KEY_DESTROYED' || task.error?.code === 'VOLUME_LOCKED')) stoppedByShred++;
  }
  return { rotations, tasks: taskIds.length, completedBeforeDelete, runningAtDelete: runningAtDelete.size, stoppedByShred, notStopped, stopMs, errorCodes };
}

function auditOf(engine: Engine, keyCrn: string, volumeCrns: Set<string>): ShredStressReport['audit'] {
  const events = engine.events.list({ action: 'hs-crypto.secrets.delete', keyCrn, outcome: 'success' });
  const event = events.at(-1);
  const affected = Array.isArray(event?.details.affectedResources) ? (event.details.affectedResources as unknown[]).filter((c): c is string => typeof c === 'string') : [];
  const covered = [...volumeCrns].filter((crn) => affected.includes(crn)).length;
  return {
    recorded: event !== undefined && event.details.force === true && covered === volumeCrns.size,
    force: event?.details.force === true,
    affectedVolumes: covered,
    expectedVolumes: volumeCrns.size,
  };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

function sumOf(counts: Record<string, number>): number {
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

export const MUST_BE_ZERO = [
  'readsReturningDataAfterLock',
  'readsStartedAfterLockReturningData',
  'writesAcknowledgedAfterLock',
  'writesStartedAfterLockAcknowledged',
  'readsCorrupt',
  'unexpectedErrors',
  'unhandledErrors',
  'hangs',
  'plaintextHits',
  'keyMaterialHits',
  'volumesNotLockedWhenDeleteReturned',
  'dataReadableAfterRestart',
] as const satisfies readonly (keyof ShredStressReport)[];

function buildReport(
  o: Resolved,
  r: {
    summary: LedgerSummary;
    timeline: LockTimeline;
    loadStartedAt: number;
    lockObserved: boolean;
    volumesNotLocked: number;
    prefilledBytes: number;
    rotation: ShredStressReport['rotation'];
    audit: ShredStressReport['audit'];
    scan: ShredStressReport['scan'];
    keyMaterialHits: number;
    afterRestart: AfterRestartReport | null;
    unhandled: string[];
  },
): ShredStressReport {
  const s = r.summary;
  const t = r.timeline;
  const report: ShredStressReport = {
    ok: false,
    violations: [],
    seed: o.seed,
    volumes: o.volumes,
    writers: o.writers,
    readers: o.readers,
    durationMs: o.durationMs,
    sizeBytes: o.sizeBytes,
    sectorSize: o.sectorSize,
    rotate: o.rotate,
    cipher: o.cipher ?? 'default',
    dir: o.ownDir && !o.keepDir ? null : o.dir,
    readsReturningDataAfterLock: s.readsReturningDataAfterLock,
    readsStartedAfterLockReturningData: s.readsStartedAfterLockReturningData,
    writesAcknowledgedAfterLock: s.writesAcknowledgedAfterLock,
    writesStartedAfterLockAcknowledged: s.writesStartedAfterLockAcknowledged,
    readsCorrupt: s.readsCorrupt,
    unexpectedErrors: s.unexpectedErrors,
    unhandledErrors: r.unhandled.length,
    hangs: s.hangs,
    plaintextHits: r.scan.hits < 0 ? 1 : r.scan.hits,
    keyMaterialHits: r.keyMaterialHits < 0 ? 1 : r.keyMaterialHits,
    volumesNotLockedWhenDeleteReturned: r.volumesNotLocked,
    dataReadableAfterRestart: r.afterRestart?.dataReadable ?? 0,
    writesAcknowledgedBeforeLock: s.writesAcknowledgedBeforeLock,
    writesRejectedAfterLock: sumOf(s.writesRejectedAfterLock),
    writesRejectedAfterLockByCode: s.writesRejectedAfterLock,
    readsReturnedDataBeforeLock: s.readsReturnedDataBeforeLock,
    readsRejectedAfterLock: sumOf(s.readsRejectedAfterLock),
    readsRejectedAfterLockByCode: s.readsRejectedAfterLock,
    opsResolvedInLockWindow: s.opsResolvedInLockWindow,
    bytesWrittenBeforeLock: s.bytesWrittenBeforeLock,
    bytesReadBeforeLock: s.bytesReadBeforeLock,
    prefilledBytes: r.prefilledBytes,
    deleteAtMs: round(t.deleteCalledAt - r.loadStartedAt),
    lockEffectiveMs: round(t.lockEffectiveAt - t.deleteCalledAt),
    lockPersistedMs: round(t.lockDoneAt - t.deleteCalledAt),
    deleteKeyMs: round(t.deleteReturnedAt - t.deleteCalledAt),
    lockObserved: r.lockObserved,
    rotation: { ...r.rotation, stopMs: r.rotation.stopMs === null ? null : round(r.rotation.stopMs) },
    audit: r.audit,
    scan: r.scan,
    afterRestart: r.afterRestart,
    unexpectedErrorExamples: s.unexpectedErrorExamples,
    unhandledErrorExamples: r.unhandled.slice(0, 10),
  };
  const violations: string[] = MUST_BE_ZERO.filter((name) => report[name] !== 0);
  if (!report.audit.recorded) violations.push('auditNotRecorded');
  if (report.rotation.notStopped > 0) violations.push('rotationNotStopped');
  if (r.afterRestart !== null && !r.afterRestart.metadataReadable) violations.push('metadataNotReadableAfterRestart');
  if (r.afterRestart !== null && r.afterRestart.volumesLocked !== r.afterRestart.volumes) violations.push('volumesNotLockedAfterRestart');
  report.violations = violations;
  report.ok = violations.length === 0;
  return report;
}

// -------------------------------------------------------------------------------------------
// Options.

function resolveOptions(options: ShredStressOptions): Resolved {
  if (typeof options !== 'object' || options === null) throw invalid('runShredStress(options) takes an options object');
  const int = (name: keyof ShredStressOptions, fallback: number, min: number, max: number): number => {
    const value = options[name] ?? fallback;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
      throw invalid(`runShredStress: ${name} must be a whole number from ${min} to ${max}, got ${String(options[name])}`);
    }
    return value;
  };
  const sectorSize = options.sectorSize ?? 4096;
  if (sectorSize !== 512 && sectorSize !== 4096) throw invalid(`runShredStress: sectorSize must be 512 or 4096, got ${String(sectorSize)}`);
  const sizeBytes = int('sizeBytes', 16 * 1024 * KIB, 64 * KIB, 2 ** 40);
  if (sizeBytes % sectorSize !== 0) throw invalid(`runShredStress: sizeBytes must be a multiple of the sector size (${sectorSize}), got ${sizeBytes}`);
  const ioBytesMax = int('ioBytesMax', 128 * KIB, MARKER_BYTES, 16 * 1024 * KIB);
  if (ioBytesMax % MARKER_BYTES !== 0) throw invalid(`runShredStress: ioBytesMax must be a multiple of ${MARKER_BYTES}, got ${ioBytesMax}`);
  if (options.cipher !== undefined && options.cipher !== 'native' && options.cipher !== 'ts') throw invalid(`runShredStress: cipher must be 'native' or 'ts', got ${String(options.cipher)}`);
  if (options.log !== undefined && typeof options.log !== 'function') throw invalid('runShredStress: log must be a function');
  // Every option is checked before the directory is made: a refused option leaves nothing behind.
  const resolved = {
    keepDir: options.keepDir === true,
    hsm: options.hsm ?? { passphrase: randomBytes(24).toString('base64url') },
    volumes: int('volumes', 4, 1, 256),
    writers: int('writers', 8, 0, 1024),
    readers: int('readers', 8, 0, 1024),
    durationMs: int('durationMs', 10_000, 200, 7 * 24 * 3600 * 1000),
    sizeBytes,
    sectorSize,
    seed: int('seed', 1, 0, 0xffff_ffff),
    rotate: options.rotate === true,
    cipher: options.cipher,
    rotationWorkers: options.rotationWorkers === undefined ? undefined : int('rotationWorkers', 1, 1, 256),
    ioBytesMax,
    opTimeoutMs: int('opTimeoutMs', 10_000, 100, 3_600_000),
    churn: options.churn !== false,
    verifyRestart: options.verifyRestart !== false,
    log: options.log ?? (() => undefined),
  };
  let dir = options.dir;
  let ownDir = false;
  if (dir === undefined) {
    dir = mkdtempSync(join(tmpdir(), 'blockvault-shred-'));
    ownDir = true;
  } else {
    if (typeof dir !== 'string' || dir.length === 0) throw invalid('runShredStress: dir must be a non-empty path');
    mkdirSync(dir, { recursive: true });
  }
  return { ...resolved, dir, ownDir };
}

function invalid(message: string): BlockvaultError {
  return new BlockvaultError('INVALID_ARGUMENT', message);
}
