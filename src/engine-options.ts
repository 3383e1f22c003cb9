/**
 * Engine.open's options: their types, defaults and bounds, validated once at the boundary
 * (INVALID_ARGUMENT naming the option, nothing created on disk).
 */
import { MS_PER_DAY, MS_PER_HOUR, systemClock, type Clock } from './clock.js';
import { BlockvaultError } from './errors.js';
import { resolvePkcs11Options, type Pkcs11Options } from './hsm/pkcs11/options.js';
import { validateRotationOptions, type RotationOptions } from './rotation/index.js';
import { CLUSTER_SECTORS_MAX } from './volume/cluster-format.js';
import { META_CACHE_CLUSTERS_LIMIT, META_CACHE_CLUSTERS_MAX, type VolumeLayout } from './volume/cluster-store.js';
import { checkVolumeStoreOptions, type VolumeStoreOptions } from './store/volume-store.js';

export const DEFAULT_RETENTION_MS = 9 * MS_PER_DAY;
export const DEFAULT_PURGE_INTERVAL_MS = MS_PER_HOUR;
/** 32 KiB of sectors per LMDB value: 9 pages of 4 KiB, 1.125x on disk (bench/results/volume.md). */
export const DEFAULT_CLUSTER_BYTES = 32 * 1024;
export const DEFAULT_WRITE_BUFFER_BYTES_MAX = 64 * 1024 * 1024;
/**
 * Default LMDB transaction size cap: at most this, and at most half the write buffer (so one
 * transaction fills while the one before is fsynced). Why 8 MiB and not the 16 MiB it was: pages
 * a transaction frees stay unused until its fsync, so big transactions leave LMDB a big free list,
 * scattered after random writes, and lmdb-js 3.5's LMDB goes over that list at every commit.
 * With 16 MiB, random then sequential writes left every later small commit (a database's write +
 * flush) costing 3-17 ms of CPU, 0.2-1.1 MB/s of 4 KiB writes each flushed; 2.1-2.6 MB/s with
 * 8 MiB, 2.4-3.4 with 4 MiB, and 3.0 (0.8 ms of CPU each) on a freshly filled disk. 4 MiB cost
 * random 4 KiB writes about an eighth; 8 MiB measured as 16 MiB there (2026-12-07, README "NBD").
 */
export const DEFAULT_LMDB_TXN_BYTES_MAX = 8 * 1024 * 1024;
/**
 * How many free page numbers lmdb-js's LMDB may keep in memory from one transaction to the next
 * (its maxFreeSpaceToRetain, and the most it loads from the free database at once,
 * maxFreeSpaceToLoad; lmdb-js 3.5's defaults are 75000 and 50000). Every commit goes over that
 * list (mdb_freelist_save), so after heavy random writes, which leave thousands of scattered free
 * pages in it, each later small commit cost 6.7-10.6 ms of CPU and 4 KiB writes each flushed ran
 * at 0.37-0.58 MB/s in three of five runs; with 5000 kept, 0.30-0.96 ms and 3.4-7.6 MB/s in five
 * runs, random and sequential writes unchanged (raw lmdb-js, the split layout's puts, 2026-12-08,
 * README "NBD"). A list longer than this is dropped at the end of the transaction and read back
 * from the free database when pages are needed.
 */
export const DEFAULT_LMDB_FREE_PAGES_KEPT_MAX = 5000;
/** lmdbFreePagesKeptMax's bound: lmdb-js passes it to LMDB as a C int. */
const LMDB_FREE_PAGES_KEPT_LIMIT = 2 ** 31 - 1;
/** Address space reserved for the memory map, not disk: LMDB grows the file as pages are used. */
export const DEFAULT_MAP_SIZE_BYTES = 256 * 1024 ** 3;
/** mapSizeBytes bounds: LMDB needs room for the engine's own databases; above 2^47 bytes (128 TiB) no x86-64 or arm64 process has the address space to map it. */
const MAP_SIZE_BYTES_MIN = 1024 ** 2;
const MAP_SIZE_BYTES_MAX = 2 ** 47;

/**
 * Where the root keys live and what opens them: the software keystore, unsealed by an operator
 * passphrase (scrypt) or a 32-byte key file, or a PKCS#11 token (src/hsm/pkcs11/options.ts).
 */
export type HsmSecretOptions =
  | { passphrase: string; keyFile?: undefined; pkcs11?: undefined }
  | { keyFile: string; passphrase?: undefined; pkcs11?: undefined }
  | { pkcs11: Pkcs11Options; passphrase?: undefined; keyFile?: undefined };

