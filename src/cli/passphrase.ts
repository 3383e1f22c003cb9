/**
 * Where the HSM's master secret comes from. The passphrase is never taken from argv: anything on
 * a command line is visible to every user through `ps` and lands in shell history. Order:
 *   1. --key-file <path> (a key file, as Engine.open({ hsm: { keyFile } }) reads it);
 *   2. the BLOCKVAULT_PASSPHRASE environment variable;
 *   3. an interactive prompt without echo, only when stdin and stderr are terminals.
 * With none of these, it is a usage error that says to set the environment variable.
 */
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { Pkcs11Options } from '../hsm/pkcs11/options.js';
import { PKCS11_PIN_ENV, resolvePkcs11Secret, type Pkcs11CliOptions } from './pkcs11-secret.js';
import { UsageError } from './usage-error.js';

export const PASSPHRASE_ENV = 'BLOCKVAULT_PASSPHRASE';

export type HsmSecret = { passphrase: string } | { keyFile: string } | { pkcs11: Pkcs11Options };

export interface SecretSources {
  keyFile?: string | undefined;
  env: NodeJS.ProcessEnv;
  stdin: Readable & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };
  stderr: Writable & { isTTY?: boolean };
  /** Ask twice and compare (used when a new HSM keystore is created). */
  confirm?: boolean;
  /** --pkcs11 and its companions (src/cli/pkcs11-secret.ts): root keys on a token instead. */
  pkcs11?: Pkcs11CliOptions;
}

export async function resolveHsmSecret(sources: SecretSources): Promise<HsmSecret> {
  const token = resolvePkcs11Secret(sources.pkcs11 ?? {}, sources.env);
  if (token !== null) {
    if (sources.keyFile !== undefined) throw new UsageError('give either --pkcs11 (root keys on a token) or --key-file (the software keystore), not both');
    return token;
  }
  if (sources.keyFile !== undefined) return { keyFile: path.resolve(sources.keyFile) };
  const fromEnv = sources.env[PASSPHRASE_ENV];
  if (fromEnv !== undefined) {
    if (fromEnv.length === 0) throw new UsageError(`${PASSPHRASE_ENV} is set but empty: set it to the HSM passphrase, or unset it to be prompted`);
    return { passphrase: fromEnv };
  }
  if (sources.stdin.isTTY === true && sources.stderr.isTTY === true && typeof sources.stdin.setRawMode === 'function') {
    const passphrase = await promptHidden('HSM passphrase: ', sources.stdin, sources.stderr);
    if (passphrase.length === 0) throw new UsageError('the passphrase is empty');
    if (sources.confirm === true) {
      const again = await promptHidden('Repeat the passphrase: ', sources.stdin, sources.stderr);
      if (again !== passphrase) throw new UsageError('the two passphrases differ');
    }
    return { passphrase };
  }
  throw new UsageError(
    `no HSM passphrase: set the ${PASSPHRASE_ENV} environment variable, or pass --key-file <path> ` +
      '(it is never read from the command line, and there is no terminal to prompt on)',
  );
}

/** Options that would put a secret on argv. They are refused before commander even parses. */
const SECRET_FLAGS = ['--passphrase', '--password', '--pass', '--secret', '--material', '--key-material', '--pin', '--pkcs11-pin', '--user-pin', '--so-pin'];

export function findSecretOnArgv(argv: readonly string[]): string | null {
  for (const arg of argv) {
    if (arg === '--') break;
    const flag = arg.split('=')[0]!;
    if (SECRET_FLAGS.includes(flag)) return flag;
  }
  return null;
}

export function secretOnArgvMessage(flag: string): string {
  if (flag === '--pin' || flag === '--pkcs11-pin' || flag === '--user-pin' || flag === '--so-pin') {
    return `${flag} is refused: a PKCS#11 PIN is never accepted on the command line (it would show in ps and shell history); set ${PKCS11_PIN_ENV} or use --pkcs11-pin-file <path>`;
  }
  return flag === '--material' || flag === '--key-material'
    ? `${flag} is refused: key material is never accepted on the command line; use --material-file <path> or --material-stdin`
    : `${flag} is refused: the passphrase is never accepted on the command line (it would show in ps and shell history); set ${PASSPHRASE_ENV}, use --key-file <path>, or run on a terminal to be prompted`;
}

/** Reads one line from a TTY in raw mode, echoing nothing. Ctrl-C aborts with status 130. */
export function promptHidden(
  prompt: string,
  stdin: Readable & { setRawMode?: (mode: boolean) => unknown },
  stderr: Writable,
): Promise<string> {
  return new Promise((resolve, reject) => {
    stderr.write(prompt);
    let buffer = '';
    const wasPaused = stdin.isPaused();
    stdin.setRawMode?.(true);
    stdin.setEncoding('utf8');
    stdin.resume();
    const finish = (error: Error | null): void => {
      stdin.off('data', onData);
      stdin.setRawMode?.(false);
      if (wasPaused) stdin.pause();
      stderr.write('\n');
      if (error === null) resolve(buffer);
      else reject(error);
    };
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return finish(null);
        if (ch === '\u0003') {
          finish(new UsageError('cancelled at the passphrase prompt'));
          process.exitCode = 130;
          return;
        }
        if (ch === '\u007f' || ch === '\b') buffer = buffer.slice(0, -1);
        else if (ch >= ' ') buffer += ch;
      }
    };
    stdin.on('data', onData);
  });
}
