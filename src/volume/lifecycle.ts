/**
 * A volume's life in the catalog: provisioning (a record, its first data key wrapped by a root key,
 * its registration against that key), the soft delete with its retention period, and restore
 * (DESIGN.md, "Deletion and cryptoshredding"). The purge that ends the retention is in purge.ts,
 * the cryptoshred lock in shred-lock.ts.
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from '../clock.js';
import { BlockvaultError } from '../errors.js';
import { checkVolumeName, type VolumeCatalog } from './catalog.js';
import { CLUSTER_SECTORS_MAX, type SectorSize } from './cluster-format.js';
import type { VolumeLayout } from './cluster-store.js';
import type { DataKeyGenerations } from './generations.js';
import { keysShreddedError, type OpenVolumes, type VolumeAudit, type VolumeKeyService } from './open-volumes.js';
import { VOLUME_RECORD_VERSION, infoOf, stateOf, withChanges, type VolumeInfo, type VolumeRecord } from './record.js';
import type { Volume } from './volume.js';
import { VolumeCore, type VolumeCoreDeps } from './volume-core.js';

export interface CreateVolumeOptions {
  name: string;
  sizeBytes: number;
  sectorSize?: SectorSize;
  /** Full CRN of a root key in the HSM; without it the volume gets a platform-managed root key. */
  diskEncryptionKeyCrn?: string;
}

/** The root key a new volume is provisioned under, as the engine resolved it. */
export interface ProvisioningKey {
  crn: string;
  platformManaged: boolean;
}

export interface LifecycleDeps {
  catalog: VolumeCatalog;
  volumes: OpenVolumes;
  generations: DataKeyGenerations;
  keyService: VolumeKeyService;
  coreDeps: VolumeCoreDeps;
  audit: VolumeAudit;
  clock: Clock;
  /** Resolves once every LMDB commit so far is fsynced (root.flushed). */
  flushed(): Promise<unknown>;
  /** The CRN of a volume with this id under this root key. */
  volumeCrn(keyCrn: string, volumeId: string): string;
  /** Refuse a malformed root-key CRN (INVALID_CRN) before anything is reserved. */
  checkKeyCrn(crn: string): void;
  /** Settings for new volumes. */
  retentionMs: number;
  clusterBytes: number;
  volumeLayout: VolumeLayout;
}

export class VolumeLifecycle {
  readonly #deps: LifecycleDeps;

  constructor(deps: LifecycleDeps) {
    this.#deps = deps;
  }

