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
 * A holder that died leaves its lease behind. It is taken over at once when it names this
 * directory: the same host name, boot id, real path, and device and inode number of the directory
 * (the directory lock, which this process holds, says that process is gone; the inode tells a
 * copy at the same path, in another container, from the directory itself). Anyone else takes it
 * over only after seeing its bytes unchanged for its lease time plus the cluster timeout, timed on
 * this host's monotonic clock: clocks are never compared across hosts for a takeover. (The holder's
 * timestamp only lets an open refuse at once, with ENGINE_BUSY, a lease renewed recently.) The
 * holder counts its own lease time from before each renewal was issued, on its monotonic clock,
 * and stops issuing operations when it ends; the taker's extra timeout covers an operation issued
 * just before that.
 *
 * A renewal that finds the object changed means another engine took over: the lease is lost, and
 * every later object operation of this engine fails (STORE_IO, reason 'lease-lost') rather than
 * write over the other one's. A renewal that fails (the cluster unreachable) is retried; only when
 * the lease time passed without one is the lease counted as lost.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
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
  /** The kernel's boot id ('' where there is none): the same host name after a reboot, or in another VM, is another host. */
  bootId: string;
  dir: string;
  /** `<dev>:<ino>` of the directory: a copy at the same path is another directory. */
  dirId: string;
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
    typeof parsed.bootId !== 'string' ||
    typeof parsed.dir !== 'string' ||
    typeof parsed.dirId !== 'string' ||
    typeof parsed.pid !== 'number' ||
    typeof parsed.renewedAtMs !== 'number' ||
    leaseMsProblem(parsed.leaseMs) !== null || // bounds how long a takeover may wait
    typeof parsed.released !== 'boolean'
  ) {
    throw new BlockvaultError('STORE_IO', `the engine lease object ${oid} is not a blockvault lease (${bytes.length} bytes); if no engine uses this engine id, remove it (rados rm ${oid})`, { oid, reason: 'lease-damaged' });
  }
  return parsed as LeaseRecord;
}

export interface EngineLeaseOptions {
  /** The engine directory (compared by identity with a dead holder's). */
  dir: string;
  leaseMs?: number;
  /** The longest one operation of the pool may run (its cluster's timeoutMs). */
  timeoutMs: number;
}

/** The leaseMs option, checked: null when valid, else what is wrong. */
export function leaseMsProblem(leaseMs: unknown): string | null {
  return Number.isSafeInteger(leaseMs) && (leaseMs as number) >= ENGINE_LEASE_MS_MIN && (leaseMs as number) <= ENGINE_LEASE_MS_MAX
    ? null
    : `leaseMs must be a whole number of milliseconds from ${ENGINE_LEASE_MS_MIN} to ${ENGINE_LEASE_MS_MAX}, got ${String(leaseMs)}`;
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
}

function busy(pool: RadosPool, oid: string, held: LeaseRecord, detail: string): BlockvaultError {
  return new BlockvaultError(
    'ENGINE_BUSY',
    `another engine uses this engine's objects in RADOS pool ${JSON.stringify(pool.name)}: pid ${held.pid} on ${held.host} with directory ${held.dir} ${detail} (a copy of this directory; if that engine is gone, its lease can be taken over ${Math.round(held.leaseMs / 1000)} s after its last renewal)`,
    { oid, holder: { host: held.host, dir: held.dir, pid: held.pid }, renewedAtMs: held.renewedAtMs, leaseMs: held.leaseMs },
  );
}

export class EngineLease {
  #last: Buffer;
  /** performance.now() just before the last successful renewal (or the take) was issued. */
  #renewedAtMono: number;
  #lost: string | null = null;
  #renewing: Promise<void> | null = null;
  #released = false;
  readonly #timer: NodeJS.Timeout;

  private constructor(
    private readonly pool: RadosPool,
    readonly oid: string,
    private readonly record: LeaseRecord,
    written: Buffer,
    issuedAtMono: number,
  ) {
    this.#last = written;
    this.#renewedAtMono = issuedAtMono;
    // unref: a lease never keeps a process alive; the engine's close releases it.
    this.#timer = setInterval(() => void this.renew(), Math.floor(record.leaseMs / 3)).unref();
  }

