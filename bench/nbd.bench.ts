/**
 * The NBD server through fio's nbd engine, against qemu-nbd serving a qemu LUKS image
 * (aes-256-xts-plain64, the same cipher and tweak as a volume) and qemu-nbd serving a raw file.
 *
 * Fixed setups:
 *  - blockvault: Engine.open in a temp dir (native cipher when built), one volume of SIZE bytes,
 *    4096-byte sectors, default layout, served by engine.serveNbd on a Unix socket (this process)
 *    with its default write-back acknowledgement (a write answered once applied; FLUSH and FUA
 *    make it durable); "blockvault write-through" is a second such volume exported with
 *    writeThrough (a write answered once its LMDB transaction committed), for comparison.
 *  - qemu-nbd + LUKS: `qemu-img create -f luks` (cipher aes-256 xts plain64, iter-time 200 ms so
 *    creating it is quick; it only affects opening), served by `qemu-nbd --image-opts
 *    driver=luks,...` on a Unix socket; qemu-nbd + raw: a sparse raw file. Both with qemu-nbd's
 *    defaults (cache=writeback: a write is acknowledged once in the page cache, no fsync).
 *  - Each target is filled once with 1 MiB sequential writes (untimed), then per round each case
 *    runs for SECONDS on every target, the target order rotating each round: random 4 KiB write,
 *    random 4 KiB read, sequential 1 MiB write, sequential 1 MiB read, and random 4 KiB writes
 *    each followed by a flush at iodepth 1 (a database's commits); fio --ioengine=nbd,
 *    iodepth 16, one job, time based. MB/s are fio's bandwidth, the mean over rounds.
 *  - Before each fio run both blockvault volumes are flushed and `sync` run, so no run pays for
 *    the writeback another left behind.
 *  - Around each fio run the server's CPU time is read (this process for blockvault, /proc for
 *    qemu-nbd): the second table gives CPU ms per MB and cores busy, which say whether a server
 *    is short of CPU on this machine rather than waiting.
 *
 * `npm run bench:nbd [-- --size 256MiB --seconds 3 --rounds 2]` (`-- --help` lists every option).
 * `--cases randwrite,write` runs only those fio cases (in the usual order), `--layout compact`
 * and `--cluster-bytes 16KiB` set the blockvault volumes' layout (the engine options of the same
 * names) for comparing layouts; a run with any of these says so in its header. Writes bench/results/nbd.json
 * and .md (`npm run readme:bench` copies the table into the README). Targets (issue 12): at
 * least 1.0x qemu-nbd+LUKS on random 4 KiB, at least 1.5x on sequential 1 MiB.
 *
 * Then pgbench TPS on ext4 on each export (bench/lib/nbd-pgbench.ts, blockvault against
 * qemu-nbd + LUKS), written to bench/results/nbd-pgbench.{json,md}; `--pg-size 512MiB --pg-scale
 * 8 --pg-seconds 10 --pg-rounds 4` set it up. `--only fio` or `--only pgbench` runs one part.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../src/index.js';
import { parseByteSize } from './lib/args.js';
import { createLuksImage } from './lib/luks.js';
import { runPgbenchBench } from './lib/nbd-pgbench.js';
import { cipherDescription, machineInfo } from './lib/machine.js';
import { formatNumber, markdownTable, saveResults } from './lib/report.js';

const MIB = 1024 * 1024;
const PASSPHRASE = 'nbd-bench-passphrase';
const LUKS_SECRET = 'nbd-bench-luks-secret';

function argValue(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

const SIZE = parseByteSize(argValue('--size') ?? '256MiB', '--size');
const SECONDS = Number(argValue('--seconds') ?? '3');
const ROUNDS = Number(argValue('--rounds') ?? '2');
const ONLY = argValue('--only');
if (ONLY !== undefined && ONLY !== 'fio' && ONLY !== 'pgbench') throw new Error(`--only ${ONLY}: give fio or pgbench`);
const LAYOUT_ARG = argValue('--layout');
if (LAYOUT_ARG !== undefined && LAYOUT_ARG !== 'split' && LAYOUT_ARG !== 'compact') throw new Error(`--layout ${LAYOUT_ARG}: give split or compact`);
const LAYOUT: 'split' | 'compact' | undefined = LAYOUT_ARG;
const CLUSTER_BYTES_ARG = argValue('--cluster-bytes');
const CLUSTER_BYTES = CLUSTER_BYTES_ARG === undefined ? undefined : parseByteSize(CLUSTER_BYTES_ARG, '--cluster-bytes');
const WRITE_BUFFER_ARG = argValue('--write-buffer');
const WRITE_BUFFER_BYTES = WRITE_BUFFER_ARG === undefined ? undefined : parseByteSize(WRITE_BUFFER_ARG, '--write-buffer');
const LMDB_TXN_ARG = argValue('--lmdb-txn');
const LMDB_TXN_BYTES = LMDB_TXN_ARG === undefined ? undefined : LMDB_TXN_ARG === '0' ? 0 : parseByteSize(LMDB_TXN_ARG, '--lmdb-txn');
const LMDB_FREE_ARG = argValue('--lmdb-free');
const LMDB_FREE_PAGES = LMDB_FREE_ARG === undefined ? undefined : Number(LMDB_FREE_ARG);
if (LMDB_FREE_PAGES !== undefined && !(Number.isSafeInteger(LMDB_FREE_PAGES) && LMDB_FREE_PAGES >= 1)) throw new Error(`--lmdb-free ${LMDB_FREE_ARG}: give a whole number >= 1`);
const CASES_ARG = argValue('--cases');

const HELP = `npm run bench:nbd [-- options]
  --size 256MiB        disk size per target (default 256MiB)
  --seconds 3          seconds per fio case and target (default 3)
  --rounds 2           rounds, the target order rotating (default 2)
  --only fio|pgbench   run one part (default both)
  --cases LIST         fio cases to run, comma-separated: randwrite,randread,write,read,syncwrite
                       (default all; syncwrite: 4 KiB random writes, each followed by a flush,
                       iodepth 1)
  --layout split|compact, --cluster-bytes 32KiB
                       the blockvault volumes' layout (Engine.open volumeLayout, clusterBytes;
                       default the engine's: split, 32KiB); such a run says so in its header
  --write-buffer 64MiB the engine's writeBufferBytesMax (default the engine's, 64MiB); such a run
                       says so in its header
  --lmdb-txn 8MiB      the engine's lmdbTxnBytesMax (0: no cap; default the engine's, min(8MiB,
                       write buffer / 2)); such a run says so in its header
  --lmdb-free 5000     the engine's lmdbFreePagesKeptMax (default the engine's, 5000; lmdb-js's
                       own default is 75000); such a run says so in its header
  --pg-size 512MiB --pg-scale 8 --pg-seconds 10 --pg-rounds 4   the pgbench part
Writes bench/results/nbd.{json,md} (and nbd-pgbench.*); npm run readme:bench copies them into the README.`;
if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log(HELP);
  process.exit(0);
}

interface Case {
  name: string;
  /** What `--cases` calls it: fio's rw name, or a name of its own for a case with extra fio options. */
  key: string;
  rw: string;
  bs: string;
  /** fio options after the common ones (a later option wins in fio). */
  fioArgs: string[];
  target: { ratio: number; against: string } | null;
}

