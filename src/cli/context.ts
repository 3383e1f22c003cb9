/**
 * What every command shares: the common options (--dir, --json, --key-file), the process's
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
import { UsageError } from './usage-error.js';

export const DIR_ENV = 'BLOCKVAULT_DIR';
export const DEFAULT_DIR = './blockvault-data';

export interface CliContext extends CliStreams {
  stdin: Readable & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };
  env: NodeJS.ProcessEnv;
}

export interface CommonOptions {
  dir: string;
  json?: boolean;
  keyFile?: string;
}

export function defaultDir(env: NodeJS.ProcessEnv): string {
  const fromEnv = env[DIR_ENV];
  return fromEnv !== undefined && fromEnv.length > 0 ? fromEnv : DEFAULT_DIR;
}

/** Adds --dir, --json and --key-file to a leaf command. */
export function withCommonOptions(cmd: Command, ctx: CliContext): Command {
  return cmd
    .option('--dir <path>', `engine data directory (default: $${DIR_ENV} or ${DEFAULT_DIR})`, defaultDir(ctx.env))
    .option('--json', 'print one JSON document on stdout (errors as JSON on stderr)')
    .option('--key-file <path>', 'read the HSM master key from this file instead of a passphrase');
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
  const dir = path.resolve(options.dir);
  if (mode.create !== true && !isEngineDir(dir)) {
    throw new BlockvaultError(
      'NOT_FOUND',
      `no blockvault data in ${dir}: run \`blockvault hsm init --dir ${options.dir}\` first, or point --dir (or $${DIR_ENV}) at an existing engine directory`,
      { dir },
    );
  }
  const secret = await resolveHsmSecret({ keyFile: options.keyFile, env: ctx.env, stdin: ctx.stdin, stderr: ctx.stderr, confirm: mode.create === true && !isEngineDir(dir) });
  const lock = await lockDir(dir, { onWait: (pid) => out.note(`waiting for blockvault process ${pid}, which has ${dir} open...`) });
  try {
    const engine = await openEngine({ dir, hsm: secret });
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
