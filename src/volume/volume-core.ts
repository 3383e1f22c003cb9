/**
 * The I/O engine of one open volume: byte ranges to sector runs to clusters, encryption, and the
 * LMDB reads and writes. One VolumeCore exists per open volume in an engine; handles
 * (src/volume/volume.ts) and the re-encryption target share it.
 *
 * Reads see every acknowledged write: lmdb-js makes an async put visible only once its batch
 * commits, so the cluster store (src/volume/cluster-store.ts) keeps values handed to LMDB but not
 * yet committed in an overlay (bounded by the write budget) and lookups consult it first.
 *
 * Every operation runs in call order through the volume's OpQueue, synchronously from reading a
 * cluster to issuing its puts, so a cluster's read-modify-write is atomic without locks.
 *
 * Durability: a write's promise resolves when its LMDB transaction has committed. With the
 * engine's LMDB settings (overlappingSync, see src/engine.ts) every commit is also fsynced, but
 * just after the write lock is released; `flush()` waits for that fsync (`root.flushed`).
 * A write-back write (`writeBack`, what the NBD server uses) resolves once its step has issued
 * its puts, so reads see it, without waiting for the commit; should that commit fail, the write
 * is lost and every later flush() says so (`lostWrite`), as a disk whose write-back cache failed.
 */
import type { Database, RootDatabase } from 'lmdb';
import { BlockvaultError, assert } from '../errors.js';
import { type ClusterGeometry, type ClusterView, type SectorCipher, decodeCluster, forEachPresentRun, isPresent, reencryptCluster } from './cluster-format.js';
import { createClusterStore, type ClusterStore, type VolumeLayout } from './cluster-store.js';
import { KeyRing } from './data-key.js';
import { accessRefusedError, type KeyAccess } from './key-access.js';
import { OpQueue, type StepResult, stepAfter, stepPending } from './op-queue.js';
import { ObjectClusterStore, READS_IN_FLIGHT_MAX, type ClusterObjects } from './object-store.js';
import { BufferSlab, CiphertextSlabs } from './buffer-slab.js';
import { stateOf, type VolumeRecord } from './record.js';
import type { WriteBudget } from './write-budget.js';

/** A run of bytes that is stored (`allocated`) or a hole (reads as zeros, takes no space). */
export interface AllocationExtent {
  offset: number;
  length: number;
  allocated: boolean;
}

export interface VolumeCoreDeps {
  root: RootDatabase;
  clusters: Database<Buffer, Buffer>;
  sectors: Database<Buffer, Buffer>;
  budget: WriteBudget;
  cipher: SectorCipher;
  /** Most bytes one step of a write encrypts and issues (a multiple of every cluster size). */
  writeStepBytesMax: number;
  /** Most clusters one step of a trim visits. */
  trimStepClustersMax: number;
  /** Bound of the split layout's meta cache, in clusters (default META_CACHE_CLUSTERS_MAX; 0: off). */
  metaCacheClustersMax?: number;
  /** Root keys the storage service may not use now (suspended, authorization revoked): I/O stops. */
  keyAccess?: KeyAccess;
  /** Where the clusters live when not in LMDB: an object pool (src/volume/object-store.ts). */
  objectPool?: { objects: ClusterObjects; oidPrefix: string; knownBytesMax?: number };
}

/** How often a remote read or allocation step loads again when its clusters went before it ran. */
const LOAD_ATTEMPTS_MAX = 16;

const SETTLED = Promise.resolve();

export class VolumeCore {
  readonly keys: KeyRing;
  readonly queue: OpQueue;
  readonly store: ClusterStore;
  private readonly geometry: ClusterGeometry;
  /** Sector bytes per cluster (sectorSize * clusterSectors). */
  private readonly clusterBytes: number;
  private closedError: BlockvaultError | null = null;
  /** The first write-back write whose commit failed: every flush from then on rejects with it. */
  private lostWrite: BlockvaultError | null = null;
  /**
   * Buffer views of the data keys, made once per key: the native cipher takes Buffers and would
   * otherwise wrap a plain Uint8Array key on every call. A view shares the key's memory, so
   * wiping the key wipes it too, and it goes with its key (weak).
   */
  private readonly keyViews = new WeakMap<Uint8Array, Buffer>();
  /**
   * Where single-sector reads get their plaintext buffers and writes their ciphertext buffers
   * (buffer-slab.ts: for one sector, allocating is the costly part). Separate slabs, so a read's
   * buffer never shares memory with ciphertext; the ciphertext slabs are reused once the puts
   * that reference them have settled (the store pins and unpins its values).
   */
  private readonly readSlab = new BufferSlab();
  private readonly writeSlab = new CiphertextSlabs();
  /** Handles and targets holding this core open. */
  refs = 0;

