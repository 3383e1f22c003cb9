/**
 * Re-encryption throughput of a "Syncing KMS state" task on a fully written volume, against the
 * ceiling measured in the same run, and foreground write latency during a rotation.
 *
 * Fixed setups:
 *  - Engine.open (native cipher when built, else ts), one volume of SIZE bytes with 4096-byte
 *    sectors in the default layout, written fully once with random data (1 MiB writes, 4 in flight).
 *  - "rotation, W workers": hsm.rotateKey, then one task (src/rotation TaskManager, default batch
 *    and in-flight bounds) on engine.reencryptTarget(volume) with a pool of W threads, started
 *    (warmed up) before the clock starts; MB/s = logical bytes re-encrypted / task time.
 *  - "ceiling": the same clusters read (staleClusters) and rewritten (commitReencrypted, same
 *    commit sizes, same number of commits queued, same checkpoint write, same durability) on the
 *    main thread, with no cipher: only the generation stamp changes. "pipeline, no cipher": the worker pipeline with a
 *    ClusterOps that restamps instead of re-encrypting (diagnostic: pipeline overhead).
 *  - latency: random 4 KiB writes (one at a time, to random sectors) with no rotation, then
 *    during a rotation with all workers, then during one capped at half that rotation's rate,
 *    then the same cap with 64-sector batches (smaller commits hold LMDB's write lock less long).
 *  - The measured tasks run on a TaskManager of the bench's own (so each case picks its worker
 *    count without reopening the engine) whose task store is an LMDB environment beside the
 *    engine's, without fsync: it stands in for engine.tasks, where the checkpoint rides in the
 *    clusters' own transaction and costs no fsync of its own. The ceiling writes its checkpoint
 *    there too. Each case first rotates the key through the engine with rewrapOnly and waits for
 *    that task, so nothing else moves the volume while a case is timed.
 *
 * `npm run bench:rotation` (1 GiB), or `-- --size 256MiB`, or ROTATION_BENCH_SIZE=64MiB; `--quick`
 * is 64 MiB; `--rounds N` (ROTATION_BENCH_ROUNDS), default 2 above 256 MiB, else 3. Writes bench/results/rotation.json and bench/results/rotation.md.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { open, type RootDatabase } from 'lmdb';
import { nativeCipherStatus } from '../src/cipher/index.js';
import { Engine, type Volume } from '../src/index.js';
import { DEFAULT_RUNNER_OPTIONS } from '../src/rotation/runner.js';
import { TaskManager } from '../src/rotation/task-manager.js';
import { restampGeneration } from '../test/rotation/helpers/plain-product-ops.js';
import { cipherDescription, machineInfo } from './lib/machine.js';
import { formatNumber, markdownTable, saveResults } from './lib/report.js';
import { engineInternals } from '../src/engine-internals.js';

const MIB = 1024 * 1024;
const SECTOR = 4096;
const PASSPHRASE = 'rotation-bench-passphrase';
const TARGET_RATIO = 0.85;
const CEILING = 'ceiling: read + rewrite, no cipher, main thread';
const PLAIN_OPS = fileURLToPath(new URL('../test/rotation/helpers/plain-product-ops.ts', import.meta.url));

function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(k|m|g)?i?b?$/i.exec(text.trim());
  if (match === null) throw new Error(`cannot parse size ${text} (try 64MiB, 1GiB)`);
  const unit = { k: 1024, m: MIB, g: 1024 * MIB }[(match[2] ?? '').toLowerCase() as 'k' | 'm' | 'g'] ?? 1;
  const bytes = Math.round(Number(match[1]) * unit);
  if (bytes < MIB || bytes % SECTOR !== 0) throw new Error(`size must be at least 1 MiB and whole sectors, got ${text}`);
  return bytes;
}

function argValue(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

const sizeBytes = process.argv.includes('--quick') ? 64 * MIB : parseSize(argValue('--size') ?? process.env.ROTATION_BENCH_SIZE ?? '1GiB');
const cores = availableParallelism();
const workerCounts = [...new Set([1, 2, cores])].sort((a, b) => a - b);
const rounds = Number(argValue('--rounds') ?? process.env.ROTATION_BENCH_ROUNDS ?? (sizeBytes > 256 * MIB ? 2 : 3));
const backend = nativeCipherStatus().available ? 'native' : 'ts';
/** Which AES code path the cipher runs (the workers pick the same one: per process, not per thread). */
const cipherText = cipherDescription();

interface RunResult {
  name: string;
  workers: number | null;
  bytes: number;
  seconds: number;
  megabytesPerSecond: number;
}

