/**
 * Engine: one directory, one LMDB environment, and the wiring of its parts (DESIGN.md, "The
 * picture"): the HSM, the audit log, the volume catalog and open volumes (src/volume), and the
 * "Syncing KMS state" tasks (src/rotation). The public entry point of blockvault.
 *
 * The engine opens and closes the parts and binds them to each other through small interfaces,
 * so data flows one way: engine -> rotation -> volume. Rotation gets the volumes' re-encryption
 * targets at construction; the HSM's cryptoshred hook reaches the volumes through the engine.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase, type RootDatabaseOptionsWithPath } from 'lmdb';
import { AuditLog } from './audit/index.js';
import { XtsCipher } from './cipher/index.js';
import { parseCrn } from './crn.js';
import { STORAGE_SERVICE, StorageServicePort } from './engine-hsm-port.js';
import { registerEngineInternals } from './engine-internals.js';
import { resolveOptions, type EngineOptions, type ResolvedOptions } from './engine-options.js';
import { BlockvaultError } from './errors.js';
import { SoftHsm } from './hsm/index.js';
import { KeyState, type RootKeyInfo, type RotationSchedulerResult } from './hsm/types.js';
import { TaskManager, type RotationOptions, type TaskRecord } from './rotation/index.js';
import { VolumeCatalog, type StoredVolumeRecord } from './volume/catalog.js';
import { DataKeyGenerations } from './volume/generations.js';
import { VolumeLifecycle, type CreateVolumeOptions } from './volume/lifecycle.js';
import { OpenVolumes, type VolumeAudit } from './volume/open-volumes.js';
import { VolumePurger, startScheduler } from './volume/purge.js';
import { stateOf, writeGenerationOf, type VolumeInfo, type VolumeRecord } from './volume/record.js';
import type { VolumeReencryptTarget } from './volume/reencrypt-target.js';
import { ReencryptTargets } from './volume/reencrypt-targets.js';
import { ShredLock } from './volume/shred-lock.js';
import type { Volume } from './volume/volume.js';
import type { VolumeCoreDeps } from './volume/volume-core.js';
import { KeyAccess } from './volume/key-access.js';
import { clusterOid } from './volume/object-store.js';
import { WriteBudget, lmdbWriteFence } from './volume/write-budget.js';
import { lockDir, type DirLock } from './util/dir-lock.js';
import { openVolumeStore, type VolumeObjectPool } from './store/volume-store.js';
import { startNbdServer, type NbdExportOptions, type NbdServeOptions, type NbdServerHandle } from './nbd/serve.js';
import type { NbdListenOptions } from './nbd/server.js';

export { DEFAULT_CLUSTER_BYTES, DEFAULT_PURGE_INTERVAL_MS, DEFAULT_RETENTION_MS } from './engine-options.js';
export type { EngineOptions, HsmSecretOptions } from './engine-options.js';
export type { CreateVolumeOptions } from './volume/lifecycle.js';

export { STORAGE_SERVICE } from './engine-hsm-port.js';
/** Held while an engine has the directory open (src/util/dir-lock.ts). */
export const ENGINE_LOCK_FILE = 'engine.lock';

const WRITE_STEP_BYTES_MAX = 4 * 1024 * 1024;
const TRIM_STEP_CLUSTERS_MAX = 1024;
const LMDB_FILE = 'engine.lmdb';

/**
 * engine.hsm is the SoftHsm itself; only rotateKey's result is narrowed: through the engine's
 * hook it returns the "Syncing KMS state" tasks it started (the HSM knows nothing of tasks).
 */
/** The engine's HSM as users reach it: the engine owns its hooks and its life (no setHooks, no close). */
export type EngineHsm = Omit<SoftHsm, 'rotateKey' | 'setHooks' | 'close'> & {
  rotateKey(crn: string, options?: Parameters<SoftHsm['rotateKey']>[1]): Promise<TaskRecord[]>;
};

/** The parts an engine wires together (built in Engine.open). */
interface EngineParts {
  root: RootDatabase;
  hsm: SoftHsm;
  events: AuditLog;
  cipher: XtsCipher;
  options: ResolvedOptions;
  meta: Database<unknown, string>;
  engineId: string;
  rotation: RotationOptions | undefined;
  dirLock: DirLock;
  /** The RADOS pool of the volumes' sectors, or null for LMDB. */
  objectPool: VolumeObjectPool | null;
}

