/**
 * Engine: one directory, one LMDB environment, the HSM, the audit log and the volumes
 * (DESIGN.md, "The picture"). The public entry point of blockvault.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { AuditLog } from './audit/index.js';
import { XtsCipher } from './cipher/index.js';
import { MS_PER_DAY, MS_PER_HOUR, systemClock, type Clock } from './clock.js';
import { formatCrn, parseCrn } from './crn.js';
import { BlockvaultError, assert, isBlockvaultError } from './errors.js';
import { SoftHsm } from './hsm/index.js';
import { KeyState, type CallerContext, type RootKeyInfo, type RotationSchedulerResult } from './hsm/types.js';
import { TaskManager, type RotationOptions, type TaskRecord } from './rotation/index.js';
import { CLUSTER_SECTORS_MAX, type SectorSize } from './volume/cluster-format.js';
import { META_CACHE_CLUSTERS_LIMIT, META_CACHE_CLUSTERS_MAX, purgeBatch, type VolumeLayout } from './volume/cluster-store.js';
import { assertDataKey, generateDataKey } from './volume/data-key.js';
import { VolumeReencryptTarget, type GenerationKeeper } from './volume/reencrypt-target.js';
import {
  VOLUME_RECORD_VERSION,
  infoOf,
  stateOf,
  withChanges,
  writeGenerationOf,
  type DataKeyGeneration,
  type VolumeInfo,
  type VolumeRecord,
} from './volume/record.js';
import { Volume, type VolumeHost } from './volume/volume.js';
import { VolumeCore, type VolumeCoreDeps } from './volume/volume-core.js';
import { WriteBudget } from './volume/write-budget.js';
import { lockDir, type DirLock } from './util/dir-lock.js';

/** The service name blockvault presents to the HSM: it needs a Reader authorization on the key's instance. */
export const STORAGE_SERVICE = 'blockvault';

export const DEFAULT_RETENTION_MS = 9 * MS_PER_DAY;
export const DEFAULT_PURGE_INTERVAL_MS = MS_PER_HOUR;
/** 32 KiB of sectors per LMDB value: 9 pages of 4 KiB, 1.125x on disk (bench/results/volume.md). */
export const DEFAULT_CLUSTER_BYTES = 32 * 1024;
export const DEFAULT_WRITE_BUFFER_BYTES_MAX = 64 * 1024 * 1024;
/** Address space reserved for the memory map, not disk: LMDB grows the file as pages are used. */
export const DEFAULT_MAP_SIZE_BYTES = 256 * 1024 ** 3;
/** mapSizeBytes bounds: LMDB needs room for the engine's own databases; above 2^47 bytes (128 TiB) no x86-64 or arm64 process has the address space to map it. */
const MAP_SIZE_BYTES_MIN = 1024 ** 2;
const MAP_SIZE_BYTES_MAX = 2 ** 47;
const WRITE_STEP_BYTES_MAX = 4 * 1024 * 1024;
const TRIM_STEP_CLUSTERS_MAX = 1024;
const PURGE_BATCH_KEYS = 4096;
const VOLUME_NAME_LENGTH_MAX = 128;
const LMDB_FILE = 'engine.lmdb';
/** Held while an engine has the directory open (src/util/dir-lock.ts). */
export const ENGINE_LOCK_FILE = 'engine.lock';

export type HsmSecretOptions = { passphrase: string; keyFile?: undefined } | { keyFile: string; passphrase?: undefined };

export interface EngineOptions {
  /** The engine's directory; created if new. */
  dir: string;
  /** Unseals the HSM keystore: an operator passphrase (scrypt) or a 32-byte key file. */
  hsm: HsmSecretOptions;
  /** Time source (retention, audit, key dates); ManualClock in tests. */
  clock?: Clock;
  /** How long a deleted volume stays restorable before its data is purged. Default 9 days. */
  retentionMs?: number;
  /** Cipher backend; default native when the addon loads, else the pure-TS fallback. */
  cipher?: 'native' | 'ts';
  /** How often expired volumes are purged in the background; 0 disables the timer (purgeExpired() still works, and runs on open). Default 1 hour. */
  purgeIntervalMs?: number;
  /**
   * Sector bytes per cluster for new volumes (a power of two; at least one sector, at most 64).
   * Default 32 KiB. Existing volumes keep theirs.
   */
  clusterBytes?: number;
  /**
   * How new volumes with 4096-byte sectors store their clusters: 'split' (default; one 4072-byte
   * body per sector plus a small meta value per cluster: about 1.02x on disk and random 4 KiB
   * writes near raw LMDB speed) or 'compact' (one LMDB value per cluster). 512-byte sectors are
   * always compact. See bench/results/volume.md.
   */
  volumeLayout?: VolumeLayout;
  /** Most bytes handed to LMDB and not yet committed, across all volumes (backpressure bound). Default 64 MiB. */
  writeBufferBytesMax?: number;
  /**
   * Clusters whose decoded meta value each open split-layout volume keeps in memory (about 0.5 KiB
   * each). A random read whose cluster is cached does one LMDB get instead of two, about 1.3x
   * faster (bench/results/volume.md, "meta cache cold"). Default 16384: 512 MiB of 4096-byte
   * sectors per volume, about 8 MiB. Size it to the part of a volume that is read at random;
   * 0 turns the cache off.
   */
  metaCacheClustersMax?: number;
  /** LMDB map size (virtual address space). Default 256 GiB. */
  mapSizeBytes?: number;
  /**
   * Online re-encryption ("Syncing KMS state" tasks): worker count (default: the core count),
   * batch and in-flight bounds, a bandwidth cap. See src/rotation/task-manager.ts.
   */
  rotation?: RotationOptions;
  /** How long open waits for another process that has the directory open; then ENGINE_BUSY. Default 0. */
  lockWaitMs?: number;
}

export interface CreateVolumeOptions {
  name: string;
  sizeBytes: number;
  sectorSize?: SectorSize;
  /** Full CRN of a root key in the HSM; without it the volume gets a platform-managed root key. */
  diskEncryptionKeyCrn?: string;
}

