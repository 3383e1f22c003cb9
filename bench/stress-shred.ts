/**
 * The cryptoshredding stress run (issue 6) as long and as hard as asked: writers and readers
 * hammer several volumes on one root key, optionally with rotations re-encrypting them, and at a
 * seeded moment the key is force-deleted. Every run's must-be-zero counters (data after the lock,
 * hangs, unhandled errors, plaintext or key material on disk, data readable after a restart) must
 * be zero; the exit status is 1 otherwise. The harness is src/shred/stress.ts (runShredStress),
 * shared with `blockvault stress shred` and the test suite.
 *
 *   npm run stress:shred -- [--volumes 4] [--writers 8] [--readers 8] [--seconds 10] [--seed 1]
 *                           [--runs 1] [--rotate | --both] [--size 16MiB] [--cipher native|ts]
 *                           [--dir path] [--json] [--no-save]
 *
 * --runs N runs seeds seed..seed+N-1; --both runs each seed without and with rotation. Writes
 * bench/results/stress-shred.json and .md (unless --no-save); --json prints the reports instead of
 * the table.
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { MUST_BE_ZERO, runShredStress, type ShredStressOptions, type ShredStressReport } from '../src/shred/stress.js';
import { parseByteSize } from './lib/args.js';
import { machineInfo } from './lib/machine.js';
import { markdownTable, saveResults } from './lib/report.js';

export { runShredStress, MUST_BE_ZERO } from '../src/shred/stress.js';

interface Plan {
  runs: { seed: number; rotate: boolean }[];
  base: ShredStressOptions;
  dir: string | undefined;
  json: boolean;
  save: boolean;
}

function positiveInt(text: string | undefined, name: string, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${name}: expected a whole number, got ${JSON.stringify(text)}`);
  return value;
}

function plan(argv: string[]): Plan {
  const { values } = parseArgs({
    args: argv,
    options: {
      volumes: { type: 'string' },
      writers: { type: 'string' },
      readers: { type: 'string' },
      seconds: { type: 'string' },
      seed: { type: 'string' },
      runs: { type: 'string' },
      rotate: { type: 'boolean' },
      both: { type: 'boolean' },
      size: { type: 'string' },
      cipher: { type: 'string' },
      dir: { type: 'string' },
      json: { type: 'boolean' },
      'no-save': { type: 'boolean' },
    },
    strict: true,
  });
  const seed = positiveInt(values.seed, '--seed', 1);
  const runCount = Math.max(1, positiveInt(values.runs, '--runs', 1));
  const seconds = Number(values.seconds ?? '10');
  if (!(seconds > 0)) throw new Error(`--seconds: expected a positive number, got ${JSON.stringify(values.seconds)}`);
  if (values.cipher !== undefined && values.cipher !== 'native' && values.cipher !== 'ts') throw new Error(`--cipher: native or ts, got ${values.cipher}`);
  const runs: Plan['runs'] = [];
  for (let i = 0; i < runCount; i++) {
    if (values.both === true) runs.push({ seed: seed + i, rotate: false }, { seed: seed + i, rotate: true });
    else runs.push({ seed: seed + i, rotate: values.rotate === true });
  }
  return {
    runs,
    base: {
      volumes: positiveInt(values.volumes, '--volumes', 4),
      writers: positiveInt(values.writers, '--writers', 8),
      readers: positiveInt(values.readers, '--readers', 8),
      durationMs: Math.round(seconds * 1000),
      sizeBytes: values.size === undefined ? 16 * 1024 * 1024 : parseByteSize(values.size, '--size'),
      ...(values.cipher === undefined ? {} : { cipher: values.cipher as 'native' | 'ts' }),
    },
    dir: values.dir,
    json: values.json === true,
    save: values['no-save'] !== true,
  };
}

const HEADER = [
  'seed',
  'rotate',
  'writes acked before lock',
  'writes refused after',
  'reads with data before lock',
  'reads refused after',
  'data after lock',
  'lock effective ms',
  'deleteKey ms',
  'tasks running / stopped',
  'hangs',
  'unhandled',
  'plaintext hits',
  'ok',
];

function row(r: ShredStressReport): string[] {
  return [
    String(r.seed),
    r.rotate ? 'yes' : 'no',
    String(r.writesAcknowledgedBeforeLock),
    String(r.writesRejectedAfterLock),
    String(r.readsReturnedDataBeforeLock),
    String(r.readsRejectedAfterLock),
    String(r.readsReturningDataAfterLock + r.readsStartedAfterLockReturningData + r.writesAcknowledgedAfterLock + r.writesStartedAfterLockAcknowledged),
    r.lockEffectiveMs.toFixed(1),
    r.deleteKeyMs.toFixed(1),
    r.rotate ? `${r.rotation.runningAtDelete} / ${r.rotation.stoppedByShred}` : '-',
    String(r.hangs),
    String(r.unhandledErrors),
    String(r.plaintextHits + r.keyMaterialHits),
    r.ok ? 'yes' : `NO (${r.violations.join(', ')})`,
  ];
}

function markdown(p: Plan, reports: ShredStressReport[]): string {
  const b = p.base;
  return [
    '# Cryptoshredding stress (`npm run stress:shred`)',
    '',
    `Setup: ${b.volumes} volumes of ${b.sizeBytes} bytes on one imported root key (plus one soft-deleted and one opened/closed in a loop), ` +
      `${b.writers} writers and ${b.readers} readers (seeded offsets and sizes, 16 B to 128 KiB, 16-byte markers), ` +
      `${b.durationMs} ms per run, the key force-deleted at a seeded moment between 30% and 60% of it; with rotation, ` +
      'rotations (re-encryption, bandwidth-capped) are kept running until the delete.',
    '',
    '"data after lock": reads that resolved with data after the lock settled or started after it took effect, and the same for acknowledged writes (must be 0). ' +
      '"lock effective ms": from the deleteKey call until every volume was locked and its keys wiped. ' +
      '"plaintext hits": markers of the run and root-key material found in any file of the engine directory, scanned with the engine closed (must be 0). ' +
      'Every run also reopens the engine and tries read, write, restore, re-encryption target and rotation on every volume (all refused).',
    '',
    markdownTable(HEADER, reports.map(row)),
    '',
    `Machine: ${JSON.stringify(machineInfo())}`,
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const p = plan(process.argv.slice(2));
  const reports: ShredStressReport[] = [];
  for (const [i, run] of p.runs.entries()) {
    const report = await runShredStress({
      ...p.base,
      ...run,
      // One engine directory per run inside --dir, kept for inspection.
      ...(p.dir !== undefined ? { dir: join(p.dir, `run-${i + 1}-seed-${run.seed}${run.rotate ? '-rotate' : ''}`) } : {}),
      log: p.json ? undefined : (line: string) => process.stderr.write(`${line}\n`),
    });
    reports.push(report);
    if (!p.json) process.stderr.write(`run ${i + 1}/${p.runs.length}: ${report.ok ? 'ok' : `FAILED: ${report.violations.join(', ')}`}\n`);
  }
  const summary = { machine: machineInfo(), options: p.base, mustBeZero: MUST_BE_ZERO, ok: reports.every((r) => r.ok), reports };
  if (p.json) {
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  } else {
    const lines = [HEADER, ...reports.map(row)];
    const widths = HEADER.map((_, c) => Math.max(...lines.map((l) => l[c]!.length)));
    for (const l of lines) process.stdout.write(`${l.map((cell, c) => cell.padStart(widths[c]!)).join('  ')}\n`);
  }
  if (p.save) {
    const paths = saveResults('stress-shred', summary, markdown(p, reports));
    if (!p.json) process.stdout.write(`results: ${paths.json}, ${paths.md}\n`);
  }
  if (!summary.ok) process.exitCode = 1;
}

// Runs only as a script: the CLI may import this module for runShredStress.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    process.stderr.write(`stress-shred: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
