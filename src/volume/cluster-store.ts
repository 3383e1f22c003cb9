/**
 * Where a volume's cluster images physically live in LMDB: one value per cluster (compact) or
 * split into per-sector bodies plus a small per-cluster meta value (split; see cluster-format.ts
 * for the formats and bench/results/volume.md for why). VolumeCore works on images and slot runs
 * through this interface and never sees the layout.
 *
 * Both stores keep values handed to LMDB but not yet committed in an overlay (lmdb-js makes an
 * async put visible only after its commit), so every lookup sees every acknowledged write. The
 * write budget bounds the overlay.
 *
 * Lookups return views that are valid until the store's next lookup (lmdb-js reuses its read
 * buffer); callers finish with one before asking for the next.
 *
 * The split layout also keeps a bounded LRU cache of decoded meta values (SplitStore), so a
 * random 4 KiB read costs one LMDB lookup (the body) instead of two once a cluster's meta is
 * known. Why it stays exact is explained at MetaCache.
 */
import type { Database } from 'lmdb';
import { assert } from '../errors.js';
import {
  CLUSTER_HEADER_BYTES,
  compactRun,
  CLUSTER_KEY_BYTES,
  SPLIT_BODY_BYTES,
  SPLIT_TAIL_BYTES,
  clusterCorrupt,
  clusterGeneration,
  clusterKey,
  decodeCluster,
  decodeSplitMeta,
  isPresent,
  joinSplitImage,
  parseClusterKey,
  rankOf,
  removeSlots,
  spliceSplitMeta,
  splitMetaOf,
  storeKeyRange,
  writeSlots,
  type ClusterGeometry,
  type ClusterView,
} from './cluster-format.js';
import type { WriteBudget } from './write-budget.js';
import type { ValuePins } from './buffer-slab.js';
import { TwoGenerationCache } from './two-generation-cache.js';
import type { ClusterSnapshot } from './reencrypt-contract.js';

export type VolumeLayout = 'compact' | 'split';

export interface ClusterStoreDeps {
  /** Cluster images (compact) or meta values (split), keyed (storeId, clusterIndex). */
  clusters: Database<Buffer, Buffer>;
  /** Sector bodies of the split layout, keyed (storeId, absolute sector). */
  sectors: Database<Buffer, Buffer>;
  budget: WriteBudget;
}

/** Most clusters whose decoded meta a split store caches: 16384 clusters of 8 sectors cover 512 MiB (about 8 MiB of memory, measured). */
export const META_CACHE_CLUSTERS_MAX = 16_384;
/** The most an engine may be configured to cache per volume: 2^24 clusters, about 8 GiB of memory. */
export const META_CACHE_CLUSTERS_LIMIT = 2 ** 24;

export interface ClusterStoreOptions {
  /**
   * Under which epoch the split layout's meta cache may be used now, or null when it may not.
   * The core answers null while a re-encryption can commit clusters behind the store's back, and
   * otherwise its write generation, which every re-encryption changes (see MetaCache). The cache
   * is emptied whenever the answer is null or differs from the epoch its entries were made in.
   */
  metaCacheEpoch: () => number | null;
  /** Bound of the meta cache, in clusters (default META_CACHE_CLUSTERS_MAX; 0 turns it off). */
  metaCacheClustersMax?: number;
  /** Told about every value handed to LMDB and when its commit settles (the core's ciphertext slabs). */
  valuePins?: ValuePins;
}

export interface ClusterStore {
  readonly layout: VolumeLayout;
  /** The cluster's header (generation, bitmap); for compact the whole image. Null when absent. */
  meta(clusterIndex: number): ClusterView | null;
  /**
   * The ciphertext of present slots slot..slot+count-1 (all present), contiguous: a view of the
   * stored image (compact) or assembled into `scratch` (split; at least count sectors long).
   */
  ciphertext(clusterIndex: number, meta: ClusterView, slot: number, count: number, scratch: Uint8Array): Uint8Array;
  /** The cluster image (header + present sectors), decoded. */
  image(clusterIndex: number): ClusterView | null;
  /** Issue the writes that put `ciphertext` (fresh, never modified later) into slots firstSlot.. */
  writeRun(clusterIndex: number, base: ClusterView | null, firstSlot: number, ciphertext: Uint8Array, generation: number): Promise<boolean>;
  /** Issue the writes that remove slots firstSlot..lastSlot (the cluster goes when empty). */
  removeRun(clusterIndex: number, base: ClusterView, firstSlot: number, lastSlot: number): Promise<boolean>;
  /** Issue the writes that replace the whole cluster by `image` (a fresh buffer). */
  putImage(clusterIndex: number, image: ClusterView): Promise<boolean>;
  /** Indexes of stored or pending clusters in from..to, at most `limit` committed ones; ascending, distinct. */
  clusterIndexes(from: number, to: number, limit: number): { indexes: number[]; scannedTo: number };

