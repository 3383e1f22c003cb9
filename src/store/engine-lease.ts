/**
 * One engine at a time on an engine's objects in a RADOS pool.
 *
 * The directory lock (src/util) keeps a second engine off a directory on one host, but a copy of
 * the directory (a backup restored elsewhere, a second node given the same files) has the same
 * engineId and so the same object names. Two engines writing them would each trust its own memory
 * of the cluster images (src/volume/object-store.ts) and corrupt each other's volumes. So an
 * engine holds a lease: one small object, `bv.<engineId>.lease`, naming its host, its directory
 * (real path), its pid and a random session, renewed by compare-and-write every third of the
 * lease. Taking the lease is refused with ENGINE_BUSY while another holder renews it.
 *
 * A holder that died leaves its lease behind. It is taken over at once when it names this host
 * and this directory (the directory lock, which this process holds, says that process is gone),
 * and otherwise once it was not renewed for its lease time (by this host's clock: a clock far
 * ahead of the holder's takes over early, which the lease time's size is there to absorb).
 *
 * A renewal that finds the object changed means another engine took over: the lease is lost, and
 * every later object operation of this engine fails (STORE_IO, reason 'lease-lost') rather than
 * write over the other one's. A renewal that fails (the cluster unreachable) is retried; only when
 * the lease time passed without one is the lease counted as lost.
 */
import { randomBytes } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { hostname } from 'node:os';
import { assert, BlockvaultError } from '../errors.js';
import type { ClusterObjects } from '../volume/object-store.js';
import type { RadosPool } from './rados/index.js';

/** How long a lease holds without renewal: long against a renewal's timeout, short against a restart after a crash elsewhere. */
export const ENGINE_LEASE_MS_DEFAULT = 60_000;
export const ENGINE_LEASE_MS_MIN = 3_000;
export const ENGINE_LEASE_MS_MAX = 3_600_000;
const FORMAT = 'blockvault-engine-lease';
/** A lease object is a few hundred bytes; more is not one of ours. */
const LEASE_BYTES_MAX = 4096;
/** Attempts to take a lease that changes under us (another engine taking it at the same moment). */
const TAKE_ATTEMPTS_MAX = 3;

interface LeaseRecord {
  format: typeof FORMAT;
  version: 1;
  session: string;
  host: string;
  dir: string;
  pid: number;
  renewedAtMs: number;
  leaseMs: number;
  released: boolean;
}

export function engineLeaseOid(engineId: string): string {
  return `bv.${engineId}.lease`;
}

function decode(oid: string, bytes: Buffer): LeaseRecord {
  let parsed: Partial<LeaseRecord> | null = null;
  try {
    parsed = bytes.length <= LEASE_BYTES_MAX ? (JSON.parse(bytes.toString('utf8')) as Partial<LeaseRecord>) : null;
  } catch {
    parsed = null;
  }
  if (
    parsed === null ||
    typeof parsed !== 'object' ||
    parsed.format !== FORMAT ||
    parsed.version !== 1 ||
    typeof parsed.session !== 'string' ||
    typeof parsed.host !== 'string' ||
    typeof parsed.dir !== 'string' ||
    typeof parsed.pid !== 'number' ||
    typeof parsed.renewedAtMs !== 'number' ||
    typeof parsed.leaseMs !== 'number' ||
    typeof parsed.released !== 'boolean'
  ) {
    throw new BlockvaultError('STORE_IO', `the engine lease object ${oid} is not a blockvault lease (${bytes.length} bytes); if no engine uses this engine id, remove it (rados rm ${oid})`, { oid, reason: 'lease-damaged' });
  }
  return parsed as LeaseRecord;
}

export interface EngineLeaseOptions {
  /** The engine directory (compared by real path with a dead holder's). */
  dir: string;
  leaseMs?: number;
  nowMs?: () => number;
}

export class EngineLease {
  #last: Buffer;
  #renewedAtMs: number;
  #lost: string | null = null;
  #renewing: Promise<void> | null = null;
  #released = false;
  readonly #timer: NodeJS.Timeout;

  private constructor(
    private readonly pool: RadosPool,
    readonly oid: string,
    private readonly record: LeaseRecord,
    written: Buffer,
    private readonly nowMs: () => number,
  ) {
    this.#last = written;
    this.#renewedAtMs = record.renewedAtMs;
    // unref: a lease never keeps a process alive; the engine's close releases it.
    this.#timer = setInterval(() => void this.renew(), Math.floor(record.leaseMs / 3)).unref();
  }

