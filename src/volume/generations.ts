/**
 * The data-key generation lifecycle (DESIGN.md, "Rotation"): a volume's first generation at
 * creation, a fresh generation when re-encryption starts, rewrapping every generation under the
 * root key's newest version, and retiring the generations no cluster uses any more. Each step
 * persists the volume record (and waits for its fsync) before anything depends on it, then keeps
 * the volume's registration at the key version that wraps its newest data key.
 *
 * Rotation reaches these steps only through the re-encryption target (GenerationKeeper); the
 * engine uses `first` when it provisions a volume.
 */
import { assert } from '../errors.js';
import type { Clock } from '../clock.js';
import type { VolumeCatalog } from './catalog.js';
import { generateDataKey } from './data-key.js';
import { bindDataKey } from './dek-binding.js';
import type { VolumeKeyService } from './open-volumes.js';
import { withChanges, type DataKeyGeneration, type VolumeRecord } from './record.js';
import type { GenerationKeeper } from './reencrypt-target.js';
import type { VolumeCore } from './volume-core.js';

export interface GenerationsDeps {
  catalog: VolumeCatalog;
  keyService: VolumeKeyService;
  clock: Clock;
  /** Resolves once every LMDB commit so far is fsynced (root.flushed). */
  flushed(): Promise<unknown>;
  /** Let go of a core held by a re-encryption target. */
  release(core: VolumeCore): Promise<void>;
}

export class DataKeyGenerations implements GenerationKeeper {
  readonly #deps: GenerationsDeps;

  constructor(deps: GenerationsDeps) {
    this.#deps = deps;
  }

  /** A new volume's generation 1: a fresh data key wrapped under the root key's newest version. The caller owns `dataKey`. */
  async first(keyCrn: string, volumeId: string): Promise<{ generation: DataKeyGeneration; dataKey: Uint8Array }> {
    const dataKey = generateDataKey();
    try {
      const wrap = await this.#wrap(keyCrn, dataKey, volumeId, 1);
      return { generation: this.#entry(1, wrap), dataKey };
    } catch (error) {
      dataKey.fill(0);
      throw error;
    }
  }

  async addGeneration(core: VolumeCore): Promise<number> {
    const record = core.record;
    const generation = Math.max(...record.generations.map((g) => g.generation)) + 1;
    const dataKey = generateDataKey();
    try {
      const wrap = await this.#wrap(record.diskEncryptionKeyCrn, dataKey, record.id, generation);
      core.keys.set(generation, dataKey);
      const current = this.#deps.catalog.current(record.id);
      // New writes use the generation from this moment; LMDB commits in issue order, so the
      // record (issued first) is committed before any cluster written under the generation.
      await this.#save(withChanges(current, { generations: [...current.generations, this.#entry(generation, wrap)], writeGeneration: generation }));
      await this.#updateRegistration(record, wrap.keyVersion);
      return generation;
    } catch (error) {
      if (!core.keys.has(generation)) dataKey.fill(0);
      throw error;
    }
  }

  async rewrapAll(core: VolumeCore): Promise<void> {
    const record = this.#deps.catalog.current(core.id);
    const generations: DataKeyGeneration[] = [];
    let keyVersion = 0;
    for (const generation of record.generations) {
      const wrap = await this.#wrap(record.diskEncryptionKeyCrn, core.keys.get(generation.generation), record.id, generation.generation);
      keyVersion = wrap.keyVersion;
      generations.push({ ...generation, keyVersion: wrap.keyVersion, wrapped: Buffer.from(wrap.wrapped) });
    }
    await this.#save(withChanges(this.#deps.catalog.current(core.id), { generations }));
    await this.#updateRegistration(record, keyVersion);
  }

  async retireGenerations(core: VolumeCore, generation: number): Promise<void> {
    const record = this.#deps.catalog.current(core.id);
    assert(generation <= record.writeGeneration, 'the generation kept is not newer than the write generation');
    const kept = record.generations.filter((g) => g.generation >= generation);
    const retired = record.generations.filter((g) => g.generation < generation);
    if (retired.length === 0) return;
    await this.#save(withChanges(record, { generations: kept }));
    for (const g of retired) core.keys.delete(g.generation);
  }

  release(core: VolumeCore): Promise<void> {
    return this.#deps.release(core);
  }

  /** Wrap a data key bound to its volume and generation (dek-binding.ts). */
  async #wrap(keyCrn: string, dataKey: Uint8Array, volumeId: string, generation: number): Promise<{ keyVersion: number; wrapped: Uint8Array }> {
    const bound = bindDataKey(dataKey, volumeId, generation);
    try {
      return await this.#deps.keyService.wrap(keyCrn, bound);
    } finally {
      bound.fill(0);
    }
  }

  #entry(generation: number, wrap: { keyVersion: number; wrapped: Uint8Array }): DataKeyGeneration {
    return { generation, keyVersion: wrap.keyVersion, wrapped: Buffer.from(wrap.wrapped), createdAtMs: this.#deps.clock.nowMs() };
  }

  /** Persisted and fsynced: a wrapped data key is never used before it survives power loss. */
  async #save(record: VolumeRecord): Promise<void> {
    await this.#deps.catalog.save(record);
    await this.#deps.flushed();
  }

  #updateRegistration(record: VolumeRecord, keyVersion: number): Promise<void> {
    return this.#deps.keyService.updateRegistration(record.diskEncryptionKeyCrn, record.crn, keyVersion);
  }
}
