/**
 * Where an engine keeps its volumes' sectors: LMDB in its directory (the embedded default), or a
 * Ceph RADOS pool (src/store/rados), one object per cluster (src/volume/object-store.ts). The
 * engine's metadata (volume records, tasks, the HSM's metadata, the audit log) stays in LMDB
 * either way.
 *
 * The choice is made when the directory is created and recorded in engine-meta (`volumeStore`);
 * every later open must name the same pool, since the volume records there describe data that
 * lives only in that pool. A directory from before the record existed keeps its volumes in LMDB
 * (unless it never had a volume).
 */
import { BlockvaultError } from '../errors.js';
import type { ClusterObjects } from '../volume/object-store.js';
import { EngineLease, leasedObjects, leaseMsProblem } from './engine-lease.js';
import { RadosCluster, type RadosConnectOptions, type RadosPool, type RadosPoolOptions } from './rados/index.js';

/** Engine.open's `store`: volumes in a RADOS pool (which must exist; `ceph osd pool create`). */
export interface VolumeStoreOptions {
  /** `leaseMs`: how long the engine's lease on its objects holds unrenewed (default 60000; src/store/engine-lease.ts). */
  rados: RadosConnectOptions & { pool: string; poolOptions?: RadosPoolOptions; leaseMs?: number };
}

/** What engine-meta records of the store (`volumeStore`). */
type StoredChoice = { kind: 'lmdb' } | { kind: 'rados'; pool: string };

const META_KEY = 'volumeStore';

/** An open RADOS pool holding this engine's volumes, as the volume core reaches it. */
export interface VolumeObjectPool {
  objects: ClusterObjects;
  /** Object names of this engine start with it (several engines may share a pool). */
  oidPrefix: string;
  /** Releases the engine's lease on those objects (src/store/engine-lease.ts), then the connection. */
  close(): Promise<void>;
}

/** A RADOS pool as the object cluster store reaches it (a compare-and-write compares from offset 0). */
export function clusterObjectsOf(pool: RadosPool): ClusterObjects {
  return {
    read: (oid) => pool.read(oid),
    readHead: (oid, bytes) => pool.read(oid, 0, bytes),
    writeFull: (oid, data) => pool.writeFull(oid, data),
    remove: (oid) => pool.remove(oid),
    compareAndWrite: (oid, expected, data) => pool.compareAndWrite(oid, { offset: 0, bytes: expected }, data),
    list: (prefix, limit) => pool.listObjects(prefix, { limit }),
  };
}

export function checkVolumeStoreOptions(store: unknown): VolumeStoreOptions | undefined {
  if (store === undefined) return undefined;
  const rados = (store as { rados?: unknown } | null)?.rados;
  if (typeof store !== 'object' || store === null || Object.keys(store).some((key) => key !== 'rados') || typeof rados !== 'object' || rados === null) {
    throw new BlockvaultError('INVALID_ARGUMENT', 'Engine.open: store must be { rados: { pool, conf | monHost, user, keyring?, timeoutMs } } (leave it out for LMDB)');
  }
  const pool = (rados as { pool?: unknown }).pool;
  if (typeof pool !== 'string' || pool.length === 0) throw new BlockvaultError('INVALID_ARGUMENT', 'Engine.open: store.rados.pool must name a RADOS pool');
  const leaseMs = (rados as { leaseMs?: unknown }).leaseMs;
  const leaseProblem = leaseMs === undefined ? null : leaseMsProblem(leaseMs);
  if (leaseProblem !== null) throw new BlockvaultError('INVALID_ARGUMENT', `Engine.open: store.rados.${leaseProblem}`);
  return store as VolumeStoreOptions;
}

/**
 * Check the options against what the directory recorded (recording it for a new directory) and
 * connect. Null: the volumes are in LMDB.
 */
export async function openVolumeStore(
  options: VolumeStoreOptions | undefined,
  meta: { get(key: string): unknown; put(key: string, value: unknown): Promise<boolean> },
  engineId: string,
  /** No volume was ever created in the directory (its store may still be chosen). */
  pristine: boolean,
  dir: string,
): Promise<VolumeObjectPool | null> {
  const recorded = meta.get(META_KEY) as StoredChoice | undefined;
  const choice: StoredChoice = recorded ?? (pristine && options !== undefined ? { kind: 'rados', pool: options.rados.pool } : { kind: 'lmdb' });
  const wanted = options === undefined ? 'LMDB' : `RADOS pool ${options.rados.pool}`;
  const has = choice.kind === 'lmdb' ? 'LMDB' : `RADOS pool ${choice.pool}`;
  if (wanted !== has) {
    throw new BlockvaultError(
      'INVALID_ARGUMENT',
      `Engine.open: ${dir} keeps its volumes in ${has}, not in ${wanted}; open it with ${choice.kind === 'lmdb' ? 'no store option' : `store: { rados: { pool: '${choice.pool}', ... } }`} (a directory's volumes do not move between stores)`,
      { recorded: choice },
    );
  }
  if (options === undefined) {
    if (recorded === undefined) await meta.put(META_KEY, choice);
    return null;
  }
  const { pool: poolName, poolOptions, leaseMs, ...connect } = options.rados;
  const cluster = await RadosCluster.connect(connect);
  let pool: RadosPool;
  let lease: EngineLease | undefined;
  try {
    pool = await cluster.openPool(poolName, poolOptions);
    // Before anything is recorded or touched: a copy of this directory in use elsewhere is refused.
    lease = await EngineLease.take(pool, engineId, { dir, timeoutMs: cluster.timeoutMs, ...(leaseMs === undefined ? {} : { leaseMs }) });
    // Recorded once the pool answered: a directory whose first open named a missing pool or an
    // unreachable cluster can be opened again with the right one.
    if (recorded === undefined) await meta.put(META_KEY, choice);
  } catch (error) {
    await lease?.release();
    await cluster.close();
    throw error;
  }
  const held = lease;
  return {
    objects: leasedObjects(clusterObjectsOf(pool), held),
    oidPrefix: `bv.${engineId}.`,
    close: async () => {
      await held.release();
      await cluster.close();
    },
  };
}
