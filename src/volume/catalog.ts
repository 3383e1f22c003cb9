/**
 * The volume catalog: the one owner of VolumeRecords (LMDB sub-database `volumes`, keyed by volume
 * id) and of the rules about them: lookup by id or name, unique names among live volumes, store-id
 * allocation, and the record changes that move a volume between its states (src/volume/record.ts).
 *
 * Records are immutable values: a change replaces the record, visible at once to every step that
 * runs after it (`set`), persisted when `save`'s promise resolves. Open volumes follow every change
 * through the `onRecord` callback, so a VolumeCore never acts on an older record than the catalog's.
 *
 * Every stored record carries a MAC (HMAC-SHA256 over its key and value, src/util/record-mac.ts)
 * under a key the HSM derives from its metadata key. A record decides how data is read (sector
 * size, cluster geometry, which wrapped key), so an edited one must not open: the LUKS2
 * CVE-2021-4122 lesson. `load` refuses the first record that fails with VOLUME_CORRUPT naming it.
 * What a MAC cannot catch: replacing the whole directory (or a record) with an older copy that was
 * genuine then; the README says so.
 */
import type { Database } from 'lmdb';
import { BlockvaultError, assert } from '../errors.js';
import { MAC_BYTES, macEqual, recordMac } from '../util/record-mac.js';
import { VOLUME_RECORD_VERSION, infoOf, type VolumeInfo, type VolumeRecord } from './record.js';

const VOLUME_NAME_LENGTH_MAX = 128;
/** Records of volumes purged during this session, kept so handles still describe them. */
const PURGED_REMEMBERED_MAX = 1024;

/** A record as stored: the record's own fields and its MAC. */
export type StoredVolumeRecord = VolumeRecord & { mac: Uint8Array };

export interface CatalogDeps {
  /** The `volumes` sub-database (msgpack records, each with its MAC). */
  volumes: Database<StoredVolumeRecord, string>;
  /** The 32-byte key that authenticates stored records (the HSM's `recordKey('volume-records')`). */
  recordKey: Uint8Array;
  /** The `engine-meta` sub-database: holds `nextStoreId`. */
  meta: Database<unknown, string>;
  /** Called synchronously whenever a record is replaced or added. */
  onRecord(record: VolumeRecord): void;
}

export class VolumeCatalog {
  readonly #deps: CatalogDeps;
  readonly #records = new Map<string, VolumeRecord>();
  readonly #reservedNames = new Set<string>();
  readonly #purged = new Map<string, VolumeRecord>();

  constructor(deps: CatalogDeps) {
    assert(deps.recordKey.length === MAC_BYTES, `the volume record key is ${MAC_BYTES} bytes`);
    this.#deps = deps;
  }

  /** Read and authenticate every stored record (once, at engine open); VOLUME_CORRUPT names the first that fails. */
  load(): void {
    for (const { key, value } of this.#deps.volumes.getRange()) {
      const record = this.#verified(key, value);
      this.#records.set(record.id, record);
    }
  }