  /**
   * Provision a volume: validate the options, then (with the name held) have the engine resolve
   * the root key, wrap a fresh data key under it, register the volume against it and store the
   * record. On any failure nothing is left behind.
   */
  async create(options: CreateVolumeOptions, resolveKey: (crn: string | undefined) => Promise<ProvisioningKey>): Promise<Volume> {
    if (typeof options !== 'object' || options === null) invalid('createVolume({ name, sizeBytes, sectorSize?, diskEncryptionKeyCrn? }) takes an options object');
    const name = checkVolumeName(options.name);
    const sectorSize = options.sectorSize ?? 4096;
    if (sectorSize !== 512 && sectorSize !== 4096) invalid(`sectorSize must be 512 or 4096, got ${String(sectorSize)}`);
    const sizeBytes = options.sizeBytes;
    if (typeof sizeBytes !== 'number' || !Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % sectorSize !== 0) {
      invalid(`sizeBytes must be a positive whole number of ${sectorSize}-byte sectors, got ${String(sizeBytes)}`);
    }
    if (options.diskEncryptionKeyCrn !== undefined) this.#deps.checkKeyCrn(options.diskEncryptionKeyCrn);
    const { catalog, keyService, clock } = this.#deps;
    const unreserve = catalog.reserveName(name);
    try {
      const key = await resolveKey(options.diskEncryptionKeyCrn);
      const id = randomUUID();
      const crn = this.#deps.volumeCrn(key.crn, id);
      const first = await this.#deps.generations.first(key.crn, id);
      let registered = false;
      try {
        await keyService.createRegistration(key.crn, crn, first.generation.keyVersion);
        registered = true;
        const record: VolumeRecord = {
          recordVersion: VOLUME_RECORD_VERSION,
          id,
          storeId: await catalog.allocateStoreId(),
          name,
          crn,
          sizeBytes,
          sectorSize,
          clusterSectors: Math.min(CLUSTER_SECTORS_MAX, Math.max(1, this.#deps.clusterBytes / sectorSize)),
          layout: sectorSize === 4096 ? this.#deps.volumeLayout : 'compact',
          diskEncryptionKeyCrn: key.crn,
          platformManaged: key.platformManaged,
          generations: [first.generation],
          writeGeneration: 1,
          createdAtMs: clock.nowMs(),
          deletedAtMs: null,
          purgeAtMs: null,
          purgingSinceMs: null,
          dataPurgedAtMs: null,
          lockedAtMs: null,
          lockReason: null,
          syncTaskId: null,
        };
        await catalog.save(record);
        await this.#deps.flushed();
        const core = new VolumeCore(record, this.#deps.coreDeps);
        core.keys.set(1, first.dataKey);
        this.#deps.volumes.adopt(core);
        await this.#deps.audit('blockvault.volume.create', record);
        return this.#deps.volumes.handle(core);
      } catch (error) {
        first.dataKey.fill(0);
        if (registered) await keyService.deleteRegistration(key.crn, crn).catch(() => undefined);
        throw error;
      }
    } finally {
      unreserve();
    }
  }

  /**
   * Soft delete: I/O fails with VOLUME_DELETED from now on (operations called before complete
   * first), the data keys leave memory, and the volume stays registered against its key until
   * the purge date (now + retentionMs).
   */
  async delete(idOrName: string): Promise<VolumeInfo> {
    const { catalog, clock } = this.#deps;
    const record = catalog.find(idOrName);
    if (record.deletedAtMs !== null) return infoOf(record);
    const apply = async (): Promise<void> => {
      const now = clock.nowMs();
      await catalog.save(withChanges(catalog.current(record.id), { deletedAtMs: now, purgeAtMs: now + this.#deps.retentionMs }));
      this.#deps.volumes.get(record.id)?.wipeKeys();
    };
    const core = this.#deps.volumes.get(record.id);
    // Through the volume's queue, so operations called before the delete complete first.
    if (core !== undefined) await core.queue.submitOne(apply);
    else await apply();
    const deleted = catalog.current(record.id);
    await this.#deps.audit('blockvault.volume.delete', deleted);
    return infoOf(deleted);
  }

  /** Undo a soft delete during the retention period. */
  async restore(idOrName: string): Promise<VolumeInfo> {
    const { catalog } = this.#deps;
    const record = catalog.find(idOrName, { preferDeleted: true });
    if (record.deletedAtMs === null) return infoOf(record);
    if (record.purgingSinceMs !== null) {
      throw new BlockvaultError('NOT_FOUND', `volume ${record.name} (${record.id}) is being purged and cannot be restored`, { volumeId: record.id });
    }
    if (stateOf(record) === 'locked') {
      throw new BlockvaultError('VOLUME_LOCKED', `volume ${record.name} (${record.id}) cannot be restored: its root key was destroyed, so its data is gone for good`, {
        volumeId: record.id,
        keyCrn: record.diskEncryptionKeyCrn,
      });
    }
    catalog.checkNameFree(record.name, record.id);
    const core = this.#deps.volumes.get(record.id);
    if (core !== undefined) await this.#deps.volumes.loadKeys(core, record);
    // The key may have been destroyed while the keys were unwrapped: restore the current record,
    // never an older copy without the lock.
    const current = catalog.current(record.id);
    if (stateOf(current) === 'locked') throw keysShreddedError(current);
    const restored = withChanges(current, { deletedAtMs: null, purgeAtMs: null });
    await catalog.save(restored);
    await this.#deps.audit('blockvault.volume.restore', restored);
    return infoOf(restored);
  }
}

function invalid(message: string): never {
  throw new BlockvaultError('INVALID_ARGUMENT', message);
}
