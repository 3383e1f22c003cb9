/**
 * Raw librados puts and gets against the same through the object layer (src/store/rados), in
 * the same run, on the same objects.
 *
 * Fixed setup: the test cluster of test/helpers/ceph.ts (one monitor, three memstore OSDs on
 * 127.0.0.1, pool size 3, min_size 2; 512 MiB per OSD), or `--conf <ceph.conf> --pool <name>`
 * for another cluster (the objects `bench-<bytes>-<n>` are overwritten and left there).
 *  - 4 KiB: 2048 objects, 64 operations in flight; 1 MiB: 64 objects, 8 in flight.
 *  - Each case: the objects written once, untimed; then slices, raw and object layer
 *    alternating (the order flips each slice) so both see the same background load: a put slice
 *    writes every object once, a get slice reads every object once, in a shuffled order both
 *    share. The ratio is the median over slices of raw time / object-layer time; MB/s come from
 *    the summed times.
 *
 * `node --import tsx bench/rados.bench.ts` (npm run bench:rados); prints a table, writes nothing.
 * RADOS_BENCH_QUICK=1: a quarter of the slices.
 */
import { startCephCluster, type CephCluster } from '../test/helpers/ceph.js';
import { RadosCluster } from '../src/store/rados/index.js';
import { machineInfo } from './lib/machine.js';
import { formatNumber, markdownTable } from './lib/report.js';
import { getSlice, megabytesPerSecondOf, objectLayerTarget, openRawRados, putSlice, shuffledIndexes, type ObjectCase, type ObjectTarget, type SliceTiming } from './lib/rados-raw.js';

const QUICK = process.env.RADOS_BENCH_QUICK === '1';
const SLICES = QUICK ? 4 : 16;
const CASES: ObjectCase[] = [
  { label: '4 KiB', objectBytes: 4096, objectCount: 2048, inFlight: 64 },
  { label: '1 MiB', objectBytes: 1024 * 1024, objectCount: 64, inFlight: 8 },
];

function flag(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function main(): Promise<void> {
  const confFlag = flag('--conf');
  let testCluster: CephCluster | undefined;
  let confPath: string;
  let poolName: string;
  if (confFlag !== undefined) {
    confPath = confFlag;
    poolName = flag('--pool') ?? 'bv-bench';
  } else {
    testCluster = await startCephCluster({ pools: ['bv-bench'], memstoreBytes: 512 * 1024 * 1024 });
    confPath = testCluster.confPath;
    poolName = 'bv-bench';
    console.log(`test cluster up in ${Math.round(testCluster.startMs)} ms`);
  }
  const inFlightMax = Math.max(...CASES.map((c) => c.inFlight));
  const raw = await openRawRados({ confPath, pool: poolName, opsInFlightMax: inFlightMax });
  const cluster = await RadosCluster.connect({ conf: confPath, user: 'admin', timeoutMs: 30_000 });
  try {
    const layer = objectLayerTarget(await cluster.openPool(poolName, { opsInFlightMax: inFlightMax }));
    const targets: [ObjectTarget, ObjectTarget] = [raw.target, layer];
    const rows: string[][] = [];
    for (const c of CASES) {
      const all = Array.from({ length: c.objectCount }, (_, i) => i);
      await putSlice(raw.target, c, all, 0);
      for (const op of ['put', 'get'] as const) {
        const timings = new Map<ObjectTarget, SliceTiming[]>(targets.map((t) => [t, []]));
        const ratios: number[] = [];
        for (let slice = 0; slice < SLICES; slice++) {
          const order = shuffledIndexes(c.objectCount, slice + 1);
          const pair = slice % 2 === 0 ? targets : ([targets[1], targets[0]] as const);
          const ms = new Map<ObjectTarget, number>();
          for (const target of pair) {
            // Each put slice writes a fill of its own; gets read fill 0.
            const fill = op === 'put' ? (slice * 2 + (target === raw.target ? 1 : 2)) & 0xff : 0;
            const t = op === 'put' ? await putSlice(target, c, order, fill) : await getSlice(target, c, order, fill);
            timings.get(target)!.push(t);
            ms.set(target, t.ms);
          }
          ratios.push(ms.get(raw.target)! / ms.get(layer)!);
        }
        // The get slices check what they read: every object back to fill 0, untimed.
        if (op === 'put') await putSlice(raw.target, c, all, 0);
        const rawMbps = megabytesPerSecondOf(timings.get(raw.target)!);
        const layerMbps = megabytesPerSecondOf(timings.get(layer)!);
        rows.push([c.label, op, String(c.inFlight), formatNumber(rawMbps), formatNumber(layerMbps), `${median(ratios).toFixed(2)}x`]);
        console.log(`${c.label} ${op}: raw ${formatNumber(rawMbps)} MB/s, object layer ${formatNumber(layerMbps)} MB/s`);
      }
    }
    const machine = machineInfo();
    console.log(`\n${machine.cpuModel}, ${machine.logicalCpus} CPUs, load ${machine.loadAverage1m}, ${SLICES} slices per row${testCluster ? ', test cluster (3 memstore OSDs, size 3)' : `, ${confPath}`}\n`);
    console.log(markdownTable(['objects', 'op', 'in flight', 'raw librados MB/s', 'object layer MB/s', 'raw time / layer time (median)'], rows));
  } finally {
    await cluster.close();
    await raw.close();
    await testCluster?.stop();
  }
}

await main();