  /**
   * Whether lookups (meta, ciphertext, image, clusterIndexes) need load() first: a store whose
   * clusters live elsewhere (src/volume/object-store.ts). LMDB answers false and is never asked.
   */
  readonly remote: boolean;
  /**
   * Make clusters fromCluster..toCluster answerable by the synchronous lookups: null when they
   * are already, else a promise that settles once they are (or rejects when the store cannot
   * reach them). The caller looks up right after it resolves, without yielding, and calls load
   * again should it resolve without them (a bounded cache may have let them go). `scan`: the
   * caller looks only at the clusters that exist (clusterIndexes: a trim, an allocation map).
   */
  load(fromCluster: number, toCluster: number, scan?: boolean): Promise<void> | null;
  /**
   * A remote store's scans: the last cluster a step from `from` visits when it looks at `limit`
   * clusters at most (those that may exist, where the store knows; else from + limit - 1), or a
   * promise to wait for first. clusterIndexes(from, to, limit) covers exactly that window.
   */
  scanWindow(from: number, to: number, limit: number): number | Promise<void>;

  // Rotation: committed state, and compare-and-set commits (src/volume/reencrypt-target.ts).
  /** Up to `limit` stored clusters from `fromCluster` on with a generation below `generation`, with their stored images (fresh copies). */
  staleSnapshots(fromCluster: number, generation: number, limit: number): ClusterSnapshot[] | Promise<ClusterSnapshot[]>;
  /**
   * Store each re-encrypted image only where the stored cluster is still the one it was made
   * from (a racing foreground edit always moves a cluster to the write generation, so it differs
   * and wins). Returns how many were stored. `inSameCommit` runs inside the commit when the store
   * has one that can hold other writes (LMDB); a store without cross-object transactions leaves
   * it out and the caller persists its checkpoint after this resolves.
   */
  compareAndSetImages(items: { expected: ClusterSnapshot; raw: Uint8Array }[], inSameCommit: () => void): Promise<number>;
  storedClusterCount(): number | Promise<number>;

  /** Resolves when every write issued so far has settled (committed or failed). */
  settled(): Promise<void>;
  /** The first commit failure since the last call, or null. */
  takeFailure(): unknown;
  readonly pendingCount: number;
}

/**
 * The stores hand lmdb-js views they reuse once a put's commit settles (the volume's ciphertext
 * slabs, the overlay's values) and read its values straight from getBinaryFast. Both rely on the
 * database storing raw bytes: with lmdb-js's cache on, a get could hand back a value object a
 * put was given; with compression on, lmdb-js reads the value on another thread; with an encoder,
 * values are not the bytes given. (test/volume/io-buffers.test.ts pins the lmdb-js behaviours.)
 */
function assertPlainBinary(db: Database<Buffer, Buffer>, name: string): void {
  const options = db as unknown as { cache?: unknown; compression?: unknown; encoder?: unknown };
  assert(!options.cache && !options.compression && options.encoder === undefined, `the ${name} database stores raw bytes (no cache, compression or encoder)`);
}

/** A value handed to LMDB and not yet committed, in its overlay until the commit settles. */
interface Pending {
  value: Buffer | null;
  overlay: Map<number, Pending>;
  index: number;
  /** What it holds of the write budget. */
  budgetBytes: number;
}

/** An exact view of getBinaryFast's result (lmdb-js patches `length`, not `byteLength`). */
export function readFast(db: Database<Buffer, Buffer>, key: Buffer): Buffer | null {
  const fast = db.getBinaryFast(key);
  return fast === undefined ? null : fast.subarray(0, fast.length);
}