export class Engine {
  /** The HSM: instances, root keys, authorizations, registrations. rotateKey returns the tasks it started. */
  readonly hsm: EngineHsm;
  /** The same object with its full interface, for the engine's own close. */
  readonly #hsm: SoftHsm;
  /** The audit log (hash-chained activity events). */
  readonly events: AuditLog;
  readonly cipher: XtsCipher;
  /** "Syncing KMS state" tasks: list, get, wait, cancel, and 'progress' events. */
  readonly tasks: TaskManager;

  readonly #root: RootDatabase;
  readonly #options: ResolvedOptions;
  readonly #port: StorageServicePort;
  readonly #dirLock: DirLock;
  readonly #objectPool: VolumeObjectPool | null;
  readonly #catalog: VolumeCatalog;
  readonly #volumes: OpenVolumes;
  readonly #lifecycle: VolumeLifecycle;
  readonly #purger: VolumePurger;
  readonly #shredLock: ShredLock;
  /** Root keys the storage service may not use now (suspended, revoked): their open volumes' I/O stops. */
  readonly #keyAccess = new KeyAccess();
  readonly #targets: ReencryptTargets;
  #scheduler: { stop(): void } | null = null;
  /** NBD servers started by serveNbd and not closed yet: engine.close() closes them first. */
  readonly #nbdServers = new Set<NbdServerHandle>();
  #closed = false;
  #closing: Promise<void> | null = null;

