/**
 * Builds the `blockvault` command tree and runs it, mapping every outcome to an exit status:
 *   0  success (and --help / --version);
 *   1  the operation failed: `error CODE: message` on stderr (in --json mode, a JSON
 *      `{"error":{"code","message"}}` on stderr), CODE being the BlockvaultError code;
 *   2  usage errors: commander's parse errors (through exitOverride) and our UsageError.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { ERROR_CODES } from '../errors.js';
import { registerAuthCommands } from './commands/auth.js';
import { registerBenchCommand } from './commands/bench.js';
import { registerDemoCommand } from './commands/demo.js';
import { registerEventsCommands } from './commands/events.js';
import { registerHsmCommands } from './commands/hsm.js';
import { registerKeyCommands } from './commands/key.js';
import { registerStressCommands } from './commands/stress.js';
import { registerTasksCommands } from './commands/tasks.js';
import { registerVolumeCommands } from './commands/volume.js';
import { addGlobalOptions, type CliContext } from './context.js';
import { toJson } from './output.js';
import { findSecretOnArgv, secretOnArgvMessage } from './passphrase.js';
import { CliFailure, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError } from './usage-error.js';

export function buildProgram(ctx: CliContext): Command {
  const program = new Command('blockvault');
  // Settings are copied to subcommands when they are created, so configure before adding them.
  program
    .description('blockvault: encrypted block storage with BYOK root keys, online rotation and cryptoshredding')
    .version(packageVersion(), '-V, --version', 'print the version')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => void ctx.stdout.write(text),
      writeErr: (text) => void ctx.stderr.write(text),
      // Parse errors are printed by runCli, in the same format as every other error.
      outputError: () => undefined,
    })
    .showSuggestionAfterError(true)
    // "Global Options:" in the help of every group and leaf, not only the root's.
    .configureHelp({ showGlobalOptions: true })
    .addHelpText(
      'after',
      `
The options above are global: give them before or after the subcommand
(blockvault --dir D volume list, or blockvault volume list --dir D).
The HSM passphrase comes from $BLOCKVAULT_PASSPHRASE, a prompt on a terminal, or --key-file;
never from the command line. Exit status: 0 success, 1 failure (error CODE: message), 2 usage.

Start with:  blockvault demo`,
    );

  addGlobalOptions(program);

  registerHsmCommands(program, ctx);
  registerKeyCommands(program, ctx);
  registerAuthCommands(program, ctx);
  registerVolumeCommands(program, ctx);
  registerTasksCommands(program, ctx);
  registerEventsCommands(program, ctx);
  registerStressCommands(program, ctx);
  registerBenchCommand(program, ctx);
  registerDemoCommand(program, ctx);
  return program;
}

/** Runs the CLI on `argv` (without the node and script paths); resolves to the exit status. */
export async function runCli(argv: readonly string[], ctx: CliContext): Promise<number> {
  const json = wantsJson(argv);
  const secretFlag = findSecretOnArgv(argv);
  if (secretFlag !== null) return report(ctx, json, 'USAGE', secretOnArgvMessage(secretFlag), EXIT_USAGE);
  try {
    await buildProgram(ctx).parseAsync([...argv], { from: 'user' });
    return EXIT_OK;
  } catch (error) {
    return reportError(ctx, json, error);
  }
}

function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

export function reportError(ctx: CliContext, json: boolean, error: unknown): number {
  if (error instanceof CommanderError) {
    // --help, --version and `help` exit 0; a group called without a subcommand prints its help
    // on stderr and is a usage error.
    if (error.exitCode === 0) return EXIT_OK;
    const message = error.code === 'commander.help' ? 'a subcommand is required (see the help above)' : error.message.replace(/^error: /, '');
    return report(ctx, json, 'USAGE', message, EXIT_USAGE);
  }
  if (error instanceof UsageError) return report(ctx, json, 'USAGE', error.message, EXIT_USAGE);
  const code = errorCode(error);
  const message = error instanceof Error ? error.message : String(error);
  const details = (error as { details?: unknown }).details;
  if (code === 'INTERNAL' && !json && error instanceof Error && ctx.env.BLOCKVAULT_DEBUG) ctx.stderr.write(`${error.stack}\n`);
  return report(ctx, json, code, message, EXIT_FAILURE, details);
}

/** A BlockvaultError's code, a Node system error's code (ENOENT, EACCES), or INTERNAL. */
function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (error instanceof CliFailure) return error.code;
  // Typed codes of blockvault (ERROR_CODES, and a few module-level ones such as TIMEOUT) and
  // Node's system error codes (ENOENT, EACCES) are all upper case; anything else is a bug.
  if (typeof code === 'string' && ((ERROR_CODES as readonly string[]).includes(code) || /^[A-Z][A-Z0-9_]+$/.test(code))) return code;
  return 'INTERNAL';
}

function report(ctx: CliContext, json: boolean, code: string, message: string, exitCode: number, details?: unknown): number {
  if (json) {
    const error: Record<string, unknown> = { code, message };
    if (details !== undefined) error.details = details;
    ctx.stderr.write(toJson({ error }) + '\n');
  } else {
    ctx.stderr.write(`error ${code}: ${message}\n`);
    if (exitCode === EXIT_USAGE && code === 'USAGE') ctx.stderr.write('(run with --help for usage)\n');
  }
  return exitCode;
}

function packageVersion(): string {
  for (const candidate of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(candidate, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'blockvault' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // Try the next layout: src/cli (tsx) or dist/src/cli (built).
    }
  }
  return '0.0.0';
}
