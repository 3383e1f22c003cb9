/**
 * A volume's clusters as objects in a remote object pool (src/store/rados.ts: Ceph RADOS), one
 * object per cluster holding the compact cluster image (header + present sectors, see
 * cluster-format.ts). The same ClusterStore that VolumeCore uses on LMDB (cluster-store.ts), with
 * one difference: lookups are synchronous, objects are not, so the core calls load() for the
 * clusters a step will look at and runs the step once they are here (ClusterStore.load).
 *
 * What the store knows of a cluster, in the order a lookup asks:
 *  - `pending`: images issued to the pool and not yet acknowledged (null: a removal). They are
 *    the cluster's latest state, and never dropped before their acknowledgement;
 *  - `known`: the cluster's latest state as far as this store knows (an acknowledged write, or a
 *    load), bounded (KNOWN_BYTES_MAX) and dropped least recently used first. It is exact because
 *    this engine is the only writer of its volumes' objects and every write goes through here:
 *    foreground writes set it as they are issued; a re-encryption commit (compareAndSetImages)
 *    updates it only where it still holds the image the commit replaced; a load's answer is
 *    dropped when any write to that cluster was issued while the load was under way.
 *
 * Ordering: RADOS applies the operations one client sends to one object in the order they were
 * sent, so two writes of a cluster in flight land in issue order, and a compare-and-set sent after
 * a foreground write compares against that write's result.
 */
import { assert } from '../errors.js';
import {
  CLUSTER_HEADER_BYTES,
  clusterCorrupt,
  clusterGeneration,
  compactRun,
  decodeCluster,
  removeSlots,
  writeSlots,
  type ClusterGeometry,
  type ClusterView,
} from './cluster-format.js';
import type { ClusterStore } from './cluster-store.js';
import type { ClusterSnapshot } from './reencrypt-contract.js';
import type { WriteBudget } from './write-budget.js';
import { TwoGenerationCache } from './two-generation-cache.js';

/** What the store needs of an object pool (RADOS: src/store/rados.ts). Objects are whole cluster images. */
export interface ClusterObjects {
  /** The whole object, or null when it does not exist. */
  read(oid: string): Promise<Buffer | null>;
  /** Its first `bytes` bytes (fewer when shorter), or null when it does not exist. Optional: scans then read whole objects. */
  readHead?(oid: string, bytes: number): Promise<Buffer | null>;
  /** Replace the whole object (create it if absent); resolves once the pool acknowledged it. */
  writeFull(oid: string, data: Uint8Array): Promise<void>;
  /** Resolves true when it was removed, false when it did not exist. */
  remove(oid: string): Promise<boolean>;
  /**
   * Replace the whole object by `data` only if its first expected.length bytes equal `expected`,
   * in one atomic operation; false when they differ or the object does not exist.
   */
  compareAndWrite(oid: string, expected: Uint8Array, data: Uint8Array): Promise<boolean>;
  /**
   * The names of the objects that start with `prefix`, in any order; refused when more than
   * `limit` match. Optional: without it the store visits every cluster index of a volume where it
   * needs to know which exist (scans, trims, allocation maps, the purge).
   */
  list?(prefix: string, limit: number): Promise<string[]>;
}

/** Default bound of what a store remembers of its clusters' latest images, in bytes. */
export const KNOWN_BYTES_MAX = 32 * 1024 * 1024;
/**
 * Most object reads one load or one scan window has in flight, and the most clusters one step of
 * the core asks to have loaded at once (far below what KNOWN_BYTES_MAX holds, so a step's clusters
 * are still known when it runs).
 */
export const READS_IN_FLIGHT_MAX = 64;
/** Longest object name: RADOS accepts far longer, ours are fixed-width. */
const OID_BYTES_MAX = 64;

export interface ObjectStoreOptions {
  objects: ClusterObjects;
  /** Prefix of this engine's object names (names are `${prefix}${storeId}.${clusterIndex}`, in hex). */
  oidPrefix: string;
  /** Clusters the volume has (its size, rounded up): scans end there. */
  clustersTotal: number;
  budget: WriteBudget;
  knownBytesMax?: number;
}

interface PendingImage {
  image: Buffer | null;
  budgetBytes: number;
}

/** One in-flight load per cluster; `stale` once a write to the cluster was issued meanwhile. */
interface Loading {
  done: Promise<void>;
  stale: boolean;
}

/** The name of a cluster's object: fixed width, so names sort like (storeId, clusterIndex). */
export function clusterOid(prefix: string, storeId: number, clusterIndex: number): string {
  return `${volumeOidPrefix(prefix, storeId)}${clusterIndex.toString(16).padStart(13, '0')}`;
}