  constructor(
    private currentRecord: VolumeRecord,
    private readonly deps: VolumeCoreDeps,
  ) {
    const cipher = deps.cipher;
    this.keys = new KeyRing(cipher.keyed === undefined ? undefined : (key) => cipher.keyed!(key));
    this.geometry = { sectorSize: currentRecord.sectorSize, clusterSectors: currentRecord.clusterSectors };
    // The meta cache is off unless exactly the write generation's data key is loaded: with more,
    // re-encryption can commit clusters behind the store's overlay; and every re-encryption ends
    // under a new write generation, which starts a new cache epoch (cluster-store.ts, MetaCache).
    const pool = deps.objectPool;
    if (pool !== undefined) assert(currentRecord.layout === 'compact', 'a volume in an object pool has the compact layout');
    this.clusterBytes = this.geometry.sectorSize * this.geometry.clusterSectors;
    this.store = pool !== undefined
      ? new ObjectClusterStore(currentRecord.storeId, this.geometry, {
          ...pool,
          clustersTotal: Math.ceil(currentRecord.sizeBytes / this.clusterBytes),
          budget: deps.budget,
        })
      : createClusterStore(currentRecord.layout, deps, currentRecord.storeId, this.geometry, {
      metaCacheClustersMax: deps.metaCacheClustersMax,
      // The ciphertext slabs are reused once LMDB and the overlay are done with them.
      valuePins: this.writeSlab,
      metaCacheEpoch: () => {
        const generation = this.currentRecord.writeGeneration;
        return this.keys.size === 1 && this.keys.has(generation) ? generation : null;
      },
    });
    this.queue = new OpQueue(deps.budget);
  }

  get record(): VolumeRecord {
    return this.currentRecord;
  }

  /** The engine replaces the record on every change (records are immutable). */
  setRecord(record: VolumeRecord): void {
    assert(record.id === this.currentRecord.id && record.storeId === this.currentRecord.storeId, 'a core keeps its volume');
    this.currentRecord = record;
  }

  get id(): string {
    return this.currentRecord.id;
  }

  get sectorSize(): number {
    return this.geometry.sectorSize;
  }

  get clusterSectors(): number {
    return this.geometry.clusterSectors;
  }

  get layout(): VolumeLayout {
    return this.store.layout;
  }

  // -------------------------------------------------------------------------------------------
  // State.

  /** Why I/O is refused right now, or null. Checked when each step runs, not when it was called. */
  ioError(): BlockvaultError | null {
    if (this.closedError !== null) return this.closedError;
    const record = this.currentRecord;
    const state = stateOf(record);
    if (state === 'locked') {
      return new BlockvaultError(
        'VOLUME_LOCKED',
        `volume ${record.name} (${record.id}) is locked: its root key ${record.diskEncryptionKeyCrn} was destroyed and its data cannot be read or written any more; only its metadata remains`,
        { volumeId: record.id, keyCrn: record.diskEncryptionKeyCrn, reason: record.lockReason },
      );
    }
    if (state === 'deleted') {
      return new BlockvaultError(
        'VOLUME_DELETED',
        `volume ${record.name} (${record.id}) is deleted and will be purged at ${new Date(record.purgeAtMs ?? 0).toISOString()}; restore it with engine.restoreVolume(id) to use it again`,
        { volumeId: record.id, purgeAtMs: record.purgeAtMs },
      );
    }
    const refusal = this.accessRefusal();
    if (refusal !== null) return refusal;
    if (!this.keys.has(record.writeGeneration)) {
      return new BlockvaultError('KEY_STATE', `volume ${record.name} (${record.id}) has no data key loaded; reopen it with engine.openVolume`, {
        volumeId: record.id,
      });
    }
    return null;
  }

  /** Why the storage service may not use this volume's root key now (suspended, revoked), or null. */
  accessRefusal(): BlockvaultError | null {
    const record = this.currentRecord;
    const refusal = this.deps.keyAccess?.refusal(record.diskEncryptionKeyCrn) ?? null;
    return refusal === null ? null : accessRefusedError(record, refusal);
  }

  private checkIo(): void {
    const error = this.ioError();
    if (error !== null) throw error;
  }

