/**
 * The contract between src/volume (which owns the on-disk cluster format) and src/rotation
 * (which re-encrypts a volume online). src/volume implements it; src/rotation only consumes it.
 *
 * Model: a volume stores its sectors in clusters (several sectors per LMDB value, see
 * src/volume). Every stored cluster carries the DEK *generation* it is encrypted under. A volume
 * holds one or more generations of data keys, each wrapped by a root-key version; writes always
 * produce clusters under `writeGeneration`, reads decrypt with whatever generation the cluster
 * says. Rotation with re-encryption therefore is:
 *   1. beginGeneration(): a fresh DEK, wrapped under the key's newest version, becomes the write
 *      generation (persisted before it is used);
 *   2. re-encrypt every cluster whose generation is older, in batches, each batch committed only
 *      where the cluster is still byte-identical to what was read (a racing foreground write
 *      wins: it already wrote the cluster under the new generation);
 *   3. retireGenerations(): once no cluster uses an older generation, its wrapped DEK is removed
 *      from the volume record and zeroized in memory.
 */
export interface ClusterSnapshot {
  clusterIndex: number;
  generation: number;
  /** The whole stored value as read, header included; the commit compares against it. */
  raw: Uint8Array;
}

export interface ReencryptTarget {
  readonly volumeId: string;
  readonly sectorSize: number;
  /** Sectors per cluster (fixed per volume). */
  readonly clusterSectors: number;

  /** The current write generation. */
  writeGeneration(): number;

  /**
   * Create a fresh DEK generation wrapped under the root key's current version, persist it and
   * make it the write generation. Idempotent across a crash: if the record already has a
   * generation newer than `expectedPrevious`, return that one instead of creating another.
   */
  beginGeneration(expectedPrevious: number): Promise<number>;

  /** Rewrap every stored DEK generation under the root key's current version (no re-encryption). */
  rewrapAll(): Promise<void>;

  /**
   * Up to `limit` stored clusters with index >= `fromClusterIndex` whose generation is older
   * than `generation`, in index order. A bounded scan: at most `limit` results. Asynchronous
   * where the clusters live in a remote store.
   */
  staleClusters(fromClusterIndex: number, generation: number, limit: number): ClusterSnapshot[] | Promise<ClusterSnapshot[]>;

  /** The unwrapped 64-byte DEK of a generation (a copy: the caller zeroizes it when done). */
  dataKey(generation: number): Uint8Array;

  /**
   * Store re-encrypted clusters, each only if the stored cluster is still the one `expected`
   * was read as (a compare-and-set per cluster). Returns how many were stored (the rest lost a
   * race with a foreground write or trim and need no work). Where the store can commit other
   * writes with the clusters (LMDB: one transaction) it calls `checkpoint` inside that commit so
   * progress and data move together; otherwise it does not call it, and the caller persists the
   * checkpoint afterwards (a checkpoint that trails the data only makes a resumed scan longer).
   */
  commitReencrypted(
    items: { expected: ClusterSnapshot; raw: Uint8Array }[],
    checkpoint: () => void,
  ): Promise<number>;

  /** Remove every DEK generation older than `generation` (all clusters have moved). */
  retireGenerations(generation: number): Promise<void>;

  /** Counts for progress: stored clusters (an upper bound where the store cannot count cheaply). */
  storedClusterCount(): number | Promise<number>;

  /**
   * Why the volume's root key may not be used now (Suspended, Reader authorization revoked), or
   * null. While it answers non-null the runner dispatches and commits nothing and waits: the
   * customer's switch stops re-encryption as it stops foreground I/O. Optional (tests' targets).
   */
  accessRefusal?(): unknown;
}

/**
 * Re-encrypting one cluster is a pure function over bytes, implemented by src/volume next to the
 * cluster format (src/volume/cluster-format.ts, importable from a worker thread: no LMDB, no
 * engine state) with this signature:
 *
 *   reencryptCluster(cipher: XtsCipher, raw: Uint8Array, clusterIndex: number, sectorSize: number,
 *                    clusterSectors: number, oldKey: Uint8Array, newKey: Uint8Array,
 *                    newGeneration: number): Uint8Array
 *
 * Sector numbers (the XTS tweak) are absolute: clusterIndex * clusterSectors + slot.
 */
export type ReencryptClusterFn = (
  cipher: import('../cipher/index.js').XtsCipher,
  raw: Uint8Array,
  clusterIndex: number,
  sectorSize: number,
  clusterSectors: number,
  oldKey: Uint8Array,
  newKey: Uint8Array,
  newGeneration: number,
) => Uint8Array;
