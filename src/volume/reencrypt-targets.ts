/**
 * What rotation gets from the volumes, passed to the task manager at construction: a volume's
 * re-encryption target (held open, its data keys loaded, until the target closes) and the
 * 'syncing' mark a volume shows while its task runs. Rotation drives everything else through the
 * target (src/volume/reencrypt-target.ts), whose generation steps are in generations.ts.
 */
import type { BlockvaultError } from '../errors.js';
import type { VolumeCatalog } from './catalog.js';
import type { DataKeyGenerations } from './generations.js';
import type { OpenVolumes } from './open-volumes.js';
import { infoOf, withChanges, type VolumeInfo } from './record.js';
import { VolumeReencryptTarget } from './reencrypt-target.js';

export interface ReencryptTargetsDeps {
  catalog: VolumeCatalog;
  volumes: OpenVolumes;
  generations: DataKeyGenerations;
  /** Refusal if the engine is closed, else null. */
  engineError(): BlockvaultError | null;
}

export class ReencryptTargets {
  readonly #deps: ReencryptTargetsDeps;

  constructor(deps: ReencryptTargetsDeps) {
    this.#deps = deps;
  }

  /** The volume's re-encryption target; refused (VOLUME_LOCKED, VOLUME_DELETED, ...) when the volume cannot do I/O. */
  async open(volumeId: string): Promise<VolumeReencryptTarget> {
    this.#checkOpen();
    const record = this.#deps.catalog.find(volumeId);
    const core = await this.#deps.volumes.acquire(record.id);
    const error = core.ioError();
    if (error !== null) {
      await this.#deps.volumes.release(core);
      throw error;
    }
    return new VolumeReencryptTarget(core, this.#deps.generations);
  }

  /** Mark a volume 'syncing' while task `taskId` works on it, or back to 'active' (null). */
  async markSyncing(volumeId: string, taskId: string | null): Promise<VolumeInfo> {
    this.#checkOpen();
    const { catalog } = this.#deps;
    const record = catalog.find(volumeId);
    if (record.syncTaskId === taskId) return infoOf(record);
    const next = withChanges(record, { syncTaskId: taskId });
    await catalog.save(next);
    return infoOf(next);
  }

  /** Whether the volume is still in the catalog (not purged). */
  has(volumeId: string): boolean {
    return this.#deps.catalog.get(volumeId) !== undefined;
  }

  #checkOpen(): void {
    const error = this.#deps.engineError();
    if (error !== null) throw error;
  }
}