/**
 * One key buffer per store for gets and for the puts and removes of I/O: lmdb-js copies the key
 * into its own buffers before get, put or remove returns (the key object is kept only by a store
 * with lmdb-js's cache on; ours have it off), so keys need no allocation of their own.
 * test/volume/io-buffers.test.ts pins that behaviour.
 */
class LookupKey {
  private readonly key = Buffer.allocUnsafe(CLUSTER_KEY_BYTES);

  constructor(storeId: number) {
    this.key.writeUInt32BE(storeId, 0);
  }

  of(index: number): Buffer {
    this.key.writeUInt32BE(Math.floor(index / 0x1_0000_0000), 4);
    this.key.writeUInt32BE(index >>> 0, 8);
    return this.key;
  }
}

/** Overlay bookkeeping shared by both layouts. */
class PendingWrites {
  private lastCommit: Promise<unknown> = Promise.resolve();
  private failure: unknown = null;
  /**
   * lmdb-js hands every unconditional write of one batch (one transaction) the same promise, so
   * the entries issued under the same promise settle together, on one reaction: with many
   * writes in flight, per-write reactions (two per 4 KiB write in the split layout) cost more
   * main-thread time and garbage than the rest of the write.
   */
  private batchPromise: Promise<boolean> | null = null;
  private batchEntries: Pending[] = [];

  /**
   * `onFailure` runs when a commit fails (the stored state is then not what was issued); `pins`
   * hears of each value handed to LMDB and of its commit settling.
   */
  constructor(
    private readonly budget: WriteBudget,
    private readonly onFailure: () => void,
    private readonly pins: ValuePins | undefined,
  ) {}

  issue(db: Database<Buffer, Buffer>, overlay: Map<number, Pending>, index: number, key: Buffer, value: Buffer | null): Promise<boolean> {
    const budgetBytes = value === null ? CLUSTER_KEY_BYTES : value.length + CLUSTER_KEY_BYTES;
    const entry: Pending = { value, overlay, index, budgetBytes };
    const previous = overlay.get(index);
    overlay.set(index, entry);
    this.budget.take(budgetBytes, true);
    if (value !== null) this.pins?.pin(value);
    let written: Promise<boolean>;
    try {
      // Never from inside db.batch(), an ifVersion callback or an async transaction: lmdb-js then
      // returns an already-resolved promise, and the overlay entry and the pin would go before the
      // commit (a reused slab could then reach LMDB with another write's bytes).
      written = value === null ? db.remove(key) : db.put(key, value);
    } catch (error) {
      // Refused outright: the value never reaches LMDB, so the overlay must not show it (reads
      // would return bytes that were never stored). Undo this entry and report it as a failed
      // commit, which also drops what the store cached. lmdb-js refuses synchronously when the
      // environment is closed (keys and values are checked before they get here), and a close
      // cannot land inside one synchronous step: so the first put of a step is the one refused,
      // and no earlier put of the same step is left to commit without it.
      if (previous !== undefined) overlay.set(index, previous);
      else overlay.delete(index);
      this.release(entry);
      this.fail(error);
      throw error;
    }
    if (written === this.batchPromise) {
      this.batchEntries.push(entry);
    } else {
      const entries = [entry];
      this.batchPromise = written;
      this.batchEntries = entries;
      // Registered before the caller's own reaction to `written`: the overlay is cleared (and
      // LMDB's read snapshot renewed, lmdb-js does that first) before any write resolves.
      written.then(
        () => this.settle(entries),
        (error: unknown) => {
          this.settle(entries);
          this.fail(error);
        },
      );
    }
    this.lastCommit = written;
    return written;
  }

  settled(): Promise<void> {
    return this.lastCommit.then(
      () => undefined,
      () => undefined,
    );
  }

  takeFailure(): unknown {
    const failure = this.failure;
    this.failure = null;
    return failure;
  }

  private settle(entries: Pending[]): void {
    if (this.batchEntries === entries) {
      this.batchPromise = null;
      this.batchEntries = [];
    }
    for (const entry of entries) {
      if (entry.overlay.get(entry.index) === entry) entry.overlay.delete(entry.index);
      this.release(entry);
    }
  }