  private constructor(parts: EngineParts) {
    const { root, options } = parts;
    this.#root = root;
    // Sound because the engine installs the onRotated hook, whose result rotateKey returns.
    this.hsm = parts.hsm as unknown as EngineHsm;
    this.#hsm = parts.hsm;
    this.events = parts.events;
    this.cipher = parts.cipher;
    this.#options = options;
    this.#port = new StorageServicePort(parts.hsm, parts.engineId);
    this.#dirLock = parts.dirLock;
    const objectPool = (this.#objectPool = parts.objectPool);

    const clusters = openBinaryDb(root, 'clusters');
    const sectors = openBinaryDb(root, 'sectors');
    const coreDeps: VolumeCoreDeps = {
      root,
      clusters,
      sectors,
      budget: new WriteBudget(options.writeBufferBytesMax, options.lmdbTxnBytesMax > 0 ? { bytes: options.lmdbTxnBytesMax, fence: lmdbWriteFence(root) } : null),
      cipher: parts.cipher,
      writeStepBytesMax: WRITE_STEP_BYTES_MAX,
      trimStepClustersMax: TRIM_STEP_CLUSTERS_MAX,
      metaCacheClustersMax: options.metaCacheClustersMax,
      keyAccess: this.#keyAccess,
      ...(objectPool === null ? {} : { objectPool }),
    };
    const keyService = this.#port.keyService;
    const audit: VolumeAudit = (action, record) => this.#audit(action, record);
    const flushed = (): Promise<unknown> => root.flushed;
    const engineError = (): BlockvaultError | null => (this.#closed ? this.#closedError() : null);

    this.#catalog = new VolumeCatalog({
      volumes: root.openDB<StoredVolumeRecord, string>('volumes', { encoding: 'msgpack' }),
      recordKey: parts.hsm.recordKey('volume-records'),
      meta: parts.meta,
      onRecord: (record) => this.#volumes.follow(record),
    });
    this.#volumes = new OpenVolumes({
      catalog: this.#catalog,
      coreDeps,
      keyService,
      engineError,
      onKeyDestroyed: (keyCrn) => this.#shredLock.lockForKey(keyCrn),
    });
    const generations = new DataKeyGenerations({
      catalog: this.#catalog,
      keyService,
      clock: options.clock,
      flushed,
      release: (core) => this.#volumes.release(core),
    });
    this.#lifecycle = new VolumeLifecycle({
      catalog: this.#catalog,
      volumes: this.#volumes,
      generations,
      keyService,
      coreDeps,
      audit,
      clock: options.clock,
      flushed,
      volumeCrn: (keyCrn, volumeId) => this.#port.volumeCrn(keyCrn, volumeId),
      checkKeyCrn: (crn) => void parseCrn(crn, 'key'), // INVALID_CRN for a bare id or a malformed CRN
      retentionMs: options.retentionMs,
      clusterBytes: options.clusterBytes,
      volumeLayout: options.volumeLayout,
    });
    this.#purger = new VolumePurger({
      catalog: this.#catalog,
      volumes: this.#volumes,
      keyService,
      stores: { clusters, sectors },
      ...(objectPool === null ? {} : { objectPool }),
      audit,
      clock: options.clock,
      flushed,
      closing: () => this.#closed,
      afterRemoved: async (record) => {
        const stillUsed = this.#catalog.records().some((r) => r.diskEncryptionKeyCrn === record.diskEncryptionKeyCrn);
        if (record.platformManaged && !stillUsed) await this.#port.deletePlatformKey(record.diskEncryptionKeyCrn, record.id);
      },
    });
    this.#shredLock = new ShredLock({
      catalog: this.#catalog,
      volumes: this.#volumes,
      audit,
      clock: options.clock,
      // Their outcome is recorded in each task; whoever needs them ended awaits abortTasks itself.
      onLocked: (records) => {
        for (const record of records) {
          const reason = new BlockvaultError(
            'KEY_DESTROYED',
            `root key ${record.diskEncryptionKeyCrn} was destroyed (cryptoshredded); volume ${record.name} (${record.id}) is locked`,
            { keyCrn: record.diskEncryptionKeyCrn, volumeId: record.id },
          );
          void this.tasks.abortTasks({ volumeId: record.id }, reason).catch(() => undefined);
        }
      },
    });
    this.#targets = new ReencryptTargets({ catalog: this.#catalog, volumes: this.#volumes, generations, engineError });
    this.tasks = new TaskManager({
      root,
      clock: options.clock,
      ...(parts.rotation === undefined ? {} : { rotation: parts.rotation }),
      // The volume shows 'syncing' while its task runs, and the target holds its keys loaded.
      openTarget: async (task) => {
        await this.#targets.markSyncing(task.volumeId, task.id);
        return this.#targets.open(task.volumeId);
      },
      closeTarget: async (task, target) => {
        await (target as VolumeReencryptTarget).close();
        // A paused task (engine closing) stays 'running' and resumes on the next open: keep the mark.
        if (task.state !== 'running' && task.state !== 'queued' && !this.#closed && this.#targets.has(task.volumeId)) {
          await this.#targets.markSyncing(task.volumeId, null);
        }
      },
      onEvent: async (action, details) => {
        const record = this.#catalog.get(String(details.volumeId));
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
    registerEngineInternals(this, {
      reencryptTarget: (volumeId) => this.#targets.open(volumeId),
      markSyncing: (volumeId, taskId) => this.#targets.markSyncing(volumeId, taskId),
      lockVolumesForKey: (keyCrn, resourceCrns, reason) => this.#shredLock.lockForKey(keyCrn, resourceCrns, reason),
      shredLock: this.#shredLock,
      saveRecord: (record) => this.#catalog.save(record),
      record: (volumeId) => this.#catalog.current(volumeId),
      clusterObjectName: (volumeId, clusterIndex) =>
        objectPool === null ? null : clusterOid(objectPool.oidPrefix, this.#catalog.current(volumeId).storeId, clusterIndex),
    });
  }

  /** Open (or create) the engine in `options.dir`; completes interrupted purges and purges expired volumes. */
  static async open(options: EngineOptions): Promise<Engine> {
    const resolved = resolveOptions(options);
    const cipher = XtsCipher.create(options.cipher === undefined ? {} : { backend: options.cipher });
    mkdirSync(resolved.dir, { recursive: true });
    const dirLock = await lockDir(resolved.dir, {
      fileName: ENGINE_LOCK_FILE,
      waitMs: resolved.lockWaitMs,
      busyError: (owner) =>
        new BlockvaultError(
          'ENGINE_BUSY',
          `${resolved.dir} is open in ${owner === process.pid ? 'another engine of this process' : `process ${owner ?? '?'}`}; ` +
            'an engine directory serves one engine at a time. Close that engine first (or pass lockWaitMs to wait for it)',
          { ownerPid: owner },
        ),
    });
    let root: RootDatabase;
    try {
      root = openEnvironment(resolved);
    } catch (error) {
      dirLock.release();
      throw error;
    }
    let hsm: SoftHsm | null = null;
    let objectPool: VolumeObjectPool | null = null;
    let engineRef: Engine | null = null;
    try {
      const meta = root.openDB<unknown, string>('engine-meta', { encoding: 'msgpack' });
      let engineId = meta.get('engineId');
      if (typeof engineId !== 'string') {
        engineId = randomUUID();
        await meta.put('engineId', engineId);
        await meta.put('nextStoreId', 1);
      }
      // Before the HSM opens: a wrong store or an unreachable cluster is refused first.
      objectPool = await openVolumeStore(resolved.store, meta, engineId as string, meta.get('nextStoreId') === 1, resolved.dir);
      const events = await AuditLog.open({ root, clock: resolved.clock });
      hsm = await SoftHsm.open({
        root,
        dir: resolved.dir,
        ...(options.hsm.pkcs11 !== undefined
          ? { pkcs11: options.hsm.pkcs11 }
          : options.hsm.passphrase !== undefined
            ? { passphrase: options.hsm.passphrase }
            : { keyFile: options.hsm.keyFile as string }),
        clock: resolved.clock,
        audit: events,
        hooks: {
          // Cryptoshred, first half: called by deleteKey itself before any durable work. Every
          // affected volume is locked and its keys wiped in this turn; the stop signal goes to
          // the volumes' rotation tasks (ShredLock's onLocked).
          onDestroying: (keyCrn: string, affected: string[]) => {
            if (engineRef !== null) engineRef.#shredLock.lockNow(keyCrn, affected);
          },
          // A key suspended or enabled, an authorization revoked or granted: open volumes stop or resume.
          onAccessChanged: (changed) => {
            if (engineRef !== null) engineRef.#refreshKeyAccess(changed);
          },
          // Cryptoshred, second half: the key's material is destroyed; make the locks durable.
          onDestroyed: async (key: RootKeyInfo, affected: string[]) => {
            if (engineRef === null) return; // at HSM open: the engine's load locks volumes of destroyed keys
            // The lock, the key wipes and the stop signal to the volumes' rotation tasks happen in
            // this turn (ShredLock); deleteKey returns once the lock is persisted and every task on
            // the key has ended (whichever path locked first: an open may have found the key gone).
            const reason = new BlockvaultError('KEY_DESTROYED', `root key ${key.crn} was destroyed (cryptoshredded); its volumes are locked`, { keyCrn: key.crn });
            await Promise.all([engineRef.#shredLock.lockForKey(key.crn, affected), engineRef.tasks.abortTasks({ keyCrn: key.crn }, reason)]);
          },
          onRotated: async (key: RootKeyInfo, rotateOptions: { rewrapOnly: boolean }) => (engineRef === null ? [] : engineRef.#startRotationTasks(key, rotateOptions)),
        },
      });
      const engine = new Engine({ root, hsm, events, cipher, options: resolved, meta, engineId: engineId as string, rotation: options.rotation, dirLock, objectPool });
      engineRef = engine;
      await engine.#load();
      // Tasks that were queued or running when the process stopped continue from their checkpoint.
      await engine.tasks.resumeAll();
      engine.#scheduler = startScheduler(resolved.purgeIntervalMs, () => (engine.#closed ? Promise.resolve() : engine.runScheduler()));
      return engine;
    } catch (error) {
      await hsm?.close();
      await objectPool?.close();
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
  createVolume(options: CreateVolumeOptions): Promise<Volume> {
    return this.#guard(() => this.#lifecycle.create(options, (crn) => this.#port.provisioningKey(crn)));
  }

  /**
   * A handle on a volume by id or name (a live volume wins over a deleted one of the same name).
   * Works in every state; I/O on a locked or deleted volume fails with VOLUME_LOCKED / VOLUME_DELETED.
   */
  async openVolume(idOrName: string): Promise<Volume> {
    this.#checkOpen();
    const record = this.#catalog.find(idOrName);
    const core = await this.#volumes.acquire(record.id);
    return this.#volumes.handle(core);
  }

  /** Metadata of every volume, in every state (synchronous). */
  listVolumes(): VolumeInfo[] {
    this.#checkOpen();
    return this.#catalog.list();
  }

  /**
   * Soft delete: I/O fails with VOLUME_DELETED from now on (operations called before complete
   * first), the data keys leave memory, and the volume stays registered against its key until
   * the purge date (now + retentionMs). restoreVolume() undoes it until then.
   */
  deleteVolume(idOrName: string): Promise<VolumeInfo> {
    return this.#guard(() => this.#lifecycle.delete(idOrName));
  }

  /** Undo a soft delete during the retention period. */
  restoreVolume(idOrName: string): Promise<VolumeInfo> {
    return this.#guard(() => this.#lifecycle.restore(idOrName));
  }

  /**
   * Purge every deleted volume whose retention has passed, and finish purges a crash
   * interrupted: its clusters in bounded batches, then its registration, then its record.
   * Returns the ids purged.
   */
  purgeExpired(): Promise<string[]> {
    this.#checkOpen();
    return this.#purger.purgeExpired();
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
   * Serve volumes over NBD (src/nbd): on a Unix socket (`{ socketPath }`) or TCP (`{ host, port }`,
   * host 127.0.0.1 by default, port 0 picks a free one). Each export opens its volume once; all
   * connections share it. The handle gives the address and NBD URIs; its close() answers the
   * requests in flight, then flushes and closes the volumes it opened. engine.close() closes it too.
   */
  async serveNbd(listen: NbdListenOptions, exports: readonly NbdExportOptions[], options?: NbdServeOptions): Promise<NbdServerHandle> {
    this.#checkOpen();
    const handle = await startNbdServer((idOrName) => this.openVolume(idOrName), listen, exports, options);
    const close = handle.close.bind(handle);
    const tracked: NbdServerHandle = Object.defineProperties(handle, {
      close: {
        value: () => {
          this.#nbdServers.delete(tracked);
          return close();
        },
      },
    });
    this.#nbdServers.add(tracked);
    return tracked;
  }

  /** Close every volume (their keys are zeroized), flush, and close the HSM and LMDB. */
  close(): Promise<void> {
    this.#closing ??= this.#closeNow();
    return this.#closing;
  }

  // -------------------------------------------------------------------------------------------
  // Wiring.

  /**
   * One "Syncing KMS state" task per live volume registered against the rotated key. Locked
   * volumes have no key to move; soft-deleted ones keep their DEK wrapped under the older
   * version, which stays available for unwrap (old versions are destroyed only with the key).
   */
  #startRotationTasks(key: RootKeyInfo, rotateOptions: { rewrapOnly: boolean }): Promise<TaskRecord[]> {
    const specs = this.#catalog
      .records()
      .filter((record) => record.diskEncryptionKeyCrn === key.crn)
      .filter((record) => {
        const state = stateOf(record);
        return state === 'active' || state === 'syncing';
      })
      .map((record) => ({
        volumeId: record.id,
        keyCrn: key.crn,
        fromKeyVersion: writeGenerationOf(record).keyVersion,
        toKeyVersion: key.version,
        mode: rotateOptions.rewrapOnly ? ('rewrap' as const) : ('reencrypt' as const),
      }));
    return specs.length === 0 ? Promise.resolve([]) : this.tasks.createMany(specs);
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
  // Lifecycle of the engine.

  async #load(): Promise<void> {
    this.#catalog.load();
    await this.#reconcileWithHsm();
    await this.#purger.purgeExpired();
  }

  /**
   * After a crash: volumes whose key was destroyed while the lock hook could not run are locked
   * now, and registrations of volumes whose creation never completed are removed.
   */
  async #reconcileWithHsm(): Promise<void> {
    for (const record of this.#catalog.records()) {
      if (this.#catalog.current(record.id).lockedAtMs !== null) continue;
      const key = await this.hsm.getKey(record.diskEncryptionKeyCrn).catch(() => null);
      if (key !== null && key.state === KeyState.Destroyed) await this.#shredLock.lockForKey(key.crn);
    }
    const known = new Set(this.#catalog.records().map((r) => r.crn));
    for (const registration of await this.hsm.listRegistrations({})) {
      if (!this.#port.isOwnVolumeCrn(registration.resourceCrn) || known.has(registration.resourceCrn)) continue;
      await this.#port.keyService.deleteRegistration(registration.keyCrn, registration.resourceCrn).catch(() => undefined);
    }
  }

  /**
   * Ask the HSM again whether the storage service may use the keys a metadata change touched
   * (and, when authorizations changed, every key of an open volume and every key refused now).
   * Synchronous, so I/O stops in the same turn as the HSM's commit.
   */
  #refreshKeyAccess(changed: { keyCrns: string[]; authorizations: boolean }): void {
    if (this.#closed) return;
    const keys = new Set(changed.keyCrns);
    if (changed.authorizations) {
      for (const crn of this.#volumes.keyCrns()) keys.add(crn);
      for (const crn of this.#keyAccess.refusedKeys()) keys.add(crn);
    }
    for (const crn of keys) this.#keyAccess.set(crn, this.#port.keyAccessError(crn));
  }

  #guard<T>(run: () => Promise<T>): Promise<T> {
    try {
      this.#checkOpen();
      return run();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw this.#closedError();
  }

  #closedError(): BlockvaultError {
    return new BlockvaultError('ENGINE_CLOSED', `the engine in ${this.#options.dir} is closed; open it again with Engine.open`);
  }

  async #closeNow(): Promise<void> {
    // NBD clients get their in-flight requests answered before the volumes close under them.
    await Promise.all([...this.#nbdServers].map((server) => server.close()));
    // Running tasks pause at a checkpoint (they resume on the next open) before volumes close.
    await this.tasks.close();
    this.#closed = true;
    this.#scheduler?.stop();
    await this.#purger.settled();
    await this.#volumes.closeAll(this.#closedError());
    this.#catalog.close();
    await this.#root.flushed;
    await this.#hsm.close();
    this.events.close();
    // Every volume has closed, so every write to the pool was answered.
    await this.#objectPool?.close();
    await this.#root.close();
    this.#dirLock.release();
  }
}

/**
 * The engine's LMDB environment. Durability, chosen deliberately:
 *  - noSync stays off: every LMDB commit is fsynced. Nothing acknowledged is ever left to the OS's
 *    whim.
 *  - overlappingSync (lmdb-js's default off Windows) fsyncs each commit just after the write lock
 *    is released, overlapping the next transaction. A write's promise resolves once its
 *    transaction has committed: it survives a crash of the process (the pages are in the OS page
 *    cache and LMDB opens the last committed transaction while the boot id is unchanged);
 *    `flush()` additionally waits for the fsync (`root.flushed`), so flushed data also survives
 *    power loss. That is a disk's contract (write, then flush for a barrier) at a fraction of the
 *    cost of one fsync per acknowledged write.
 *  - at most lmdbFreePagesKeptMax free page numbers kept in memory between transactions.
 *  - one environment for volumes, clusters, HSM keystore, audit log and tasks, so a volume record
 *    and its key registration move in commit order.
 */
function openEnvironment(options: ResolvedOptions): RootDatabase {
  return open(lmdbEnvironmentOptions(join(options.dir, LMDB_FILE), options.mapSizeBytes, options.lmdbFreePagesKeptMax));
}

/**
 * The settings above as lmdb-js options, exported so that a benchmark's raw-LMDB baseline
 * (bench/volume.bench.ts) runs on exactly the engine's settings.
 */
export function lmdbEnvironmentOptions(path: string, mapSizeBytes: number, freePagesKeptMax: number): RootDatabaseOptionsWithPath {
  // lmdb-js reads the two free-list options (src/env.cpp) but its types do not name them.
  const envOptions: RootDatabaseOptionsWithPath & { maxFreeSpaceToRetain: number; maxFreeSpaceToLoad: number } = {
    path,
    maxDbs: 32,
    mapSize: mapSizeBytes,
    pageSize: 4096,
    overlappingSync: process.platform !== 'win32',
    noSync: false,
    compression: false,
    encoding: 'msgpack',
    // A short free list in memory keeps every commit cheap after heavy random writes
    // (DEFAULT_LMDB_FREE_PAGES_KEPT_MAX says what it measured).
    maxFreeSpaceToRetain: freePagesKeptMax,
    maxFreeSpaceToLoad: freePagesKeptMax,
  };
  return envOptions;
}

/** Binary keys (storeId u32 BE + index u64 BE) and values, no compression (ciphertext does not compress), no cache. */
function openBinaryDb(root: RootDatabase, name: string): Database<Buffer, Buffer> {
  return root.openDB<Buffer, Buffer>(name, { keyEncoding: 'binary', encoding: 'binary', compression: false, cache: false });
}
