/**
 * Volume I/O through the public API against raw LMDB on the same data, same durability, same
 * run; and the on-disk space of a fully written volume for each cluster layout.
 *
 * Fixed setups:
 *  - "api": Engine.open (native cipher), one 128 MiB volume of 4096-byte sectors in the default
 *    layout; "raw": an LMDB environment with the engine's settings (4 KiB pages, overlappingSync,
 *    fsynced commits) holding each 4096-byte sector as one value under a 12-byte key.
 *  - both are filled once, untimed (the first fill is reported for information); then each case
 *    runs in short slices, raw and api alternating (the order flips each slice), so both see the
 *    same background load; the ratio is the median over slices of raw time / api time (with the
 *    quartiles), MB/s come from the summed times. Shared machines drift; pairs of short slices
 *    drift together, and the median ignores the slices another process's burst hit.
 *  - sequential writes: 16 MiB slices in 1 MiB writes, 4 in flight (raw: 256 puts per MiB);
 *    random writes: slices of 1024 x 4 KiB at random sectors, 64 in flight; every write slice
 *    ends with a flush (vol.flush() / root.flushed) inside the timing.
 *  - sequential reads: 16 MiB slices in 1 MiB reads, one at a time (raw: 256 gets copied into a
 *    1 MiB buffer); random reads: slices of 2048 x 4 KiB at the same random sectors on both
 *    sides, one at a time, each awaited before the next is issued (raw: `getBinary`, a copy of
 *    the value, awaited through a resolved promise; api: `vol.read`, a fresh plaintext buffer).
 *    For comparison only: raw gets each followed by a native in-place decryption with a keyed handle (what any
 *    encrypted store pays at least), and api reads that miss the split layout's meta cache
 *    (the volume is reopened before each slice, untimed, and each read is in another cluster).
 *  - layouts: for each cluster layout a fresh engine with one 64 MiB volume, written once
 *    sequentially (file growth / logical size), then random 4 KiB write slices against a raw
 *    environment holding the same 64 MiB (ratio as above).
 *
 * `node --import tsx bench/volume.bench.ts` (npm run bench:volume; `-- --store rados` runs
 * bench/lib/volume-rados.ts instead, on a throwaway Ceph cluster); writes
 * bench/results/volume.json and bench/results/volume.md. About a minute and a half.
 * VOLUME_BENCH_QUICK=1: a 32 MiB volume, a quarter of the slices, no layout part, nothing
 * written (for iterating; its ratios are noisier).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { Engine, type Volume } from '../src/index.js';
import { lmdbEnvironmentOptions } from '../src/engine.js';
import { DEFAULT_LMDB_FREE_PAGES_KEPT_MAX } from '../src/engine-options.js';
import { nativeCipherStatus } from '../src/cipher/index.js';
import { META_CACHE_CLUSTERS_MAX, type VolumeLayout } from '../src/volume/cluster-store.js';
import { machineInfo } from './lib/machine.js';
import { formatNumber, markdownTable, saveResults } from './lib/report.js';
import { alternate, pump, ratioOf, timed, type Pair } from './lib/slices.js';

const QUICK = process.env.VOLUME_BENCH_QUICK === '1';
const MIB = 1024 * 1024;
const SECTOR = 4096;
const MAIN_VOLUME_BYTES = (QUICK ? 32 : 128) * MIB;
const LAYOUT_VOLUME_BYTES = 64 * MIB;
const SEQ_SLICES = QUICK ? 4 : 16;
const SEQ_SLICE_BYTES = 16 * MIB;
const SEQ_IN_FLIGHT = 4;
const RANDOM_WRITE_SLICES = QUICK ? 12 : 48;
const RANDOM_WRITES_PER_SLICE = 1024;
const RANDOM_WRITES_IN_FLIGHT = 64;
const RANDOM_READ_SLICES = QUICK ? 8 : 64;
const RANDOM_READS_PER_SLICE = 2048;
const LAYOUT_WRITE_SLICES = 24;
const PASSPHRASE = 'volume-bench-passphrase';
const TARGETS = { randomWrite: 0.7, sequentialWrite: 0.8, read: 0.8, amplification: 1.25 };

interface RawEnv {
  dir: string;
  root: RootDatabase;
  db: Database<Buffer, Buffer>;
}

function openRaw(): RawEnv {
  const dir = mkdtempSync(join(tmpdir(), 'bv-bench-raw-'));
  // The engine's own settings (src/engine.ts): 4 KiB pages, overlappingSync, every commit fsynced,
  // the engine's free-list bound.
  const root = open(lmdbEnvironmentOptions(join(dir, 'raw.lmdb'), 64 * 1024 ** 3, DEFAULT_LMDB_FREE_PAGES_KEPT_MAX));
  const db = root.openDB<Buffer, Buffer>('sectors', { keyEncoding: 'binary', encoding: 'binary', compression: false, cache: false });
  return { dir, root, db };
}

function rawKey(sector: number): Buffer {
  const key = Buffer.allocUnsafe(12);
  key.writeUInt32BE(1, 0);
  key.writeUInt32BE(Math.floor(sector / 2 ** 32), 4);
  key.writeUInt32BE(sector % 2 ** 32, 8);
  return key;
}

function randomSectors(count: number, volumeBytes: number): number[] {
  const sectors = volumeBytes / SECTOR;
  return Array.from({ length: count }, () => Math.floor(Math.random() * sectors));
}

/** `count` random sectors, each in a different cluster of `clusterSectors` sectors. */
function sectorsInDistinctClusters(count: number, volumeBytes: number, clusterSectors: number): number[] {
  const clusters = Array.from({ length: volumeBytes / SECTOR / clusterSectors }, (_, c) => c);
  for (let i = clusters.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [clusters[i], clusters[j]] = [clusters[j]!, clusters[i]!];
  }
  return clusters.slice(0, count).map((c) => c * clusterSectors + Math.floor(Math.random() * clusterSectors));
}