  /** Take the engine's lease, or fail with ENGINE_BUSY naming its live holder. */
  static async take(pool: RadosPool, engineId: string, options: EngineLeaseOptions): Promise<EngineLease> {
    const leaseMs = options.leaseMs ?? ENGINE_LEASE_MS_DEFAULT;
    assert(leaseMsProblem(leaseMs) === null, `leaseMs is ${ENGINE_LEASE_MS_MIN} to ${ENGINE_LEASE_MS_MAX}`);
    assert(Number.isSafeInteger(options.timeoutMs) && options.timeoutMs > 0, 'timeoutMs is a positive whole number');
    const oid = engineLeaseOid(engineId);
    const dir = realpathSync(options.dir);
    const stat = statSync(dir);
    const identity = { host: hostname(), bootId: bootId(), dir, dirId: `${stat.dev}:${stat.ino}` };
    const sameDirectory = (held: LeaseRecord): boolean => held.host === identity.host && held.bootId === identity.bootId && held.dir === identity.dir && held.dirId === identity.dirId;
    for (let attempt = 0; attempt < TAKE_ATTEMPTS_MAX; attempt += 1) {
      const current = await pool.read(oid);
      if (current !== null) {
        const held = decode(oid, current);
        if (!held.released && !sameDirectory(held)) {
          const ageMs = Date.now() - held.renewedAtMs;
          if (ageMs < held.leaseMs) throw busy(pool, oid, held, `renewed its lease ${Math.max(0, Math.round(ageMs / 1000))} s ago`);
          // Stale by this host's clock, which may not be the holder's: take it over only once it
          // stayed as it is for a whole lease, plus the longest an operation issued before its
          // end may run, on this host's monotonic clock.
          const waitMs = held.leaseMs + options.timeoutMs;
          process.emitWarning(
            `blockvault: the engine lease ${oid} in RADOS pool ${JSON.stringify(pool.name)} names pid ${held.pid} on ${held.host} with directory ${held.dir}, last renewed ${Math.round(ageMs / 1000)} s ago by this host's clock; waiting ${Math.round(waitMs / 1000)} s to see that it is not renewed before taking it over`,
            { code: 'BLOCKVAULT_LEASE_WAIT' },
          );
          await sleep(waitMs);
          const later = await pool.read(oid);
          if (later !== null && !later.equals(current)) {
            const now = decode(oid, later);
            if (!now.released && !sameDirectory(now)) throw busy(pool, oid, now, `renewed its lease while this engine waited ${Math.round((held.leaseMs + options.timeoutMs) / 1000)} s for it to run out (the two hosts' clocks disagree)`);
          }
          if (later === null || !later.equals(current)) continue; // released or gone meanwhile: look again
        }
      }
      const issuedAtMono = performance.now();
      const record: LeaseRecord = { format: FORMAT, version: 1, session: randomBytes(16).toString('hex'), ...identity, pid: process.pid, renewedAtMs: Date.now(), leaseMs, released: false };
      const mine = Buffer.from(JSON.stringify(record));
      const taken = current === null ? await pool.compareAndWrite(oid, 'absent', mine) : await pool.compareAndWrite(oid, { offset: 0, bytes: current }, mine);
      if (taken) return new EngineLease(pool, oid, record, mine, issuedAtMono);
    }
    throw new BlockvaultError('ENGINE_BUSY', `the engine lease ${oid} in RADOS pool ${JSON.stringify(pool.name)} changed ${TAKE_ATTEMPTS_MAX} times while this engine took it: another engine is opening or renewing it`, { oid });
  }

  /** Why the lease is lost, or null while it holds. */
  get lost(): string | null {
    if (this.#lost === null && !this.#released && performance.now() > this.#renewedAtMono + this.record.leaseMs) {
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
      const issuedAtMono = performance.now();
      const next = Buffer.from(JSON.stringify({ ...this.record, renewedAtMs: Date.now() }));
      try {
        const outcome = await this.pool.compareAndWriteOutcome(this.oid, { offset: 0, bytes: this.#last }, next);
        if (outcome.written) {
          this.#last = next;
          this.#renewedAtMono = issuedAtMono;
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
    const released = Buffer.from(JSON.stringify({ ...this.record, renewedAtMs: Date.now(), released: true }));
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
