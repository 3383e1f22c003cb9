/**
 * The at-rest check of the shred stress harness: every file under a directory is read (in bounded
 * chunks, with an overlap so a needle across a chunk boundary is found) and every occurrence of
 * each needle counted. Run it with the engine closed, so everything it wrote is in its files.
 */
import { closeSync, openSync, readSync, readdirSync, lstatSync } from 'node:fs';
import { join, relative } from 'node:path';

export interface ScanHit {
  /** Path relative to the scanned directory. */
  file: string;
  /** Which needle (its index in the list given). */
  needle: number;
  offset: number;
}

export interface ScanResult {
  files: number;
  bytes: number;
  /** Every occurrence, all needles together. */
  hits: number;
  /** The first few occurrences, for the report. */
  examples: ScanHit[];
}

const CHUNK_BYTES = 4 * 1024 * 1024;
const EXAMPLES_MAX = 10;

/** Every regular file under `dir`, recursively (symbolic links are not followed). */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const stat = lstatSync(path);
    if (stat.isDirectory()) out.push(...filesUnder(path));
    else if (stat.isFile()) out.push(path);
  }
  return out.sort();
}

export function scanForNeedles(dir: string, needles: readonly Uint8Array[]): ScanResult {
  const result: ScanResult = { files: 0, bytes: 0, hits: 0, examples: [] };
  const valid = needles.filter((n) => n.length > 0).map((n) => Buffer.from(n.buffer, n.byteOffset, n.byteLength));
  if (valid.length === 0) throw new RangeError('scanForNeedles needs at least one non-empty needle');
  const overlap = Math.max(...valid.map((n) => n.length)) - 1;
  const buffer = Buffer.alloc(CHUNK_BYTES + overlap);
  for (const path of filesUnder(dir)) {
    result.files++;
    const fd = openSync(path, 'r');
    try {
      let carried = 0; // bytes kept from the previous chunk, at the start of `buffer`
      let fileOffset = 0; // file offset of buffer[0]
      for (;;) {
        const read = readSync(fd, buffer, carried, CHUNK_BYTES, fileOffset + carried);
        if (read === 0) break;
        result.bytes += read;
        const filled = carried + read;
        const view = buffer.subarray(0, filled);
        valid.forEach((needle, index) => {
          // Matches wholly inside the carried bytes were counted with the previous chunk.
          for (let at = view.indexOf(needle); at !== -1; at = view.indexOf(needle, at + 1)) {
            if (at + needle.length <= carried) continue;
            result.hits++;
            if (result.examples.length < EXAMPLES_MAX) result.examples.push({ file: relative(dir, path), needle: index, offset: fileOffset + at });
          }
        });
        const keep = Math.min(overlap, filled);
        buffer.copy(buffer, 0, filled - keep, filled);
        fileOffset += filled - keep;
        carried = keep;
      }
    } finally {
      closeSync(fd);
    }
  }
  return result;
}