  /** An entry the overlay no longer shows and lmdb-js is done with: its budget and pin go back. */
  private release(entry: Pending): void {
    this.budget.give(entry.budgetBytes);
    if (entry.value !== null) this.pins?.unpin(entry.value);
  }

  /** A commit failed (or a write was refused): remember the first failure, tell the store. */
  private fail(error: unknown): void {
    this.failure ??= error;
    this.onFailure();
  }
}

function indexesIn(
  db: Database<Buffer, Buffer>,
  storeId: number,
  overlays: Map<number, Pending>,
  from: number,
  to: number,
  limit: number,
): { indexes: number[]; scannedTo: number } {
  const found: number[] = [];
  for (const key of db.getKeys({ start: clusterKey(storeId, from), end: clusterKey(storeId, to + 1), limit })) {
    found.push(parseClusterKey(key).clusterIndex);
  }
  const scannedTo = found.length === limit ? found[found.length - 1]! : to;
  for (const index of overlays.keys()) if (index >= from && index <= scannedTo) found.push(index);
  found.sort((a, b) => a - b);
  const distinct = found.filter((index, i) => i === 0 || found[i - 1] !== index);
  return { indexes: distinct, scannedTo };
}

function staleIn(db: Database<Buffer, Buffer>, storeId: number, fromCluster: number, generation: number, limit: number) {
  const found: { clusterIndex: number; generation: number }[] = [];
  const { end } = storeKeyRange(storeId);
  for (const { key, value } of db.getRange({ start: clusterKey(storeId, fromCluster), end })) {
    const clusterGen = clusterGeneration(value);
    if (clusterGen >= generation) continue;
    found.push({ clusterIndex: parseClusterKey(key).clusterIndex, generation: clusterGen });
    if (found.length >= limit) break;
  }
  return found;
}

// ---------------------------------------------------------------------------------------------

/**
 * What both layouts share: the volume's place in the clusters database (scans by generation,
 * counts), its writes handed to LMDB and not yet committed, and its one key buffer.
 */
abstract class StoreBase {
  readonly remote = false;
  protected readonly writes: PendingWrites;
  protected readonly lookup: LookupKey;

  constructor(
    protected readonly deps: ClusterStoreDeps,
    protected readonly storeId: number,
    protected readonly g: ClusterGeometry,
    valuePins?: ValuePins,
  ) {
    assertPlainBinary(deps.clusters, 'clusters');
    assertPlainBinary(deps.sectors, 'sectors');
    this.writes = new PendingWrites(deps.budget, () => this.onCommitFailure(), valuePins);
    this.lookup = new LookupKey(storeId);
  }

  /** LMDB answers every lookup at once. */
  load(): null {
    return null;
  }

  /** Not asked (the core's remote paths only); LMDB scans by key range. */
  scanWindow(from: number, to: number, limit: number): number {
    return Math.min(to, from + limit - 1);
  }

  staleSnapshots(fromCluster: number, generation: number, limit: number): ClusterSnapshot[] {
    return staleIn(this.deps.clusters, this.storeId, fromCluster, generation, limit).map(({ clusterIndex, generation: clusterGen }) => {
      const raw = this.committedImage(clusterIndex);
      assert(raw !== null, `stale cluster ${clusterIndex} is stored`);
      assert(decodeCluster(raw, this.g).generation === clusterGen, 'the snapshot matches the scan');
      return { clusterIndex, generation: clusterGen, raw };
    });
  }

  /**
   * One LMDB write transaction compares each stored cluster with its snapshot and stores the
   * image where they are equal. lmdb-js applies queued puts and transaction callbacks in call
   * order, so a foreground put issued earlier is already applied when the comparison runs (it
   * differs: skip), and one issued later is applied after (it overwrites: it wins).
   */
  compareAndSetImages(items: { expected: ClusterSnapshot; raw: Uint8Array }[], inSameCommit: () => void): Promise<number> {
    return this.deps.clusters.transaction(() => {
      let stored = 0;
      for (const { expected, raw: image } of items) {
        // Inside the write transaction: reads see every write queued before this one.
        const current = this.committedImage(expected.clusterIndex);
        if (current !== null && Buffer.compare(current, expected.raw) === 0) {
          this.putImageInTxn(expected.clusterIndex, image);
          stored++;
        }
      }
      inSameCommit();
      return stored;
    });
  }