  /** Soft delete: wipe the data keys now (a restore loads them again). Steps that run later fail. */
  wipeKeys(): void {
    this.keys.wipe();
    this.releaseSlabs();
  }

  /**
   * Cryptoshred: wipe the data keys now, and refuse for good any key an unwrap still under way
   * would bring back (KeyRing.shred). Steps that run later fail; in-flight writes reject.
   */
  shred(error: BlockvaultError): void {
    this.keys.shred(error);
    this.releaseSlabs();
  }

  /** No further steps run; the keys are wiped once everything issued has committed. */
  async close(error: BlockvaultError): Promise<void> {
    // Operations submitted before close complete; the error applies from here on.
    await this.queue
      .submitOne(() => {
        this.closedError ??= error;
        return this.store.settled();
      })
      .catch(() => undefined);
    this.keys.wipe();
    this.releaseSlabs();
  }

  /** A closed or locked volume keeps no slab (views already handed out stay valid). */
  private releaseSlabs(): void {
    this.readSlab.release();
    this.writeSlab.release();
  }

  // -------------------------------------------------------------------------------------------
  // Cluster access.

  /**
   * The cluster's header as the base of an edit, after re-encrypting the cluster to the write
   * generation if it is older: every rewritten cluster lands under the newest key, so a
   * foreground write during rotation wins any race (src/volume/reencrypt-target.ts).
   */
  private editBase(clusterIndex: number, writeGeneration: number): ClusterView | null {
    const meta = this.store.meta(clusterIndex);
    if (meta === null || meta.generation === writeGeneration) return meta;
    assert(meta.generation < writeGeneration, `cluster generation ${meta.generation} is not newer than the write generation ${writeGeneration}`);
    const image = this.store.image(clusterIndex)!;
    const moved = reencryptCluster(
      this.deps.cipher,
      image.raw,
      clusterIndex,
      this.geometry.sectorSize,
      this.geometry.clusterSectors,
      this.keys.get(image.generation),
      this.keys.get(writeGeneration),
      writeGeneration,
    );
    void this.store.putImage(clusterIndex, decodeCluster(moved, this.geometry));
    return this.store.meta(clusterIndex);
  }

  /** A write's completion: all its clusters committed, and the volume still usable. */
  private completion(writes: Promise<boolean>[]): Promise<void> {
    if (writes.length === 0) return SETTLED;
    // writeNow keeps one promise per lmdb-js batch: usually a single one.
    return (writes.length === 1 ? writes[0]! : Promise.all(writes)).then(this.afterCommit);
  }

  /**
   * How a write, trim or zeroing resolves: at its commit, or (write-back) now, its commit failure
   * then kept in `lostWrite` for every later flush. A volume locked meanwhile needs no record: every
   * later request fails anyway.
   */
  private finish(writes: Promise<boolean>[], writeBack: boolean): Promise<void> {
    const committed = this.completion(writes);
    if (!writeBack) return committed;
    committed.catch(this.recordLostWrite);
    return SETTLED;
  }

  private readonly recordLostWrite = (cause: unknown): void => {
    if (this.lostWrite !== null || this.currentRecord.lockedAtMs !== null) return;
    const record = this.currentRecord;
    const reason = cause instanceof Error ? cause.message : String(cause);
    this.lostWrite = new BlockvaultError(
      'WRITE_LOST',
      `volume ${record.name} (${record.id}) lost acknowledged write-back writes: their LMDB commit failed (${reason}); what was flushed before is intact, close and reopen the volume to go on`,
      { volumeId: record.id },
      { cause },
    );
  };

  /** After a write's commit: a volume locked meanwhile fails the write (made once, not per write). */
  private readonly afterCommit = (): void => {
    if (this.currentRecord.lockedAtMs !== null) this.checkIo();
  };

  // -------------------------------------------------------------------------------------------
  // Read.

