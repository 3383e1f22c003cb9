/**
 * The pgbench part of `npm run bench:nbd`: PostgreSQL's pgbench TPS on a blockvault volume
 * against the same on a qemu-nbd + qemu LUKS (aes-256-xts-plain64) disk, the same chain under
 * PostgreSQL on both sides.
 *
 * Fixed setups (one disk of SIZE per target, side by side for the whole run):
 *  - blockvault: a separate process (test/nbd/helpers/engine-server.child.ts) opens an Engine in
 *    a temp dir (native cipher when built), creates a volume of 4096-byte sectors under a root
 *    key created in its HSM and serves it on a Unix socket. It must not be this process: the
 *    kernel's FUSE requests for the mount would wait on this event loop.
 *  - qemu-nbd + LUKS: `qemu-img create -f luks` (aes-256 xts plain64, iter-time 200 ms) served by
 *    qemu-nbd on a Unix socket with its defaults (cache=writeback: writes acknowledged from the
 *    page cache; a FLUSH is an fdatasync of the image file).
 *  - Each: nbdfuse shows the export as a file, losetup, mkfs.ext4 (4 KiB blocks, inode tables
 *    and journal initialized at once, so no ext4lazyinit writes run during the rounds), mount,
 *    initdb (run as the OS user postgres; shared_buffers 32MB, fsync on, synchronous_commit on),
 *    `pgbench -i -s SCALE`. Then per round, the target order rotating: CHECKPOINT and sync (so no
 *    run pays for the writeback of the one before), then `pgbench -c 4 -j 2 -T SECONDS
 *    --no-vacuum` (TPC-B-like) on each target. TPS is pgbench's "tps (without initial
 *    connection time)"; the mean over rounds is compared.
 * Needs root, /dev/fuse, loop devices, nbdfuse, qemu-img, qemu-nbd, PostgreSQL and the OS user
 * postgres; writes bench/results/nbd-pgbench.{json,md}.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEngineServer } from '../../test/nbd/helpers/engine-server.js';
import { attachLoop, Cleanups, fsChainMissing, mkfsExt4, mountExt4 } from '../../test/nbd/helpers/fs-chain.js';
import { cluster, findPostgresBin, postgresUser, type Cluster, type PgbenchResult } from '../../test/nbd/helpers/postgres.js';
import { runOk } from '../../test/nbd/helpers/processes.js';
import { createLuksImage } from './luks.js';
import { cipherDescription, machineInfo } from './machine.js';
import { formatNumber, markdownTable, saveResults } from './report.js';

const MIB = 1024 * 1024;
const LUKS_SECRET = 'nbd-pgbench-luks-secret';

export interface PgbenchBenchOptions {
  sizeBytes: number;
  scale: number;
  seconds: number;
  rounds: number;
}

interface Target {
  name: string;
  pg: Cluster;
}

/** Latency average in ms from pgbench's output; NaN when absent. */
function latencyMs(result: PgbenchResult): number {
  const m = /^latency average = ([\d.]+) ms/m.exec(result.run.stdout);
  return m ? Number(m[1]) : NaN;
}