async function rawSequentialWrites(raw: RawEnv, offset: number, bytes: number, data: Buffer): Promise<void> {
  await pump(bytes / MIB, SEQ_IN_FLIGHT, (i) => {
    const first = (offset + i * MIB) / SECTOR;
    let last: Promise<boolean> = Promise.resolve(true);
    for (let s = 0; s < MIB / SECTOR; s++) last = raw.db.put(rawKey(first + s), data.subarray(s * SECTOR, (s + 1) * SECTOR));
    return last;
  });
  await raw.root.flushed;
}

async function apiSequentialWrites(vol: Volume, offset: number, bytes: number, data: Buffer): Promise<void> {
  await pump(bytes / MIB, SEQ_IN_FLIGHT, (i) => vol.write(offset + i * MIB, data));
  await vol.flush();
}

async function rawRandomWrites(raw: RawEnv, sectors: number[], data: Buffer): Promise<void> {
  await pump(sectors.length, RANDOM_WRITES_IN_FLIGHT, (i) => raw.db.put(rawKey(sectors[i]!), data.subarray(0, SECTOR)));
  await raw.root.flushed;
}

async function apiRandomWrites(vol: Volume, sectors: number[], data: Buffer): Promise<void> {
  await pump(sectors.length, RANDOM_WRITES_IN_FLIGHT, (i) => vol.write(sectors[i]! * SECTOR, data.subarray(0, SECTOR)));
  await vol.flush();
}

/** The same random sectors for raw and api within a slice, fresh ones for each slice. */
function sliceSectors(count: number, volumeBytes: number): (slice: number) => number[] {
  const bySlice = new Map<number, number[]>();
  return (slice) => {
    let sectors = bySlice.get(slice);
    if (sectors === undefined) {
      sectors = randomSectors(count, volumeBytes);
      bySlice.set(slice, sectors);
    }
    return sectors;
  };
}

function fileBytes(path: string): number {
  return statSync(path).size;
}

interface IoResult {
  case: string;
  bytes: number;
  apiMs: number;
  rawMs: number;
  apiMBps: number;
  rawMBps: number;
  ratio: number;
  p25: number;
  p75: number;
  slices: number;
  target: number;
}