/** What every object name of one volume starts with. */
export function volumeOidPrefix(prefix: string, storeId: number): string {
  return `${prefix}${storeId.toString(16).padStart(8, '0')}.`;
}

/** The cluster index of an object name of the volume whose names start with `volumePrefix`, or null for a name that is not one. */
function clusterIndexOfOid(volumePrefix: string, oid: string): number | null {
  const rest = oid.slice(volumePrefix.length);
  if (!oid.startsWith(volumePrefix) || !/^[0-9a-f]{13}$/.test(rest)) return null;
  return Number.parseInt(rest, 16);
}

/**
 * Which clusters of a volume may exist (a superset of its objects: a bit set for every object),
 * from one listing of the pool kept up to date by this store's own writes: a write sets its bit
 * when issued; a removal clears it only once acknowledged, with no write issued after it. One bit
 * per cluster: 4 MiB for 1 TiB of 32 KiB clusters.
 */
class Presence {
  private readonly bits: Uint8Array;

  constructor(readonly clustersTotal: number) {
    this.bits = new Uint8Array(Math.ceil(clustersTotal / 8));
  }

  has(c: number): boolean {
    return (this.bits[c >> 3]! & (1 << (c & 7))) !== 0;
  }

  set(c: number): void {
    this.bits[c >> 3]! |= 1 << (c & 7);
  }

  clear(c: number): void {
    this.bits[c >> 3]! &= ~(1 << (c & 7));
  }

  /** The first cluster >= from (and < clustersTotal) whose bit is set, or clustersTotal. */
  next(from: number): number {
    for (let c = from; c < this.clustersTotal; ) {
      if ((c & 7) === 0 && this.bits[c >> 3] === 0) {
        c += 8;
        continue;
      }
      if (this.has(c)) return c;
      c++;
    }
    return this.clustersTotal;
  }

  count(): number {
    let n = 0;
    for (const byte of this.bits) for (let b = byte; b !== 0; b &= b - 1) n++;
    return n;
  }
}

export class ObjectClusterStore implements ClusterStore {
  readonly layout = 'compact';
  readonly remote = true;
  private readonly objects: ClusterObjects;
  private readonly pending = new Map<number, PendingImage>();
  /** Bounded by bytes (an entry costs its image and 64 bytes). */
  private readonly known: TwoGenerationCache<Buffer | null>;
  private readonly loading = new Map<number, Loading>();
  /** Which clusters may exist, once listed (null before, or when the pool cannot list). */
  private presence: Presence | null = null;
  private presenceListing: Promise<void> | null = null;
  /** Writes not yet acknowledged (or failed), for settled(). */
  private readonly inFlight = new Set<Promise<unknown>>();
  private failure: unknown = null;