export interface EngineOptions {
  /** The engine's directory; created if new. */
  dir: string;
  /** Unseals the HSM keystore (an operator passphrase or a 32-byte key file), or names the PKCS#11 token of the root keys. */
  hsm: HsmSecretOptions;
  /** Time source (retention, audit, key dates); ManualClock in tests. */
  clock?: Clock;
  /** How long a deleted volume stays restorable before its data is purged. Default 9 days. */
  retentionMs?: number;
  /** Cipher backend; default native when the addon loads, else the pure-TS fallback. */
  cipher?: 'native' | 'ts';
  /** How often expired volumes are purged in the background; 0 disables the timer (purgeExpired() still works, and runs on open). Default 1 hour. */
  purgeIntervalMs?: number;
  /**
   * Sector bytes per cluster for new volumes (a power of two; at least one sector, at most 64).
   * Default 32 KiB. Existing volumes keep theirs.
   */
  clusterBytes?: number;
  /**
   * How new volumes with 4096-byte sectors store their clusters: 'split' (default; one 4072-byte
   * body per sector plus a small meta value per cluster: about 1.02x on disk and random 4 KiB
   * writes near raw LMDB speed) or 'compact' (one LMDB value per cluster). 512-byte sectors are
   * always compact. See bench/results/volume.md.
   */
  volumeLayout?: VolumeLayout;
  /** Most bytes handed to LMDB and not yet committed, across all volumes (backpressure bound). Default 64 MiB. */
  writeBufferBytesMax?: number;
  /**
   * About how many bytes of volume writes one LMDB transaction takes before the engine lets it
   * commit (src/volume/write-budget.ts, TxnSizeCap): the next transaction then fills while this
   * one is fsynced, instead of one transaction absorbing the whole write buffer. Default
   * min(8 MiB, writeBufferBytesMax / 2); 0 turns the cap off; at most writeBufferBytesMax.
   */
  lmdbTxnBytesMax?: number;
  /**
   * Free page numbers LMDB keeps in memory between transactions and loads at once
   * (DEFAULT_LMDB_FREE_PAGES_KEPT_MAX: 5000). Every commit goes over the kept list, so a long one
   * makes each small commit (a database's write + flush) slow after heavy random writes; a short
   * one makes LMDB read its free database more often. Whole number >= 1.
   */
  lmdbFreePagesKeptMax?: number;
  /**
   * Clusters whose decoded meta value each open split-layout volume keeps in memory (about 0.5 KiB
   * each). A random read whose cluster is cached does one LMDB get instead of two, about 1.3x
   * faster (bench/results/volume.md, "meta cache cold"). Default 16384: 512 MiB of 4096-byte
   * sectors per volume, about 8 MiB. Size it to the part of a volume that is read at random;
   * 0 turns the cache off.
   */
  metaCacheClustersMax?: number;
  /** LMDB map size (virtual address space). Default 256 GiB. */
  mapSizeBytes?: number;
  /**
   * Online re-encryption ("Syncing KMS state" tasks): worker count (default: the core count),
   * batch and in-flight bounds, a bandwidth cap. See src/rotation/task-manager.ts.
   */
  rotation?: RotationOptions;
  /** How long open waits for another process that has the directory open; then ENGINE_BUSY. Whole milliseconds >= 0 (NaN, negatives and Infinity are refused). Default 0. */
  lockWaitMs?: number;
  /**
   * Where the volumes' sectors live: in the directory's LMDB (default), or `{ rados: { pool, conf
   * | monHost, user, keyring?, timeoutMs } }`, one RADOS object per cluster (src/store). Chosen
   * when the directory is created; metadata stays in LMDB either way. Volumes in RADOS have the
   * compact layout.
   */
  store?: VolumeStoreOptions;
}

export interface ResolvedOptions {
  dir: string;
  clock: Clock;
  retentionMs: number;
  purgeIntervalMs: number;
  clusterBytes: number;
  volumeLayout: VolumeLayout;
  writeBufferBytesMax: number;
  /** 0: no cap. */
  lmdbTxnBytesMax: number;
  lmdbFreePagesKeptMax: number;
  metaCacheClustersMax: number;
  mapSizeBytes: number;
  lockWaitMs: number;
  store: VolumeStoreOptions | undefined;
}

