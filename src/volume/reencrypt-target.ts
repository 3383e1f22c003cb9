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
 *  - commitReencrypted() compares, inside the LMDB write transaction, the stored value with the
 *    snapshot the worker re-encrypted. lmdb-js applies queued puts and transaction callbacks in
 *    call order, so a foreground put issued earlier is already applied when the comparison runs
 *    (it differs: skip), and one issued later is applied after (it overwrites: it wins).
 */
import type { RootDatabase } from 'lmdb';
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
    private readonly root: RootDatabase,
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

  staleClusters(fromClusterIndex: number, generation: number, limit: number): ClusterSnapshot[] {
    this.checkUsable();
    assert(Number.isSafeInteger(limit) && limit > 0, 'staleClusters limit is a positive integer');
    const store = this.core.store;
    return store.staleClusters(fromClusterIndex, generation, limit).map(({ clusterIndex, generation: clusterGen }) => {
      const raw = store.committedImage(clusterIndex);
      assert(raw !== null, `stale cluster ${clusterIndex} is stored`);
      assert(decodeCluster(raw, this.geometry).generation === clusterGen, 'the snapshot matches the scan');
      return { clusterIndex, generation: clusterGen, raw };
    });
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
    const store = this.core.store;
    return this.root.transaction(() => {
      let stored = 0;
      for (const { expected, raw } of items) {
        // Inside the write transaction: reads see every write queued before this one.
        const current = store.committedImage(expected.clusterIndex);
        if (current !== null && Buffer.compare(current, expected.raw) === 0) {
          store.putImageInTxn(expected.clusterIndex, raw);
          stored++;
        }
      }
      checkpoint();
      return stored;
    });
  }

  async retireGenerations(generation: number): Promise<void> {
    this.checkUsable();
    await this.core.drainCommits();
    const left = this.staleClusters(0, generation, 1);
    assert(left.length === 0, `no cluster of volume ${this.volumeId} is older than generation ${generation} when older ones retire`);
    await this.keeper.retireGenerations(this.core, generation);
  }

  storedClusterCount(): number {
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
