/**
 * The engine's internal parts, for this repository's tests, benchmarks and stress harness only:
 * not on the public Engine class and not exported from the package (src/index.ts). They reach a
 * volume's re-encryption target without a task, mark a volume syncing, or lock volumes as the
 * cryptoshred hook does, or store a record as the catalog would, to test those paths on a real engine.
 */
import type { VolumeInfo, VolumeRecord } from './volume/record.js';
import type { VolumeReencryptTarget } from './volume/reencrypt-target.js';
import type { ShredLock } from './volume/shred-lock.js';

export interface EngineInternals {
  /** The volume's re-encryption target (held open until `target.close()`), as rotation tasks get it. */
  reencryptTarget(volumeId: string): Promise<VolumeReencryptTarget>;
  /** Mark a volume 'syncing' for a task id, or back to 'active' (null), as the task manager does. */
  markSyncing(volumeId: string, taskId: string | null): Promise<VolumeInfo>;
  /** The cryptoshred lock of every volume on `keyCrn` (or registered as one of `resourceCrns`). */
  lockVolumesForKey(keyCrn: string, resourceCrns?: readonly string[], reason?: string): Promise<VolumeInfo[]>;
  /** The lock itself, for harnesses that observe when it takes effect. */
  shredLock: ShredLock;
  /** Store a volume record as the catalog does (authenticated), to build the state a crash leaves behind. */
  saveRecord(record: VolumeRecord): Promise<void>;
  /** The catalog's current record of a volume. */
  record(volumeId: string): VolumeRecord;
  /** The object name of a volume's cluster in the engine's RADOS pool, or null when its volumes are in LMDB. */
  clusterObjectName(volumeId: string, clusterIndex: number): string | null;
}

const registry = new WeakMap<object, EngineInternals>();

/** Called once by the Engine constructor. */
export function registerEngineInternals(engine: object, internals: EngineInternals): void {
  registry.set(engine, internals);
}

export function engineInternals(engine: object): EngineInternals {
  const internals = registry.get(engine);
  if (internals === undefined) throw new TypeError('engineInternals: not an Engine');
  return internals;
}