export function resolveOptions(options: EngineOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) throw invalid('Engine.open({ dir, hsm }) takes an options object');
  if (typeof options.dir !== 'string' || options.dir.length === 0) throw invalid('Engine.open: dir must be a non-empty path');
  const secret = options.hsm as { passphrase?: unknown; keyFile?: unknown; pkcs11?: unknown } | undefined;
  const given = typeof secret === 'object' && secret !== null ? [typeof secret.passphrase === 'string', typeof secret.keyFile === 'string', secret.pkcs11 !== undefined].filter(Boolean).length : 0;
  if (given !== 1) throw invalid('Engine.open: hsm must be { passphrase }, { keyFile } or { pkcs11: { module, slot | tokenLabel, pin } }');
  // Checked here so that a bad PKCS#11 option is refused before anything is created on disk.
  if (secret?.pkcs11 !== undefined) resolvePkcs11Options(secret.pkcs11);
  const nonNegative = (value: number | undefined, fallback: number, name: string): number => {
    const v = value ?? fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw invalid(`Engine.open: ${name} must be a whole number >= 0, got ${String(value)}`);
    return v;
  };
  const clusterBytes = nonNegative(options.clusterBytes, DEFAULT_CLUSTER_BYTES, 'clusterBytes');
  if (clusterBytes < 512 || (clusterBytes & (clusterBytes - 1)) !== 0 || clusterBytes > CLUSTER_SECTORS_MAX * 4096) {
    throw invalid(`Engine.open: clusterBytes must be a power of two from 512 to ${CLUSTER_SECTORS_MAX * 4096}, got ${clusterBytes}`);
  }
  const store = checkVolumeStoreOptions(options.store);
  // A RADOS object holds a whole cluster: the compact layout (the split one exists for LMDB's pages).
  const volumeLayout = options.volumeLayout ?? (store === undefined ? 'split' : 'compact');
  if (volumeLayout !== 'split' && volumeLayout !== 'compact') throw invalid(`Engine.open: volumeLayout must be 'split' or 'compact', got ${String(volumeLayout)}`);
  if (store !== undefined && volumeLayout !== 'compact') throw invalid("Engine.open: volumes in RADOS have the compact layout; leave volumeLayout out or set it to 'compact'");
  const writeBufferBytesMax = nonNegative(options.writeBufferBytesMax, DEFAULT_WRITE_BUFFER_BYTES_MAX, 'writeBufferBytesMax');
  if (writeBufferBytesMax < 1024 * 1024) throw invalid('Engine.open: writeBufferBytesMax must be at least 1 MiB');
  const lmdbTxnBytesMax = nonNegative(options.lmdbTxnBytesMax, Math.min(DEFAULT_LMDB_TXN_BYTES_MAX, Math.floor(writeBufferBytesMax / 2)), 'lmdbTxnBytesMax');
  if (lmdbTxnBytesMax > writeBufferBytesMax) {
    throw invalid(`Engine.open: lmdbTxnBytesMax must be at most writeBufferBytesMax (${writeBufferBytesMax}), got ${lmdbTxnBytesMax}`);
  }
  const lmdbFreePagesKeptMax = nonNegative(options.lmdbFreePagesKeptMax, DEFAULT_LMDB_FREE_PAGES_KEPT_MAX, 'lmdbFreePagesKeptMax');
  if (lmdbFreePagesKeptMax < 1 || lmdbFreePagesKeptMax > LMDB_FREE_PAGES_KEPT_LIMIT) {
    throw invalid(`Engine.open: lmdbFreePagesKeptMax must be from 1 to ${LMDB_FREE_PAGES_KEPT_LIMIT}, got ${lmdbFreePagesKeptMax}`);
  }
  const metaCacheClustersMax = nonNegative(options.metaCacheClustersMax, META_CACHE_CLUSTERS_MAX, 'metaCacheClustersMax');
  // A limit on everything: 2^24 clusters (64 GiB of 4096-byte sectors) is about 8 GiB of memory per volume.
  if (metaCacheClustersMax > META_CACHE_CLUSTERS_LIMIT) {
    throw invalid(`Engine.open: metaCacheClustersMax must be at most ${META_CACHE_CLUSTERS_LIMIT}, got ${metaCacheClustersMax}`);
  }
  const mapSizeBytes = nonNegative(options.mapSizeBytes, DEFAULT_MAP_SIZE_BYTES, 'mapSizeBytes');
  if (mapSizeBytes < MAP_SIZE_BYTES_MIN || mapSizeBytes > MAP_SIZE_BYTES_MAX) {
    throw invalid(`Engine.open: mapSizeBytes must be from ${MAP_SIZE_BYTES_MIN} (1 MiB) to ${MAP_SIZE_BYTES_MAX} (128 TiB), got ${mapSizeBytes}`);
  }
  if (options.cipher !== undefined && options.cipher !== 'native' && options.cipher !== 'ts') {
    throw invalid(`Engine.open: cipher must be 'native' or 'ts', got ${String(options.cipher)}`);
  }
  // Checked here too (the task manager checks them again when it is built), so that a bad value
  // is refused before the directory, its keystore or its LMDB environment is created.
  if (options.rotation !== undefined) validateRotationOptions(options.rotation);
  const clock = options.clock ?? systemClock;
  if (typeof clock !== 'object' || clock === null || typeof clock.nowMs !== 'function') throw invalid('Engine.open: clock must be an object with nowMs()');
  return {
    dir: options.dir,
    clock,
    retentionMs: nonNegative(options.retentionMs, DEFAULT_RETENTION_MS, 'retentionMs'),
    purgeIntervalMs: nonNegative(options.purgeIntervalMs, DEFAULT_PURGE_INTERVAL_MS, 'purgeIntervalMs'),
    clusterBytes,
    volumeLayout,
    writeBufferBytesMax,
    lmdbTxnBytesMax,
    lmdbFreePagesKeptMax,
    metaCacheClustersMax,
    mapSizeBytes,
    // NaN would make the wait deadline NaN (no wait at all) and Infinity would wait forever.
    lockWaitMs: nonNegative(options.lockWaitMs, 0, 'lockWaitMs'),
    store,
  };
}

function invalid(message: string): BlockvaultError {
  return new BlockvaultError('INVALID_ARGUMENT', message);
}
