/**
 * The end of a soft delete's retention: a deleted volume's sectors go in bounded batches, then its
 * registration, then its record, and a platform-managed root key goes with the one volume it
 * served. A cryptoshredded volume keeps its record for good as a tombstone (its metadata stays
 * readable, DESIGN.md). Every step is persisted before the next, and `purgingSinceMs` is set
 * before the first sector is removed, so a purge a crash interrupted is finished on the next open.
 *
 * Runs never overlap: a purge requested while one runs starts after it.
 */
import type { Database } from 'lmdb';
import type { Clock } from '../clock.js';
import { BlockvaultError } from '../errors.js';
import type { VolumeCatalog } from './catalog.js';
import { purgeBatch } from './cluster-store.js';
import { purgeObjects, type ClusterObjects } from './object-store.js';
import type { OpenVolumes, VolumeAudit, VolumeKeyService } from './open-volumes.js';
import { withChanges, type VolumeRecord } from './record.js';

/**
 * Each purge batch is one LMDB transaction of at most this many removals. Why so few: the pages a
 * transaction frees become one record of LMDB's free list, which LMDB loads whole when it next
 * needs pages, and lmdb-js 3.5's LMDB goes over the loaded list at every commit. After the purge
 * of a randomly written 256 MiB volume in batches of 4096 keys, every later 4 KiB write + flush on
 * another volume cost 119-139 ms of CPU (0.03 MB/s), against 0.7 ms before the purge; with 1024
 * keys 3 ms, with 512 keys 0.7 ms, and the purge itself took 0.6 s instead of 3.4 s (2026-12-08).
 */
const PURGE_BATCH_KEYS = 512;
/** Object removals per purge step on a RADOS pool (no LMDB free list there). */
const PURGE_BATCH_OBJECTS = 4096;

export interface PurgeDeps {
  catalog: VolumeCatalog;
  volumes: OpenVolumes;
  keyService: VolumeKeyService;
  stores: { clusters: Database<Buffer, Buffer>; sectors: Database<Buffer, Buffer> };
  /** Where the clusters are when not in LMDB (src/volume/object-store.ts). */
  objectPool?: { objects: ClusterObjects; oidPrefix: string };
  audit: VolumeAudit;
  clock: Clock;
  flushed(): Promise<unknown>;
  /** True once the engine is closing: a run stops between volumes. */
  closing(): boolean;
  /** A purged (not locked) volume's record is gone: the engine deletes its platform key if nothing else uses it. */
  afterRemoved(record: VolumeRecord): Promise<void>;
}

export class VolumePurger {
  readonly #deps: PurgeDeps;
  #run: Promise<string[]> | null = null;

  constructor(deps: PurgeDeps) {
    this.#deps = deps;
  }

  /** Purge every deleted volume whose retention has passed, and finish interrupted purges; the ids purged. */
  purgeExpired(): Promise<string[]> {
    const previous = this.#run ?? Promise.resolve([]);
    const run = previous.catch(() => []).then(() => this.#purgeDue());
    this.#run = run;
    void run
      .finally(() => {
        if (this.#run === run) this.#run = null;
      })
      .catch(() => undefined);
    return run;
  }

  /** The run under way, if any (engine close waits for it). */
  settled(): Promise<unknown> {
    return this.#run?.catch(() => undefined) ?? Promise.resolve();
  }

  async #purgeDue(): Promise<string[]> {
    const now = this.#deps.clock.nowMs();
    const due = this.#deps.catalog
      .records()
      .filter((r) => r.purgingSinceMs !== null || (r.purgeAtMs !== null && r.purgeAtMs <= now && (r.dataPurgedAtMs ?? null) === null));
    const purged: string[] = [];
    for (const record of due) {
      if (this.#deps.closing()) break;
      await this.#purgeOne(record);
      purged.push(record.id);
    }
    return purged;
  }

  /** Remove the volume's clusters in bounded batches (LMDB transactions, or object removals). */
  async #purgeData(record: VolumeRecord): Promise<void> {
    // Let I/O on other volumes proceed between batches.
    const yieldToIo = () => new Promise<void>((resolve) => setImmediate(resolve));
    const pool = this.#deps.objectPool;
    if (pool === undefined) {
      while ((await purgeBatch(this.#deps.stores, record.storeId, PURGE_BATCH_KEYS)) > 0) await yieldToIo();
      return;
    }
    const clustersTotal = Math.ceil(record.sizeBytes / (record.sectorSize * record.clusterSectors));
    await purgeObjects(pool.objects, pool.oidPrefix, record.storeId, clustersTotal, PURGE_BATCH_OBJECTS, yieldToIo);
  }

  async #purgeOne(record: VolumeRecord): Promise<void> {
    const { catalog, clock } = this.#deps;
    await this.#deps.volumes.drop(record.id, new BlockvaultError('VOLUME_DELETED', `volume ${record.name} (${record.id}) was purged`, { volumeId: record.id }));
    let current = catalog.current(record.id);
    if (current.purgingSinceMs === null) {
      current = withChanges(current, { purgingSinceMs: clock.nowMs() });
      await catalog.save(current);
    }
    await this.#purgeData(current);
    await this.#deps.keyService.deleteRegistration(current.diskEncryptionKeyCrn, current.crn);
    if (current.lockedAtMs !== null) {
      // Cryptoshredded: the sectors (unreadable anyway) and the registration go, the metadata
      // stays readable for good as a tombstone.
      const tombstone = withChanges(current, { purgingSinceMs: null, dataPurgedAtMs: clock.nowMs() });
      await catalog.save(tombstone);
      await this.#deps.flushed();
      await this.#deps.audit('blockvault.volume.purge', tombstone);
      return;
    }
    await catalog.remove(current);
    await this.#deps.flushed();
    await this.#deps.audit('blockvault.volume.purge', current);
    await this.#deps.afterRemoved(current);
  }
}

/** The engine's background scheduler: `run` every `intervalMs` (0: never) until stopped; a failed run is retried on the next tick. */
export function startScheduler(intervalMs: number, run: () => Promise<unknown>): { stop(): void } {
  if (intervalMs === 0) return { stop: () => undefined };
  const timer = setInterval(() => {
    run().catch((error: unknown) => {
      process.emitWarning(`blockvault: background scheduler run failed (it is retried): ${(error as Error).message}`);
    });
  }, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