async function ioBenchmark(): Promise<{ results: IoResult[]; firstFill: { apiMBps: number; rawMBps: number } }> {
  const raw = openRaw();
  const dir = mkdtempSync(join(tmpdir(), 'bv-bench-api-'));
  const engine = await Engine.open({ dir, hsm: { passphrase: PASSPHRASE }, cipher: 'native', purgeIntervalMs: 0 });
  const results: IoResult[] = [];
  const record = (name: string, bytes: number, pair: Pair, target: number): void => {
    const apiMBps = bytes / 1e6 / (pair.api / 1000);
    const rawMBps = bytes / 1e6 / (pair.raw / 1000);
    const result = { case: name, bytes, apiMs: pair.api, rawMs: pair.raw, apiMBps, rawMBps, ...ratioOf(pair), slices: pair.sliceRatios.length, target };
    results.push(result);
    console.log(
      `  ${name.padEnd(34)} api ${formatNumber(apiMBps).padStart(7)} MB/s   raw ${formatNumber(rawMBps).padStart(7)} MB/s   api/raw ${result.ratio.toFixed(2)} [${result.p25.toFixed(2)}-${result.p75.toFixed(2)}]${target > 0 ? ` (target >= ${target})` : ''}`,
    );
  };
  try {
    const vol = await engine.createVolume({ name: 'bench', sizeBytes: MAIN_VOLUME_BYTES, sectorSize: SECTOR });
    console.log(`  api volume: ${vol.info().layout} layout, ${vol.info().clusterSectors} sectors per cluster, cipher ${engine.cipher.backend}`);
    const data = randomBytes(MIB);
    const fill = await alternate(
      1,
      () => rawSequentialWrites(raw, 0, MAIN_VOLUME_BYTES, data),
      () => apiSequentialWrites(vol, 0, MAIN_VOLUME_BYTES, data),
    );
    const firstFill = { apiMBps: MAIN_VOLUME_BYTES / 1e6 / (fill.api / 1000), rawMBps: MAIN_VOLUME_BYTES / 1e6 / (fill.raw / 1000) };
    console.log(`  first fill (untimed warm-up): api ${formatNumber(firstFill.apiMBps)} MB/s, raw ${formatNumber(firstFill.rawMBps)} MB/s`);

    const region = (slice: number): number => (slice * SEQ_SLICE_BYTES) % MAIN_VOLUME_BYTES;
    record(
      'sequential write 1 MiB',
      SEQ_SLICES * SEQ_SLICE_BYTES,
      await alternate(
        SEQ_SLICES,
        (slice) => rawSequentialWrites(raw, region(slice), SEQ_SLICE_BYTES, data),
        (slice) => apiSequentialWrites(vol, region(slice), SEQ_SLICE_BYTES, data),
      ),
      TARGETS.sequentialWrite,
    );

    const writeSectors = sliceSectors(RANDOM_WRITES_PER_SLICE, MAIN_VOLUME_BYTES);
    record(
      'random write 4 KiB',
      RANDOM_WRITE_SLICES * RANDOM_WRITES_PER_SLICE * SECTOR,
      await alternate(
        RANDOM_WRITE_SLICES,
        (slice) => rawRandomWrites(raw, writeSectors(slice), data),
        (slice) => apiRandomWrites(vol, writeSectors(slice), data),
      ),
      TARGETS.randomWrite,
    );

    const seqRead = await alternate(
      SEQ_SLICES,
      async (slice) => {
        for (let i = 0; i < SEQ_SLICE_BYTES / MIB; i++) {
          const first = (region(slice) + i * MIB) / SECTOR;
          const out = Buffer.allocUnsafe(MIB);
          for (let s = 0; s < MIB / SECTOR; s++) raw.db.getBinary(rawKey(first + s))!.copy(out, s * SECTOR);
          await Promise.resolve(out);
        }
      },
      async (slice) => {
        for (let i = 0; i < SEQ_SLICE_BYTES / MIB; i++) await vol.read(region(slice) + i * MIB, MIB);
      },
    );
    record('sequential read 1 MiB', SEQ_SLICES * SEQ_SLICE_BYTES, seqRead, TARGETS.read);

    const readSectors = sliceSectors(RANDOM_READS_PER_SLICE, MAIN_VOLUME_BYTES);
    const rndRead = await alternate(
      RANDOM_READ_SLICES,
      async (slice) => {
        for (const sector of readSectors(slice)) await Promise.resolve(raw.db.getBinary(rawKey(sector)));
      },
      async (slice) => {
        for (const sector of readSectors(slice)) await vol.read(sector * SECTOR, SECTOR);
      },
    );
    record('random read 4 KiB', RANDOM_READ_SLICES * RANDOM_READS_PER_SLICE * SECTOR, rndRead, TARGETS.read);
    // Where the read gap comes from: the same raw gets, each followed by decrypting the sector
    // in place with a native keyed handle, as the api does (a volume must decrypt every read).
    const dek = engine.cipher.keyed(randomBytes(64));
    const rndReadDecrypt = await alternate(
      RANDOM_READ_SLICES,
      async (slice) => {
        for (const sector of readSectors(slice)) {
          const value = raw.db.getBinary(rawKey(sector))!;
          dek.decryptSectorInPlace(sector, value);
          await Promise.resolve(value);
        }
      },
      async (slice) => {
        for (const sector of readSectors(slice)) await vol.read(sector * SECTOR, SECTOR);
      },
    );
    record('random read 4 KiB (raw + decrypt)', RANDOM_READ_SLICES * RANDOM_READS_PER_SLICE * SECTOR, rndReadDecrypt, 0);
    // Reads that miss the split layout's meta cache: a reopened volume (a new core, an empty
    // cache) before each api slice, untimed, and one sector in each of half the clusters, so
    // every api read does two LMDB gets (meta and body).
    const clusterSectors = vol.info().clusterSectors;
    const coldReads = Math.min(RANDOM_READS_PER_SLICE, MAIN_VOLUME_BYTES / SECTOR / clusterSectors / 2);
    const coldBySlice = new Map<number, number[]>();
    const coldSectors = (slice: number): number[] => {
      let sectors = coldBySlice.get(slice);
      if (sectors === undefined) {
        sectors = sectorsInDistinctClusters(coldReads, MAIN_VOLUME_BYTES, clusterSectors);
        coldBySlice.set(slice, sectors);
      }
      return sectors;
    };
    let coldVol = vol;
    const rndReadCold = await alternate(
      RANDOM_READ_SLICES,
      async (slice) => {
        for (const sector of coldSectors(slice)) await Promise.resolve(raw.db.getBinary(rawKey(sector)));
      },
      async (slice) => {
        for (const sector of coldSectors(slice)) await coldVol.read(sector * SECTOR, SECTOR);
      },
      async () => {
        await coldVol.close();
        coldVol = await engine.openVolume(vol.info().id);
      },
    );
    record('random read 4 KiB, meta cache cold', RANDOM_READ_SLICES * coldReads * SECTOR, rndReadCold, 0);
    await coldVol.close();
    return { results, firstFill };
  } finally {
    await engine.close();
    await raw.root.close();
    rmSync(dir, { recursive: true, force: true });
    rmSync(raw.dir, { recursive: true, force: true });
  }
}