  read(offset: number, length: number): Promise<Uint8Array> {
    if (this.store.remote) return this.afterQueued(() => this.readRemote(offset, length));
    if (this.queue.empty()) {
      // Fast path (the common case): nothing queued ahead, so no queue bookkeeping. A read issues
      // no writes, so it need not wait for room in the write budget either.
      try {
        return Promise.resolve(this.readNow(offset, length));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return this.queue.submitOne(() => Promise.resolve(this.readNow(offset, length)));
  }

  private readNow(offset: number, length: number): Uint8Array {
    this.checkIo();
    if (length === 0) return new Uint8Array(0);
    const ss = this.geometry.sectorSize;
    const firstSector = Math.floor(offset / ss);
    const lastSector = Math.floor((offset + length - 1) / ss);
    const skip = offset - firstSector * ss;
    let out: Buffer;
    if (firstSector === lastSector && skip === 0 && length === ss) {
      out = this.readSector(firstSector);
    } else {
      out = Buffer.alloc((lastSector - firstSector + 1) * ss);
      this.decryptSectorsInto(firstSector, lastSector, out);
    }
    // The lock check is the read's last step before it resolves: a volume locked (its keys
    // wiped) by now returns no data. Synchronous code cannot be interleaved, but this keeps the
    // rule explicit should the read ever yield.
    const error = this.ioError();
    if (error !== null) {
      out.fill(0);
      throw error;
    }
    return this.requested(out, skip, length);
  }

  /** The `length` bytes from `skip` of whole sectors read into `out` (wiped when not returned). */
  private requested(out: Buffer, skip: number, length: number): Uint8Array {
    if (skip === 0 && out.length === length) return out;
    // From this volume's slab, not Buffer.from: Node's shared pool would put the plaintext next to
    // any other allocation in the process, reachable through `part.buffer`.
    const part = this.readSlab.take(length);
    part.set(out.subarray(skip, skip + length));
    out.fill(0);
    return part;
  }

  // -------------------------------------------------------------------------------------------
  // A remote store (src/volume/object-store.ts): its clusters are loaded before a step looks.

  /**
   * Run `op` once every operation submitted before has issued its writes, so that it sees them.
   * Reads and allocation maps of a remote store load outside the queue (many in flight, as on
   * LMDB), so they wait for the queue only when something is in it.
   */
  private afterQueued<T>(op: () => Promise<T>): Promise<T> {
    // In the queue, `op` starts (and registers its reads, see readsUnderWay) inside its step, so a
    // write queued after it already finds it; the queue does not wait for it to end.
    return this.queue.empty() ? op() : this.queue.submitOne(op);
  }

  /**
   * Reads (and allocation maps) of a remote store under way, by cluster range: they load outside
   * the queue, so a write step that comes after one in call order waits for it to end before it
   * edits those clusters (waitBeforeEdit). Otherwise the read, still loading, would return the write's
   * data: reads keep call order as on LMDB, where they run synchronously.
   */
  private readonly readsUnderWay = new Set<{ from: number; to: number; done: Promise<unknown> }>();

  /** Track a read of clusters from..to for as long as `run` takes (registered before it starts). */
  private async underWay<T>(from: number, to: number, run: () => Promise<T>): Promise<T> {
    const entry = { from, to, done: SETTLED as Promise<unknown> };
    this.readsUnderWay.add(entry);
    try {
      const running = run();
      entry.done = running.catch(() => undefined);
      return await running;
    } finally {
      this.readsUnderWay.delete(entry);
    }
  }

  /**
   * What a remote store's step of a write or trim must wait for before it edits clusters
   * from..to: earlier reads of them still under way, then the loads of those it edits in part
   * (`loads`). Null when it may run now.
   */
  private waitBeforeEdit(from: number, to: number, loads: () => Promise<void> | null): Promise<void> | null {
    const waits: Promise<unknown>[] = [];
    for (const read of this.readsUnderWay) if (read.from <= to && from <= read.to) waits.push(read.done);
    if (waits.length > 0) return Promise.all(waits).then(() => undefined);
    return loads();
  }

  /** Resolves once clusters from..to are loaded (in windows of READS_IN_FLIGHT_MAX), for a step that runs right after. */
  private async loadClusters(from: number, to: number, scan = false): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const wait = this.store.load(from, to, scan);
      if (wait === null) return;
      if (attempt >= LOAD_ATTEMPTS_MAX) assert(false, `clusters ${from}..${to} of volume ${this.id} stay loaded for one step (${LOAD_ATTEMPTS_MAX} loads)`);
      await wait;
    }
  }

  private readRemote(offset: number, length: number): Promise<Uint8Array> {
    const cb = this.clusterBytes;
    return this.underWay(Math.floor(offset / cb), Math.floor((offset + Math.max(1, length) - 1) / cb), () => this.readRemoteNow(offset, length));
  }

