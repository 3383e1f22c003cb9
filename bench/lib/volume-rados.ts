/**
 * `npm run bench:volume -- --store rados`: volume I/O and rotation with the sectors in Ceph RADOS
 * against raw librados puts and gets of the same data, in the same run, on a throwaway 1-mon
 * 3-OSD memstore cluster on this machine (test/helpers/ceph.ts; pool size 3, min_size 2).
 *
 *  - "api": Engine.open({ store: { rados } }) (native cipher), one 64 MiB volume of 4096-byte
 *    sectors, 32 KiB clusters (one object of 32 KiB + a 16-byte header each); "raw": the same
 *    RadosPool API the store uses (src/store/rados), objects of the bytes the client wrote.
 *  - sequential writes: 16 MiB slices of 1 MiB writes, 4 in flight (raw: 32 KiB objects, 128 in
 *    flight: the same bytes in the api's object size); random writes: 1024 x 4 KiB at random
 *    sectors, 64 in flight (raw: 4 KiB objects; the api reads and rewrites the 32 KiB cluster
 *    object); both end with a flush inside the timing.
 *  - reads from the pool: the api volume is reopened before each slice (untimed), so its memory of
 *    cluster images is empty; sequential 1 MiB reads one at a time (raw: its 32 KiB objects, 32 at
 *    once), random 4 KiB reads 16 in flight (raw: 4 KiB objects; api: a 32 KiB object per read).
 *  - rotation: a key rotation re-encrypts the written volume ("Syncing KMS state", worker threads),
 *    timed from rotateKey to the task's end; raw reads and rewrites every 32 KiB object once, 64 in
 *    flight. Two rounds, alternating.
 * Slices alternate api and raw (bench/lib/slices.ts); ratios are medians of per-slice ratios.
 * Writes bench/results/volume-rados.json and .md.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine, type Volume } from '../../src/index.js';
import { nativeCipherStatus } from '../../src/cipher/index.js';
import { RadosCluster, type RadosPool } from '../../src/store/rados/index.js';
import { cephVersion, startCephCluster } from '../../test/helpers/ceph.js';
import { machineInfo } from './machine.js';
import { formatNumber, markdownTable, saveResults } from './report.js';
import { alternate, pump, ratioOf, timed, type Pair } from './slices.js';

const MIB = 1024 * 1024;
const SECTOR = 4096;
const CLUSTER_BYTES = 32 * 1024;
const VOLUME_BYTES = 64 * MIB;
const POOL = 'bv-bench';
const TIMEOUT_MS = 30_000;
const SEQ_SLICES = 8;
const SEQ_SLICE_BYTES = 16 * MIB;
const RANDOM_SLICES = 8;
const RANDOM_OPS_PER_SLICE = 1024;
const ROTATION_ROUNDS = 2;
const PASSPHRASE = 'volume-rados-bench-passphrase';

interface Row {
  case: string;
  apiMBps: number;
  rawMBps: number;
  ratio: number;
  p25: number;
  p75: number;
}

function rowOf(name: string, pair: Pair, bytesPerSlice: number, slices: number): Row {
  const { ratio, p25, p75 } = ratioOf(pair);
  const bytes = bytesPerSlice * slices;
  return { case: name, apiMBps: bytes / 1e6 / (pair.api / 1000), rawMBps: bytes / 1e6 / (pair.raw / 1000), ratio, p25, p75 };
}

export async function radosVolumeBenchmark(): Promise<void> {
  const status = nativeCipherStatus();
  if (!status.available) throw new Error(`the native cipher is needed for this benchmark: ${status.error ?? 'unknown'}`);
  const machine = machineInfo();
  const loadBefore = loadavg()[0]!;
  const startedMs = performance.now();
  console.log(`blockvault volume benchmark on RADOS: starting a 1-mon 3-OSD memstore cluster; native cipher on its ${status.cpuPath ?? '?'} path`);
  const ceph = await startCephCluster({ pools: [POOL], memstoreBytes: 1024 * MIB });
  const dir = mkdtempSync(join(tmpdir(), 'bv-bench-rados-'));
  let engine: Engine | null = null;
  let cluster: RadosCluster | null = null;
  try {
    console.log(`cluster up in ${(ceph.startMs / 1000).toFixed(1)} s`);
    const store = { rados: { conf: ceph.confPath, user: 'admin', timeoutMs: TIMEOUT_MS, pool: POOL } };
    engine = await Engine.open({ dir, hsm: { passphrase: PASSPHRASE }, purgeIntervalMs: 0, store });
    cluster = await RadosCluster.connect({ conf: ceph.confPath, user: 'admin', timeoutMs: TIMEOUT_MS });
    const pool = await cluster.openPool(POOL);
    const instance = await engine.hsm.createInstance({ name: 'bench' });
    const key = await engine.hsm.createRootKey(instance.id, { name: 'bench' });
    await engine.hsm.authorize({ sourceService: 'blockvault', targetInstance: instance.id, role: 'Reader' });
    const created = await engine.createVolume({ name: 'bench', sizeBytes: VOLUME_BYTES, sectorSize: SECTOR, diskEncryptionKeyCrn: key.crn });
    const volumeId = created.info().id;
    await created.close();
    let vol: Volume = await engine.openVolume(volumeId);
    const reopen = async (): Promise<void> => {
      await vol.close();
      vol = await engine!.openVolume(volumeId);
    };
    const rawObject = (prefix: string, index: number) => `bench-raw.${prefix}.${index}`;
    const chunk = randomBytes(MIB);
    const objects = VOLUME_BYTES / CLUSTER_BYTES;

    // Fill both sides once (untimed), so reads and rotation have data and writes overwrite.
    const fillMs = await timed(() => pump(VOLUME_BYTES / MIB, 4, (i) => vol.write(i * MIB, chunk)));
    await vol.flush();
    await pump(objects, 128, (i) => pool.writeFull(rawObject('c', i), chunk.subarray((i % 32) * CLUSTER_BYTES, ((i % 32) + 1) * CLUSTER_BYTES)));
    await pump(VOLUME_BYTES / SECTOR, 128, (i) => pool.writeFull(rawObject('s', i), chunk.subarray((i % 256) * SECTOR, ((i % 256) + 1) * SECTOR)));
    console.log(`first fill of the volume: ${formatNumber(VOLUME_BYTES / 1e6 / (fillMs / 1000))} MB/s`);

    const rows: Row[] = [];
    const perSliceMiB = SEQ_SLICE_BYTES / MIB;
    const seqBase = (slice: number) => (slice * SEQ_SLICE_BYTES) % VOLUME_BYTES;
    const seqWrite = await alternate(
      SEQ_SLICES,
      async (slice) => {
        const first = seqBase(slice) / CLUSTER_BYTES;
        await pump(SEQ_SLICE_BYTES / CLUSTER_BYTES, 128, (i) => pool.writeFull(rawObject('c', first + i), chunk.subarray((i % 32) * CLUSTER_BYTES, ((i % 32) + 1) * CLUSTER_BYTES)));
      },
      async (slice) => {
        await pump(perSliceMiB, 4, (i) => vol.write(seqBase(slice) + i * MIB, chunk));
        await vol.flush();
      },
    );
    rows.push(rowOf('sequential write 1 MiB', seqWrite, SEQ_SLICE_BYTES, SEQ_SLICES));
    console.log(rows.at(-1));

    const sectors = VOLUME_BYTES / SECTOR;
    const randomSectors = Array.from({ length: RANDOM_SLICES }, () => Array.from({ length: RANDOM_OPS_PER_SLICE }, () => Math.floor(Math.random() * sectors)));
    const randomWrite = await alternate(
      RANDOM_SLICES,
      (slice) => pump(RANDOM_OPS_PER_SLICE, 64, (i) => pool.writeFull(rawObject('s', randomSectors[slice]![i]!), chunk.subarray(0, SECTOR))),
      async (slice) => {
        await pump(RANDOM_OPS_PER_SLICE, 64, (i) => vol.write(randomSectors[slice]![i]! * SECTOR, chunk.subarray(i % 256 * SECTOR, (i % 256 + 1) * SECTOR)));
        await vol.flush();
      },
      reopen,
    );
    rows.push(rowOf('random write 4 KiB', randomWrite, RANDOM_OPS_PER_SLICE * SECTOR, RANDOM_SLICES));
    console.log(rows.at(-1));

    const seqRead = await alternate(
      SEQ_SLICES,
      async (slice) => {
        const first = seqBase(slice) / CLUSTER_BYTES;
        for (let m = 0; m < perSliceMiB; m++) {
          await Promise.all(Array.from({ length: MIB / CLUSTER_BYTES }, (_, i) => pool.read(rawObject('c', first + m * (MIB / CLUSTER_BYTES) + i))));
        }
      },
      async (slice) => {
        for (let m = 0; m < perSliceMiB; m++) await vol.read(seqBase(slice) + m * MIB, MIB);
      },
      reopen,
    );
    rows.push(rowOf('sequential read 1 MiB', seqRead, SEQ_SLICE_BYTES, SEQ_SLICES));
    console.log(rows.at(-1));

    const randomRead = await alternate(
      RANDOM_SLICES,
      (slice) => pump(RANDOM_OPS_PER_SLICE, 16, (i) => pool.read(rawObject('s', randomSectors[slice]![i]!))),
      (slice) => pump(RANDOM_OPS_PER_SLICE, 16, (i) => vol.read(randomSectors[slice]![i]! * SECTOR, SECTOR)),
      reopen,
    );
    rows.push(rowOf('random read 4 KiB', randomRead, RANDOM_OPS_PER_SLICE * SECTOR, RANDOM_SLICES));
    console.log(rows.at(-1));

    await engine.tasks.warmUp();
    const rotation = await alternate(
      ROTATION_ROUNDS,
      (slice) => pump(objects, 64, async (i) => {
        const data = await pool.read(rawObject('c', i));
        await pool.writeFull(rawObject('c', i), data!);
        void slice;
      }),
      async () => {
        const [task] = await engine!.hsm.rotateKey(key.crn);
        if (task === undefined) throw new Error('rotateKey started no task');
        const done = await engine!.tasks.wait(task.id, { timeoutMs: 600_000 });
        if (done.state !== 'completed') throw new Error(`the rotation ended ${done.state}`);
      },
    );
    rows.push(rowOf('rotation (re-encrypt the volume)', rotation, VOLUME_BYTES, ROTATION_ROUNDS));
    console.log(rows.at(-1));
    await vol.close();

    const elapsedS = (performance.now() - startedMs) / 1000;
    const loadAfter = loadavg()[0]!;
    const md = [
      '# Volumes on RADOS (bench/lib/volume-rados.ts, `npm run bench:volume -- --store rados`)',
      '',
      `${machine.date}, ${machine.cpuModel}, ${machine.logicalCpus} logical CPUs, ${machine.memoryGiB} GiB, Node ${machine.node}; native cipher on its ${status.cpuPath ?? '?'} path; ` +
        `load ${loadBefore.toFixed(2)} at start, ${loadAfter.toFixed(2)} at the end; ${elapsedS.toFixed(0)} s.`,
      `A 1-mon 3-OSD memstore Ceph ${cephVersion()} cluster on this machine (pool size 3, min_size 2), a 64 MiB volume of 4096-byte sectors in 32 KiB clusters (one object each).`,
      'raw: the same RadosPool calls with objects of the bytes written (32 KiB objects for sequential I/O and rotation, 4 KiB objects for random I/O);',
      'api reads start from a reopened volume (nothing cached); rotation is timed from rotateKey to the task\'s end, raw reads and rewrites every object once.',
      '',
      markdownTable(
        ['case', 'api MB/s', 'raw librados MB/s', 'api / raw (median of slices)', 'quartiles'],
        rows.map((r) => [r.case, formatNumber(r.apiMBps), formatNumber(r.rawMBps), r.ratio.toFixed(2), `${r.p25.toFixed(2)}-${r.p75.toFixed(2)}`]),
      ),
      '',
    ].join('\n');
    const paths = saveResults('volume-rados', { machine, cipherPath: status.cpuPath, loadBefore, loadAfter, elapsedSeconds: elapsedS, rows }, md);
    console.log(`\n${md}`);
    console.log(`written: ${paths.json}, ${paths.md}`);
  } finally {
    await engine?.close().catch(() => undefined);
    await cluster?.close().catch(() => undefined);
    await ceph.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
