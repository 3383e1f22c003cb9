import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BlockvaultError } from '../../errors.js';
import { fsyncDirectory, writeFileAtomicSync } from '../secure-files.js';

/**
 * `<hsmDir>/pkcs11.json` says that this engine directory keeps its root keys on a PKCS#11 token,
 * on which one (serial number and label, so a wrong token is named, not guessed), and under which
 * namespace: every object the provider makes is labelled `blockvault/<namespace>/...`, so several
 * engine directories can share one token without seeing, or cleaning up, each other's keys.
 * It holds no secret.
 */
export const PKCS11_MARKER_FILE_NAME = 'pkcs11.json';
const FORMAT = 'blockvault-hsm-pkcs11';
const NAMESPACE_PATTERN = /^[0-9a-f]{16}$/;

export interface Pkcs11Marker {
  format: typeof FORMAT;
  version: 1;
  namespace: string;
  tokenSerial: string;
  tokenLabel: string;
  createdAtMs: number;
}

export function pkcs11MarkerExists(hsmDir: string): boolean {
  return existsSync(join(hsmDir, PKCS11_MARKER_FILE_NAME));
}

export function readPkcs11Marker(hsmDir: string): Pkcs11Marker | null {
  const path = join(hsmDir, PKCS11_MARKER_FILE_NAME);
  if (!existsSync(path)) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new BlockvaultError('KEYSTORE_CORRUPT', `${path} is damaged (${(error as Error).message}); restore the HSM directory from a backup`);
  }
  const m = parsed as Partial<Pkcs11Marker> | null;
  if (m === null || typeof m !== 'object' || m.format !== FORMAT || m.version !== 1 || typeof m.namespace !== 'string' || !NAMESPACE_PATTERN.test(m.namespace) || typeof m.tokenSerial !== 'string' || typeof m.tokenLabel !== 'string') {
    throw new BlockvaultError('KEYSTORE_CORRUPT', `${path} is damaged (not a blockvault PKCS#11 marker); restore the HSM directory from a backup`);
  }
  return m as Pkcs11Marker;
}

export function writePkcs11Marker(hsmDir: string, token: { serial: string; label: string }, nowMs: number): Pkcs11Marker {
  mkdirSync(hsmDir, { recursive: true, mode: 0o700 });
  const marker: Pkcs11Marker = { format: FORMAT, version: 1, namespace: randomBytes(8).toString('hex'), tokenSerial: token.serial, tokenLabel: token.label, createdAtMs: nowMs };
  writeFileAtomicSync(join(hsmDir, PKCS11_MARKER_FILE_NAME), Buffer.from(`${JSON.stringify(marker, null, 2)}\n`));
  return marker;
}

/**
 * Undo writePkcs11Marker when the first open of a directory fails after it (the token has no room
 * for the metadata key, for example): a marker without its metadata key would make every later
 * open refuse the directory as KEYSTORE_CORRUPT, although it never held anything.
 */
export function removePkcs11Marker(hsmDir: string): void {
  rmSync(join(hsmDir, PKCS11_MARKER_FILE_NAME), { force: true });
  fsyncDirectory(hsmDir);
}