const ALL_CASES: Case[] = [
  { name: 'random write 4 KiB', key: 'randwrite', rw: 'randwrite', bs: '4k', fioArgs: [], target: { ratio: 1.0, against: 'qemu-nbd + LUKS' } },
  { name: 'random read 4 KiB', key: 'randread', rw: 'randread', bs: '4k', fioArgs: [], target: { ratio: 1.0, against: 'qemu-nbd + LUKS' } },
  { name: 'sequential write 1 MiB', key: 'write', rw: 'write', bs: '1M', fioArgs: [], target: { ratio: 1.5, against: 'qemu-nbd + LUKS' } },
  { name: 'sequential read 1 MiB', key: 'read', rw: 'read', bs: '1M', fioArgs: [], target: { ratio: 1.5, against: 'qemu-nbd + LUKS' } },
  // What a database's commit feels like: each 4 KiB write followed by a FLUSH, one at a time
  // (fio --fsync=1 sends NBD_CMD_FLUSH through the nbd engine). No target in the issue.
  { name: 'random write 4 KiB + flush, iodepth 1', key: 'syncwrite', rw: 'randwrite', bs: '4k', fioArgs: ['--fsync=1', '--iodepth=1'], target: null },
];

/** The cases `--cases` picks by fio's rw name, in the usual order. */
function pickCases(list: string | undefined): Case[] {
  if (list === undefined) return ALL_CASES;
  const wanted = list.split(',').map((key) => key.trim());
  const unknown = wanted.filter((key) => !ALL_CASES.some((c) => c.key === key));
  if (unknown.length > 0 || wanted.length === 0) throw new Error(`--cases ${list}: give some of ${ALL_CASES.map((c) => c.key).join(',')}`);
  return ALL_CASES.filter((c) => wanted.includes(c.key));
}
const CASES = pickCases(CASES_ARG);