  private async readRemoteNow(offset: number, length: number): Promise<Uint8Array> {
    this.checkIo();
    if (length === 0) return new Uint8Array(0);
    const { sectorSize: ss, clusterSectors: cs } = this.geometry;
    const firstSector = Math.floor(offset / ss);
    const lastSector = Math.floor((offset + length - 1) / ss);
    const skip = offset - firstSector * ss;
    const out = Buffer.alloc((lastSector - firstSector + 1) * ss);
    try {
      // One window of clusters at a time: loaded, then decrypted in the same synchronous step.
      for (let c = Math.floor(firstSector / cs); c <= Math.floor(lastSector / cs); c += READS_IN_FLIGHT_MAX) {
        const lastCluster = Math.min(Math.floor(lastSector / cs), c + READS_IN_FLIGHT_MAX - 1);
        await this.loadClusters(c, lastCluster);
        this.checkIo();
        const from = Math.max(firstSector, c * cs);
        const to = Math.min(lastSector, lastCluster * cs + cs - 1);
        this.decryptSectorsInto(from, to, out.subarray((from - firstSector) * ss, (to - firstSector + 1) * ss));
      }
      // As readNow: a volume locked by now returns no data.
      this.checkIo();
    } catch (error) {
      out.fill(0);
      throw error;
    }
    return this.requested(out, skip, length);
  }

  /**
   * For a write step of bytes [offset, end) on a remote store: the load of the clusters it edits
   * only in part (at most the first and the last), or null when they are loaded. A cluster the step
   * rewrites whole needs no base.
   */
  private loadForEdit(offset: number, end: number): Promise<void> | null {
    const clusterBytes = this.clusterBytes;
    const first = Math.floor(offset / clusterBytes);
    const last = Math.floor((end - 1) / clusterBytes);
    const waitFirst = offset % clusterBytes !== 0 || (first === last && end % clusterBytes !== 0) ? this.store.load(first, first) : null;
    const waitLast = last !== first && end % clusterBytes !== 0 ? this.store.load(last, last) : null;
    if (waitFirst === null || waitLast === null) return waitFirst ?? waitLast;
    return Promise.all([waitFirst, waitLast]).then(() => undefined);
  }

  /** One whole sector's plaintext in a fresh buffer: the hot case of random 4 KiB reads. */
  private readSector(sector: number): Buffer {
    const { sectorSize: ss, clusterSectors: cs } = this.geometry;
    const c = Math.floor(sector / cs);
    const slot = sector - c * cs;
    const meta = this.store.meta(c);
    // A fresh zeroed buffer from this volume's slab (shared with no other volume's reads).
    const out = this.readSlab.take(ss);
    if (meta === null || !isPresent(meta.bitmap, slot)) return out;
    const src = this.store.ciphertext(c, meta, slot, 1, out);
    // The key's prepared handle: no key schedule expansion per read, and the leanest call.
    const handle = this.keys.handle(meta.generation);
    if (handle !== undefined) {
      // The split layout assembles the ciphertext in `out`; the compact one returns a view.
      if (src !== out) out.set(src);
      handle.decryptSectorInPlace(sector, out);
    } else {
      this.deps.cipher.decryptSectorsInto(this.keyView(meta.generation), sector, ss, src, out);
    }
    return out;
  }

  private keyView(generation: number): Uint8Array {
    const key = this.keys.get(generation);
    if (Buffer.isBuffer(key)) return key;
    let view = this.keyViews.get(key);
    if (view === undefined) {
      view = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
      this.keyViews.set(key, view);
    }
    return view;
  }

