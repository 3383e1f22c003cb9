/**
 * How fast a forced key delete locks its volumes (issue 13's target: under 10 ms at p99), over
 * many seeded runs of the cryptoshred stress harness (src/shred/stress.ts): volumes up to 1 GiB
 * under writers and readers, with and without a rotation re-encrypting them at the moment of the
 * delete. Each run also checks the harness's must-be-zero counters (no data after the lock, no
 * plaintext on disk, nothing readable after a restart); a run that breaks one fails the bench.
 *
 *   npm run bench:shred-lock -- [--seeds 10] [--seconds 1.5] [--sizes 64MiB,1GiB]
 *
 * "lock effective" is measured inside the process from the deleteKey call until ShredLock has
 * marked every volume locked and wiped its keys (performance.now, the harness's ledger); after
 * that instant no read or write that starts can succeed. Writes bench/results/shred-lock.{json,md}.
 */
import { parseArgs } from 'node:util';
import { runShredStress, type ShredStressReport } from '../src/shred/stress.js';
import { parseByteSize } from './lib/args.js';
import { machineInfo } from './lib/machine.js';
import { formatNumber, markdownTable, saveResults } from './lib/report.js';

const MIB = 1024 * 1024;

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

interface Row {
  sizeBytes: number;
  rotate: boolean;
  runs: number;
  lockEffectiveMs: { p50: number; p99: number; max: number };
  deleteKeyMs: { p50: number; p99: number; max: number };
  tasksRunningAtDelete: number;
  allOk: boolean;
}

function stats(values: number[]): { p50: number; p99: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[sorted.length - 1]! };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { seeds: { type: 'string' }, seconds: { type: 'string' }, sizes: { type: 'string' } },
    strict: true,
  });
  const seeds = Number(values.seeds ?? '10');
  const durationMs = Math.round(Number(values.seconds ?? '1.5') * 1000);
  if (!Number.isSafeInteger(seeds) || seeds < 1) throw new Error(`--seeds: a whole number >= 1, got ${values.seeds}`);
  if (!(durationMs >= 200)) throw new Error(`--seconds: at least 0.2, got ${values.seconds}`);
  const sizes = (values.sizes ?? '64MiB,1GiB').split(',').map((part) => parseByteSize(part, '--sizes'));

  const reports: ShredStressReport[] = [];
  const rows: Row[] = [];
  for (const sizeBytes of sizes) {
    for (const rotate of [false, true]) {
      const group: ShredStressReport[] = [];
      for (let seed = 1; seed <= seeds; seed++) {
        const report = await runShredStress({ seed, rotate, sizeBytes, durationMs, volumes: 4, writers: 8, readers: 8 });
        group.push(report);
        process.stderr.write(
          `size ${sizeBytes / MIB} MiB rotate ${rotate ? 'yes' : 'no'} seed ${seed}: lock ${report.lockEffectiveMs.toFixed(2)} ms` +
            `${report.lockObserved ? '' : ' (not observed)'}, deleteKey ${report.deleteKeyMs.toFixed(1)} ms, ${report.ok ? 'ok' : `FAILED ${report.violations.join(', ')}`}\n`,
        );
      }
      reports.push(...group);
      rows.push({
        sizeBytes,
        rotate,
        runs: group.length,
        lockEffectiveMs: stats(group.map((r) => r.lockEffectiveMs)),
        deleteKeyMs: stats(group.map((r) => r.deleteKeyMs)),
        tasksRunningAtDelete: group.reduce((n, r) => n + r.rotation.runningAtDelete, 0),
        allOk: group.every((r) => r.ok && r.lockObserved),
      });
    }
  }
  const all = stats(reports.map((r) => r.lockEffectiveMs));
  const header = ['volume size', 'rotation', 'runs', 'lock p50 ms', 'lock p99 ms', 'lock max ms', 'deleteKey p50 ms', 'deleteKey max ms', 'tasks running at delete', 'all checks ok'];
  const table = markdownTable(
    header,
    rows.map((r) => [
      `${r.sizeBytes / MIB} MiB`,
      r.rotate ? 'yes' : 'no',
      String(r.runs),
      formatNumber(r.lockEffectiveMs.p50, 2),
      formatNumber(r.lockEffectiveMs.p99, 2),
      formatNumber(r.lockEffectiveMs.max, 2),
      formatNumber(r.deleteKeyMs.p50, 1),
      formatNumber(r.deleteKeyMs.max, 1),
      String(r.tasksRunningAtDelete),
      r.allOk ? 'yes' : 'NO',
    ]),
  );
  const markdown = [
    '# Cryptoshred lock latency (`npm run bench:shred-lock`)',
    '',
    `Setup: per run 4 volumes of the given size on one imported root key, 8 writers and 8 readers, ${durationMs} ms, ` +
      `the key force-deleted at a seeded moment; seeds 1-${seeds} per row; with rotation, re-encryption tasks are running at the delete. ` +
      '"lock": from the deleteKey call until every volume is locked and its keys wiped (no read or write that starts later succeeds). ' +
      '"deleteKey": until the call returned (key material destroyed and fsynced, locks persisted, rotation tasks stopped).',
    '',
    table,
    '',
    `Over all ${reports.length} runs: lock p50 ${all.p50.toFixed(2)} ms, p99 ${all.p99.toFixed(2)} ms, max ${all.max.toFixed(2)} ms (target: p99 under 10 ms).`,
    '',
    `Machine: ${JSON.stringify(machineInfo())}`,
    '',
  ].join('\n');
  process.stdout.write(`${table}\n\n${markdown.split('\n').at(-4)}\n`);
  saveResults('shred-lock', { machine: machineInfo(), durationMs, seeds, rows, overall: all }, markdown);
  if (!rows.every((r) => r.allOk)) {
    process.stderr.write('shred-lock: a run broke a must-be-zero check or its lock was not observed (see above)\n');
    process.exitCode = 1;
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`shred-lock: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
