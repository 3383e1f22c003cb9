/**
 * Writes a new HSM key file for `hsm init --new-key-file`: 32 random bytes (the format
 * Engine.open({ hsm: { keyFile } }) reads, src/hsm/master-key.ts), mode 0600, never over an
 * existing file, and durable before the keystore sealed with it is created: a key file lost in a
 * crash would leave a keystore that nothing can unseal.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { BlockvaultError } from '../errors.js';
import { fsyncDirectory, writeNewFileSync } from '../hsm/secure-files.js';

export const KEY_FILE_BYTES = 32;

/** Creates `file` with fresh key material; returns its absolute path. */
export function createKeyFile(file: string): string {
  const absolute = path.resolve(file);
  const material = randomBytes(KEY_FILE_BYTES);
  try {
    writeNewFileSync(absolute, material);
  } catch (error) {
    throw keyFileError(error, absolute);
  } finally {
    material.fill(0);
  }
  fsyncDirectory(path.dirname(absolute));
  return absolute;
}

function keyFileError(error: unknown, file: string): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'EEXIST') {
    return new BlockvaultError(
      'ALREADY_EXISTS',
      `${file} already exists: --new-key-file never overwrites a file (it may be the only key of another engine directory). ` +
        'Pick a new path, or use it with --key-file if it is the key of this directory',
      { file },
    );
  }
  if (code === 'ENOENT') {
    return new BlockvaultError('NOT_FOUND', `cannot create ${file}: the directory ${path.dirname(file)} does not exist; create it first`, { file });
  }
  return error;
}