async function startQemuNbd(cleanups: Cleanups, socketPath: string, args: string[]): Promise<void> {
  const child = spawn('qemu-nbd', ['--persistent', '--shared=4', '--socket', socketPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  cleanups.push(`stop qemu-nbd (pid ${child.pid})`, async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const deadline = Date.now() + 10_000;
  while (!existsSync(socketPath)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`qemu-nbd did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function checkPrerequisites(): { bin: string; user: { uid: number; gid: number } } {
  const problems: string[] = [];
  for (const tool of ['nbdfuse', 'qemu-img', 'qemu-nbd', 'losetup', 'mkfs.ext4', 'pgrep']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) problems.push(`${tool} is missing`);
  }
  const bin = findPostgresBin();
  if (bin === null) problems.push('PostgreSQL (initdb, pg_ctl, postgres, pgbench, psql) is missing: apt-get install postgresql');
  const user = postgresUser();
  if (user === null) problems.push('no OS user postgres (apt-get install postgresql creates it)');
  problems.push(...fsChainMissing());
  if (problems.length > 0) throw new Error(`bench:nbd pgbench: ${problems.join('; ')} (.ci/apt.d/nbd.txt and postgres.txt list the packages)`);
  return { bin: bin!, user: user! };
}

export async function runPgbenchBench(options: PgbenchBenchOptions): Promise<void> {
  const { bin, user } = checkPrerequisites();
  const machine = machineInfo();
  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'blockvault-nbd-pgbench-'));
  chmodSync(dir, 0o755);
  const cleanups = new Cleanups();
  try {
    const server = await startEngineServer({ engineDir: join(dir, 'engine'), socketPath: join(dir, 'bv.sock'), sizeBytes: options.sizeBytes });
    cleanups.push(`stop the engine server (pid ${server.child.pid})`, () => server.stop());
    const luks = join(dir, 'disk.luks');
    const secret = `secret,id=sec0,data=${LUKS_SECRET}`;
    await createLuksImage(luks, secret, options.sizeBytes);
    await startQemuNbd(cleanups, join(dir, 'luks.sock'), ['--object', secret, '--export-name=luks', '--image-opts', `driver=luks,key-secret=sec0,file.driver=file,file.filename=${luks}`]);

    const specs = [
      { name: 'blockvault', slug: 'bv', uri: server.uri },
      { name: 'qemu-nbd + LUKS', slug: 'luks', uri: `nbd+unix:///luks?socket=${join(dir, 'luks.sock')}` },
    ];
    const targets: Target[] = [];
    for (const spec of specs) {
      const loop = await attachLoop(cleanups, spec.uri, join(dir, `fuse-${spec.slug}`));
      await mkfsExt4(loop, { eager: true });
      const mountDir = join(dir, `mnt-${spec.slug}`);
      await mountExt4(cleanups, loop, mountDir);
      const pg = cluster(bin, user, { dataDir: join(mountDir, 'pgdata'), socketDir: join(dir, `sock-${spec.slug}`), logFile: join(dir, `log-${spec.slug}`, 'postgres.log') });
      await pg.initdb();
      cleanups.push(`stop PostgreSQL on ${spec.name}`, () => pg.kill());
      await pg.start();
      const init = await pg.pgbench(['--initialize', '--quiet', `--scale=${options.scale}`], 300_000);
      if (init.run.code !== 0) throw new Error(`pgbench -i on ${spec.name}: ${init.run.stderr}`);
      targets.push({ name: spec.name, pg });
      process.stderr.write(`pgbench: ${spec.name} initialized (scale ${options.scale})\n`);
    }

    const perRound: Record<string, Array<{ tps: number; latencyMs: number; transactions: number }>> = {};
    for (let round = 0; round < options.rounds; round++) {
      for (let i = 0; i < targets.length; i++) {
        const t = targets[(i + round) % targets.length]!;
        // Each run starts clean: what earlier runs left dirty (PostgreSQL's buffers, ext4's page
        // cache) is written out now, not during this run, where it would be billed to it.
        await t.pg.sql('CHECKPOINT');
        await runOk('sync', [], { timeoutMs: 120_000 });
        const r = await t.pg.pgbench(['--client=4', '--jobs=2', '--no-vacuum', `--time=${options.seconds}`], (options.seconds + 60) * 1000);
        if (r.run.code !== 0 || r.failed !== 0 || !(r.tps > 0)) throw new Error(`pgbench on ${t.name} failed (exit ${r.run.code}, ${r.failed} failed):\n${r.run.stdout}${r.run.stderr}`);
        (perRound[t.name] ??= []).push({ tps: r.tps, latencyMs: latencyMs(r), transactions: r.transactions });
        process.stderr.write(`pgbench round ${round + 1}/${options.rounds} ${t.name}: ${r.tps.toFixed(1)} tps, ${latencyMs(r).toFixed(2)} ms\n`);
      }
    }
    for (const t of targets) await t.pg.stop('fast');

    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const tps = Object.fromEntries(targets.map((t) => [t.name, mean(perRound[t.name]!.map((r) => r.tps))]));
    const latency = Object.fromEntries(targets.map((t) => [t.name, mean(perRound[t.name]!.map((r) => r.latencyMs))]));
    const ratio = tps['blockvault']! / tps['qemu-nbd + LUKS']!;
    const seconds = Math.round((Date.now() - started) / 1000);
    const md = [
      '# NBD: pgbench on ext4 on an export (bench/lib/nbd-pgbench.ts)',
      '',
      `${machine.date}, ${machine.cpuModel}, ${machine.logicalCpus} logical CPUs (load ${machine.loadAverage1m} at start), ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.platform}; ${cipherDescription()}; ${seconds} s.`,
      `Each target: a ${options.sizeBytes / MIB} MiB disk, nbdfuse, loop device, ext4 (no lazy init), PostgreSQL (shared_buffers 32MB, fsync and synchronous_commit on), pgbench -i -s ${options.scale}; then per run CHECKPOINT, sync and pgbench -c 4 -j 2 -T ${options.seconds} --no-vacuum (TPC-B-like), ${options.rounds} rounds with the target order rotating; TPS is the mean over rounds.`,
      'The blockvault server runs in its own process; qemu-nbd with its defaults (cache=writeback; a flush is an fdatasync of the image file), blockvault acknowledges a write once applied (write-back; a flush waits for the commits and an LMDB sync).',
      '',
      markdownTable(
        ['target', 'TPS', 'latency avg ms', 'TPS per round', 'vs qemu-nbd + LUKS'],
        targets.map((t) => [
          t.name,
          formatNumber(tps[t.name]),
          formatNumber(latency[t.name], 2),
          perRound[t.name]!.map((r) => r.tps.toFixed(0)).join(', '),
          t.name === 'blockvault' ? `${ratio.toFixed(2)}x` : '1.00x',
        ]),
      ),
    ].join('\n');
    const paths = saveResults('nbd-pgbench', { machine, ...options, tps, latencyMs: latency, perRound, ratioVsLuks: ratio }, md);
    console.log(md);
    console.log(`\nwrote ${paths.json} and ${paths.md}`);
  } finally {
    await cleanups.run();
    if (cleanups.errors.length > 0) process.stderr.write(`pgbench cleanup: ${cleanups.errors.join('; ')}\n`);
    rmSync(dir, { recursive: true, force: true });
  }
}