  /** Take the engine's lease, or fail with ENGINE_BUSY naming its live holder. */
  static async take(pool: RadosPool, engineId: string, options: EngineLeaseOptions): Promise<EngineLease> {
    const leaseMs = options.leaseMs ?? ENGINE_LEASE_MS_DEFAULT;
    assert(Number.isSafeInteger(leaseMs) && leaseMs >= ENGINE_LEASE_MS_MIN && leaseMs <= ENGINE_LEASE_MS_MAX, `leaseMs is ${ENGINE_LEASE_MS_MIN} to ${ENGINE_LEASE_MS_MAX}`);
    const nowMs = options.nowMs ?? Date.now;
    const oid = engineLeaseOid(engineId);
    const dir = realpathSync(options.dir);
    const host = hostname();
    for (let attempt = 0; attempt < TAKE_ATTEMPTS_MAX; attempt += 1) {
      const record: LeaseRecord = { format: FORMAT, version: 1, session: randomBytes(16).toString('hex'), host, dir, pid: process.pid, renewedAtMs: nowMs(), leaseMs, released: false };
      const mine = Buffer.from(JSON.stringify(record));
      const current = await pool.read(oid);
      if (current === null) {
        if (await pool.compareAndWrite(oid, 'absent', mine)) return new EngineLease(pool, oid, record, mine, nowMs);
        continue;
      }
      const held = decode(oid, current);
      const sameDirectory = held.host === host && held.dir === dir;
      const expired = record.renewedAtMs > held.renewedAtMs + held.leaseMs;
      if (!held.released && !sameDirectory && !expired) {
        const ageS = Math.max(0, Math.round((record.renewedAtMs - held.renewedAtMs) / 1000));
        throw new BlockvaultError(
          'ENGINE_BUSY',
          `another engine uses this engine's objects in RADOS pool ${JSON.stringify(pool.name)}: pid ${held.pid} on ${held.host} with directory ${held.dir} renewed its lease ${ageS} s ago (a copy of this directory; if that engine is gone, its lease expires ${Math.round(held.leaseMs / 1000)} s after its last renewal)`,
          { oid, holder: { host: held.host, dir: held.dir, pid: held.pid }, renewedAtMs: held.renewedAtMs, leaseMs: held.leaseMs },
        );
      }
      if (await pool.compareAndWrite(oid, { offset: 0, bytes: current }, mine)) return new EngineLease(pool, oid, record, mine, nowMs);
    }
    throw new BlockvaultError('ENGINE_BUSY', `the engine lease ${oid} in RADOS pool ${JSON.stringify(pool.name)} changed ${TAKE_ATTEMPTS_MAX} times while this engine took it: another engine is opening a copy of this directory`, { oid });
  }

  /** Why the lease is lost, or null while it holds. */
  get lost(): string | null {
    if (this.#lost === null && !this.#released && this.nowMs() > this.#renewedAtMs + this.record.leaseMs) {
      this.#lost = `its lease ${this.oid} was not renewed for ${this.record.leaseMs} ms (the RADOS cluster did not answer), so another engine may have taken it`;
    }
    return this.#lost;
  }

  /** Throws STORE_IO once the lease is lost: no object of this engine may be touched after that. */
  check(op: string, oid: string): void {
    const lost = this.lost;
    if (lost !== null) throw new BlockvaultError('STORE_IO', `RADOS ${op} of ${JSON.stringify(oid)} refused: this engine lost ${lost}; close it`, { pool: this.pool.name, oid, op, reason: 'lease-lost' });
  }

  /** One renewal (the timer calls it; tests may too). Never throws. */
  renew(): Promise<void> {
    if (this.#renewing !== null || this.#released || this.#lost !== null) return this.#renewing ?? Promise.resolve();
    this.#renewing = (async () => {
      const renewedAtMs = this.nowMs();
      const next = Buffer.from(JSON.stringify({ ...this.record, renewedAtMs }));
      try {
        const outcome = await this.pool.compareAndWriteOutcome(this.oid, { offset: 0, bytes: this.#last }, next);
        if (outcome.written) {
          this.#last = next;
          this.#renewedAtMs = renewedAtMs;
        } else {
          this.#lost = `its lease ${this.oid}: another engine took it over (${outcome.reason === 'absent' ? 'the lease object was removed' : 'the lease object changed'})`;
        }
      } catch {
        // Unreachable or slow: the next renewal tries again; `lost` counts the lease time.
      } finally {
        this.#renewing = null;
      }
    })();
    return this.#renewing;
  }

  /** Stop renewing and mark the lease released (when it is still ours), so the next open need not wait. */
  async release(): Promise<void> {
    if (this.#released) return;
    clearInterval(this.#timer);
    await this.#renewing;
    this.#released = true;
    if (this.#lost !== null) return;
    const released = Buffer.from(JSON.stringify({ ...this.record, renewedAtMs: this.nowMs(), released: true }));
    try {
      await this.pool.compareAndWrite(this.oid, { offset: 0, bytes: this.#last }, released);
    } catch {
      // The lease expires on its own.
    }
  }
}

/** `objects` with every operation refused (a rejected promise) once `lease` is lost. */
export function leasedObjects(objects: ClusterObjects, lease: EngineLease): ClusterObjects {
  const guarded = <T>(op: string, oid: string, run: () => Promise<T>): Promise<T> => {
    try {
      lease.check(op, oid);
    } catch (error) {
      return Promise.reject(error);
    }
    return run();
  };
  const { readHead, list } = objects;
  return {
    read: (oid) => guarded('read', oid, () => objects.read(oid)),
    ...(readHead === undefined ? {} : { readHead: (oid: string, bytes: number) => guarded('read', oid, () => readHead.call(objects, oid, bytes)) }),
    writeFull: (oid, data) => guarded('writeFull', oid, () => objects.writeFull(oid, data)),
    remove: (oid) => guarded('remove', oid, () => objects.remove(oid)),
    compareAndWrite: (oid, expected, data) => guarded('compareAndWrite', oid, () => objects.compareAndWrite(oid, expected, data)),
    ...(list === undefined ? {} : { list: (prefix: string, limit: number) => guarded('list', prefix, () => list.call(objects, prefix, limit)) }),
  };
}
