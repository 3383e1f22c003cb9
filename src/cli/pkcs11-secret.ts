/**
 * The CLI's PKCS#11 options (global, like --key-file): `--pkcs11 <module>` keeps root keys on a
 * token instead of the software keystore; the token is named by `--pkcs11-slot <id>` or
 * `--pkcs11-token <label>`. The user PIN is never taken from argv (it would show in `ps` and the
 * shell history): it comes from `--pkcs11-pin-file <path>` (first line) or $BLOCKVAULT_PKCS11_PIN.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Pkcs11Options } from '../hsm/pkcs11/options.js';
import { UsageError } from './usage-error.js';

export const PKCS11_PIN_ENV = 'BLOCKVAULT_PKCS11_PIN';
/** A PIN file holds one short line; anything bigger is not a PIN file. */
const PIN_FILE_BYTES_MAX = 1024;

export interface Pkcs11CliOptions {
  pkcs11?: string;
  pkcs11Slot?: string;
  pkcs11Token?: string;
  pkcs11PinFile?: string;
  pkcs11KwpMechanism?: string;
}

/** The flags, for the root program (src/cli/context.ts addGlobalOptions). */
export const PKCS11_FLAGS: ReadonlyArray<[flags: string, description: string]> = [
  ['--pkcs11 <module>', 'keep root keys on a PKCS#11 token: the module (.so), e.g. /usr/lib/softhsm/libsofthsm2.so'],
  ['--pkcs11-slot <id>', 'the token by slot id (with --pkcs11)'],
  ['--pkcs11-token <label>', 'the token by label (with --pkcs11)'],
  ['--pkcs11-pin-file <path>', `read the token's user PIN from this file (default: $${PKCS11_PIN_ENV}; never on the command line)`],
  ['--pkcs11-kwp-mechanism <number>', 'the RFC 5649 key-wrap mechanism of the module (default 0x210A, as SoftHSM 2.6.1 has it)'],
];

function parseWhole(value: string, flag: string): number {
  const n = /^0x[0-9a-f]+$/i.test(value) ? Number.parseInt(value.slice(2), 16) : /^[0-9]+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError(`${flag} must be a whole number (decimal or 0x hex), got ${JSON.stringify(value)}`);
  return n;
}

function readPin(options: Pkcs11CliOptions, env: NodeJS.ProcessEnv): string {
  if (options.pkcs11PinFile !== undefined) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(path.resolve(options.pkcs11PinFile));
    } catch (error) {
      throw new UsageError(`cannot read --pkcs11-pin-file ${options.pkcs11PinFile}: ${(error as Error).message}`);
    }
    if (bytes.length > PIN_FILE_BYTES_MAX) throw new UsageError(`--pkcs11-pin-file ${options.pkcs11PinFile} is over ${PIN_FILE_BYTES_MAX} bytes: it must hold the PIN on one line`);
    const pin = bytes.toString('utf8').split(/\r?\n/)[0] ?? '';
    bytes.fill(0);
    if (pin.length === 0) throw new UsageError(`--pkcs11-pin-file ${options.pkcs11PinFile} is empty: put the token's user PIN on its first line`);
    return pin;
  }
  const fromEnv = env[PKCS11_PIN_ENV];
  if (fromEnv === undefined || fromEnv.length === 0) {
    throw new UsageError(`no PKCS#11 PIN: set $${PKCS11_PIN_ENV} or pass --pkcs11-pin-file <path> (the PIN is never read from the command line)`);
  }
  return fromEnv;
}

/** The engine's hsm.pkcs11 option from the flags, or null without --pkcs11. */
export function resolvePkcs11Secret(options: Pkcs11CliOptions, env: NodeJS.ProcessEnv): { pkcs11: Pkcs11Options } | null {
  if (options.pkcs11 === undefined) {
    const flags = { pkcs11Slot: '--pkcs11-slot', pkcs11Token: '--pkcs11-token', pkcs11PinFile: '--pkcs11-pin-file', pkcs11KwpMechanism: '--pkcs11-kwp-mechanism' } as const;
    const stray = (Object.keys(flags) as Array<keyof typeof flags>).find((k) => options[k] !== undefined);
    if (stray !== undefined) throw new UsageError(`${flags[stray]} needs --pkcs11 <module>`);
    return null;
  }
  if ((options.pkcs11Slot === undefined) === (options.pkcs11Token === undefined)) throw new UsageError('--pkcs11 needs exactly one of --pkcs11-slot <id> and --pkcs11-token <label>');
  const pkcs11: Pkcs11Options = {
    module: path.resolve(options.pkcs11),
    pin: readPin(options, env),
    ...(options.pkcs11Slot !== undefined ? { slot: parseWhole(options.pkcs11Slot, '--pkcs11-slot') } : { tokenLabel: options.pkcs11Token as string }),
    ...(options.pkcs11KwpMechanism !== undefined ? { kwpMechanism: parseWhole(options.pkcs11KwpMechanism, '--pkcs11-kwp-mechanism') } : {}),
  };
  return { pkcs11 };
}