interface LatencyResult {
  name: string;
  writes: number;
  p50Ms: number;
  p99Ms: number;
  rotationMegabytesPerSecond: number | null;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function fill(volume: Volume): Promise<void> {
  const inFlight = new Set<Promise<unknown>>();
  for (let offset = 0; offset < sizeBytes; offset += MIB) {
    const p = volume.write(offset, randomBytes(Math.min(MIB, sizeBytes - offset))).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= 4) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  await volume.flush();
}

class Bench {
  private keyVersion = 1;

  constructor(
    private readonly engine: Engine,
    private readonly volume: Volume,
    private readonly keyCrn: string,
    private readonly tasksRoot: RootDatabase,
  ) {}

  private async rotateKey(): Promise<{ from: number; to: number }> {
    // engine.hsm.rotateKey starts the engine's own task on engine.tasks; asked for a rewrap only
    // and awaited, it is over before the measured task (with this case's worker count) starts.
    for (const task of await this.engine.hsm.rotateKey(this.keyCrn, { rewrapOnly: true })) await this.engine.tasks.wait(task.id);
    const from = this.keyVersion;
    this.keyVersion = (await this.engine.hsm.getKey(this.keyCrn)).version;
    return { from, to: this.keyVersion };
  }

  /** One rotation task with `workers` threads; returns MB/s over the task. */
  async rotation(
    name: string,
    workers: number,
    options: { clusterOpsModule?: string; bandwidthBytesPerSecond?: number; rotationBatchSectorsMax?: number } = {},
  ): Promise<RunResult> {
    const versions = await this.rotateKey();
    const manager = new TaskManager({
      root: this.tasksRoot,
      openTarget: (task) => engineInternals(this.engine).reencryptTarget(task.volumeId),
      rotation: {
        workers,
        backend,
        bandwidthBytesPerSecond: options.bandwidthBytesPerSecond ?? null,
        ...(options.rotationBatchSectorsMax !== undefined ? { rotationBatchSectorsMax: options.rotationBatchSectorsMax } : {}),
      },
      ...(options.clusterOpsModule !== undefined ? { clusterOpsModule: options.clusterOpsModule } : {}),
    });
    try {
      await manager.warmUp();
      const started = performance.now();
      const task = await manager.create({ volumeId: this.volume.info().id, keyCrn: this.keyCrn, fromKeyVersion: versions.from, toKeyVersion: versions.to });
      const done = await manager.wait(task.id);
      const seconds = (performance.now() - started) / 1000;
      return { name, workers, bytes: done.bytesDone, seconds, megabytesPerSecond: done.bytesDone / seconds / 1e6 };
    } finally {
      await manager.close();
    }
  }

  /** The same clusters read and rewritten on the main thread, no cipher, same batches and commits. */
  async ceiling(): Promise<RunResult> {
    await this.rotateKey();
    const target = await engineInternals(this.engine).reencryptTarget(this.volume.info().id);
    const checkpoints = this.tasksRoot.openDB<{ checkpointClusterIndex: number }, string>({ name: 'tasks', encoding: 'msgpack' });
    const clustersPerTxn = Math.max(1, Math.floor(DEFAULT_RUNNER_OPTIONS.rotationBatchSectorsMax / target.clusterSectors)) * DEFAULT_RUNNER_OPTIONS.commitBatchesMax;
    try {
      const started = performance.now();
      await target.rewrapAll();
      const generation = await target.beginGeneration(target.writeGeneration());
      let from = 0;
      let sectors = 0;
      // Like the runner: read the next batch while up to commitsInFlightMax commits are queued.
      const commits: Promise<number>[] = [];
      for (;;) {
        const snapshots = await target.staleClusters(from, generation, clustersPerTxn);
        if (commits.length >= DEFAULT_RUNNER_OPTIONS.commitsInFlightMax) await commits.shift();
        if (snapshots.length === 0) break;
        const items = snapshots.map((expected) => ({ expected, raw: restampGeneration(expected.raw, generation) }));
        from = snapshots[snapshots.length - 1]!.clusterIndex + 1;
        const checkpoint = from;
        for (const item of items) sectors += (item.raw.length - 16) / SECTOR;
        commits.push(target.commitReencrypted(items, () => checkpoints.putSync('ceiling', { checkpointClusterIndex: checkpoint })));
      }
      await Promise.all(commits);
      await target.retireGenerations(generation);
      const seconds = (performance.now() - started) / 1000;
      const bytes = sectors * SECTOR;
      return { name: CEILING, workers: null, bytes, seconds, megabytesPerSecond: bytes / seconds / 1e6 };
    } finally {
      await target.close();
    }
  }