/**
 * engine.hsm is the SoftHsm itself; only rotateKey's result is narrowed: through the engine's
 * hook it returns the "Syncing KMS state" tasks it started (the HSM knows nothing of tasks).
 */
export type EngineHsm = Omit<SoftHsm, 'rotateKey'> & {
  rotateKey(crn: string, options?: Parameters<SoftHsm['rotateKey']>[1]): Promise<TaskRecord[]>;
};

interface ResolvedOptions {
  dir: string;
  clock: Clock;
  retentionMs: number;
  purgeIntervalMs: number;
  clusterBytes: number;
  volumeLayout: VolumeLayout;
  writeBufferBytesMax: number;
  metaCacheClustersMax: number;
  mapSizeBytes: number;
}

export class Engine {
  /** The HSM: instances, root keys, authorizations, registrations. rotateKey returns the tasks it started. */
  readonly hsm: EngineHsm;
  /** The audit log (hash-chained activity events). */
  readonly events: AuditLog;
  readonly cipher: XtsCipher;
  /** "Syncing KMS state" tasks: list, get, wait, cancel, and 'progress' events. */
  readonly tasks: TaskManager;

  readonly #root: RootDatabase;
  readonly #volumes: Database<VolumeRecord, string>;
  readonly #clusters: Database<Buffer, Buffer>;
  readonly #sectors: Database<Buffer, Buffer>;
  readonly #meta: Database<unknown, string>;
  readonly #options: ResolvedOptions;
  readonly #engineId: string;
  readonly #records = new Map<string, VolumeRecord>();
  readonly #cores = new Map<string, VolumeCore>();
  readonly #opening = new Map<string, Promise<VolumeCore>>();
  readonly #reservedNames = new Set<string>();
  readonly #coreDeps: VolumeCoreDeps;
  readonly #host: VolumeHost;
  readonly #keeper: GenerationKeeper;
  #purgeTimer: NodeJS.Timeout | null = null;
  #purgeRun: Promise<string[]> | null = null;
  #closed = false;
  readonly #dirLock: DirLock;
  #closing: Promise<void> | null = null;