  /** Plaintext of sectors firstSector..lastSector into zeroed `out` (absent sectors stay zero). */
  private decryptSectorsInto(firstSector: number, lastSector: number, out: Uint8Array): void {
    const { sectorSize: ss, clusterSectors: cs } = this.geometry;
    for (let c = Math.floor(firstSector / cs); c <= Math.floor(lastSector / cs); c++) {
      const first = Math.max(firstSector, c * cs);
      const last = Math.min(lastSector, c * cs + cs - 1);
      const meta = this.store.meta(c);
      if (meta === null) continue;
      const key = this.keys.get(meta.generation);
      const handle = this.keys.handle(meta.generation);
      forEachPresentRun(meta, this.geometry, first - c * cs, last - c * cs, (slot, count) => {
        const at = (c * cs + slot - firstSector) * ss;
        const dst = out.subarray(at, at + count * ss);
        // One cipher call per run of present sectors; the split layout assembles into dst and
        // decrypts in place.
        const src = this.store.ciphertext(c, meta, slot, count, dst);
        if (handle !== undefined) handle.decryptSectorsInto(c * cs + slot, ss, src, dst);
        else this.deps.cipher.decryptSectorsInto(key, c * cs + slot, ss, src, dst);
      });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Write.

  /** `offset` and `data` are validated by the caller (in range, integer). */
  write(offset: number, data: Uint8Array, writeBack = false): Promise<void> {
    if (data.length === 0) return this.queue.submitOne(() => (this.checkIo(), SETTLED));
    const end = offset + data.length;
    const stepBytes = this.deps.writeStepBytesMax;
    if (Math.floor(offset / stepBytes) === Math.floor((end - 1) / stepBytes) && this.queue.idle() && !this.store.remote) {
      // Fast path (small writes, the common case): one step, nothing queued ahead and room in the
      // write budget, so it runs now exactly as the queue would run it, minus the queue's closures.
      const writes: Promise<boolean>[] = [];
      try {
        this.writeNow(offset, data, writes);
      } catch (error) {
        return Promise.reject(error);
      }
      return this.finish(writes, writeBack);
    }
    let cursor = offset;
    const writes: Promise<boolean>[] = [];
    return this.queue.submit((): StepResult<void> => {
      // Steps end on multiples of writeStepBytesMax, which are cluster boundaries.
      const stepEnd = Math.min(end, (Math.floor(cursor / stepBytes) + 1) * stepBytes);
      if (this.store.remote) {
        const clusterBytes = this.clusterBytes;
        const stepStart = cursor;
        const wait = this.waitBeforeEdit(Math.floor(stepStart / clusterBytes), Math.floor((stepEnd - 1) / clusterBytes), () => this.loadForEdit(stepStart, stepEnd));
        if (wait !== null) return stepAfter(wait);
      }
      this.writeNow(cursor, data.subarray(cursor - offset, stepEnd - offset), writes);
      cursor = stepEnd;
      return cursor < end ? stepPending() : { done: true, result: this.finish(writes, writeBack) };
    });
  }

  private writeNow(offset: number, data: Uint8Array, writes: Promise<boolean>[]): void {
    this.checkIo();
    const { sectorSize: ss, clusterSectors: cs } = this.geometry;
    const generation = this.currentRecord.writeGeneration;
    const key = this.keys.get(generation);
    const firstSector = Math.floor(offset / ss);
    const lastSector = Math.floor((offset + data.length - 1) / ss);
    const skip = offset - firstSector * ss;
    let plain = data;
    if (skip !== 0 || (offset + data.length) % ss !== 0) {
      // Partial first or last sector: read-modify-write of those sectors only.
      plain = Buffer.alloc((lastSector - firstSector + 1) * ss);
      if (skip !== 0) this.decryptSectorsInto(firstSector, firstSector, plain.subarray(0, ss));
      if ((offset + data.length) % ss !== 0 && (lastSector !== firstSector || skip === 0)) {
        this.decryptSectorsInto(lastSector, lastSector, plain.subarray(plain.length - ss));
      }
      plain.set(data, skip);
    }
    // One cipher call for the whole step: its sectors are consecutive.
    const handle = this.keys.handle(generation);
    let ciphertext: Uint8Array;
    if (handle !== undefined) {
      ciphertext = this.writeSlab.take(plain.length);
      handle.encryptSectorsInto(firstSector, ss, plain, ciphertext);
    } else {
      ciphertext = this.deps.cipher.encryptSectors(key, firstSector, ss, plain);
    }
    for (let c = Math.floor(firstSector / cs); c <= Math.floor(lastSector / cs); c++) {
      const first = Math.max(firstSector, c * cs);
      const last = Math.min(lastSector, c * cs + cs - 1);
      const runSectors = last - first + 1;
      // A whole cluster rewritten needs no base; a remote store has not loaded it (loadForEdit).
      const base = runSectors === cs ? (this.store.remote ? null : this.store.meta(c)) : this.editBase(c, generation);
      const from = (first - firstSector) * ss;
      const written = this.store.writeRun(c, base, first - c * cs, ciphertext.subarray(from, from + runSectors * ss), generation);
      // Writes issued in one step usually share lmdb-js's batch promise: keep each promise once.
      if (writes[writes.length - 1] !== written) writes.push(written);
    }
    if (plain !== data) plain.fill(0);
  }

  // -------------------------------------------------------------------------------------------
  // Trim: whole sectors are removed; the covered part of a partial sector is zeroed.

  trim(offset: number, length: number, writeBack = false): Promise<void> {
    if (length === 0) return this.queue.submitOne(() => (this.checkIo(), SETTLED));
    const ss = this.geometry.sectorSize;
    const cs = this.geometry.clusterSectors;
    const end = offset + length;
    const fullFirst = Math.ceil(offset / ss);
    const fullEnd = Math.floor(end / ss); // exclusive
    const writes: Promise<boolean>[] = [];
    let cursor = -1; // next cluster index to visit; -1 before the edges are done
    const lastCluster = fullEnd > fullFirst ? Math.floor((fullEnd - 1) / cs) : -1;
    const remote = this.store.remote;
    const windowClusters = remote ? Math.min(this.deps.trimStepClustersMax, READS_IN_FLIGHT_MAX) : this.deps.trimStepClustersMax;
    return this.queue.submit((): StepResult<void> => {
      this.checkIo();
      let windowEnd = lastCluster;
      if (remote) {
        // The clusters this step looks at: the partial pieces' (first step) and the window.
        const from = cursor === -1 ? Math.floor(fullFirst / cs) : cursor;
        let to = -1;
        if (lastCluster >= from) {
          const end = this.store.scanWindow(from, lastCluster, windowClusters);
          if (typeof end !== 'number') return stepAfter(end);
          to = windowEnd = end;
        }
        const clusterBytes = this.clusterBytes;
        const wait = this.waitBeforeEdit(cursor === -1 ? Math.floor(offset / clusterBytes) : from, cursor === -1 ? Math.max(to, Math.floor((end - 1) / clusterBytes)) : to, () => {
          const edges = cursor === -1 ? this.loadForEdit(offset, end) : null;
          const window = to >= from ? this.store.load(from, to, true) : null;
          return edges === null || window === null ? (edges ?? window) : Promise.all([edges, window]).then(() => undefined);
        });
        if (wait !== null) return stepAfter(wait);
      }
      if (cursor === -1) {
        if (fullEnd <= fullFirst) {
          // No whole sector inside: one or two partial pieces.
          const boundary = fullFirst * ss;
          if (offset < boundary && boundary < end) {
            this.zeroPartial(offset, boundary, writes);
            this.zeroPartial(boundary, end, writes);
          } else {
            this.zeroPartial(offset, end, writes);
          }
          return { done: true, result: this.finish(writes, writeBack) };
        }
        if (offset % ss !== 0) this.zeroPartial(offset, fullFirst * ss, writes);
        if (end % ss !== 0) this.zeroPartial(fullEnd * ss, end, writes);
        cursor = Math.floor(fullFirst / cs);
      }
      cursor = this.trimClusters(cursor, windowEnd, fullFirst, fullEnd - 1, windowClusters, writes);
      return cursor > lastCluster ? { done: true, result: this.finish(writes, writeBack) } : stepPending();
    });
  }

  /** Zero bytes [from, to) inside one sector, if that sector exists (absent sectors read as zeros). */
  private zeroPartial(from: number, to: number, writes: Promise<boolean>[]): void {
    const { sectorSize: ss, clusterSectors: cs } = this.geometry;
    const sector = Math.floor(from / ss);
    assert(Math.floor((to - 1) / ss) === sector, 'a partial trim stays inside one sector');
    const meta = this.store.meta(Math.floor(sector / cs));
    if (meta === null || !isPresent(meta.bitmap, sector % cs)) return;
    this.writeNow(from, new Uint8Array(to - from), writes);
  }

  /**
   * Remove sectors firstSector..lastSector from the stored clusters in fromCluster..toCluster,
   * visiting at most trimStepClustersMax of them (found by a key-range scan plus the overlay, so
   * trimming an empty region costs nothing). Returns the next cluster to visit.
   */
  private trimClusters(fromCluster: number, toCluster: number, firstSector: number, lastSector: number, clustersMax: number, writes: Promise<boolean>[]): number {
    const cs = this.geometry.clusterSectors;
    const { indexes, scannedTo } = this.store.clusterIndexes(fromCluster, toCluster, clustersMax);
    const generation = this.currentRecord.writeGeneration;
    for (const c of indexes) {
      const first = Math.max(firstSector, c * cs) - c * cs;
      const last = Math.min(lastSector, c * cs + cs - 1) - c * cs;
      const current = this.store.meta(c);
      if (current === null) continue;
      let hit = false;
      forEachPresentRun(current, this.geometry, first, last, () => {
        hit = true;
      });
      if (!hit) continue;
      // Removing the last sectors deletes the cluster whatever its generation; otherwise what
      // stays is moved to the write generation first, like any edit.
      const base = first === 0 && last === cs - 1 ? current : this.editBase(c, generation)!;
      writes.push(this.store.removeRun(c, base, first, last));
    }
    return scannedTo + 1;
  }

  // -------------------------------------------------------------------------------------------
  // Allocation map: which sectors are stored. Unwritten and trimmed sectors are holes (they read
  // as zeros and take no space); the NBD server's base:allocation context reports these.

  /**
   * Extents covering [offset, offset + length) from `offset` on, in order, neighbours of the same
   * kind merged, clipped to the range. At most `clustersMax` stored clusters are visited (found by
   * a key-range scan plus the overlay, so an empty region costs one scan): when the range holds
   * more, the extents end early at a cluster boundary and the caller asks again from there.
   */
  allocation(offset: number, length: number, clustersMax: number): Promise<AllocationExtent[]> {
    if (this.store.remote) {
      const clusterBytes = this.clusterBytes;
      const window = Math.max(1, Math.min(clustersMax, READS_IN_FLIGHT_MAX));
      const from = Math.floor(offset / clusterBytes);
      const last = Math.floor((offset + Math.max(1, length) - 1) / clusterBytes);
      return this.afterQueued(() =>
        this.underWay(from, last, async () => {
          this.checkIo();
          let to = this.store.scanWindow(from, last, window);
          if (typeof to !== 'number') {
            await to;
            to = this.store.scanWindow(from, last, window) as number;
          }
          await this.loadClusters(from, to, true);
          // Writes to these clusters wait for this map (underWay), so none appears in the window
          // after its load; the window bounds the lookups all the same.
          return this.allocationNow(offset, length, Number.MAX_SAFE_INTEGER, to);
        }),
      );
    }
    if (this.queue.empty()) {
      try {
        return Promise.resolve(this.allocationNow(offset, length, clustersMax));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return this.queue.submitOne(() => Promise.resolve(this.allocationNow(offset, length, clustersMax)));
  }

  /** `windowEnd`: a remote store's loaded scan window (the clusters a remote lookup may look at end there). */
  private allocationNow(offset: number, length: number, clustersMax: number, windowEnd = Number.MAX_SAFE_INTEGER): AllocationExtent[] {
    this.checkIo();
    const extents: AllocationExtent[] = [];
    if (length === 0) return extents;
    const { sectorSize: ss, clusterSectors: cs } = this.geometry;
    const end = offset + length;
    const firstSector = Math.floor(offset / ss);
    const lastSector = Math.floor((end - 1) / ss);
    const fromCluster = Math.floor(firstSector / cs);
    const toCluster = Math.floor(lastSector / cs);
    const { indexes, scannedTo } = this.store.clusterIndexes(fromCluster, Math.min(toCluster, windowEnd), Math.max(1, clustersMax));
    const coveredEnd = scannedTo >= toCluster ? end : Math.min(end, (scannedTo + 1) * cs * ss);
    let cursor = offset;
    const add = (allocated: boolean, from: number, to: number): void => {
      const start = Math.max(from, cursor);
      const stop = Math.min(to, coveredEnd);
      if (stop <= start) return;
      const last = extents[extents.length - 1];
      if (last !== undefined && last.allocated === allocated) last.length += stop - start;
      else extents.push({ offset: start, length: stop - start, allocated });
      cursor = stop;
    };
    for (const c of indexes) {
      if (c > scannedTo) break;
      const meta = this.store.meta(c);
      if (meta === null) continue;
      const first = Math.max(firstSector, c * cs);
      const last = Math.min(lastSector, c * cs + cs - 1);
      add(false, cursor, first * ss);
      for (let sector = first; sector <= last; sector++) add(isPresent(meta.bitmap, sector - c * cs), sector * ss, (sector + 1) * ss);
    }
    add(false, cursor, coveredEnd);
    return extents;
  }

  // -------------------------------------------------------------------------------------------
  // Flush.

  /** Everything acknowledged before this call is on stable storage when it resolves. */
  flush(): Promise<void> {
    return this.queue.submitOne(async () => {
      if (this.closedError !== null) throw this.closedError;
      await this.store.settled();
      await this.deps.root.flushed;
      const failure = this.store.takeFailure();
      if (this.lostWrite !== null) throw this.lostWrite;
      if (failure !== null) throw failure;
    });
  }

  /** Wait until every write issued so far has committed (not necessarily flushed). */
  drainCommits(): Promise<void> {
    return this.queue.submitOne(() => this.store.settled());
  }
}
