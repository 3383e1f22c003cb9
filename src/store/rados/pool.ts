/**
 * RadosPool: object I/O on one pool. Every method validates its arguments, waits for an
 * in-flight slot (limiter.ts), runs one librados operation and turns its rc into a result or a
 * BlockvaultError that names the pool, object, operation and errno.
 *
 * What is not an error: a missing object for read and stat (null) and for remove (false); a
 * compare-and-write whose condition does not hold (false).
 *
 * Ordering: operations start in call order, and librados keeps the order of operations on one
 * object from one client, so a read issued after a write was acknowledged sees it, and two
 * writes to one object land in call order.
 */
import { BlockvaultError, assert } from '../../errors.js';
import { MAX_ERRNO, radosBinding, type NativeRadosClient, type NativeRadosPool, type NativeRadosReply } from './binding.js';
import { ERRNO, errnoName, opError } from './errors.js';
import { InFlightLimiter } from './limiter.js';
import {
  BYTES_IN_FLIGHT_LIMIT,
  BYTES_IN_FLIGHT_MAX_DEFAULT,
  BYTES_IN_FLIGHT_MIN,
  OBJECT_BYTES_MAX,
  OPS_IN_FLIGHT_LIMIT,
  OPS_IN_FLIGHT_MAX_DEFAULT,
  OPS_QUEUED_LIMIT,
  OPS_QUEUED_MAX_DEFAULT,
  checkBytes,
  checkOid,
  checkPoolName,
  checkWholeNumber,
  invalid,
  LIST_NAMES_MAX,
} from './limits.js';

export interface RadosPoolOptions {
  /** Operations in librados at once, 1 to 512 (default 64). */
  opsInFlightMax?: number;
  /** Bytes in flight (written, or asked for by reads), 64 MiB to 4 GiB (default 256 MiB). */
  bytesInFlightMax?: number;
  /** Operations waiting for a slot, 0 to 65536 (default 4096); beyond it calls fail with STORE_BUSY. */
  opsQueuedMax?: number;
}

export interface ResolvedPoolOptions {
  name: string;
  opsInFlightMax: number;
  bytesInFlightMax: number;
  opsQueuedMax: number;
}

export interface RadosObjectStat {
  sizeBytes: number;
  /** Modification time, ms since the epoch (RADOS keeps whole seconds here). */
  mtimeMs: number;
}

/** What compareAndWrite compares: bytes at an offset of an existing object, or that there is no object. */
export type CompareExpectation = { offset: number; bytes: Uint8Array } | 'absent';

export type CompareAndWriteOutcome =
  | { written: true }
  /** `bytes` differed at index `mismatchIndex` (bytes past the object's end count as zeros). */
  | { written: false; reason: 'mismatch'; mismatchIndex: number }
  /** `{ offset, bytes }` was expected but there is no object. */
  | { written: false; reason: 'absent' }
  /** 'absent' was expected but the object exists. */
  | { written: false; reason: 'exists' };

export interface RadosPoolStats {
  opsInFlight: number;
  bytesInFlight: number;
  opsQueued: number;
  /** The addon's own count (at most opsInFlight: it drops as librados completes). */
  nativeOpsInFlight: number;
}

const POOL_KEYS = new Set(['opsInFlightMax', 'bytesInFlightMax', 'opsQueuedMax']);

export function resolvePoolOptions(name: unknown, options: RadosPoolOptions): ResolvedPoolOptions {
  const poolName = checkPoolName(name);
  if (options === null || typeof options !== 'object') invalid('openPool options must be { opsInFlightMax?, bytesInFlightMax?, opsQueuedMax? }');
  for (const key of Object.keys(options)) if (!POOL_KEYS.has(key)) invalid(`openPool: unknown option ${JSON.stringify(key)}`);
  return {
    name: poolName,
    opsInFlightMax: checkWholeNumber('opsInFlightMax', options.opsInFlightMax ?? OPS_IN_FLIGHT_MAX_DEFAULT, 1, OPS_IN_FLIGHT_LIMIT),
    bytesInFlightMax: checkWholeNumber('bytesInFlightMax', options.bytesInFlightMax ?? BYTES_IN_FLIGHT_MAX_DEFAULT, BYTES_IN_FLIGHT_MIN, BYTES_IN_FLIGHT_LIMIT),
    opsQueuedMax: checkWholeNumber('opsQueuedMax', options.opsQueuedMax ?? OPS_QUEUED_MAX_DEFAULT, 0, OPS_QUEUED_LIMIT),
  };
}

