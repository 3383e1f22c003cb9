/**
 * `blockvault stress shred`: the cryptoshredding stress harness (issue 6). Writers and readers
 * hammer several volumes on one key, optionally during a rotation, and the key is force-deleted
 * at a random moment; the report's must-be-zero counters decide the exit status.
 *
 * The harness itself lives with the shredding code; this command only finds it, under the first
 * of HARNESS_MODULES that loads, and calls its `runShredStress(options)`.
 */
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { outputFor, type CliContext } from '../context.js';
import { toJson } from '../output.js';
import { resolveHsmSecret } from '../passphrase.js';
import { CliFailure } from '../usage-error.js';
import { parseDurationMs, parseNonNegativeInteger, parsePositiveInteger, parseSize } from '../size.js';

export const HARNESS_MODULES = ['../../shred/stress.js', '../../../bench/stress-shred.js'] as const;
export const HARNESS_EXPORT = 'runShredStress';

/** Counters that must be zero (issue 6), when the harness does not export its own list. */
const MUST_BE_ZERO_FALLBACK = ['readsReturningDataAfterLock', 'writesAcknowledgedAfterLock', 'unhandledErrors', 'hangs', 'plaintextHits'];

interface StressOptions {
  dir?: string;
  json?: boolean;
  keyFile?: string;
  volumes: number;
  writers: number;
  readers: number;
  duration: number;
  seed?: number;
  rotate?: boolean;
  size: number;
  keepDir?: boolean;
}

export function registerStressCommands(program: Command, ctx: CliContext): void {
  const stress = program.command('stress').description('stress harnesses');
  stress
    .command('shred')
    .description('hammer volumes on one key with writers/readers (and a rotation), force-delete the key mid-flight, check nothing leaks')
    .option('--dir <path>', 'engine directory for the run (default: a new temporary directory)')
    .option('--json', 'print the report as one JSON document')
    .option('--key-file <path>', 'HSM key file (default: $BLOCKVAULT_PASSPHRASE, else a random one)')
    .option('--volumes <count>', 'volumes on the key', (v) => parsePositiveInteger(v, '--volumes'), 4)
    .option('--writers <count>', 'concurrent writers', (v) => parsePositiveInteger(v, '--writers'), 8)
    .option('--readers <count>', 'concurrent readers', (v) => parsePositiveInteger(v, '--readers'), 8)
    .option('--duration <duration>', 'how long to run before and around the delete, e.g. 10s, 5m', (v) => parseDurationMs(v, '--duration'), 10_000)
    .option('--size <size>', 'size of each volume, e.g. 64MiB', (v) => parseSize(v, '--size'), 64 * 1024 * 1024)
    .option('--seed <number>', 'random seed, for a reproducible run', (v) => parseNonNegativeInteger(v, '--seed'))
    .option('--rotate', 'keep a rotation with re-encryption running when the key is deleted')
    .option('--keep-dir', 'keep the temporary engine directory for inspection')
    .action(async (options: StressOptions) => {
      const out = outputFor(ctx, options);
      const { run: harness, mustBeZero } = await loadHarness();
      const hsm =
        options.keyFile !== undefined || ctx.env.BLOCKVAULT_PASSPHRASE !== undefined
          ? await resolveHsmSecret({ keyFile: options.keyFile, env: ctx.env, stdin: ctx.stdin, stderr: ctx.stderr })
          : undefined;
      const report = (await harness({
        ...(options.dir !== undefined ? { dir: options.dir } : {}),
        ...(hsm !== undefined ? { hsm } : {}),
        volumes: options.volumes,
        writers: options.writers,
        readers: options.readers,
        durationMs: options.duration,
        sizeBytes: options.size,
        ...(options.seed !== undefined ? { seed: options.seed } : {}),
        rotate: options.rotate === true,
        ...(options.keepDir === true ? { keepDir: true } : {}),
        log: (line: string) => out.note(line),
      })) as Record<string, unknown>;
      const violations = mustBeZero.filter((k) => typeof report[k] === 'number' && report[k] !== 0);
      if (Array.isArray(report.violations)) for (const v of report.violations as string[]) if (!violations.includes(v)) violations.push(v);
      out.result(report, (o) => {
        o.fields(report);
        o.line(violations.length === 0 && report.ok !== false ? 'PASS: no data after the lock, no hangs, no plaintext on disk.' : 'FAIL');
      });
      if (violations.length > 0 || report.ok === false) {
        throw new CliFailure('STRESS_FAILED', `the shred stress run failed: ${violations.map((k) => `${k}=${String(report[k])}`).join(', ') || toJson(report)}`);
      }
    });
}

type Harness = (options: Record<string, unknown>) => Promise<unknown>;

async function loadHarness(): Promise<{ run: Harness; mustBeZero: string[] }> {
  const errors: string[] = [];
  for (const specifier of HARNESS_MODULES) {
    try {
      const mod = (await import(specifier)) as Record<string, unknown>;
      const fn = mod[HARNESS_EXPORT] ?? mod.default;
      const mustBeZero = Array.isArray(mod.MUST_BE_ZERO) ? (mod.MUST_BE_ZERO as string[]) : MUST_BE_ZERO_FALLBACK;
      if (typeof fn === 'function') return { run: fn as Harness, mustBeZero: [...mustBeZero] };
      errors.push(`${specifier} has no ${HARNESS_EXPORT} export`);
    } catch (error) {
      // Only the candidate itself missing means "try the next"; a harness that fails to load is a bug to show.
      const code = (error as { code?: string }).code;
      const itself = fileURLToPath(new URL(specifier, import.meta.url)).replace(/\.js$/, '');
      const missing = (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && String((error as Error).message).includes(`'${itself}`);
      if (!missing) throw error;
      errors.push(`${specifier} not found`);
    }
  }
  throw new CliFailure(
    'NOT_AVAILABLE',
    `the shred stress harness is not in this build yet (issue 6): expected an export ${HARNESS_EXPORT}(options) in one of ${HARNESS_MODULES.join(', ')}. ` +
      'In a source checkout, the bench/ script runs it too.',
  );
}