interface LayoutResult {
  layout: string;
  clusterSectors: number;
  amplification: number;
  amplificationAfterRandomWrites: number;
  randomWriteRatio: number;
  randomWriteRatioP25: number;
  randomWriteRatioP75: number;
}

async function layoutBenchmark(): Promise<{ rawAmplification: number; rawAfterRandom: number; layouts: LayoutResult[] }> {
  const configs: { layout: VolumeLayout; clusterSectors: number }[] = [
    { layout: 'compact', clusterSectors: 1 },
    { layout: 'compact', clusterSectors: 2 },
    { layout: 'compact', clusterSectors: 4 },
    { layout: 'compact', clusterSectors: 8 },
    { layout: 'compact', clusterSectors: 16 },
    { layout: 'split', clusterSectors: 8 },
  ];
  const data = randomBytes(MIB);
  const raw = openRaw();
  const rawFile = join(raw.dir, 'raw.lmdb');
  const layouts: LayoutResult[] = [];
  let rawAmplification = 0;
  let rawAfterRandom = 0;
  try {
    await rawSequentialWrites(raw, 0, LAYOUT_VOLUME_BYTES, data);
    rawAmplification = fileBytes(rawFile) / LAYOUT_VOLUME_BYTES;
    console.log(`  raw LMDB, one 4096-byte value per sector: ${rawAmplification.toFixed(3)}x`);
    for (const config of configs) {
      const dir = mkdtempSync(join(tmpdir(), 'bv-bench-layout-'));
      const engine = await Engine.open({
        dir,
        hsm: { passphrase: PASSPHRASE },
        cipher: 'native',
        purgeIntervalMs: 0,
        clusterBytes: config.clusterSectors * SECTOR,
        volumeLayout: config.layout,
      });
      const file = join(dir, 'engine.lmdb');
      try {
        const vol = await engine.createVolume({ name: 'layout', sizeBytes: LAYOUT_VOLUME_BYTES, sectorSize: SECTOR });
        await vol.flush();
        const before = fileBytes(file);
        await apiSequentialWrites(vol, 0, LAYOUT_VOLUME_BYTES, data);
        const amplification = (fileBytes(file) - before) / LAYOUT_VOLUME_BYTES;
        const sectors = sliceSectors(RANDOM_WRITES_PER_SLICE, LAYOUT_VOLUME_BYTES);
        const pair = await alternate(
          LAYOUT_WRITE_SLICES,
          (slice) => rawRandomWrites(raw, sectors(slice), data),
          (slice) => apiRandomWrites(vol, sectors(slice), data),
        );
        const afterRandom = (fileBytes(file) - before) / LAYOUT_VOLUME_BYTES;
        rawAfterRandom = fileBytes(rawFile) / LAYOUT_VOLUME_BYTES;
        const result: LayoutResult = {
          layout: config.layout,
          clusterSectors: config.clusterSectors,
          amplification,
          amplificationAfterRandomWrites: afterRandom,
          randomWriteRatio: ratioOf(pair).ratio,
          randomWriteRatioP25: ratioOf(pair).p25,
          randomWriteRatioP75: ratioOf(pair).p75,
        };
        layouts.push(result);
        console.log(
          `  ${config.layout.padEnd(8)} ${String(config.clusterSectors).padStart(2)} sectors/cluster: ${amplification.toFixed(3)}x on disk (${afterRandom.toFixed(3)}x after random overwrites), random 4 KiB writes ${result.randomWriteRatio.toFixed(2)} [${result.randomWriteRatioP25.toFixed(2)}-${result.randomWriteRatioP75.toFixed(2)}] of raw`,
        );
        await vol.close();
      } finally {
        await engine.close();
        rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    await raw.root.close();
    rmSync(raw.dir, { recursive: true, force: true });
  }
  return { rawAmplification, rawAfterRandom, layouts };
}

function verdict(value: number, target: number, atMost = false): string {
  return (atMost ? value <= target : value >= target) ? 'met' : 'MISSED';
}

async function main(): Promise<void> {
  const status = nativeCipherStatus();
  if (!status.available) throw new Error(`the native cipher is needed for this benchmark: ${status.error ?? 'unknown'}`);
  const machine = machineInfo();
  const loadBefore = loadavg()[0]!;
  const startedMs = performance.now();
  console.log(
    `blockvault volume benchmark: ${machine.cpuModel}, ${machine.logicalCpus} logical CPUs, Node ${machine.node}, load ${loadBefore.toFixed(2)}; native cipher on its ${status.cpuPath ?? '?'} path`,
  );
  console.log('I/O through the API vs raw LMDB (same data, same durability):');
  const { results: io, firstFill } = await ioBenchmark();
  if (QUICK) {
    console.log(`VOLUME_BENCH_QUICK: no layout part, no results written (${((performance.now() - startedMs) / 1000).toFixed(0)} s)`);
    return;
  }
  console.log('Space on disk of a fully written volume, and random 4 KiB writes, per layout:');
  const layout = await layoutBenchmark();
  const chosen = layout.layouts.find((l) => l.layout === 'split')!;
  const elapsedS = (performance.now() - startedMs) / 1000;
  const loadAfter = loadavg()[0]!;
  const overwrites = LAYOUT_WRITE_SLICES * RANDOM_WRITES_PER_SLICE;

  const md = [
    '# Volume I/O and layout (bench/volume.bench.ts)',
    '',
    `${machine.date}, ${machine.cpuModel}, ${machine.logicalCpus} logical CPUs, ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.platform}; ` +
      `native cipher on its ${status.cpuPath ?? '?'} path; load average ${loadBefore.toFixed(2)} at start, ${loadAfter.toFixed(2)} at the end; ${elapsedS.toFixed(0)} s.`,
    'Ratios compare the API with raw LMDB puts/gets of the same data with the same durability (4 KiB pages, overlappingSync, every',
    'commit fsynced; writes end with a flush), in short slices alternating between the two in the same run; the ratio is the median',
    'of the per-slice ratios (quartiles beside it), MB/s come from the summed times.',
    '',
    '## Throughput (128 MiB volume, 4096-byte sectors, default layout)',
    '',
    `Reads on both sides go one at a time, each awaited before the next is issued, at the same random sectors within a slice: raw is`,
    '`getBinary` (a copy of the 4096-byte value) awaited through a resolved promise, api is `vol.read(sector * 4096, 4096)` (a fresh',
    'plaintext buffer: the cluster\'s meta from the volume\'s meta cache, one LMDB get of the sector body, one native decryption).',
    `The meta cache holds up to ${META_CACHE_CLUSTERS_MAX} clusters per open volume (${(META_CACHE_CLUSTERS_MAX * 8 * SECTOR) / MIB} MiB of 4096-byte sectors), so this volume fits;`,
    '"meta cache cold" reads a reopened volume, one sector per cluster, each read two LMDB gets. "raw + decrypt" compares the same api',
    'reads with raw gets that each also decrypt their sector in place with a keyed handle, as the api does (the key expanded once):',
    'the least any encrypted store on LMDB pays per read. The api cuts its plaintext buffers from a per-volume slab, where a raw get',
    'allocates a new buffer for its copy (src/volume/buffer-slab.ts).',
    '',
    markdownTable(
      ['case', 'api MB/s', 'raw LMDB MB/s', 'api / raw (median of slices)', 'quartiles', 'target', ''],
      io.map((r) => [
        r.case,
        formatNumber(r.apiMBps),
        formatNumber(r.rawMBps),
        r.ratio.toFixed(2),
        `${r.p25.toFixed(2)}-${r.p75.toFixed(2)}`,
        r.target > 0 ? `>= ${r.target}` : '-',
        r.target > 0 ? verdict(r.ratio, r.target) : 'for comparison',
      ]),
    ),
    '',
    `First sequential fill of the empty volume (untimed warm-up): api ${formatNumber(firstFill.apiMBps)} MB/s, raw ${formatNumber(firstFill.rawMBps)} MB/s.`,
    '',
    '## Space of a fully written volume (64 MiB, 4096-byte sectors), per layout',
    '',
    markdownTable(
      ['layout', 'sectors per cluster', 'file growth / logical', `after ${overwrites} random 4 KiB overwrites`, 'random 4 KiB writes, api / raw', 'quartiles', ''],
      [
        ['raw LMDB, 1 value per sector', '-', layout.rawAmplification.toFixed(3), layout.rawAfterRandom.toFixed(3), '1.00', '-', ''],
        ...layout.layouts.map((l) => [
          l.layout,
          String(l.clusterSectors),
          l.amplification.toFixed(3),
          l.amplificationAfterRandomWrites.toFixed(3),
          l.randomWriteRatio.toFixed(2),
          `${l.randomWriteRatioP25.toFixed(2)}-${l.randomWriteRatioP75.toFixed(2)}`,
          l.layout === 'split' ? 'default' : '',
        ]),
      ],
    ),
    '',
    `Chosen: split (${chosen.amplification.toFixed(3)}x on disk, target <= ${TARGETS.amplification}: ${verdict(chosen.amplification, TARGETS.amplification, true)}).`,
    'After random overwrites the file also holds the pages LMDB freed by copy-on-write (reused by later writes, never returned to the OS); raw LMDB grows the same way.',
    '',
  ].join('\n');
  const paths = saveResults('volume', { machine, cipherPath: status.cpuPath, loadBefore, loadAfter, elapsedSeconds: elapsedS, targets: TARGETS, io, firstFill, layout }, md);
  console.log(`\n${md}`);
  console.log(`written: ${paths.json}, ${paths.md}`);
}

// `-- --store rados`: the same questions with the sectors in Ceph RADOS (bench/lib/volume-rados.ts).
const storeAt = process.argv.indexOf('--store');
const store = storeAt >= 0 ? process.argv[storeAt + 1] : 'lmdb';
if (store === 'rados') await (await import('./lib/volume-rados.js')).radosVolumeBenchmark();
else if (store === 'lmdb') await main();
else throw new Error(`--store takes lmdb (default) or rados, got ${JSON.stringify(store)}`);