  /** The committed image (inside an LMDB write transaction: with the queued writes), a copy. */
  protected abstract committedImage(clusterIndex: number): Buffer | null;
  /** Inside an LMDB write transaction: store `image` (a re-encrypted cluster with the same slots). */
  protected abstract putImageInTxn(clusterIndex: number, image: Uint8Array): void;

  storedClusterCount(): number {
    return this.deps.clusters.getKeysCount(storeKeyRange(this.storeId));
  }

  settled(): Promise<void> {
    return this.writes.settled();
  }

  takeFailure(): unknown {
    return this.writes.takeFailure();
  }

  /** A commit failed: LMDB holds something else than what was issued. */
  protected onCommitFailure(): void {}
}

export class CompactStore extends StoreBase implements ClusterStore {
  readonly layout = 'compact';
  private readonly overlay = new Map<number, Pending>();

  get pendingCount(): number {
    return this.overlay.size;
  }

  meta(clusterIndex: number): ClusterView | null {
    const pending = this.overlay.get(clusterIndex);
    const raw = pending !== undefined ? pending.value : readFast(this.deps.clusters, this.lookup.of(clusterIndex));
    return raw === null ? null : decodeCluster(raw, this.g);
  }

  ciphertext(_clusterIndex: number, meta: ClusterView, slot: number, count: number): Uint8Array {
    return compactRun(meta, this.g, slot, count);
  }

  image(clusterIndex: number): ClusterView | null {
    return this.meta(clusterIndex);
  }

  writeRun(clusterIndex: number, base: ClusterView | null, firstSlot: number, ciphertext: Uint8Array, generation: number): Promise<boolean> {
    return this.issue(clusterIndex, writeSlots(base, this.g, firstSlot, ciphertext, generation));
  }

  removeRun(clusterIndex: number, base: ClusterView, firstSlot: number, lastSlot: number): Promise<boolean> {
    return this.issue(clusterIndex, removeSlots(base, this.g, firstSlot, lastSlot));
  }

  putImage(clusterIndex: number, image: ClusterView): Promise<boolean> {
    return this.issue(clusterIndex, Buffer.from(image.raw.buffer, image.raw.byteOffset, image.raw.byteLength));
  }

  clusterIndexes(from: number, to: number, limit: number): { indexes: number[]; scannedTo: number } {
    return indexesIn(this.deps.clusters, this.storeId, this.overlay, from, to, limit);
  }

  protected committedImage(clusterIndex: number): Buffer | null {
    const raw = readFast(this.deps.clusters, this.lookup.of(clusterIndex));
    return raw === null ? null : Buffer.from(raw);
  }

  protected putImageInTxn(clusterIndex: number, image: Uint8Array): void {
    decodeCluster(image, this.g);
    this.deps.clusters.putSync(this.lookup.of(clusterIndex), Buffer.from(image.buffer, image.byteOffset, image.byteLength));
  }

  private issue(clusterIndex: number, value: Buffer | null): Promise<boolean> {
    if (value !== null) decodeCluster(value, this.g); // invariant check before it reaches the disk
    return this.writes.issue(this.deps.clusters, this.overlay, clusterIndex, this.lookup.of(clusterIndex), value);
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * Decoded split-layout meta values by cluster index (null: no cluster stored), at most
 * `clustersMax` of them, the least recently used ones dropped first (approximately:
 * two-generation-cache.ts). Meta values hold ciphertext tails and headers, never plaintext or keys.
 *
 * Why an entry always equals what a lookup (overlay, then LMDB) would return:
 *  - foreground edits go through issueMeta, which puts the issued value into the cache as it
 *    puts it into the overlay; after the commit LMDB holds that same value (lmdb-js renews its
 *    read snapshot before it resolves a commit, the overlay relies on that too). A failed commit
 *    empties the cache (LMDB then holds something else);
 *  - the only other writer of a live volume's clusters is re-encryption (putImageInTxn inside an
 *    LMDB transaction, visible only once that commits, with no overlay). It runs only while the
 *    volume has more than one data key loaded (a new generation is added before the first
 *    re-encrypted cluster and the old one retired after the last commit), and for that whole time
 *    the owner's metaCacheEpoch() answers null: the cache is neither read nor filled, and lookups
 *    go to the overlay and one LMDB snapshot, as without a cache. Afterwards the epoch is the new
 *    write generation, so entries made before the re-encryption are dropped on first use even if
 *    no lookup happened while it ran;
 *  - the purge removes clusters only of a deleted volume, which refuses I/O.
 */
class MetaCache extends TwoGenerationCache<ClusterView | null> {
  /** The epoch (ClusterStoreOptions.metaCacheEpoch) the entries were made in. */
  epoch: number | null = null;

