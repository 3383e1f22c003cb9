/**
 * `blockvault stress shred`: the cryptoshredding stress harness (issue 6). Writers and readers
 * hammer several volumes on one key, optionally during a rotation, and the key is force-deleted
 * at a random moment; the report's must-be-zero counters decide the exit status.
 *
 * The harness itself lives with the shredding code (src/shred/stress.ts); this command passes the
 * options through, prints the report and turns its must-be-zero counters into the exit status.
 */
import type { Command } from 'commander';
import { runShredStress } from '../../shred/stress.js';
import { globalAction, outputFor, type CliContext } from '../context.js';
import { toJson } from '../output.js';
import { resolveHsmSecret } from '../passphrase.js';
import { PKCS11_PIN_ENV, type Pkcs11CliOptions } from '../pkcs11-secret.js';
import { CliFailure } from '../usage-error.js';
import { parseDurationMs, parseNonNegativeInteger, parsePositiveInteger, parseSize } from '../size.js';

interface StressOptions extends Pkcs11CliOptions {
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
    .option('--volumes <count>', 'volumes on the key', (v) => parsePositiveInteger(v, '--volumes'), 4)
    .option('--writers <count>', 'concurrent writers', (v) => parsePositiveInteger(v, '--writers'), 8)
    .option('--readers <count>', 'concurrent readers', (v) => parsePositiveInteger(v, '--readers'), 8)
    .option('--duration <duration>', 'how long to run before and around the delete, e.g. 10s, 5m', (v) => parseDurationMs(v, '--duration'), 10_000)
    .option('--size <size>', 'size of each volume, e.g. 64MiB', (v) => parseSize(v, '--size'), 64 * 1024 * 1024)
    .option('--seed <number>', 'random seed, for a reproducible run', (v) => parseNonNegativeInteger(v, '--seed'))
    .option('--rotate', 'keep a rotation with re-encryption running when the key is deleted')
    .option('--keep-dir', 'keep the temporary engine directory for inspection')
    .addHelpText(
      'after',
      `\n--dir: default a new temporary directory, never $BLOCKVAULT_DIR. --key-file: default $BLOCKVAULT_PASSPHRASE, else a random key.\n--pkcs11 <module> with --pkcs11-token <label> (or --pkcs11-slot <id>): root keys on that PKCS#11 token; the PIN from $${PKCS11_PIN_ENV} or --pkcs11-pin-file <path>.`,
    )
    .action(globalAction(async (options: StressOptions) => {
      const out = outputFor(ctx, options);
      // The global --pkcs11 options apply here as to every command: without passing them on, the
      // run would silently stress the software keystore instead of the token asked for.
      const hsm =
        options.pkcs11 !== undefined || options.keyFile !== undefined || ctx.env.BLOCKVAULT_PASSPHRASE !== undefined
          ? await resolveHsmSecret({ keyFile: options.keyFile, pkcs11: options, env: ctx.env, stdin: ctx.stdin, stderr: ctx.stderr })
          : undefined;
      const report = await runShredStress({
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
      });
      // The harness lists every must-be-zero counter (its MUST_BE_ZERO) that was not, and every other
      // failed check, in report.violations; report.ok is that list being empty.
      out.result(report, (o) => {
        o.fields(report);
        o.line(report.ok ? 'PASS: no data after the lock, no hangs, no plaintext on disk.' : 'FAIL');
      });
      if (!report.ok) {
        const counters = report as unknown as Record<string, unknown>;
        const failed = report.violations.map((k) => `${k}=${String(counters[k])}`).join(', ');
        throw new CliFailure('STRESS_FAILED', `the shred stress run failed: ${failed || toJson(report)}`);
      }
    }));
}
