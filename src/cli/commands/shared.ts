/** Small helpers shared by the command files. */
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { BlockvaultError } from '../../errors.js';
import { parseCrn } from '../../crn.js';
import { UsageError } from '../usage-error.js';

export function countBy<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return counts;
}

/** Validates a key CRN before the engine is opened, so a typo costs no passphrase derivation. */
export function keyCrnArgument(text: string): string {
  parseCrn(text, 'key');
  return text;
}

export async function readAll(stream: Readable, limitBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    total += buf.length;
    if (total > limitBytes) throw new UsageError(`the input is larger than ${limitBytes} bytes`);
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

export const ROOT_KEY_BYTES = 32;

export interface MaterialOptions {
  materialFile?: string;
  materialStdin?: boolean;
}

/**
 * Root-key material for an import, from a file or stdin, never from argv: 32 raw bytes, or the
 * same as 64 hex digits or base64 text (surrounding whitespace ignored). The caller zeroizes it.
 */
export async function readKeyMaterial(options: MaterialOptions, stdin: Readable, required: boolean): Promise<Uint8Array | undefined> {
  if (options.materialFile !== undefined && options.materialStdin === true) {
    throw new UsageError('give the key material either with --material-file or with --material-stdin, not both');
  }
  let raw: Buffer;
  let source: string;
  if (options.materialFile !== undefined) {
    raw = await readFile(options.materialFile);
    source = options.materialFile;
  } else if (options.materialStdin === true) {
    raw = await readAll(stdin, 4096);
    source = 'stdin';
  } else if (required) {
    throw new UsageError('key material is required: --material-file <path> or --material-stdin (never on the command line)');
  } else {
    return undefined;
  }
  try {
    return decodeKeyMaterial(raw, source);
  } finally {
    raw.fill(0);
  }
}

export function decodeKeyMaterial(raw: Uint8Array, source: string): Uint8Array {
  if (raw.length === ROOT_KEY_BYTES) return Uint8Array.from(raw);
  const text = Buffer.from(raw).toString('latin1').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Uint8Array.from(Buffer.from(text, 'hex'));
  if (/^[A-Za-z0-9+/]{43}=$/.test(text)) {
    const decoded = Buffer.from(text, 'base64');
    if (decoded.length === ROOT_KEY_BYTES) return Uint8Array.from(decoded);
  }
  throw new BlockvaultError(
    'INVALID_ARGUMENT',
    `the key material from ${source} is ${raw.length} bytes and not a 256-bit key: give exactly 32 raw bytes, 64 hex digits, or 44 base64 characters`,
  );
}