  constructor(clustersMax: number) {
    assert(Number.isSafeInteger(clustersMax) && clustersMax >= 0, 'the meta cache bound is a whole number');
    super(clustersMax, () => 1);
  }
}

export class SplitStore extends StoreBase implements ClusterStore {
  readonly layout = 'split';
  private readonly metaOverlay = new Map<number, Pending>();
  private readonly bodyOverlay = new Map<number, Pending>();
  private readonly metaCache: MetaCache;
  private readonly metaCacheEpoch: () => number | null;
  /** The last buffer lmdb-js returned for a body, and a view of a body's bytes in it (copyBody). */
  private bodyReadBuffer: Buffer | undefined = undefined;
  private bodyReadView: Uint8Array | undefined = undefined;

  constructor(deps: ClusterStoreDeps, storeId: number, g: ClusterGeometry, options: ClusterStoreOptions = { metaCacheEpoch: () => null }) {
    super(deps, storeId, g, options.valuePins);
    assert(g.sectorSize === 4096, 'the split layout is for 4096-byte sectors');
    this.metaCache = new MetaCache(options.metaCacheClustersMax ?? META_CACHE_CLUSTERS_MAX);
    this.metaCacheEpoch = options.metaCacheEpoch;
  }

  /** The cache mirrors what was issued; after a failed commit that is not what LMDB holds. */
  protected override onCommitFailure(): void {
    this.metaCache.clear();
  }

  get pendingCount(): number {
    return this.metaOverlay.size + this.bodyOverlay.size;
  }

  /** From the cache, else the overlay or LMDB (then cached). Never a view of lmdb-js's read buffer. */
  meta(clusterIndex: number): ClusterView | null {
    if (!this.metaCacheReady()) return this.lookupMeta(clusterIndex);
    const cached = this.metaCache.get(clusterIndex);
    if (cached !== undefined) return cached;
    const meta = this.lookupMeta(clusterIndex);
    this.metaCache.set(clusterIndex, meta);
    return meta;
  }

  /** A copy (small): body lookups reuse lmdb-js's read buffer. */
  private lookupMeta(clusterIndex: number): ClusterView | null {
    const pending = this.metaOverlay.get(clusterIndex);
    if (pending !== undefined) return pending.value === null ? null : decodeSplitMeta(pending.value, this.g);
    const raw = readFast(this.deps.clusters, this.lookup.of(clusterIndex));
    return raw === null ? null : decodeSplitMeta(Buffer.from(raw), this.g);
  }

  ciphertext(clusterIndex: number, meta: ClusterView, slot: number, count: number, scratch: Uint8Array): Uint8Array {
    const base = clusterIndex * this.g.clusterSectors;
    const raw = meta.raw;
    // The run's slots are all present, so their tails are consecutive in the meta value.
    let tailAt = CLUSTER_HEADER_BYTES + rankOf(meta.bitmap, slot) * SPLIT_TAIL_BYTES;
    for (let i = 0; i < count; i++) {
      if (!isPresent(meta.bitmap, slot + i)) assert(false, `slot ${slot + i} is present`);
      const at = i * 4096;
      this.copyBody(base + slot + i, scratch, at);
      // 24 bytes: a plain loop, no view to allocate.
      const tailEnd = at + 4096;
      for (let to = at + SPLIT_BODY_BYTES, from = tailAt; to < tailEnd; to++, from++) scratch[to] = raw[from]!;
      tailAt += SPLIT_TAIL_BYTES;
    }
    return scratch.length === count * 4096 ? scratch : scratch.subarray(0, count * 4096);
  }