  constructor(
    private readonly storeId: number,
    private readonly g: ClusterGeometry,
    private readonly options: ObjectStoreOptions,
  ) {
    assert(Number.isSafeInteger(options.clustersTotal) && options.clustersTotal >= 0, 'clustersTotal is a whole number');
    assert(clusterOid(options.oidPrefix, storeId, options.clustersTotal).length <= OID_BYTES_MAX, `object names stay within ${OID_BYTES_MAX} bytes`);
    this.objects = options.objects;
    const knownBytesMax = options.knownBytesMax ?? KNOWN_BYTES_MAX;
    assert(Number.isSafeInteger(knownBytesMax) && knownBytesMax >= 2 * 1024 * 1024, 'the known-image bound is a whole number of bytes, at least 2 MiB');
    this.known = new TwoGenerationCache<Buffer | null>(knownBytesMax, (image) => (image?.length ?? 0) + 64);
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  private oid(clusterIndex: number): string {
    return clusterOid(this.options.oidPrefix, this.storeId, clusterIndex);
  }

  /** The latest image, or undefined when the store does not know it (not loaded). */
  private latest(clusterIndex: number): Buffer | null | undefined {
    const pending = this.pending.get(clusterIndex);
    if (pending !== undefined) return pending.image;
    // A cluster the listing never saw and this store never wrote has no object.
    if (this.presence !== null && !this.presence.has(clusterIndex)) return null;
    return this.known.get(clusterIndex);
  }

  /**
   * Null once the presence index is built (or the pool cannot list), else the promise of the
   * listing that builds it: one per store, shared by whoever asks while it runs.
   */
  private presenceReady(): Promise<void> | null {
    if (this.presence !== null || this.objects.list === undefined) return null;
    if (this.presenceListing !== null) return this.presenceListing;
    // Writes not yet acknowledged may be missing from the listing: present all the same.
    for (const [c, entry] of this.pending) if (entry.image !== null) this.presentWhileListing.add(c);
    const listing = (async () => {
      const volumePrefix = volumeOidPrefix(this.options.oidPrefix, this.storeId);
      const names = await this.objects.list!(volumePrefix, this.options.clustersTotal);
      const presence = new Presence(this.options.clustersTotal);
      for (const name of names) {
        const c = clusterIndexOfOid(volumePrefix, name);
        // A name of another shape under the volume's prefix, or past its end: not written here.
        if (c === null || c >= this.options.clustersTotal) clusterCorrupt('object', `${name} in the pool is under the volume's name prefix but is none of its ${this.options.clustersTotal} clusters`);
        presence.set(c);
      }
      // Written while the listing ran: present whether or not the listing saw them.
      for (const c of this.presentWhileListing) presence.set(c);
      this.presentWhileListing.clear();
      this.presence = presence;
    })();
    this.presenceListing = listing.finally(() => {
      this.presenceListing = null;
    });
    return this.presenceListing;
  }

  /** Clusters written while the listing ran, or before it and not yet acknowledged: the listing may miss them. */
  private readonly presentWhileListing = new Set<number>();

  // -------------------------------------------------------------------------------------------
  // Lookups: synchronous, of loaded clusters only.

  load(fromCluster: number, toCluster: number, scan = false): Promise<void> | null {
    assert(Number.isSafeInteger(fromCluster) && fromCluster >= 0 && toCluster >= fromCluster - 1, 'a load names a cluster range');
    // A scan (trim, allocation map) lists the volume's objects first, so that it reads only the
    // clusters that exist. Reads and writes never wait for a listing.
    if (scan) {
      const listing = this.presenceReady();
      if (listing !== null) return listing;
    }
    let waits: Promise<void>[] | null = null;
    for (let c = this.nextCandidate(fromCluster); c <= toCluster; c = this.nextCandidate(c + 1)) {
      if (this.latest(c) !== undefined) continue;
      (waits ??= []).push(this.loadOne(c));
      if (waits.length >= READS_IN_FLIGHT_MAX) break; // the caller loads again for the rest
    }
    if (waits === null) return null;
    return waits.length === 1 ? waits[0]! : Promise.all(waits).then(() => undefined);
  }

  private loadOne(clusterIndex: number): Promise<void> {
    const under = this.loading.get(clusterIndex);
    if (under !== undefined && !under.stale) return under.done;
    const entry: Loading = { done: Promise.resolve(), stale: false };
    entry.done = this.objects.read(this.oid(clusterIndex)).then(
      (image) => {
        if (this.loading.get(clusterIndex) === entry) this.loading.delete(clusterIndex);
        if (entry.stale || this.latest(clusterIndex) !== undefined) return;
        if (image !== null) decodeCluster(image, this.g); // invariant check of what the pool returned
        this.known.set(clusterIndex, image);
      },
      (error: unknown) => {
        if (this.loading.get(clusterIndex) === entry) this.loading.delete(clusterIndex);
        throw error;
      },
    );
    this.loading.set(clusterIndex, entry);
    return entry.done;
  }

  private loaded(clusterIndex: number): Buffer | null {
    const image = this.latest(clusterIndex);
    if (image === undefined) assert(false, `cluster ${clusterIndex} is loaded before it is looked up`);
    return image;
  }

  meta(clusterIndex: number): ClusterView | null {
    const image = this.loaded(clusterIndex);
    return image === null ? null : decodeCluster(image, this.g);
  }

  ciphertext(_clusterIndex: number, meta: ClusterView, slot: number, count: number): Uint8Array {
    return compactRun(meta, this.g, slot, count);
  }

  image(clusterIndex: number): ClusterView | null {
    return this.meta(clusterIndex);
  }

  /**
   * The last cluster a scan step from `from` visits: the `limit`-th cluster in from..to that may
   * exist (or `to`), or without an index from + limit - 1. A promise when the index is being built
   * (the step runs again once it is).
   */
  scanWindow(from: number, to: number, limit: number): number | Promise<void> {
    const listing = this.presenceReady();
    if (listing !== null) return listing;
    if (this.presence === null) return Math.min(to, from + limit - 1);
    let seen = 0;
    for (let c = this.presence.next(from); c <= to; c = this.presence.next(c + 1)) if (++seen === limit) return c;
    return to;
  }

  /** The clusters that exist in the scan window from `from` (scanWindow; loaded by the caller). */
  clusterIndexes(from: number, to: number, limit: number): { indexes: number[]; scannedTo: number } {
    const end = this.scanWindow(from, to, limit);
    const scannedTo = typeof end === 'number' ? end : Math.min(to, from + limit - 1);
    const indexes: number[] = [];
    for (let c = this.nextCandidate(from); c <= scannedTo; c = this.nextCandidate(c + 1)) {
      if (this.loaded(c) !== null) indexes.push(c);
    }
    return { indexes, scannedTo };
  }

  // -------------------------------------------------------------------------------------------
  // Writes.

  writeRun(clusterIndex: number, base: ClusterView | null, firstSlot: number, ciphertext: Uint8Array, generation: number): Promise<boolean> {
    return this.issue(clusterIndex, writeSlots(base, this.g, firstSlot, ciphertext, generation));
  }

  removeRun(clusterIndex: number, base: ClusterView, firstSlot: number, lastSlot: number): Promise<boolean> {
    return this.issue(clusterIndex, removeSlots(base, this.g, firstSlot, lastSlot));
  }

  putImage(clusterIndex: number, image: ClusterView): Promise<boolean> {
    return this.issue(clusterIndex, Buffer.from(image.raw.buffer, image.raw.byteOffset, image.raw.byteLength));
  }

  private issue(clusterIndex: number, image: Buffer | null): Promise<boolean> {
    if (image !== null) decodeCluster(image, this.g); // invariant check before it reaches the pool
    const loading = this.loading.get(clusterIndex);
    if (loading !== undefined) loading.stale = true;
    const budgetBytes = (image?.length ?? 0) + 64;
    const entry: PendingImage = { image, budgetBytes };
    if (image !== null) {
      this.presence?.set(clusterIndex);
      if (this.presenceListing !== null) this.presentWhileListing.add(clusterIndex);
    }
    this.pending.set(clusterIndex, entry);
    this.known.set(clusterIndex, image);
    this.options.budget.take(budgetBytes);
    const oid = this.oid(clusterIndex);
    const sent: Promise<unknown> = image === null ? this.objects.remove(oid) : this.objects.writeFull(oid, image);
    const done = sent.then(
      () => {
        // A removal acknowledged with nothing issued after it: the object is gone.
        if (image === null && this.pending.get(clusterIndex) === entry) this.presence?.clear(clusterIndex);
        this.settle(clusterIndex, entry);
        return true;
      },
      (error: unknown) => {
        this.settle(clusterIndex, entry);
        // What the pool holds is not known now: forget what this store believed of every cluster.
        this.known.clear();
        this.failure ??= error;
        throw error;
      },
    );
    this.inFlight.add(done);
    const untrack = (): void => {
      this.inFlight.delete(done);
    };
    done.then(untrack, untrack);
    return done;
  }

  private settle(clusterIndex: number, entry: PendingImage): void {
    if (this.pending.get(clusterIndex) === entry) this.pending.delete(clusterIndex);
    this.options.budget.give(entry.budgetBytes);
  }

  settled(): Promise<void> {
    if (this.inFlight.size === 0) return Promise.resolve();
    return Promise.allSettled([...this.inFlight]).then(() => undefined);
  }

  takeFailure(): unknown {
    const failure = this.failure;
    this.failure = null;
    return failure;
  }

  // -------------------------------------------------------------------------------------------
  // Rotation.

  /**
   * Reads objects from `fromCluster` on, READS_IN_FLIGHT_MAX at a time, until `limit` stale ones
   * are found or the volume ends. A cluster whose latest image this store knows is taken from
   * there (a copy: snapshots are transferred to worker threads).
   */
  async staleSnapshots(fromCluster: number, generation: number, limit: number): Promise<ClusterSnapshot[]> {
    await this.presenceReady();
    const found: ClusterSnapshot[] = [];
    const total = this.options.clustersTotal;
    for (let c = this.nextCandidate(fromCluster); c < total && found.length < limit; ) {
      // The next READS_IN_FLIGHT_MAX clusters that may exist, read at once.
      const window: number[] = [];
      for (; c < total && window.length < READS_IN_FLIGHT_MAX; c = this.nextCandidate(c + 1)) window.push(c);
      const images = await this.readForScan(window, generation);
      let stale = 0;
      for (let i = 0; i < images.length && found.length < limit; i++) {
        const image = images[i]!;
        if (image === null) continue;
        const view = decodeCluster(image, this.g);
        if (view.generation < generation) {
          found.push({ clusterIndex: window[i]!, generation: view.generation, raw: image });
          stale++;
        }
      }
      this.scanMostlyStale = stale * 2 >= window.length;
    }
    return found;
  }

  /**
   * Whether the last scan window was mostly stale clusters. A first pass of a re-encryption finds
   * nearly all stale, so it reads whole objects at once; a verifying pass finds nearly none, so it
   * reads each object's 16-byte header first and whole objects only for the stale ones.
   */
  private scanMostlyStale = true;

  /** The images of `window` (null: no object) that a scan for generations below `generation` needs: stale ones whole, others may be null. */
  private async readForScan(window: number[], generation: number): Promise<(Buffer | null)[]> {
    const fromMemory = (index: number): Buffer | null | undefined => {
      const latest = this.latest(index);
      return latest === undefined ? undefined : latest === null ? null : Buffer.from(latest);
    };
    const readHead = this.objects.readHead;
    if (this.scanMostlyStale || readHead === undefined) {
      return Promise.all(window.map((index) => fromMemory(index) ?? this.objects.read(this.oid(index))));
    }
    return Promise.all(
      window.map(async (index) => {
        const known = fromMemory(index);
        if (known !== undefined) return known;
        const head = await readHead.call(this.objects, this.oid(index), CLUSTER_HEADER_BYTES);
        if (head === null || clusterGeneration(head) >= generation) return null; // not stale: not needed
        return this.objects.read(this.oid(index));
      }),
    );
  }

  /** The first cluster >= from that may exist (every one when the pool cannot list). */
  private nextCandidate(from: number): number {
    return this.presence === null ? from : this.presence.next(from);
  }

  /** One compare-and-write per cluster (the header: generation and bitmap), all in flight at once. */
  async compareAndSetImages(items: { expected: ClusterSnapshot; raw: Uint8Array }[]): Promise<number> {
    const results = await Promise.all(
      items.map(async ({ expected, raw: image }) => {
        decodeCluster(image, this.g);
        const header = expected.raw.subarray(0, CLUSTER_HEADER_BYTES);
        const stored = await this.objects.compareAndWrite(this.oid(expected.clusterIndex), header, image);
        if (stored) this.afterReencrypted(expected, Buffer.from(image.buffer, image.byteOffset, image.byteLength));
        else this.afterLostRace(expected.clusterIndex);
        return stored;
      }),
    );
    return results.filter(Boolean).length;
  }

  /**
   * The pool now holds `image` unless a write issued after the commit was sent lands later. What
   * this store knows changes only where it still is the image the commit replaced.
   */
  private afterReencrypted(expected: ClusterSnapshot, image: Buffer): void {
    const c = expected.clusterIndex;
    const loading = this.loading.get(c);
    if (loading !== undefined) loading.stale = true;
    if (this.pending.has(c)) return;
    const known = this.known.get(c);
    if (known === undefined) return;
    if (known !== null && known.subarray(0, CLUSTER_HEADER_BYTES).equals(expected.raw.subarray(0, CLUSTER_HEADER_BYTES))) this.known.set(c, image);
    else this.known.delete(c);
  }

  /**
   * The pool held something else than the snapshot: a foreground write (then this store knows
   * the newer image, or it is pending) or a writer this store did not see (an engine killed with
   * operations in flight). Unless a write is pending, forget the cluster so the next lookup and
   * the next scan read the pool: a stale memory would otherwise make every scan find it again.
   */
  private afterLostRace(clusterIndex: number): void {
    if (!this.pending.has(clusterIndex)) this.known.delete(clusterIndex);
  }

  /** From the listing (an upper bound: a superset of the objects); the volume's cluster count where the pool cannot list. */
  async storedClusterCount(): Promise<number> {
    await this.presenceReady();
    return this.presence === null ? this.options.clustersTotal : this.presence.count();
  }
}

/**
 * Remove every object of a volume, READS_IN_FLIGHT_MAX at a time: those a listing finds, or
 * (where the pool cannot list) every cluster index's. `pause` runs between batches of `batch`.
 */
export async function purgeObjects(
  objects: ClusterObjects,
  oidPrefix: string,
  storeId: number,
  clustersTotal: number,
  batch: number,
  pause: () => Promise<void>,
): Promise<void> {
  const names =
    objects.list !== undefined
      ? await objects.list(volumeOidPrefix(oidPrefix, storeId), clustersTotal)
      : Array.from({ length: clustersTotal }, (_, c) => clusterOid(oidPrefix, storeId, c));
  for (let at = 0; at < names.length; at += READS_IN_FLIGHT_MAX) {
    await Promise.all(names.slice(at, at + READS_IN_FLIGHT_MAX).map((name) => objects.remove(name)));
    if ((at + READS_IN_FLIGHT_MAX) % batch < READS_IN_FLIGHT_MAX) await pause();
  }
}
