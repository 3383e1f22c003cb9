/**
 * The persisted volume record (LMDB sub-database `volumes`, keyed by volume id) and the public
 * metadata derived from it. The record holds everything `info()` shows, so metadata stays readable
 * in every state: after a restart, while locked (the key destroyed), and while soft-deleted.
 */
import type { SectorSize } from './cluster-format.js';
import type { VolumeLayout } from './cluster-store.js';

export type VolumeState = 'active' | 'syncing' | 'locked' | 'deleted';

/** One generation of the volume's data key, stored only wrapped (AES-KWP, RFC 5649) by the root key. */
export interface DataKeyGeneration {
  generation: number;
  /** The root-key version that wrapped it. */
  keyVersion: number;
  wrapped: Uint8Array;
  createdAtMs: number;
}

export const VOLUME_RECORD_VERSION = 1;

export interface VolumeRecord {
  recordVersion: number;
  id: string;
  /** The u32 prefix of this volume's cluster keys; never reused, so a purge never meets a new volume. */
  storeId: number;
  name: string;
  crn: string;
  sizeBytes: number;
  sectorSize: SectorSize;
  clusterSectors: number;
  /** How clusters are stored (src/volume/cluster-store.ts); fixed per volume. */
  layout: VolumeLayout;
  diskEncryptionKeyCrn: string;
  platformManaged: boolean;
  generations: DataKeyGeneration[];
  writeGeneration: number;
  createdAtMs: number;
  deletedAtMs: number | null;
  purgeAtMs: number | null;
  /** When the purge started; set before the first cluster is removed, so a crash resumes it. */
  purgingSinceMs: number | null;
  lockedAtMs: number | null;
  lockReason: string | null;
  /** The rotation task re-encrypting or rewrapping this volume ('syncing'), if any. */
  syncTaskId: string | null;
  /**
   * When the retention purge removed the sectors and the registration of a volume that was also
   * locked: its record stays for good as a tombstone, so a cryptoshredded volume's metadata stays
   * readable (DESIGN.md). Absent in records written before the field existed: read it as null.
   */
  dataPurgedAtMs?: number | null;
}

/** Public metadata of a volume, in every state. */
export interface VolumeInfo {
  id: string;
  name: string;
  /** The volume's CRN (the resource registered against its root key). */
  crn: string;
  sizeBytes: number;
  sectorSize: SectorSize;
  /** Sectors per cluster (the unit of re-encryption; fixed per volume). */
  clusterSectors: number;
  /** 'split' (4096-byte sectors: a body per sector plus a small meta per cluster) or 'compact' (one value per cluster). */
  layout: VolumeLayout;
  diskEncryptionKeyCrn: string;
  /** The root-key version wrapping the current write generation's data key. */
  keyVersion: number;
  platformManaged: boolean;
  state: VolumeState;
  /** Data-key generation new writes are encrypted under; older ones exist only during re-encryption. */
  dataKeyGeneration: number;
  dataKeyGenerations: number;
  createdAtMs: number;
  deletedAtMs: number | null;
  purgeAtMs: number | null;
  lockedAtMs: number | null;
  lockReason: string | null;
  syncTaskId: string | null;
  /** Set once a locked, soft-deleted volume's sectors were purged; its metadata stays. */
  dataPurgedAtMs: number | null;
}

/** Locked wins over deleted: once the key is gone, nothing (not even a restore) brings the data back. */
export function stateOf(record: VolumeRecord): VolumeState {
  if (record.lockedAtMs !== null) return 'locked';
  if (record.deletedAtMs !== null) return 'deleted';
  if (record.syncTaskId !== null) return 'syncing';
  return 'active';
}

export function writeGenerationOf(record: VolumeRecord): DataKeyGeneration {
  const found = record.generations.find((g) => g.generation === record.writeGeneration);
  if (found === undefined) throw new Error(`blockvault invariant violated: volume ${record.id} has its write generation ${record.writeGeneration} stored`);
  return found;
}

export function infoOf(record: VolumeRecord): VolumeInfo {
  return {
    id: record.id,
    name: record.name,
    crn: record.crn,
    sizeBytes: record.sizeBytes,
    sectorSize: record.sectorSize,
    clusterSectors: record.clusterSectors,
    layout: record.layout,
    diskEncryptionKeyCrn: record.diskEncryptionKeyCrn,
    keyVersion: writeGenerationOf(record).keyVersion,
    platformManaged: record.platformManaged,
    state: stateOf(record),
    dataKeyGeneration: record.writeGeneration,
    dataKeyGenerations: record.generations.length,
    createdAtMs: record.createdAtMs,
    deletedAtMs: record.deletedAtMs,
    purgeAtMs: record.purgeAtMs,
    lockedAtMs: record.lockedAtMs,
    lockReason: record.lockReason,
    syncTaskId: record.syncTaskId,
    dataPurgedAtMs: record.dataPurgedAtMs ?? null,
  };
}

/** Records are replaced, never mutated in place: readers holding the old object see a consistent one. */
export function withChanges(record: VolumeRecord, changes: Partial<VolumeRecord>): VolumeRecord {
  return { ...record, ...changes };
}