  image(clusterIndex: number): ClusterView | null {
    const meta = this.meta(clusterIndex);
    if (meta === null) return null;
    const base = clusterIndex * this.g.clusterSectors;
    return decodeCluster(
      joinSplitImage(meta, this.g, (slot) => this.body(base + slot)),
      this.g,
    );
  }

  writeRun(clusterIndex: number, base: ClusterView | null, firstSlot: number, ciphertext: Uint8Array, generation: number): Promise<boolean> {
    assert(ciphertext.length > 0 && ciphertext.length % 4096 === 0, 'ciphertext is whole sectors');
    const count = ciphertext.length / 4096;
    const lastSlot = firstSlot + count - 1;
    const meta = spliceSplitMeta(base, this.g, firstSlot, lastSlot, ciphertext, generation);
    const first = clusterIndex * this.g.clusterSectors + firstSlot;
    for (let i = 0; i < count; i++) this.issueBody(first + i, sectorBody(ciphertext, i));
    return this.issueMeta(clusterIndex, meta);
  }

  removeRun(clusterIndex: number, base: ClusterView, firstSlot: number, lastSlot: number): Promise<boolean> {
    const meta = spliceSplitMeta(base, this.g, firstSlot, lastSlot, null, base.generation);
    const first = clusterIndex * this.g.clusterSectors;
    for (let slot = firstSlot; slot <= lastSlot; slot++) {
      if (isPresent(base.bitmap, slot)) this.issueBody(first + slot, null);
    }
    return this.issueMeta(clusterIndex, meta);
  }

  putImage(clusterIndex: number, image: ClusterView): Promise<boolean> {
    const old = this.meta(clusterIndex);
    const first = clusterIndex * this.g.clusterSectors;
    let i = 0;
    for (let slot = 0; slot < this.g.clusterSectors; slot++) {
      if (isPresent(image.bitmap, slot)) this.issueBody(first + slot, sectorBody(image.raw, 0, CLUSTER_HEADER_BYTES + i++ * 4096));
      else if (old !== null && isPresent(old.bitmap, slot)) this.issueBody(first + slot, null);
    }
    return this.issueMeta(clusterIndex, decodeSplitMeta(splitMetaOf(image, this.g), this.g));
  }

  clusterIndexes(from: number, to: number, limit: number): { indexes: number[]; scannedTo: number } {
    return indexesIn(this.deps.clusters, this.storeId, this.metaOverlay, from, to, limit);
  }

  protected committedImage(clusterIndex: number): Buffer | null {
    const raw = readFast(this.deps.clusters, this.lookup.of(clusterIndex));
    if (raw === null) return null;
    const meta = decodeSplitMeta(Buffer.from(raw), this.g);
    const base = clusterIndex * this.g.clusterSectors;
    return joinSplitImage(meta, this.g, (slot) => {
      const body = readFast(this.deps.sectors, this.lookup.of(base + slot));
      if (body === null) clusterCorrupt('sector body', `of present sector ${base + slot} is missing`);
      return body;
    });
  }

  protected putImageInTxn(clusterIndex: number, image: Uint8Array): void {
    const view = decodeCluster(image, this.g);
    const first = clusterIndex * this.g.clusterSectors;
    let i = 0;
    for (let slot = 0; slot < this.g.clusterSectors; slot++) {
      if (!isPresent(view.bitmap, slot)) continue;
      this.deps.sectors.putSync(this.lookup.of(first + slot), Buffer.from(sectorBody(image, 0, CLUSTER_HEADER_BYTES + i++ * 4096)));
    }
    this.deps.clusters.putSync(this.lookup.of(clusterIndex), splitMetaOf(view, this.g));
  }

