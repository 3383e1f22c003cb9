/**
 * ReencryptTarget (src/volume/reencrypt-contract.ts) for one volume: how online re-encryption reads, swaps
 * and commits clusters without ever losing a foreground write.
 *
 * Why a racing foreground write always wins:
 *  - beginGeneration() makes the fresh DEK the write generation and then waits until every write
 *    issued under the previous generation has committed, so a scan that starts afterwards sees
 *    every cluster that is not yet under the new generation;
 *  - every foreground edit (write or trim) re-encrypts a stale cluster to the write generation
 *    first (VolumeCore.editBase), so once a cluster is under the newest generation it stays there;
 *  - commitReencrypted() stores a re-encrypted cluster only where the stored one is still the
 *    snapshot the worker re-encrypted: a compare-and-set per cluster (ClusterStore.
 *    compareAndSetImages: inside one LMDB write transaction, or one RADOS write op per object
 *    that compares the cluster header). A foreground edit issued earlier has changed it (skip),
 *    one issued later lands after (it wins).
 */
import { assert } from '../errors.js';
import type { ClusterSnapshot, ReencryptTarget } from './reencrypt-contract.js';
import { decodeCluster, type ClusterGeometry } from './cluster-format.js';
import type { VolumeCore } from './volume-core.js';

/** The generation steps the target drives (src/volume/generations.ts): key wrapping and record persistence. */
export interface GenerationKeeper {
  /** Create, wrap (newest root-key version) and persist a new generation; load it into the core. */
  addGeneration(core: VolumeCore): Promise<number>;
  /** Rewrap every generation under the root key's newest version and persist. */
  rewrapAll(core: VolumeCore): Promise<void>;
  /** Drop every generation older than `generation` from the record (persisted) and the core. */
  retireGenerations(core: VolumeCore, generation: number): Promise<void>;
  /** Release the target's hold on the core. */
  release(core: VolumeCore): Promise<void>;
}

export class VolumeReencryptTarget implements ReencryptTarget {
  readonly volumeId: string;
  readonly sectorSize: number;
  readonly clusterSectors: number;
  private readonly geometry: ClusterGeometry;
  private released = false;

  constructor(
    private readonly core: VolumeCore,
    private readonly keeper: GenerationKeeper,
  ) {
    this.volumeId = core.id;
    this.sectorSize = core.sectorSize;
    this.clusterSectors = core.clusterSectors;
    this.geometry = { sectorSize: core.record.sectorSize, clusterSectors: core.record.clusterSectors };
  }

  writeGeneration(): number {
    return this.core.record.writeGeneration;
  }

  accessRefusal(): unknown {
    return this.core.accessRefusal();
  }

  async beginGeneration(expectedPrevious: number): Promise<number> {
    this.checkUsable();
    const current = this.core.record.writeGeneration;
    // Idempotent across a crash: a newer generation already persisted is the one to use.
    const generation = current > expectedPrevious ? current : await this.keeper.addGeneration(this.core);
    await this.core.drainCommits();
    return generation;
  }

  async rewrapAll(): Promise<void> {
    this.checkUsable();
    await this.keeper.rewrapAll(this.core);
  }

  async staleClusters(fromClusterIndex: number, generation: number, limit: number): Promise<ClusterSnapshot[]> {
    this.checkUsable();
    assert(Number.isSafeInteger(limit) && limit > 0, 'staleClusters limit is a positive integer');
    return await this.core.store.staleSnapshots(fromClusterIndex, generation, limit);
  }

  dataKey(generation: number): Uint8Array {
    this.checkUsable();
    return Uint8Array.from(this.core.keys.get(generation));
  }

  commitReencrypted(items: { expected: ClusterSnapshot; raw: Uint8Array }[], checkpoint: () => void): Promise<number> {
    this.checkUsable();
    const writeGeneration = this.core.record.writeGeneration;
    for (const item of items) {
      const view = decodeCluster(item.raw, this.geometry);
      assert(view.generation > item.expected.generation, 'a re-encrypted cluster moves to a newer generation');
      assert(view.generation <= writeGeneration, 'a re-encrypted cluster is not newer than the write generation');
      assert(item.raw.length === item.expected.raw.length, 're-encryption keeps the cluster length');
    }
    return this.core.store.compareAndSetImages(items, checkpoint);
  }

  async retireGenerations(generation: number): Promise<void> {
    this.checkUsable();
    await this.core.drainCommits();
    const left = await this.staleClusters(0, generation, 1);
    assert(left.length === 0, `no cluster of volume ${this.volumeId} is older than generation ${generation} when older ones retire`);
    await this.keeper.retireGenerations(this.core, generation);
  }

  storedClusterCount(): number | Promise<number> {
    return this.core.store.storedClusterCount();
  }

  /** Release the volume (its data keys are wiped when nothing else holds it open). */
  async close(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.keeper.release(this.core);
  }

  private checkUsable(): void {
    assert(!this.released, 'the re-encryption target is used only before close()');
    const error = this.core.ioError();
    if (error !== null) throw error;
  }
}