function run(command: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function runOk(command: string, args: string[]): Promise<string> {
  const r = await run(command, args);
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
  return r.stdout;
}

/** fio's nbd engine on `uri`: MB/s (10^6 bytes per second) and the run's wall time. */
async function fio(uri: string, rw: string, bs: string, timed: boolean, extraArgs: string[] = []): Promise<{ mbps: number; wallMs: number }> {
  const args = ['--name=bench', '--ioengine=nbd', `--uri=${uri}`, `--rw=${rw}`, `--bs=${bs}`, `--size=${SIZE}`, '--iodepth=16', '--randseed=7', '--output-format=json'];
  if (timed) args.push('--time_based', `--runtime=${SECONDS}`, '--ramp_time=0.5');
  args.push(...extraArgs);
  const started = performance.now();
  const out = await runOk('fio', args);
  const wallMs = performance.now() - started;
  const job = (JSON.parse(out.slice(out.indexOf('{'))) as { jobs: Array<{ read: { bw_bytes: number }; write: { bw_bytes: number } }> }).jobs[0]!;
  return { mbps: (rw.includes('read') ? job.read.bw_bytes : job.write.bw_bytes) / 1e6, wallMs };
}

/**
 * CPU time (user + system, all threads) a server has used so far, in ms: this process for
 * blockvault (the engine, its LMDB write threads and libuv's pool; fio is a child and not counted),
 * /proc/PID/stat for qemu-nbd (clock ticks, 100 per second on Linux).
 */
function cpuMsOf(pid: number | null): number {
  if (pid === null) {
    const usage = process.cpuUsage();
    return (usage.user + usage.system) / 1000;
  }
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * (1000 / CLOCK_TICKS_PER_S);
}
const CLOCK_TICKS_PER_S = 100;

async function startQemuNbd(socketPath: string, args: string[]): Promise<{ pid: number; stop: () => Promise<void> }> {
  const child = spawn('qemu-nbd', ['--persistent', '--shared=4', '--socket', socketPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const deadline = Date.now() + 10_000;
  while (!existsSync(socketPath)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`qemu-nbd did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    pid: child.pid!,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function main(): Promise<void> {
  for (const tool of ['fio', 'qemu-img', 'qemu-nbd']) {
    if ((await run('sh', ['-c', `command -v ${tool}`])).code !== 0) throw new Error(`${tool} is missing: apt-get install ${tool === 'fio' ? 'fio' : 'qemu-utils'}`);
  }
  const machine = machineInfo();
  const dir = mkdtempSync(join(tmpdir(), 'blockvault-nbd-bench-'));
  const stops: Array<() => Promise<void>> = [];
  const started = Date.now();
  try {
    const engine = await Engine.open({
      dir: join(dir, 'engine'),
      hsm: { passphrase: PASSPHRASE },
      purgeIntervalMs: 0,
      ...(LAYOUT === undefined ? {} : { volumeLayout: LAYOUT }),
      ...(CLUSTER_BYTES === undefined ? {} : { clusterBytes: CLUSTER_BYTES }),
      ...(WRITE_BUFFER_BYTES === undefined ? {} : { writeBufferBytesMax: WRITE_BUFFER_BYTES }),
      ...(LMDB_TXN_BYTES === undefined ? {} : { lmdbTxnBytesMax: LMDB_TXN_BYTES }),
      ...(LMDB_FREE_PAGES === undefined ? {} : { lmdbFreePagesKeptMax: LMDB_FREE_PAGES }),
    });
    stops.push(() => engine.close());
    for (const name of ['bench', 'bench-wt']) await (await engine.createVolume({ name, sizeBytes: SIZE, sectorSize: 4096 })).close();
    const served = await engine.serveNbd({ socketPath: join(dir, 'bv.sock') }, [{ volume: 'bench' }, { volume: 'bench-wt', writeThrough: true }]);

    const luks = join(dir, 'disk.luks');
    const secret = `secret,id=sec0,data=${LUKS_SECRET}`;
    await createLuksImage(luks, secret, SIZE);
    const luksServer = await startQemuNbd(join(dir, 'luks.sock'), ['--object', secret, '--export-name=luks', '--image-opts', `driver=luks,key-secret=sec0,file.driver=file,file.filename=${luks}`]);
    stops.push(luksServer.stop);
    const raw = join(dir, 'disk.raw');
    await runOk('qemu-img', ['create', '-q', '-f', 'raw', raw, String(SIZE)]);
    const rawServer = await startQemuNbd(join(dir, 'raw.sock'), ['--export-name=raw', '-f', 'raw', raw]);
    stops.push(rawServer.stop);

    // pid: where the server's CPU time is read (null: this process).
    const targets: Array<{ name: string; uri: string; pid: number | null }> = [
      { name: 'blockvault', uri: served.uri, pid: null },
      { name: 'blockvault write-through', uri: served.exports[1]!.uri, pid: null },
      { name: 'qemu-nbd + LUKS', uri: `nbd+unix:///luks?socket=${join(dir, 'luks.sock')}`, pid: luksServer.pid },
      { name: 'qemu-nbd + raw', uri: `nbd+unix:///raw?socket=${join(dir, 'raw.sock')}`, pid: rawServer.pid },
    ];
    for (const t of targets) await fio(t.uri, 'write', '1M', false);

    // Before every timed run, nothing left over from the run before: blockvault's write-back
    // commits (a flush on each volume waits for them) and every server's dirty pages (`sync`;
    // qemu-nbd's writes stay in the page cache, up to gigabytes after a sequential run), so that
    // no run pays for writeback or commits another target left behind.
    const settleHandles = [await engine.openVolume('bench'), await engine.openVolume('bench-wt')];
    stops.push(async () => {
      for (const h of settleHandles) await h.close();
    });
    const settle = async (): Promise<void> => {
      for (const h of settleHandles) await h.flush();
      await runOk('sync', []);
    };

    const perRound: Record<string, Record<string, number[]>> = {};
    // Per case and target: the server's CPU ms per MB moved, and its CPU time over wall time
    // (cores busy). Both over the whole fio run, its 0.5 s ramp and start included (the MB are
    // fio's measured rate times that wall time), so they compare targets, not absolute costs.
    const cpuPerMb: Record<string, Record<string, number[]>> = {};
    const coresBusy: Record<string, Record<string, number[]>> = {};
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of CASES) {
        for (let i = 0; i < targets.length; i++) {
          const t = targets[(i + round) % targets.length]!;
          await settle();
          const cpuBeforeMs = cpuMsOf(t.pid);
          const { mbps, wallMs } = await fio(t.uri, c.rw, c.bs, true, c.fioArgs);
          const cpuMs = cpuMsOf(t.pid) - cpuBeforeMs;
          ((perRound[c.name] ??= {})[t.name] ??= []).push(mbps);
          ((cpuPerMb[c.name] ??= {})[t.name] ??= []).push(cpuMs / ((mbps * wallMs) / 1000));
          ((coresBusy[c.name] ??= {})[t.name] ??= []).push(cpuMs / wallMs);
          process.stderr.write(`round ${round + 1}/${ROUNDS} ${c.name} ${t.name}: ${mbps.toFixed(1)} MB/s, server ${(cpuMs / wallMs).toFixed(2)} cores\n`);
        }
      }
    }
    await served.close();

    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const rows = CASES.map((c) => {
      const m = Object.fromEntries(targets.map((t) => [t.name, mean(perRound[c.name]![t.name]!)]));
      const ratio = m['blockvault']! / m['qemu-nbd + LUKS']!;
      const met = c.target === null ? '-' : ratio >= c.target.ratio ? 'met' : 'MISSED';
      const cpu = (table: Record<string, Record<string, number[]>>) => Object.fromEntries(targets.map((t) => [t.name, mean(table[c.name]![t.name]!)]));
      return {
        case: c.name,
        mbps: m,
        perRound: perRound[c.name],
        serverCpuMsPerMb: cpu(cpuPerMb),
        serverCoresBusy: cpu(coresBusy),
        ratioVsLuks: ratio,
        ratioVsRaw: m['blockvault']! / m['qemu-nbd + raw']!,
        target: c.target?.ratio ?? null,
        met,
      };
    });
    const seconds = Math.round((Date.now() - started) / 1000);
    const layoutNote =
      LAYOUT === undefined && CLUSTER_BYTES === undefined
        ? 'blockvault volumes with the default layout (split, 32 KiB clusters)'
        : `blockvault volumes with layout ${LAYOUT ?? 'split'} and ${(CLUSTER_BYTES ?? 32 * 1024) / 1024} KiB clusters (NOT the default; --layout/--cluster-bytes)`;
    const bufferNote =
      (WRITE_BUFFER_BYTES === undefined ? '' : ` Engine write buffer ${WRITE_BUFFER_BYTES / MIB} MiB (NOT the default; --write-buffer).`) +
      (LMDB_TXN_BYTES === undefined ? '' : ` LMDB transaction cap ${LMDB_TXN_BYTES === 0 ? 'off' : `${LMDB_TXN_BYTES / MIB} MiB`} (NOT the default; --lmdb-txn).`) +
      (LMDB_FREE_PAGES === undefined ? '' : ` LMDB keeps at most ${LMDB_FREE_PAGES} free pages in memory (NOT the default; --lmdb-free).`);
    const md = [
      '# NBD: fio through the nbd engine (bench/nbd.bench.ts)',
      '',
      `${machine.date}, ${machine.cpuModel}, ${machine.logicalCpus} logical CPUs (load ${machine.loadAverage1m} at start), ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.platform}; ${cipherDescription()}; ${seconds} s.`,
      `A ${SIZE / MIB} MiB disk per target, filled once; fio --ioengine=nbd, iodepth 16 (the flush case: iodepth 1, a FLUSH after every write), ${SECONDS} s per case, ${ROUNDS} rounds (target order rotating), each after a flush of the blockvault volumes and a sync; MB/s is the mean over rounds; ${layoutNote}.${bufferNote}${CASES.length === ALL_CASES.length ? '' : ` Only some cases (--cases ${CASES_ARG}).`}`,
      'qemu-nbd runs with its defaults (cache=writeback: writes acknowledged from the page cache, no fsync); blockvault answers a write once applied (write-back: FLUSH and FUA make it durable), blockvault write-through once its LMDB transaction committed.',
      '',
      markdownTable(
        ['case', 'blockvault MB/s', 'write-through MB/s', 'qemu-nbd + LUKS MB/s', 'qemu-nbd + raw MB/s', 'vs LUKS', 'vs raw', 'target vs LUKS', ''],
        rows.map((r) => [
          r.case,
          formatNumber(r.mbps['blockvault']),
          formatNumber(r.mbps['blockvault write-through']),
          formatNumber(r.mbps['qemu-nbd + LUKS']),
          formatNumber(r.mbps['qemu-nbd + raw']),
          `${r.ratioVsLuks.toFixed(2)}x`,
          `${r.ratioVsRaw.toFixed(2)}x`,
          r.target === null ? '-' : `>= ${r.target.toFixed(1)}x`,
          r.met,
        ]),
      ),
      '',
      `Server CPU in the same runs (user + system, all threads; blockvault is this process, fio not counted): ms per MB written or read, and cores busy (CPU time over the run's wall time) on this ${machine.logicalCpus}-CPU machine, which fio and the kernel's writeback share.`,
      '',
      markdownTable(
        ['case', 'blockvault CPU ms/MB', 'cores', 'qemu-nbd + LUKS CPU ms/MB', 'cores', 'qemu-nbd + raw CPU ms/MB', 'cores'],
        rows.map((r) => [
          r.case,
          r.serverCpuMsPerMb['blockvault']!.toFixed(2),
          r.serverCoresBusy['blockvault']!.toFixed(2),
          r.serverCpuMsPerMb['qemu-nbd + LUKS']!.toFixed(2),
          r.serverCoresBusy['qemu-nbd + LUKS']!.toFixed(2),
          r.serverCpuMsPerMb['qemu-nbd + raw']!.toFixed(2),
          r.serverCoresBusy['qemu-nbd + raw']!.toFixed(2),
        ]),
      ),
    ].join('\n');
    const paths = saveResults('nbd', { machine, sizeBytes: SIZE, seconds: SECONDS, rounds: ROUNDS, layout: LAYOUT ?? 'split', clusterBytes: CLUSTER_BYTES ?? 32 * 1024, writeBufferBytes: WRITE_BUFFER_BYTES ?? null, lmdbTxnBytes: LMDB_TXN_BYTES ?? null, lmdbFreePagesKept: LMDB_FREE_PAGES ?? null, rows }, md);
    console.log(md);
    console.log(`\nwrote ${paths.json} and ${paths.md}`);
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (ONLY !== 'pgbench') await main();
if (ONLY !== 'fio') {
  await runPgbenchBench({
    sizeBytes: parseByteSize(argValue('--pg-size') ?? '512MiB', '--pg-size'),
    scale: Number(argValue('--pg-scale') ?? '8'),
    seconds: Number(argValue('--pg-seconds') ?? '10'),
    rounds: Number(argValue('--pg-rounds') ?? '4'),
  });
}