  /** Copy a present sector's body (pending or committed) to dst[at..]. */
  private copyBody(sector: number, dst: Uint8Array, at: number): void {
    const pending = this.bodyOverlay.get(sector);
    if (pending !== undefined) {
      const value = pending.value;
      if (value === null || value.length !== SPLIT_BODY_BYTES) assert(false, `the body of present sector ${sector} is pending, ${SPLIT_BODY_BYTES} bytes`);
      dst.set(value, at);
      return;
    }
    // Straight from lmdb-js's read buffer (its patched `length` is the value's, its byteLength the
    // whole buffer's), through a view of its first SPLIT_BODY_BYTES made once: lmdb-js returns
    // the same buffer object, the value at its start, for every get of a small value.
    const fast = this.deps.sectors.getBinaryFast(this.lookup.of(sector));
    if (fast === undefined || fast.length !== SPLIT_BODY_BYTES) clusterCorrupt('sector body', `of present sector ${sector} is missing or not ${SPLIT_BODY_BYTES} bytes`);
    if (fast !== this.bodyReadBuffer) {
      this.bodyReadBuffer = fast;
      this.bodyReadView = new Uint8Array(fast.buffer, fast.byteOffset, SPLIT_BODY_BYTES);
    }
    dst.set(this.bodyReadView!, at);
  }

  /** A sector's body: pending or committed; a view valid until the next lookup. */
  private body(sector: number): Uint8Array {
    const pending = this.bodyOverlay.get(sector);
    const body = pending !== undefined ? pending.value : readFast(this.deps.sectors, this.lookup.of(sector));
    if (body === null || body.length !== SPLIT_BODY_BYTES) clusterCorrupt('sector body', `of present sector ${sector} is missing or not ${SPLIT_BODY_BYTES} bytes`);
    return body;
  }

  private issueBody(sector: number, body: Buffer | null): void {
    this.writes.issue(this.deps.sectors, this.bodyOverlay, sector, this.lookup.of(sector), body);
  }

  /** `view`: the new meta value, decoded (spliceSplitMeta builds and checks it), or null to remove it. */
  private issueMeta(clusterIndex: number, view: ClusterView | null): Promise<boolean> {
    const written = this.writes.issue(this.deps.clusters, this.metaOverlay, clusterIndex, this.lookup.of(clusterIndex), view === null ? null : (view.raw as Buffer));
    // The cache follows the overlay: the issued value is the cluster's latest state.
    if (this.metaCacheReady()) this.metaCache.set(clusterIndex, view);
    return written;
  }

  /** Whether the meta cache may be used now; empties it when it may not, or when its epoch ended. */
  private metaCacheReady(): boolean {
    const epoch = this.metaCacheEpoch();
    if (epoch !== this.metaCache.epoch) {
      this.metaCache.clear();
      this.metaCache.epoch = epoch;
    }
    return epoch !== null;
  }
}

/** Sector i's body in a buffer of whole sectors starting at `offset`. */
function sectorBody(buffer: Uint8Array, i: number, offset = 0): Buffer {
  const at = offset + i * 4096;
  return Buffer.from(buffer.buffer, buffer.byteOffset + at, SPLIT_BODY_BYTES);
}

export function createClusterStore(
  layout: VolumeLayout,
  deps: ClusterStoreDeps,
  storeId: number,
  g: ClusterGeometry,
  options?: ClusterStoreOptions,
): ClusterStore {
  return layout === 'split' ? new SplitStore(deps, storeId, g, options) : new CompactStore(deps, storeId, g, options?.valuePins);
}

/**
 * Remove up to `limit` stored keys of a volume (clusters, metas and bodies) in one transaction.
 * Returns how many went; 0 means the volume's data is gone. For the purge, in bounded batches.
 */
export async function purgeBatch(deps: Pick<ClusterStoreDeps, 'clusters' | 'sectors'>, storeId: number, limit: number): Promise<number> {
  const range = storeKeyRange(storeId);
  const bodies = [...deps.sectors.getKeys({ ...range, limit })];
  const clusters = [...deps.clusters.getKeys({ ...range, limit: Math.max(1, limit - bodies.length) })];
  if (bodies.length + clusters.length === 0) return 0;
  await deps.clusters.transaction(() => {
    for (const key of bodies) deps.sectors.removeSync(key);
    for (const key of clusters) deps.clusters.removeSync(key);
  });
  return bodies.length + clusters.length;
}