  #verified(key: string, stored: unknown): VolumeRecord {
    const corrupt = (why: string): never => {
      throw new BlockvaultError(
        'VOLUME_CORRUPT',
        `the stored record of volume ${JSON.stringify(key)} ${why}: it was edited or damaged outside blockvault, and the engine refuses to open rather than read data with it. Restore the engine directory from a backup`,
        { volumeId: key, place: `volumes/${key}` },
      );
    };
    if (stored === null || typeof stored !== 'object') return corrupt('is not a record');
    const { mac, ...record } = stored as StoredVolumeRecord;
    if (!(mac instanceof Uint8Array) || mac.length !== MAC_BYTES) return corrupt('has no MAC');
    if (!macEqual(mac, this.#mac(key, record))) return corrupt('fails its MAC');
    // Authentic from here on: what follows checks blockvault's own invariants.
    assert(record.id === key, `volume record ${key} holds its own id`);
    assert(record.recordVersion === VOLUME_RECORD_VERSION, `volume record version ${record.recordVersion} is supported`);
    return record;
  }

  #mac(key: string, record: VolumeRecord): Buffer {
    return recordMac(this.#deps.recordKey, ['volumes', key], record);
  }

  #stored(record: VolumeRecord): StoredVolumeRecord {
    return { ...record, mac: this.#mac(record.id, record) };
  }

  get(volumeId: string): VolumeRecord | undefined {
    return this.#records.get(volumeId);
  }

  /** The current record of a volume known to exist. */
  current(volumeId: string): VolumeRecord {
    const record = this.#records.get(volumeId);
    assert(record !== undefined, `volume ${volumeId} is in the catalog`);
    return record;
  }

  /** Every record, in no particular order (a snapshot: safe to change records while iterating). */
  records(): VolumeRecord[] {
    return [...this.#records.values()];
  }

  /** Metadata of every volume, in every state, oldest first. */
  list(): VolumeInfo[] {
    return this.records()
      .sort((a, b) => a.createdAtMs - b.createdAtMs || a.id.localeCompare(b.id))
      .map(infoOf);
  }

  /** Metadata of a volume, also of one purged during this session (its last record). */
  infoOrLast(volumeId: string): VolumeInfo {
    const record = this.#records.get(volumeId) ?? this.#purged.get(volumeId);
    assert(record !== undefined, `volume ${volumeId} is known`);
    return infoOf(record);
  }

  /** By id, else by name: a live volume wins over a deleted one of the same name (the newest deleted one otherwise). */
  find(idOrName: string, options: { preferDeleted?: boolean } = {}): VolumeRecord {
    if (typeof idOrName !== 'string' || idOrName.length === 0) {
      throw new BlockvaultError('INVALID_ARGUMENT', 'a volume id or name is a non-empty string');
    }
    const byId = this.#records.get(idOrName);
    if (byId !== undefined) return byId;
    const named = this.records().filter((r) => r.name === idOrName);
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
  checkNameFree(name: string, exceptId?: string): void {
    const taken = this.#reservedNames.has(name) || this.records().some((r) => r.name === name && r.deletedAtMs === null && r.id !== exceptId);
    if (taken) throw new BlockvaultError('ALREADY_EXISTS', `a volume named ${JSON.stringify(name)} already exists; choose another name`, { name });
  }

  /** Hold a free name while a volume is being created; the returned function gives it back. */
  reserveName(name: string): () => void {
    this.checkNameFree(name);
    this.#reservedNames.add(name);
    return () => this.#reservedNames.delete(name);
  }

  /**
   * The next u32 store id: never reused, so a purge of an old volume never meets a new one's
   * clusters. The counter itself is not authenticated, so it is checked against the authenticated
   * records: one edited back to a live volume's store id would give the new volume that volume's
   * clusters (garbage to read, and its writes would destroy the other's data).
   */
  allocateStoreId(): Promise<number> {
    const meta = this.#deps.meta;
    return meta.transaction(() => {
      const next = meta.get('nextStoreId');
      if (typeof next !== 'number' || !Number.isSafeInteger(next) || next < 1 || next >= 0xffff_ffff) {
        throw storeIdCorrupt(`is ${JSON.stringify(next)}, not a store id`);
      }
      for (const record of this.#records.values()) {
        if (record.storeId >= next) throw storeIdCorrupt(`(${next}) is not above the store id ${record.storeId} of volume ${record.name} (${record.id})`);
      }
      meta.putSync('nextStoreId', next + 1);
      return next;
    });
  }

  /** The engine closed: zero the record key (a secret derived from the HSM's master key). */
  close(): void {
    this.#deps.recordKey.fill(0);
  }

  /** Replace (or add) a record in memory, synchronously: every step that runs after this sees it. */
  set(record: VolumeRecord): void {
    this.#records.set(record.id, record);
    this.#deps.onRecord(record);
  }

  /** Visible at once (to steps that run after this), persisted when the promise resolves; undone in memory if the put fails. */
  async save(record: VolumeRecord): Promise<void> {
    const previous = this.#records.get(record.id);
    this.set(record);
    try {
      await this.#deps.volumes.put(record.id, this.#stored(record));
    } catch (error) {
      if (previous !== undefined && this.#records.get(record.id) === record) this.set(previous);
      throw error;
    }
  }

  /** Persist records already set in memory, in one transaction; a record replaced since is skipped (its own save persists it). */
  async persist(records: readonly VolumeRecord[]): Promise<void> {
    if (records.length === 0) return;
    const volumes = this.#deps.volumes;
    await volumes.transaction(() => {
      for (const record of records) {
        if (this.#records.get(record.id) === record) volumes.putSync(record.id, this.#stored(record));
      }
    });
  }

  /** Remove a purged volume's record for good (its last record stays describable for this session). */
  async remove(record: VolumeRecord): Promise<void> {
    await this.#deps.volumes.remove(record.id);
    this.#records.delete(record.id);
    this.#purged.set(record.id, record);
    if (this.#purged.size > PURGED_REMEMBERED_MAX) this.#purged.delete(this.#purged.keys().next().value!);
  }
}

export function checkVolumeName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > VOLUME_NAME_LENGTH_MAX || /[\u0000-\u001f\u007f]/.test(name) || name.trim() !== name) {
    throw new BlockvaultError(
      'INVALID_ARGUMENT',
      `a volume name is 1 to ${VOLUME_NAME_LENGTH_MAX} characters without control characters or surrounding spaces, got ${JSON.stringify(name)}`,
    );
  }
  return name;
}

function storeIdCorrupt(why: string): BlockvaultError {
  return new BlockvaultError(
    'VOLUME_CORRUPT',
    `the engine's next volume store id ${why}: the engine directory's metadata was changed outside blockvault; restore the directory from a backup`,
    { place: 'engine-meta/nextStoreId' },
  );
}