  /** Random 4 KiB writes, one at a time, while `during` runs (or for `idleWrites` writes). */
  async latency(name: string, during: (() => Promise<RunResult>) | null, idleWrites = 2000): Promise<LatencyResult> {
    const latencies: number[] = [];
    const sectors = sizeBytes / SECTOR;
    const data = randomBytes(SECTOR);
    let stop = false;
    const writer = (async () => {
      while (!stop && (during !== null || latencies.length < idleWrites)) {
        const offset = Math.floor(Math.random() * sectors) * SECTOR;
        const t = performance.now();
        await this.volume.write(offset, data);
        latencies.push(performance.now() - t);
      }
    })();
    let rotation: RunResult | null = null;
    if (during === null) await writer;
    try {
      if (during !== null) rotation = await during();
    } finally {
      stop = true;
      await writer;
    }
    latencies.sort((a, b) => a - b);
    return { name, writes: latencies.length, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), rotationMegabytesPerSecond: rotation?.megabytesPerSecond ?? null };
  }
}

async function main(): Promise<void> {
  const startedMs = performance.now();
  const machine = machineInfo();
  const dir = mkdtempSync(join(tmpdir(), 'bv-bench-rotation-'));
  const engine = await Engine.open({ dir, hsm: { passphrase: PASSPHRASE }, purgeIntervalMs: 0, cipher: backend });
  // In engine.tasks a checkpoint rides in the transaction of the clusters it covers and costs no
  // fsync of its own; a task environment without fsync stands in for that here.
  const tasksRoot = open({ path: join(dir, 'tasks.mdb'), maxDbs: 4, pageSize: 4096, noSync: true });
  try {
    const instance = await engine.hsm.createInstance({ name: 'bench' });
    const key = await engine.hsm.createRootKey(instance.id, { name: 'bench-root' });
    await engine.hsm.authorize({ sourceService: 'blockvault', targetInstance: instance.id, role: 'Reader' });
    const volume = await engine.createVolume({ name: 'bench', sizeBytes, sectorSize: SECTOR, diskEncryptionKeyCrn: key.crn });
    console.log(`rotation bench: ${sizeBytes / MIB} MiB volume, ${cipherText}, workers ${workerCounts.join('/')}, ${cores} cores`);
    await fill(volume);
    const bench = new Bench(engine, volume, key.crn, tasksRoot);

    // Every case runs once per round, in an order that rotates each round, and a case's MB/s is
    // its bytes over its summed time: shared machines drift, and cases in one round drift together.
    const cases: { name: string; workers: number | null; run: () => Promise<RunResult> }[] = [
      { name: CEILING, workers: null, run: () => bench.ceiling() },
      ...workerCounts.map((workers) => ({
        name: `rotation, ${workers} worker${workers > 1 ? 's' : ''}`,
        workers,
        run: () => bench.rotation('', workers),
      })),
      { name: `pipeline, no cipher, ${cores} workers`, workers: cores, run: () => bench.rotation('', cores, { clusterOpsModule: PLAIN_OPS }) },
    ];
    const totals = new Map(cases.map((c) => [c.name, { bytes: 0, seconds: 0, perRound: [] as number[] }]));
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < cases.length; i++) {
        const c = cases[(i + round) % cases.length]!;
        const r = await c.run();
        const total = totals.get(c.name)!;
        total.bytes += r.bytes;
        total.seconds += r.seconds;
        total.perRound.push(r.megabytesPerSecond);
        console.log(`  round ${round + 1}: ${c.name}: ${formatNumber(r.megabytesPerSecond)} MB/s (${formatNumber(r.seconds, 2)} s)`);
      }
    }
    const runs: (RunResult & { perRoundMegabytesPerSecond: number[] })[] = cases.map((c) => {
      const t = totals.get(c.name)!;
      return { name: c.name, workers: c.workers, bytes: t.bytes, seconds: t.seconds, megabytesPerSecond: t.bytes / t.seconds / 1e6, perRoundMegabytesPerSecond: t.perRound };
    });
    const ceilingMBps = runs.find((r) => r.name === CEILING)!.megabytesPerSecond;
    const plain = runs.find((r) => r.name.startsWith('pipeline'))!;

    const latencies: LatencyResult[] = [];
    const idle = await bench.latency('no rotation', null);
    latencies.push(idle);
    const busy = await bench.latency(`during a rotation (${cores} workers)`, () => bench.rotation('latency run', cores));
    latencies.push(busy);
    const capBytesPerSecond = Math.max(MIB, Math.round(((busy.rotationMegabytesPerSecond ?? 100) * 1e6) / 2));
    latencies.push(
      await bench.latency(`during a rotation capped at ${formatNumber(capBytesPerSecond / 1e6)} MB/s`, () =>
        bench.rotation('capped latency run', cores, { bandwidthBytesPerSecond: capBytesPerSecond }),
      ),
    );
    latencies.push(
      await bench.latency(`during a rotation capped at ${formatNumber(capBytesPerSecond / 1e6)} MB/s, 64-sector batches`, () =>
        bench.rotation('capped small-batch latency run', cores, { bandwidthBytesPerSecond: capBytesPerSecond, rotationBatchSectorsMax: 64 }),
      ),
    );
    for (const l of latencies) console.log(`  latency ${l.name}: p50 ${formatNumber(l.p50Ms, 2)} ms, p99 ${formatNumber(l.p99Ms, 2)} ms (${l.writes} writes)`);

    const allCores = runs.find((r) => r.workers === cores && r.name.startsWith('rotation'))!;
    const bestWorkers = runs.filter((r) => r.name.startsWith('rotation')).sort((a, b) => b.megabytesPerSecond - a.megabytesPerSecond)[0]!;
    const ratio = allCores.megabytesPerSecond / ceilingMBps;
    const durationS = Math.round((performance.now() - startedMs) / 1000);
    const json = {
      bench: 'rotation',
      machine,
      config: { sizeBytes, sectorSize: SECTOR, backend, cipherPath: backend === 'native' ? nativeCipherStatus().cpuPath : undefined, cores, workerCounts, rounds, runner: DEFAULT_RUNNER_OPTIONS, tasksInSeparateEnvironment: true },
      ceilingMegabytesPerSecond: ceilingMBps,
      runs: runs.map((r) => ({ ...r, ofCeiling: r.megabytesPerSecond / ceilingMBps })),
      latency: latencies,
      target: { ratioOfCeilingWithAllCores: TARGET_RATIO, measured: ratio, met: ratio >= TARGET_RATIO },
      durationS,
    };
    const md = [
      '# Rotation: re-encryption throughput and foreground latency (bench/rotation.bench.ts)',
      '',
      `${machine.date}, ${machine.cpuModel}, ${machine.logicalCpus} logical CPUs (load ${machine.loadAverage1m} at start), ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.platform}; ${cipherText}; ${durationS} s.`,
      `A fully written ${sizeBytes / MIB} MiB volume of 4096-byte sectors (engine defaults), ${rounds} rounds (case order rotating each round; MB/s = bytes over summed time). Ratios are against the ceiling measured in the same rounds: the same clusters read and rewritten through LMDB on the main thread with no cipher, same batches, commits and durability.`,
      '',
      '## Throughput',
      '',
      markdownTable(
        ['case', 'workers', 'MB/s', 'of ceiling', 'per round MB/s'],
        runs.map((r) => [
          r.name,
          r.workers === null ? '-' : String(r.workers),
          formatNumber(r.megabytesPerSecond),
          `${formatNumber((r.megabytesPerSecond / ceilingMBps) * 100, 0)}%`,
          r.perRoundMegabytesPerSecond.map((v) => formatNumber(v, 0)).join(', '),
        ]),
      ),
      '',
      `Target: rotation with all ${cores} cores at >= ${TARGET_RATIO * 100}% of the ceiling: ${formatNumber(ratio * 100, 0)}%, ${ratio >= TARGET_RATIO ? 'met' : 'MISSED'}. Best: ${bestWorkers.name} at ${formatNumber((bestWorkers.megabytesPerSecond / ceilingMBps) * 100, 0)}%.`,
      '',
      '## Foreground random 4 KiB writes (one at a time)',
      '',
      markdownTable(
        ['while', 'writes', 'p50 ms', 'p99 ms', 'rotation MB/s'],
        latencies.map((l) => [l.name, String(l.writes), formatNumber(l.p50Ms, 2), formatNumber(l.p99Ms, 2), l.rotationMegabytesPerSecond === null ? '-' : formatNumber(l.rotationMegabytesPerSecond)]),
      ),
      '',
      `Plain: ${formatNumber(plain.megabytesPerSecond)} MB/s is the worker pipeline with no cipher; the gap to the ceiling is the pipeline's own overhead, the gap between it and the ciphered runs is the cipher's share on these cores.`,
      '',
    ].join('\n');
    const paths = saveResults('rotation', json, md);
    console.log(md);
    console.log(`wrote ${paths.json} and ${paths.md}`);
  } finally {
    await engine.close();
    await tasksRoot.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
