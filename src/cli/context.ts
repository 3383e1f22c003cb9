/**
 * What every command shares: the global options (--dir, --json, --key-file), the process's
 * streams and environment (injectable, so the program can be driven in-process), and opening
 * and always closing the engine around a command's work.
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { Command } from 'commander';
import { BlockvaultError } from '../errors.js';
import { LOCK_FILE, lockDir } from './dir-lock.js';
import { openEngine, type EngineApi, type VolumeInfo } from './engine-port.js';
import { Output, type CliStreams } from './output.js';
import { resolveHsmSecret, type HsmSecret } from './passphrase.js';
import { PKCS11_FLAGS, type Pkcs11CliOptions } from './pkcs11-secret.js';
import { RADOS_FLAGS, radosStoreOf, type RadosCliOptions } from './rados-store.js';
import { UsageError } from './usage-error.js';

export const DIR_ENV = 'BLOCKVAULT_DIR';
export const DEFAULT_DIR = './blockvault-data';

export interface CliContext extends CliStreams {
  stdin: Readable & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };
  env: NodeJS.ProcessEnv;
}

/**
 * The global options, as a command's action sees them (through `command.optsWithGlobals()`).
 *
 * How global options work (and how to add one):
 * - They are declared once, on the root program, in addGlobalOptions; never on a leaf. Commander
 *   then parses a root option wherever it appears, before or after the subcommand
 *   (`blockvault --dir D volume list` and `blockvault volume list --dir D`; do not call
 *   enablePositionalOptions, which would stop that), and `configureHelp({ showGlobalOptions })`
 *   lists them under "Global Options:" in the help of every group and leaf.
 * - An action reads them with `command.optsWithGlobals()`: wrap it in globalAction(...), which
 *   passes that merged object in place of commander's leaf-only options.
 * - They carry no default: a default would be indistinguishable from a typed value, and commands
 *   that want another one (demo and stress shred: a new temporary directory) must see "not
 *   given". Resolve at action time, e.g. `engineDir(options, ctx.env)`.
 * - To add one (a PKCS#11 PIN source, a RADOS pool): add the `.option(...)` in addGlobalOptions
 *   and its field here. An option that only one command understands stays on that command, and
 *   must not reuse a global's name (the root would take its value).
 */
export interface CommonOptions extends Pkcs11CliOptions, RadosCliOptions {
  dir?: string;
  json?: boolean;
  keyFile?: string;
}

/** Declares the global options on the root program (see CommonOptions). */
export function addGlobalOptions(program: Command): Command {
  program
    .option('--dir <path>', `engine data directory (default: $${DIR_ENV} or ${DEFAULT_DIR}; demo and stress shred: a new temporary directory)`)
    .option('--json', 'print one JSON document on stdout (errors as JSON on stderr)')
    .option('--key-file <path>', 'read the HSM master key from this file instead of a passphrase');
  for (const [flags, description] of PKCS11_FLAGS) program.option(flags, description);
  for (const [flags, description] of RADOS_FLAGS) program.option(flags, description);
  return program;
}

/**
 * Wraps an action so that its options argument is `command.optsWithGlobals()`: the leaf's own
 * options merged with the root's global ones, wherever on the line they were typed.
 */
export function globalAction<A extends unknown[]>(handler: (...args: A) => Promise<void>): (...args: unknown[]) => Promise<void> {
  return async (...args: unknown[]) => {
    // Commander calls an action with (...arguments, options, command).
    const command = args.at(-1) as Command;
    const merged = [...args.slice(0, -2), command.optsWithGlobals(), command];
    await handler(...(merged as A));
  };
}

/** The engine directory a command works on: --dir, else $BLOCKVAULT_DIR, else ./blockvault-data. */
export function engineDir(options: CommonOptions, env: NodeJS.ProcessEnv): string {
  return options.dir ?? defaultDir(env);
}

export function defaultDir(env: NodeJS.ProcessEnv): string {
  const fromEnv = env[DIR_ENV];
  return fromEnv !== undefined && fromEnv.length > 0 ? fromEnv : DEFAULT_DIR;
}

export function outputFor(ctx: CliContext, options: { json?: boolean }): Output {
  return new Output(options.json === true, ctx);
}

export interface EngineSession {
  engine: EngineApi;
  out: Output;
  dir: string;
  secret: HsmSecret;
}

/**
 * Opens the engine in `options.dir`, runs `work`, and closes the engine whatever happens.
 * Only `hsm init` (and the demo) may create a new directory: for every other command a missing
 * directory is almost always a typo in --dir, and silently creating an empty store would hide it.
 */
export async function withEngine(
  ctx: CliContext,
  options: CommonOptions,
  work: (session: EngineSession) => Promise<void>,
  mode: { create?: boolean } = {},
): Promise<void> {
  const out = outputFor(ctx, options);
  const given = engineDir(options, ctx.env);
  const dir = path.resolve(given);
  if (mode.create !== true && !isEngineDir(dir)) {
    throw new BlockvaultError(
      'NOT_FOUND',
      `no blockvault data in ${dir}: run \`blockvault hsm init --dir ${given}\` first, or point --dir (or $${DIR_ENV}) at an existing engine directory`,
      { dir },
    );
  }
  const store = radosStoreOf(options);
  const secret = await resolveHsmSecret({ keyFile: options.keyFile, pkcs11: options, env: ctx.env, stdin: ctx.stdin, stderr: ctx.stderr, confirm: mode.create === true && !isEngineDir(dir) });
  const lock = await lockDir(dir, { onWait: (pid) => out.note(`waiting for blockvault process ${pid}, which has ${dir} open...`) });
  try {
    const engine = await openEngine({ dir, hsm: secret, ...(store === undefined ? {} : { store }) });
    try {
      await work({ engine, out, dir, secret });
    } catch (error) {
      // The command's own failure is what the user needs to see, not a later one from closing.
      await engine.close().catch(() => undefined);
      throw error;
    }
    await engine.close();
  } finally {
    lock.release();
  }
}

export function isEngineDir(dir: string): boolean {
  try {
    return existsSync(dir) && readdirSync(dir).some((name) => name !== LOCK_FILE);
  } catch {
    return false;
  }
}

/** Volumes are addressed by id or by name on the command line; the engine's delete takes an id. */
export function findVolume(engine: EngineApi, idOrName: string): VolumeInfo {
  const volumes = engine.listVolumes();
  const byId = volumes.find((v) => v.id === idOrName);
  if (byId !== undefined) return byId;
  const byName = volumes.filter((v) => v.name === idOrName);
  // A soft-deleted volume may share its name with a newer one; the live one is meant.
  const live = byName.filter((v) => v.state !== 'deleted');
  const candidates = live.length > 0 ? live : byName;
  if (candidates.length > 1) {
    throw new UsageError(`${candidates.length} volumes are named ${JSON.stringify(idOrName)}: use the id (${candidates.map((v) => v.id).join(', ')})`);
  }
  const match = candidates[0];
  if (match === undefined) {
    throw new BlockvaultError('NOT_FOUND', `no volume with id or name ${JSON.stringify(idOrName)}: see \`blockvault volume list\``, {
      volume: idOrName,
    });
  }
  return match;
}