interface PoolContext {
  timeoutMs: number;
  /** The cluster, for messages. */
  where: string;
  onClose: (pool: RadosPool) => void;
}

/** Whole-object reads retry this often when the object keeps growing between stat and read. */
const WHOLE_READ_ATTEMPTS = 4;

export class RadosPool {
  readonly name: string;
  readonly #native: NativeRadosPool;
  readonly #limiter: InFlightLimiter;
  readonly #ctx: PoolContext;
  #closing: Promise<void> | undefined;

  private constructor(native: NativeRadosPool, options: ResolvedPoolOptions, ctx: PoolContext) {
    this.name = options.name;
    this.#native = native;
    this.#ctx = ctx;
    this.#limiter = new InFlightLimiter({
      opsInFlightMax: options.opsInFlightMax,
      bytesInFlightMax: options.bytesInFlightMax,
      opsQueuedMax: options.opsQueuedMax,
      waitMs: ctx.timeoutMs,
    });
  }

  /** Use RadosCluster.openPool. */
  static async open(client: NativeRadosClient, options: ResolvedPoolOptions, ctx: PoolContext): Promise<RadosPool> {
    const native = new (radosBinding().RadosPool)(client, options.name, options.opsInFlightMax);
    const rc = await native.open();
    if (rc < 0) {
      await native.close();
      const details = { pool: options.name, errno: errnoName(rc), rc };
      if (-rc === ERRNO.ENOENT) {
        throw new BlockvaultError('STORE_POOL_MISSING', `the Ceph cluster (${ctx.where}) has no pool ${JSON.stringify(options.name)}; create it (ceph osd pool create ${options.name}) or name another`, details);
      }
      if (-rc === ERRNO.ENOTCONN) throw new BlockvaultError('STORE_CLOSED', `the RADOS connection to ${ctx.where} is closed`, details);
      throw new BlockvaultError('STORE_IO', `cannot open RADOS pool ${JSON.stringify(options.name)} (${ctx.where}): ${errnoName(rc)} (${rc})`, details);
    }
    return new RadosPool(native, options, ctx);
  }

  /**
   * Up to `length` bytes at `offset` (fewer at the object's end); without `length`, everything
   * from `offset` to the end. null when the object does not exist.
   */
  async read(oid: string, offset = 0, length?: number): Promise<Buffer | null> {
    checkOid(oid);
    checkWholeNumber('offset', offset, 0, OBJECT_BYTES_MAX);
    if (length !== undefined) {
      checkWholeNumber('length', length, 0, OBJECT_BYTES_MAX);
      return this.#readRange(oid, offset, length);
    }
    // The whole rest of the object: its size from stat, then one byte more than that. One read
    // op is atomic, so an answer shorter than asked is the object's whole tail at that moment;
    // a full answer means it grew meanwhile, and the next attempt asks for more.
    for (let attempt = 0; attempt < WHOLE_READ_ATTEMPTS; attempt++) {
      const stat = await this.stat(oid);
      if (stat === null) return null;
      const rest = Math.max(0, stat.sizeBytes - offset);
      if (rest >= OBJECT_BYTES_MAX) {
        throw new BlockvaultError('STORE_IO', `RADOS object ${JSON.stringify(oid)} in pool ${JSON.stringify(this.name)} holds ${stat.sizeBytes} bytes; reads without a length stop at ${OBJECT_BYTES_MAX} (OBJECT_BYTES_MAX): pass one`, { pool: this.name, oid, sizeBytes: stat.sizeBytes });
      }
      const data = await this.#readRange(oid, offset, rest + 1);
      if (data === null || data.length <= rest) return data;
    }
    throw new BlockvaultError('STORE_IO', `RADOS object ${JSON.stringify(oid)} in pool ${JSON.stringify(this.name)} kept growing during ${WHOLE_READ_ATTEMPTS} whole-object reads; pass a length`, { pool: this.name, oid });
  }

  async #readRange(oid: string, offset: number, length: number): Promise<Buffer | null> {
    // The addon refuses length 0 (to the OSD it means "to the end", into no buffer): whether
    // the object exists is all such a read can say.
    if (length === 0) return (await this.stat(oid)) === null ? null : Buffer.alloc(0);
    const reply = await this.#run('read', oid, length, [], () => this.#native.read(oid, offset, length));
    if (-reply.rc === ERRNO.ENOENT) return null;
    this.#check('read', oid, reply);
    assert(reply.data != null && reply.data.length === reply.rc && reply.rc <= length, 'a read returns rc bytes, at most the length asked');
    return reply.data;
  }

  /**
   * Replaces the object with `data` (creating it); resolves once every replica in the acting set
   * has it. `data` is copied before this returns (here and in compareAndWrite).
   */
  async writeFull(oid: string, data: Uint8Array): Promise<void> {
    checkOid(oid);
    const bytes = checkBytes('data', data, { allowEmpty: true });
    this.#check('writeFull', oid, await this.#run('writeFull', oid, bytes.length, [bytes], (b) => this.#native.writeFull(oid, b)));
  }

  /**
   * Atomically: if `expected` holds (the object exists and has `expected.bytes` at
   * `expected.offset`, or `'absent'`: there is no object), replace the object with `data`.
   * true when written, false when the condition did not hold (the object is left as it was).
   */
  async compareAndWrite(oid: string, expected: CompareExpectation, data: Uint8Array): Promise<boolean> {
    return (await this.compareAndWriteOutcome(oid, expected, data)).written;
  }

  /** compareAndWrite, saying why nothing was written. */
  async compareAndWriteOutcome(oid: string, expected: CompareExpectation, data: Uint8Array): Promise<CompareAndWriteOutcome> {
    checkOid(oid);
    const bytes = checkBytes('data', data, { allowEmpty: true });
    if (expected === 'absent') {
      const reply = await this.#run('createExclusive', oid, bytes.length, [bytes], (b) => this.#native.createExclusive(oid, b));
      if (-reply.rc === ERRNO.EEXIST) return { written: false, reason: 'exists' };
      this.#check('createExclusive', oid, reply);
      return { written: true };
    }
    if (expected === null || typeof expected !== 'object') invalid(`expected must be { offset, bytes } or 'absent', got ${String(expected)}`);
    const offset = checkWholeNumber('expected.offset', expected.offset, 0, OBJECT_BYTES_MAX);
    const compared = checkBytes('expected.bytes', expected.bytes, { allowEmpty: false });
    const reply = await this.#run('compareAndWrite', oid, bytes.length + compared.length, [compared, bytes], (c, b) => this.#native.compareAndWriteFull(oid, offset, c, b));
    if (reply.rc <= -MAX_ERRNO) {
      const mismatchIndex = -reply.rc - MAX_ERRNO;
      assert(mismatchIndex < compared.length && reply.mismatchOffset === mismatchIndex, 'a cmpext mismatch lies within the compared bytes');
      return { written: false, reason: 'mismatch', mismatchIndex };
    }
    if (-reply.rc === ERRNO.ENOENT) return { written: false, reason: 'absent' };
    this.#check('compareAndWrite', oid, reply);
    return { written: true };
  }

  /** Removes the object; false when there was none. */
  async remove(oid: string): Promise<boolean> {
    checkOid(oid);
    const reply = await this.#run('remove', oid, 0, [], () => this.#native.remove(oid));
    if (-reply.rc === ERRNO.ENOENT) return false;
    this.#check('remove', oid, reply);
    return true;
  }

  /**
   * The names of the objects in the pool (its default namespace) that start with `prefix`, in no
   * particular order: a listing of the whole pool, filtered (its cost grows with the pool, not
   * with the matches). Refused with STORE_IO (details.reason 'too-many') when more than `limit`
   * (1 to LIST_NAMES_MAX) match. An object written before the call started is listed; one written
   * or removed during it may or may not be.
   */
  async listObjects(prefix: string, options: { limit: number }): Promise<string[]> {
    if (prefix !== '') checkOid(prefix);
    const limit = checkWholeNumber('limit', options?.limit, 1, LIST_NAMES_MAX);
    const what = `objects starting with ${JSON.stringify(prefix)}`;
    let names: string[] = [];
    const reply = await this.#run('listObjects', what, 0, [], async () => {
      const listed = await this.#native.listObjects(prefix, limit);
      names = listed.names;
      return { rc: listed.rc };
    });
    if (-reply.rc === ERRNO.E2BIG) {
      throw new BlockvaultError('STORE_IO', `RADOS pool ${JSON.stringify(this.name)} has more than ${limit} ${what} (the listing's limit)`, { pool: this.name, op: 'listObjects', reason: 'too-many', limit });
    }
    this.#check('listObjects', what, reply);
    return names;
  }

  /** Size and modification time; null when the object does not exist. */
  async stat(oid: string): Promise<RadosObjectStat | null> {
    checkOid(oid);
    const reply = await this.#run('stat', oid, 0, [], () => this.#native.stat(oid));
    if (-reply.rc === ERRNO.ENOENT) return null;
    this.#check('stat', oid, reply);
    assert(typeof reply.size === 'number' && typeof reply.mtimeMs === 'number', 'a stat reply has size and mtime');
    return { sizeBytes: reply.size, mtimeMs: reply.mtimeMs };
  }

  stats(): RadosPoolStats {
    return {
      opsInFlight: this.#limiter.opsInFlight,
      bytesInFlight: this.#limiter.bytesInFlight,
      opsQueued: this.#limiter.opsQueued,
      nativeOpsInFlight: this.#native.opsInFlight,
    };
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /**
   * New calls fail with STORE_CLOSED from now on; resolves once every call made before has
   * settled (so every write acknowledged or failed) and the I/O context is released. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#limiter.idle();
      await this.#native.close();
      this.#ctx.onClose(this);
    })();
    return this.#closing;
  }

  /**
   * Runs one addon call within the pool's bounds. `buffers` are what the call hands librados:
   * the addon copies them when it is called, so an operation that must wait for a slot copies
   * them first, and the caller may reuse its buffers as soon as the method returned.
   */
  async #run<B extends Buffer[]>(op: string, oid: string, bytes: number, buffers: B, call: (...buffers: B) => Promise<NativeRadosReply>): Promise<NativeRadosReply> {
    if (this.#closing !== undefined) throw new BlockvaultError('STORE_CLOSED', `RADOS pool ${JSON.stringify(this.name)} is closed (${op} of ${JSON.stringify(oid)})`, { pool: this.name, oid, op });
    let args = buffers;
    if (!this.#limiter.tryAcquire(bytes)) {
      args = buffers.map((b) => Buffer.from(b)) as B;
      await this.#limiter.acquire(bytes, {
        busy: () => new BlockvaultError('STORE_BUSY', `RADOS pool ${JSON.stringify(this.name)} already has ${this.#limiter.opsQueued} operations queued (opsQueuedMax); ${op} of ${JSON.stringify(oid)} refused`, { pool: this.name, oid, op }),
        timedOut: () => new BlockvaultError('STORE_TIMEOUT', `RADOS ${op} of object ${JSON.stringify(oid)} in pool ${JSON.stringify(this.name)} waited ${this.#ctx.timeoutMs} ms for one of ${this.#limiter.opsInFlight} operations in flight to finish; the OSDs are slow or down`, { pool: this.name, oid, op }),
      });
    }
    try {
      return await call(...args);
    } finally {
      this.#limiter.release(bytes);
    }
  }

  /** Throws for any rc < 0 (the caller has already handled the rcs that are answers). */
  #check(op: string, oid: string, reply: NativeRadosReply): void {
    assert(-reply.rc !== ERRNO.EBUSY, 'the addon refused an operation within opsInFlightMax');
    if (reply.rc < 0) throw opError(reply.rc, { op, pool: this.name, oid, timeoutMs: this.#ctx.timeoutMs });
  }
}