  private constructor(args: {
    root: RootDatabase;
    hsm: SoftHsm;
    events: AuditLog;
    cipher: XtsCipher;
    options: ResolvedOptions;
    /** The engine-meta database (open reads the engine id from it). */
    meta: Database<unknown, string>;
    engineId: string;
    rotation: RotationOptions | undefined;
    dirLock: DirLock;
  }) {
    this.#dirLock = args.dirLock;
    this.#root = args.root;
    // Sound because the engine installs the onRotated hook, whose result rotateKey returns.
    this.hsm = args.hsm as unknown as EngineHsm;
    this.events = args.events;
    this.cipher = args.cipher;
    this.#options = args.options;
    this.#engineId = args.engineId;
    this.#volumes = args.root.openDB<VolumeRecord, string>('volumes', { encoding: 'msgpack' });
    this.#clusters = openBinaryDb(args.root, 'clusters');
    this.#sectors = openBinaryDb(args.root, 'sectors');
    this.#meta = args.meta;
    const budget = new WriteBudget(args.options.writeBufferBytesMax);
    this.#coreDeps = {
      root: args.root,
      clusters: this.#clusters,
      sectors: this.#sectors,
      budget,
      cipher: args.cipher,
      writeStepBytesMax: WRITE_STEP_BYTES_MAX,
      trimStepClustersMax: TRIM_STEP_CLUSTERS_MAX,
      metaCacheClustersMax: args.options.metaCacheClustersMax,
    };
    this.#host = {
      infoOf: (id) => this.#infoOrLast(id),
      engineError: () => (this.#closed ? this.#closedError() : null),
      release: (core) => this.#release(core),
    };
    this.tasks = new TaskManager({
      root: args.root,
      clock: args.options.clock,
      ...(args.rotation === undefined ? {} : { rotation: args.rotation }),
      // The volume shows 'syncing' while its task runs, and the target holds its keys loaded.
      openTarget: async (task) => {
        await this.setSyncTask(task.volumeId, task.id);
        return this.reencryptTarget(task.volumeId);
      },
      closeTarget: async (task, target) => {
        await (target as VolumeReencryptTarget).close();
        // A paused task (engine closing) stays 'running' and resumes on the next open: keep the mark.
        if (task.state !== 'running' && task.state !== 'queued' && !this.#closed && this.#records.has(task.volumeId)) {
          await this.setSyncTask(task.volumeId, null);
        }
      },
      onEvent: async (action, details) => {
        const record = this.#records.get(String(details.volumeId));
        await this.events.append({
          action,
          initiator: STORAGE_SERVICE,
          keyCrn: typeof details.keyCrn === 'string' ? details.keyCrn : null,
          resourceCrn: record?.crn ?? null,
          outcome: action.endsWith('.fail') ? 'failure' : 'success',
          details,
        });
      },
    });
    this.#keeper = {
      addGeneration: (core) => this.#addGeneration(core),
      rewrapAll: (core) => this.#rewrapAll(core),
      retireGenerations: (core, generation) => this.#retireGenerations(core, generation),
      release: (core) => this.#release(core),
    };
  }

  /** Open (or create) the engine in `options.dir`; completes interrupted purges and purges expired volumes. */
  static async open(options: EngineOptions): Promise<Engine> {
    const resolved = resolveOptions(options);
    const cipher = XtsCipher.create(options.cipher === undefined ? {} : { backend: options.cipher });
    mkdirSync(resolved.dir, { recursive: true });
    const dirLock = await lockDir(resolved.dir, {
      fileName: ENGINE_LOCK_FILE,
      waitMs: options.lockWaitMs ?? 0,
      busyError: (owner) =>
        new BlockvaultError(
          'ENGINE_BUSY',
          `${resolved.dir} is open in ${owner === process.pid ? 'another engine of this process' : `process ${owner ?? '?'}`}; ` +
            'an engine directory serves one engine at a time. Close that engine first (or pass lockWaitMs to wait for it)',
          { ownerPid: owner },
        ),
    });
    // Durability, chosen deliberately:
    //  - noSync stays off: every LMDB commit is fsynced. Nothing acknowledged is ever left to the
    //    OS's whim.
    //  - overlappingSync (lmdb-js's default off Windows) fsyncs each commit just after the write
    //    lock is released, overlapping the next transaction. A write's promise resolves once its
    //    transaction has committed: it survives a crash of the process (the pages are in the OS
    //    page cache and LMDB opens the last committed transaction while the boot id is
    //    unchanged); `flush()` additionally waits for the fsync (`root.flushed`), so flushed data
    //    also survives power loss. That is a disk's contract (write, then flush for a barrier) at
    //    a fraction of the cost of one fsync per acknowledged write.
    //  - one environment for volumes, clusters, HSM keystore, audit log and tasks, so a volume
    //    record and its key registration move in commit order.
    let root: RootDatabase;
    try {
      root = open({
        path: join(resolved.dir, LMDB_FILE),
        maxDbs: 32,
        mapSize: resolved.mapSizeBytes,
        pageSize: 4096,
        overlappingSync: process.platform !== 'win32',
        noSync: false,
        compression: false,
        encoding: 'msgpack',
      });
    } catch (error) {
      dirLock.release();
      throw error;
    }
    let hsm: SoftHsm | null = null;
    let engineRef: Engine | null = null;
    try {
      const meta = root.openDB<unknown, string>('engine-meta', { encoding: 'msgpack' });
      let engineId = meta.get('engineId');
      if (typeof engineId !== 'string') {
        engineId = randomUUID();
        await meta.put('engineId', engineId);
        await meta.put('nextStoreId', 1);
      }
      const events = await AuditLog.open({ root, clock: resolved.clock });
      hsm = await SoftHsm.open({
        root,
        dir: resolved.dir,
        ...(options.hsm.passphrase !== undefined ? { passphrase: options.hsm.passphrase } : { keyFile: options.hsm.keyFile }),
        clock: resolved.clock,
        audit: events,
        hooks: {
          // Cryptoshred: lock every affected volume at once (their keys leave memory now).
          onDestroyed: async (key: RootKeyInfo, affected: string[]) => {
            if (engineRef === null) return; // at HSM open: #load() locks volumes of destroyed keys
            // Locks the volumes, wipes their keys and tells their rotation tasks to stop, all in
            // this turn (see there); deleteKey returns once the lock is persisted and every task
            // on the key has ended (whichever path locked first: an open may have found the key gone).
            const reason = new BlockvaultError('KEY_DESTROYED', `root key ${key.crn} was destroyed (cryptoshredded); its volumes are locked`, { keyCrn: key.crn });
            await Promise.all([engineRef.lockVolumesForKey(key.crn, affected), engineRef.tasks.abortTasks({ keyCrn: key.crn }, reason)]);
          },
          onRotated: async (key: RootKeyInfo, rotateOptions: { rewrapOnly: boolean }) => (engineRef === null ? [] : engineRef.#startRotationTasks(key, rotateOptions)),
        },
      });
      const engine = new Engine({ root, hsm, events, cipher, options: resolved, meta, engineId: engineId as string, rotation: options.rotation, dirLock });
      engineRef = engine;
      await engine.#load();
      // Tasks that were queued or running when the process stopped continue from their checkpoint.
      await engine.tasks.resumeAll();
      engine.#startPurgeTimer();
      return engine;
    } catch (error) {
      await hsm?.close();
      await root.close();
      dirLock.release();
      throw error;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Volumes.

  /**
   * Provision a volume: a fresh 512-bit XTS data key wrapped by the root key (or a new
   * platform-managed one), a registration of the volume against the key, and the record. The
   * storage service must hold a Reader authorization on the key's instance (NOT_AUTHORIZED
   * otherwise, and nothing is left behind).
   */
  async createVolume(options: CreateVolumeOptions): Promise<Volume> {
    this.#checkOpen();
    if (typeof options !== 'object' || options === null) throw invalid('createVolume({ name, sizeBytes, sectorSize?, diskEncryptionKeyCrn? }) takes an options object');
    const name = checkVolumeName(options.name);
    const sectorSize = options.sectorSize ?? 4096;
    if (sectorSize !== 512 && sectorSize !== 4096) throw invalid(`sectorSize must be 512 or 4096, got ${String(sectorSize)}`);
    const sizeBytes = options.sizeBytes;
    if (typeof sizeBytes !== 'number' || !Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % sectorSize !== 0) {
      throw invalid(`sizeBytes must be a positive whole number of ${sectorSize}-byte sectors, got ${String(sizeBytes)}`);
    }
    const keyCrnGiven = options.diskEncryptionKeyCrn;
    if (keyCrnGiven !== undefined) parseCrn(keyCrnGiven, 'key'); // INVALID_CRN for a bare id or a malformed CRN
    this.#checkNameFree(name);
    this.#reservedNames.add(name);
    try {
      let key: RootKeyInfo;
      if (keyCrnGiven !== undefined) {
        key = await this.hsm.getKey(keyCrnGiven);
        checkKeyUsableForNewVolume(key);
      } else {
        key = await this.hsm.createPlatformKey();
      }
      const id = randomUUID();
      const crn = this.#volumeCrn(key.crn, id);
      const dataKey = generateDataKey();
      let registered = false;
      try {
        const wrap = await this.hsm.wrap(key.crn, dataKey, this.#caller());
        await this.hsm.createRegistration({ keyCrn: key.crn, resourceCrn: crn, keyVersion: wrap.keyVersion }, this.#caller());
        registered = true;
        const now = this.#options.clock.nowMs();
        const record: VolumeRecord = {
          recordVersion: VOLUME_RECORD_VERSION,
          id,
          storeId: await this.#allocateStoreId(),
          name,
          crn,
          sizeBytes,
          sectorSize,
          clusterSectors: Math.min(CLUSTER_SECTORS_MAX, Math.max(1, this.#options.clusterBytes / sectorSize)),
          layout: sectorSize === 4096 ? this.#options.volumeLayout : 'compact',
          diskEncryptionKeyCrn: key.crn,
          platformManaged: keyCrnGiven === undefined,
          generations: [{ generation: 1, keyVersion: wrap.keyVersion, wrapped: Buffer.from(wrap.wrapped), createdAtMs: now }],
          writeGeneration: 1,
          createdAtMs: now,
          deletedAtMs: null,
          purgeAtMs: null,
          purgingSinceMs: null,
          dataPurgedAtMs: null,
          lockedAtMs: null,
          lockReason: null,
          syncTaskId: null,
        };
        await this.#saveRecord(record);
        await this.#root.flushed;
        const core = new VolumeCore(record, this.#coreDeps);
        core.keys.set(1, dataKey);
        core.refs = 1;
        this.#cores.set(id, core);
        await this.#audit('blockvault.volume.create', record);
        return new Volume(core, this.#host);
      } catch (error) {
        dataKey.fill(0);
        if (registered) await this.hsm.deleteRegistration(key.crn, crn, this.#caller()).catch(() => undefined);
        throw error;
      }
    } finally {
      this.#reservedNames.delete(name);
    }
  }

  /**
   * A handle on a volume by id or name (a live volume wins over a deleted one of the same name).
   * Works in every state; I/O on a locked or deleted volume fails with VOLUME_LOCKED / VOLUME_DELETED.
   */
  async openVolume(idOrName: string): Promise<Volume> {
    this.#checkOpen();
    const record = this.#find(idOrName);
    const core = await this.#acquire(record.id);
    return new Volume(core, this.#host);
  }

  /** Metadata of every volume, in every state (synchronous). */
  listVolumes(): VolumeInfo[] {
    return [...this.#records.values()].sort((a, b) => a.createdAtMs - b.createdAtMs || a.id.localeCompare(b.id)).map(infoOf);
  }

  /**
   * Soft delete: I/O fails with VOLUME_DELETED from now on (operations called before complete
   * first), the data keys leave memory, and the volume stays registered against its key until
   * the purge date (now + retentionMs). restoreVolume() undoes it until then.
   */
  async deleteVolume(idOrName: string): Promise<VolumeInfo> {
    this.#checkOpen();
    const record = this.#find(idOrName);
    if (record.deletedAtMs !== null) return infoOf(record);
    const apply = async (): Promise<void> => {
      const now = this.#options.clock.nowMs();
      const current = this.#records.get(record.id)!;
      await this.#saveRecord(withChanges(current, { deletedAtMs: now, purgeAtMs: now + this.#options.retentionMs }));
      this.#cores.get(record.id)?.wipeKeys();
    };
    const core = this.#cores.get(record.id);
    // Through the volume's queue, so operations called before the delete complete first.
    if (core !== undefined) await core.queue.submitOne(apply);
    else await apply();
    const deleted = this.#records.get(record.id)!;
    await this.#audit('blockvault.volume.delete', deleted);
    return infoOf(deleted);
  }

  /** Undo a soft delete during the retention period. */
  async restoreVolume(idOrName: string): Promise<VolumeInfo> {
    this.#checkOpen();
    const record = this.#find(idOrName, { preferDeleted: true });
    if (record.deletedAtMs === null) return infoOf(record);
    if (record.purgingSinceMs !== null) {
      throw new BlockvaultError('NOT_FOUND', `volume ${record.name} (${record.id}) is being purged and cannot be restored`, { volumeId: record.id });
    }
    if (stateOf(record) === 'locked') {
      throw new BlockvaultError(
        'VOLUME_LOCKED',
        `volume ${record.name} (${record.id}) cannot be restored: its root key was destroyed, so its data is gone for good`,
        { volumeId: record.id, keyCrn: record.diskEncryptionKeyCrn },
      );
    }
    this.#checkNameFree(record.name, record.id);
    const core = this.#cores.get(record.id);
    if (core !== undefined) await this.#loadKeys(core, record);
    // The key may have been destroyed while the keys were unwrapped: restore the current record,
    // never an older copy without the lock.
    const current = this.#records.get(record.id)!;
    if (stateOf(current) === 'locked') throw keysShreddedError(current);
    const restored = withChanges(current, { deletedAtMs: null, purgeAtMs: null });
    await this.#saveRecord(restored);
    await this.#audit('blockvault.volume.restore', restored);
    return infoOf(restored);
  }

  /**
   * Purge every deleted volume whose retention has passed, and finish purges a crash
   * interrupted: its clusters in bounded batches, then its registration, then its record.
   * Returns the ids purged.
   */
  purgeExpired(): Promise<string[]> {
    this.#checkOpen();
    const previous = this.#purgeRun ?? Promise.resolve([]);
    const run = previous.catch(() => []).then(() => this.#purgeDue());
    this.#purgeRun = run;
    void run.finally(() => {
      if (this.#purgeRun === run) this.#purgeRun = null;
    }).catch(() => undefined);
    return run;
  }

  /**
   * @internal For the HSM's delete hook and reconciliation on open (deleteKey is the public way).
   * Cryptoshred support: lock every volume using `keyCrn` (or registered as one of
   * `resourceCrns`) at once. Their data keys are wiped from memory now; steps that run from now
   * on and writes still in flight fail with VOLUME_LOCKED; their rotation tasks are told to stop
   * (within one cluster; the runner and the workers wipe the keys they hold) and end failed with
   * KEY_DESTROYED. All of that happens before this returns its promise, whichever path locks (the
   * HSM's onDestroyed hook, an open that finds the key destroyed, reconcile on open). The promise
   * resolves once the lock is persisted; it does not wait for the tasks to end (the open of a
   * task's own target may be the caller): engine.tasks.abortTasks does. Returns the volumes newly
   * locked.
   */
  lockVolumesForKey(keyCrn: string, resourceCrns: readonly string[] = [], reason = 'root key destroyed'): Promise<VolumeInfo[]> {
    const resources = new Set(resourceCrns);
    const now = this.#options.clock.nowMs();
    const locked: VolumeRecord[] = [];
    for (const record of this.#records.values()) {
      if (record.lockedAtMs !== null) continue;
      if (record.diskEncryptionKeyCrn !== keyCrn && !resources.has(record.crn)) continue;
      const next = withChanges(record, { lockedAtMs: now, lockReason: reason });
      this.#setRecord(next); // synchronous: every step that runs after this sees the lock
      // Wiped now, and an unwrap still under way cannot put a key back (KeyRing.shred).
      this.#cores.get(record.id)?.shred(keysShreddedError(next));
      locked.push(next);
    }
    for (const record of locked) {
      // Their outcome is recorded in each task; whoever needs them ended awaits abortTasks itself.
      void this.tasks
        .abortTasks(
          { volumeId: record.id },
          new BlockvaultError('KEY_DESTROYED', `root key ${record.diskEncryptionKeyCrn} was destroyed (cryptoshredded); volume ${record.name} (${record.id}) is locked`, {
            keyCrn: record.diskEncryptionKeyCrn,
            volumeId: record.id,
          }),
        )
        .catch(() => undefined);
    }
    return (async () => {
      if (locked.length > 0) {
        await this.#volumes.transaction(() => {
          for (const record of locked) {
            if (this.#records.get(record.id) === record) this.#volumes.putSync(record.id, record);
          }
        });
        for (const record of locked) await this.#audit('blockvault.volume.lock', record);
      }
      return locked.map(infoOf);
    })();
  }

  /**
   * @internal The re-encryption target of a volume (src/rotation/target.ts), for the rotation task runner.
   * Holds the volume open (its data keys loaded) until `target.close()`.
   */
  async reencryptTarget(volumeId: string): Promise<VolumeReencryptTarget> {
    this.#checkOpen();
    const record = this.#find(volumeId);
    const core = await this.#acquire(record.id);
    const error = core.ioError();
    if (error !== null) {
      await this.#release(core);
      throw error;
    }
    return new VolumeReencryptTarget(core, this.#root, this.#keeper);
  }

  /** @internal For the rotation task manager: mark a volume 'syncing' while a task works on it (taskId), or back to 'active' (null). */
  async setSyncTask(volumeId: string, taskId: string | null): Promise<VolumeInfo> {
    this.#checkOpen();
    const record = this.#find(volumeId);
    if (record.syncTaskId === taskId) return infoOf(record);
    const next = withChanges(record, { syncTaskId: taskId });
    await this.#saveRecord(next);
    return infoOf(next);
  }

  /** Close every volume (their keys are zeroized), flush, and close the HSM and LMDB. */
  close(): Promise<void> {
    this.#closing ??= this.#closeNow();
    return this.#closing;
  }

  // -------------------------------------------------------------------------------------------
  // Internals: records.

  async #load(): Promise<void> {
    for (const { value } of this.#volumes.getRange()) {
      assert(value.recordVersion === VOLUME_RECORD_VERSION, `volume record version ${value.recordVersion} is supported`);
      this.#records.set(value.id, value);
    }
    await this.#reconcileWithHsm();
    await this.purgeExpired();
  }

  /**
   * After a crash: volumes whose key was destroyed while the lock hook could not run are locked
   * now, and registrations of volumes whose creation never completed are removed.
   */
  async #reconcileWithHsm(): Promise<void> {
    for (const record of [...this.#records.values()]) {
      if (record.lockedAtMs !== null) continue;
      const key = await this.hsm.getKey(record.diskEncryptionKeyCrn).catch(() => null);
      if (key !== null && key.state === KeyState.Destroyed) await this.lockVolumesForKey(key.crn);
    }
    const known = new Set([...this.#records.values()].map((r) => r.crn));
    for (const registration of await this.hsm.listRegistrations({})) {
      if (!this.#isOwnVolumeCrn(registration.resourceCrn) || known.has(registration.resourceCrn)) continue;
      await this.hsm.deleteRegistration(registration.keyCrn, registration.resourceCrn, this.#caller()).catch(() => undefined);
    }
  }

  #setRecord(record: VolumeRecord): void {
    this.#records.set(record.id, record);
    this.#cores.get(record.id)?.setRecord(record);
  }

  /** Visible at once (to steps that run after this), persisted when the promise resolves. */
  async #saveRecord(record: VolumeRecord): Promise<void> {
    const previous = this.#records.get(record.id);
    this.#setRecord(record);
    try {
      await this.#volumes.put(record.id, record);
    } catch (error) {
      if (previous !== undefined && this.#records.get(record.id) === record) this.#setRecord(previous);
      throw error;
    }
  }

  async #allocateStoreId(): Promise<number> {
    return this.#meta.transaction(() => {
      const next = this.#meta.get('nextStoreId');
      assert(typeof next === 'number' && Number.isSafeInteger(next) && next >= 1 && next < 0xffff_ffff, 'nextStoreId is a u32');
      this.#meta.putSync('nextStoreId', next + 1);
      return next;
    });
  }

  #find(idOrName: string, options: { preferDeleted?: boolean } = {}): VolumeRecord {
    if (typeof idOrName !== 'string' || idOrName.length === 0) throw invalid('a volume id or name is a non-empty string');
    const byId = this.#records.get(idOrName);
    if (byId !== undefined) return byId;
    const named = [...this.#records.values()].filter((r) => r.name === idOrName);
    const live = named.filter((r) => r.deletedAtMs === null);
    const deleted = named.filter((r) => r.deletedAtMs !== null).sort((a, b) => b.deletedAtMs! - a.deletedAtMs!);
    const found = options.preferDeleted === true ? (deleted[0] ?? live[0]) : (live[0] ?? deleted[0]);
    if (found === undefined) {
      throw new BlockvaultError('NOT_FOUND', `no volume with id or name ${JSON.stringify(idOrName)}; engine.listVolumes() shows them all`, {
        volume: idOrName,
      });
    }
    return found;
  }

  /** Names are unique among volumes that are not deleted (a deleted one keeps its name until purged). */
  #checkNameFree(name: string, exceptId?: string): void {
    const taken =
      this.#reservedNames.has(name) || [...this.#records.values()].some((r) => r.name === name && r.deletedAtMs === null && r.id !== exceptId);
    if (taken) throw new BlockvaultError('ALREADY_EXISTS', `a volume named ${JSON.stringify(name)} already exists; choose another name`, { name });
  }

  #infoOrLast(volumeId: string): VolumeInfo {
    const record = this.#records.get(volumeId) ?? this.#purged.get(volumeId);
    assert(record !== undefined, `volume ${volumeId} is known`);
    return infoOf(record);
  }

  /** The last record of volumes purged during this session, so handles still describe them. Bounded. */
  readonly #purged = new Map<string, VolumeRecord>();

  #volumeCrn(keyCrn: string, volumeId: string): string {
    const key = parseCrn(keyCrn, 'key');
    return formatCrn({ ...key, service: STORAGE_SERVICE, instance: this.#engineId, resourceType: 'volume', resource: volumeId });
  }

  #isOwnVolumeCrn(crn: string): boolean {
    try {
      const parsed = parseCrn(crn);
      return parsed.service === STORAGE_SERVICE && parsed.resourceType === 'volume' && parsed.instance === this.#engineId;
    } catch {
      return false;
    }
  }

  #caller(): CallerContext {
    return { sourceService: STORAGE_SERVICE, sourceInstance: this.#engineId, initiator: 'blockvault-engine' };
  }

  async #audit(action: string, record: VolumeRecord): Promise<void> {
    await this.events.append({
      action,
      initiator: STORAGE_SERVICE,
      keyCrn: record.diskEncryptionKeyCrn,
      resourceCrn: record.crn,
      details: {
        volumeId: record.id,
        name: record.name,
        state: stateOf(record),
        keyVersion: writeGenerationOf(record).keyVersion,
        purgeAtMs: record.purgeAtMs,
        lockReason: record.lockReason,
      },
    });
  }

  // -------------------------------------------------------------------------------------------
  // Internals: open volumes and their keys.

  async #acquire(volumeId: string): Promise<VolumeCore> {
    const open = this.#cores.get(volumeId);
    if (open !== undefined) {
      open.refs++;
      return open;
    }
    let opening = this.#opening.get(volumeId);
    if (opening === undefined) {
      opening = this.#openCore(volumeId);
      this.#opening.set(volumeId, opening);
      void opening.finally(() => this.#opening.delete(volumeId)).catch(() => undefined);
    }
    const core = await opening;
    core.refs++;
    return core;
  }

  async #openCore(volumeId: string): Promise<VolumeCore> {
    const record = this.#records.get(volumeId);
    if (record === undefined) throw new BlockvaultError('NOT_FOUND', `volume ${volumeId} no longer exists (purged)`, { volumeId });
    const core = new VolumeCore(record, this.#coreDeps);
    const state = stateOf(record);
    if (state === 'active' || state === 'syncing') {
      try {
        await this.#loadKeys(core, record);
      } catch (error) {
        core.keys.wipe();
        if (!isBlockvaultError(error, 'KEY_DESTROYED')) throw error;
        await this.lockVolumesForKey(record.diskEncryptionKeyCrn);
      }
    }
    const current = this.#records.get(volumeId)!;
    core.setRecord(current);
    // Locked while its keys were being unwrapped (the core was not registered yet, so the lock
    // could not wipe them): they go now.
    if (stateOf(current) === 'locked') core.shred(keysShreddedError(current));
    this.#cores.set(volumeId, core);
    return core;
  }

  /** Unwrap every data-key generation of the record into the core. */
  async #loadKeys(core: VolumeCore, record: VolumeRecord): Promise<void> {
    for (const generation of record.generations) {
      if (core.keys.has(generation.generation)) continue;
      const unwrapped = await this.hsm.unwrap(record.diskEncryptionKeyCrn, generation.wrapped, generation.keyVersion, this.#caller());
      const key = Uint8Array.from(unwrapped.plaintext);
      unwrapped.plaintext.fill(0);
      assertDataKey(key);
      core.keys.set(generation.generation, key);
    }
  }

  async #release(core: VolumeCore): Promise<void> {
    assert(core.refs > 0, 'a released core was held');
    core.refs--;
    if (core.refs > 0) return;
    if (this.#cores.get(core.id) === core) this.#cores.delete(core.id);
    await core.close(new BlockvaultError('VOLUME_CLOSED', `volume ${core.id} was closed; open it again with engine.openVolume`));
  }

  async #addGeneration(core: VolumeCore): Promise<number> {
    const record = core.record;
    const generation = Math.max(...record.generations.map((g) => g.generation)) + 1;
    const dataKey = generateDataKey();
    try {
      const wrap = await this.hsm.wrap(record.diskEncryptionKeyCrn, dataKey, this.#caller());
      const entry: DataKeyGeneration = { generation, keyVersion: wrap.keyVersion, wrapped: Buffer.from(wrap.wrapped), createdAtMs: this.#options.clock.nowMs() };
      core.keys.set(generation, dataKey);
      const current = this.#records.get(record.id)!;
      // New writes use the generation from this moment; LMDB commits in issue order, so the
      // record (issued first) is committed before any cluster written under the generation.
      await this.#saveRecord(withChanges(current, { generations: [...current.generations, entry], writeGeneration: generation }));
      await this.#root.flushed;
      await this.#updateRegistration(record, wrap.keyVersion);
      return generation;
    } catch (error) {
      if (!core.keys.has(generation)) dataKey.fill(0);
      throw error;
    }
  }

  async #rewrapAll(core: VolumeCore): Promise<void> {
    const record = this.#records.get(core.id)!;
    const generations: DataKeyGeneration[] = [];
    let keyVersion = 0;
    for (const generation of record.generations) {
      const wrap = await this.hsm.wrap(record.diskEncryptionKeyCrn, core.keys.get(generation.generation), this.#caller());
      keyVersion = wrap.keyVersion;
      generations.push({ ...generation, keyVersion: wrap.keyVersion, wrapped: Buffer.from(wrap.wrapped) });
    }
    await this.#saveRecord(withChanges(this.#records.get(core.id)!, { generations }));
    await this.#root.flushed;
    await this.#updateRegistration(record, keyVersion);
  }

  async #retireGenerations(core: VolumeCore, generation: number): Promise<void> {
    const record = this.#records.get(core.id)!;
    assert(generation <= record.writeGeneration, 'the generation kept is not newer than the write generation');
    const kept = record.generations.filter((g) => g.generation >= generation);
    const retired = record.generations.filter((g) => g.generation < generation);
    if (retired.length === 0) return;
    await this.#saveRecord(withChanges(record, { generations: kept }));
    await this.#root.flushed;
    for (const g of retired) core.keys.delete(g.generation);
  }

  async #updateRegistration(record: VolumeRecord, keyVersion: number): Promise<void> {
    await this.hsm.updateRegistration({ keyCrn: record.diskEncryptionKeyCrn, resourceCrn: record.crn, keyVersion }, this.#caller());
  }

  // -------------------------------------------------------------------------------------------
  // Internals: purge.

  async #purgeDue(): Promise<string[]> {
    const now = this.#options.clock.nowMs();
    const due = [...this.#records.values()].filter(
      (r) => r.purgingSinceMs !== null || (r.purgeAtMs !== null && r.purgeAtMs <= now && (r.dataPurgedAtMs ?? null) === null),
    );
    const purged: string[] = [];
    for (const record of due) {
      if (this.#closed) break;
      await this.#purgeOne(record);
      purged.push(record.id);
    }
    return purged;
  }

  async #purgeOne(record: VolumeRecord): Promise<void> {
    const core = this.#cores.get(record.id);
    if (core !== undefined) {
      this.#cores.delete(record.id);
      await core.close(new BlockvaultError('VOLUME_DELETED', `volume ${record.name} (${record.id}) was purged`, { volumeId: record.id }));
    }
    let current = this.#records.get(record.id)!;
    if (current.purgingSinceMs === null) {
      current = withChanges(current, { purgingSinceMs: this.#options.clock.nowMs() });
      await this.#saveRecord(current);
    }
    // Bounded batches: each is one LMDB transaction of at most PURGE_BATCH_KEYS removals.
    while ((await purgeBatch({ clusters: this.#clusters, sectors: this.#sectors }, current.storeId, PURGE_BATCH_KEYS)) > 0) {
      // Let I/O on other volumes proceed between batches.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    try {
      await this.hsm.deleteRegistration(current.diskEncryptionKeyCrn, current.crn, this.#caller());
    } catch (error) {
      if (!isBlockvaultError(error, 'NOT_FOUND')) throw error;
    }
    if (current.lockedAtMs !== null) {
      // Cryptoshredded: the sectors (unreadable anyway) and the registration go, the metadata
      // stays readable for good as a tombstone (DESIGN.md, "Deletion and cryptoshredding").
      const tombstone = withChanges(current, { purgingSinceMs: null, dataPurgedAtMs: this.#options.clock.nowMs() });
      await this.#saveRecord(tombstone);
      await this.#root.flushed;
      await this.#audit('blockvault.volume.purge', tombstone);
      return;
    }
    await this.#volumes.remove(current.id);
    await this.#root.flushed;
    this.#records.delete(current.id);
    this.#rememberPurged(current);
    await this.#audit('blockvault.volume.purge', current);
    if (current.platformManaged) await this.#deletePlatformKey(current);
  }

  /** A platform-managed root key serves exactly one volume; it goes with the volume. */
  async #deletePlatformKey(record: VolumeRecord): Promise<void> {
    const stillUsed = [...this.#records.values()].some((r) => r.diskEncryptionKeyCrn === record.diskEncryptionKeyCrn);
    if (stillUsed) return;
    try {
      const key = await this.hsm.getKey(record.diskEncryptionKeyCrn);
      if (key.state !== KeyState.Destroyed) await this.hsm.deleteKey(record.diskEncryptionKeyCrn, { initiator: STORAGE_SERVICE });
    } catch (error) {
      process.emitWarning(`blockvault: could not delete the platform key of purged volume ${record.id}: ${(error as Error).message}`);
    }
  }

  #rememberPurged(record: VolumeRecord): void {
    this.#purged.set(record.id, record);
    if (this.#purged.size > 1024) this.#purged.delete(this.#purged.keys().next().value!);
  }

  /**
   * The engine's scheduler: rotate root keys whose rotation policy is due (starting their
   * re-encryption tasks) and purge volumes whose retention has passed. Runs on the purge timer;
   * tests with a ManualClock call it directly.
   */
  async runScheduler(): Promise<{ rotation: RotationSchedulerResult; purgedVolumeIds: string[] }> {
    this.#checkOpen();
    const rotation = await this.hsm.runScheduler();
    const purgedVolumeIds = await this.purgeExpired();
    return { rotation, purgedVolumeIds };
  }

  /**
   * One "Syncing KMS state" task per live volume registered against the rotated key. Locked
   * volumes have no key to move; soft-deleted ones keep their DEK wrapped under the older
   * version, which stays available for unwrap (old versions are destroyed only with the key).
   */
  #startRotationTasks(key: RootKeyInfo, rotateOptions: { rewrapOnly: boolean }): Promise<TaskRecord[]> {
    const specs = [...this.#records.values()]
      .filter((record) => record.diskEncryptionKeyCrn === key.crn)
      .filter((record) => { const state = stateOf(record); return state === 'active' || state === 'syncing'; })
      .map((record) => ({
        volumeId: record.id,
        keyCrn: key.crn,
        fromKeyVersion: writeGenerationOf(record).keyVersion,
        toKeyVersion: key.version,
        mode: rotateOptions.rewrapOnly ? ('rewrap' as const) : ('reencrypt' as const),
      }));
    return specs.length === 0 ? Promise.resolve([]) : this.tasks.createMany(specs);
  }

  #startPurgeTimer(): void {
    if (this.#options.purgeIntervalMs === 0) return;
    this.#purgeTimer = setInterval(() => {
      if (this.#closed) return;
      this.runScheduler().catch((error: unknown) => {
        process.emitWarning(`blockvault: background scheduler run failed (it is retried): ${(error as Error).message}`);
      });
    }, this.#options.purgeIntervalMs);
    this.#purgeTimer.unref();
  }

  // -------------------------------------------------------------------------------------------
  // Internals: lifecycle.

  #checkOpen(): void {
    if (this.#closed) throw this.#closedError();
  }

  #closedError(): BlockvaultError {
    return new BlockvaultError('ENGINE_CLOSED', `the engine in ${this.#options.dir} is closed; open it again with Engine.open`);
  }

  async #closeNow(): Promise<void> {
    // Running tasks pause at a checkpoint (they resume on the next open) before volumes close.
    await this.tasks.close();
    this.#closed = true;
    if (this.#purgeTimer !== null) clearInterval(this.#purgeTimer);
    await this.#purgeRun?.catch(() => undefined);
    await Promise.all([...this.#opening.values()].map((p) => p.catch(() => undefined)));
    const cores = [...this.#cores.values()];
    this.#cores.clear();
    await Promise.all(cores.map((core) => core.close(this.#closedError())));
    await this.#root.flushed;
    await this.hsm.close();
    this.events.close();
    await this.#root.close();
    this.#dirLock.release();
  }
}

/** Binary keys (storeId u32 BE + index u64 BE) and values, no compression (ciphertext does not compress), no cache. */
function openBinaryDb(root: RootDatabase, name: string): Database<Buffer, Buffer> {
  return root.openDB<Buffer, Buffer>(name, { keyEncoding: 'binary', encoding: 'binary', compression: false, cache: false });
}

/** What a locked volume's key ring throws when a key is set after the shred (an unwrap that raced it). */
function keysShreddedError(record: VolumeRecord): BlockvaultError {
  return new BlockvaultError(
    'VOLUME_LOCKED',
    `volume ${record.name} (${record.id}) is locked: its root key ${record.diskEncryptionKeyCrn} was destroyed, so its data keys can never be loaded again; only its metadata remains`,
    { volumeId: record.id, keyCrn: record.diskEncryptionKeyCrn },
  );
}

function invalid(message: string): BlockvaultError {
  return new BlockvaultError('INVALID_ARGUMENT', message);
}

function checkVolumeName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > VOLUME_NAME_LENGTH_MAX || /[\u0000-\u001f\u007f]/.test(name) || name.trim() !== name) {
    throw invalid(`a volume name is 1 to ${VOLUME_NAME_LENGTH_MAX} characters without control characters or surrounding spaces, got ${JSON.stringify(name)}`);
  }
  return name;
}

/** A new volume needs a key that can wrap: Active. */
function checkKeyUsableForNewVolume(key: RootKeyInfo): void {
  if (key.state === KeyState.Active) return;
  if (key.state === KeyState.Destroyed) {
    throw new BlockvaultError('KEY_DESTROYED', `root key ${key.crn} was destroyed; a volume needs an active root key`, { keyCrn: key.crn });
  }
  const what = key.state === KeyState.Suspended ? 'suspended (enable it first)' : 'deactivated (it can only unwrap existing keys)';
  throw new BlockvaultError('KEY_STATE', `root key ${key.crn} is ${what}; a new volume needs an active root key`, {
    keyCrn: key.crn,
    state: key.stateName,
  });
}

function resolveOptions(options: EngineOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) throw invalid('Engine.open({ dir, hsm }) takes an options object');
  if (typeof options.dir !== 'string' || options.dir.length === 0) throw invalid('Engine.open: dir must be a non-empty path');
  const secret = options.hsm as { passphrase?: unknown; keyFile?: unknown } | undefined;
  if (typeof secret !== 'object' || secret === null || (typeof secret.passphrase !== 'string') === (typeof secret.keyFile !== 'string')) {
    throw invalid('Engine.open: hsm must be { passphrase } or { keyFile }');
  }
  const nonNegative = (value: number | undefined, fallback: number, name: string): number => {
    const v = value ?? fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw invalid(`Engine.open: ${name} must be a whole number >= 0, got ${String(value)}`);
    return v;
  };
  const clusterBytes = nonNegative(options.clusterBytes, DEFAULT_CLUSTER_BYTES, 'clusterBytes');
  if (clusterBytes < 512 || (clusterBytes & (clusterBytes - 1)) !== 0 || clusterBytes > CLUSTER_SECTORS_MAX * 4096) {
    throw invalid(`Engine.open: clusterBytes must be a power of two from 512 to ${CLUSTER_SECTORS_MAX * 4096}, got ${clusterBytes}`);
  }
  const volumeLayout = options.volumeLayout ?? 'split';
  if (volumeLayout !== 'split' && volumeLayout !== 'compact') throw invalid(`Engine.open: volumeLayout must be 'split' or 'compact', got ${String(volumeLayout)}`);
  const writeBufferBytesMax = nonNegative(options.writeBufferBytesMax, DEFAULT_WRITE_BUFFER_BYTES_MAX, 'writeBufferBytesMax');
  if (writeBufferBytesMax < 1024 * 1024) throw invalid('Engine.open: writeBufferBytesMax must be at least 1 MiB');
  const metaCacheClustersMax = nonNegative(options.metaCacheClustersMax, META_CACHE_CLUSTERS_MAX, 'metaCacheClustersMax');
  // A limit on everything: 2^24 clusters (64 GiB of 4096-byte sectors) is about 8 GiB of memory per volume.
  if (metaCacheClustersMax > META_CACHE_CLUSTERS_LIMIT) {
    throw invalid(`Engine.open: metaCacheClustersMax must be at most ${META_CACHE_CLUSTERS_LIMIT}, got ${metaCacheClustersMax}`);
  }
  const mapSizeBytes = nonNegative(options.mapSizeBytes, DEFAULT_MAP_SIZE_BYTES, 'mapSizeBytes');
  if (mapSizeBytes < MAP_SIZE_BYTES_MIN || mapSizeBytes > MAP_SIZE_BYTES_MAX) {
    throw invalid(`Engine.open: mapSizeBytes must be from ${MAP_SIZE_BYTES_MIN} (1 MiB) to ${MAP_SIZE_BYTES_MAX} (128 TiB), got ${mapSizeBytes}`);
  }
  if (options.cipher !== undefined && options.cipher !== 'native' && options.cipher !== 'ts') {
    throw invalid(`Engine.open: cipher must be 'native' or 'ts', got ${String(options.cipher)}`);
  }
  return {
    dir: options.dir,
    clock: options.clock ?? systemClock,
    retentionMs: nonNegative(options.retentionMs, DEFAULT_RETENTION_MS, 'retentionMs'),
    purgeIntervalMs: nonNegative(options.purgeIntervalMs, DEFAULT_PURGE_INTERVAL_MS, 'purgeIntervalMs'),
    clusterBytes,
    volumeLayout,
    writeBufferBytesMax,
    metaCacheClustersMax,
    mapSizeBytes,
  };
}
