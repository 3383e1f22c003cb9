/**
 * Recognizable plaintext for the shred stress harness. Every write is a 16-byte marker repeated:
 *
 *   bytes 0..7   'BVSHRED:'            (ASCII magic)
 *   bytes 8..11  the run's seed        (u32, big-endian)
 *   bytes 12..15 the write's sequence  (u32, big-endian; unique per write in a run)
 *
 * Writes start and end on 16-byte boundaries, so every aligned 16-byte chunk of a volume is
 * either zeros (never written) or one whole marker. That gives readers a cheap integrity check,
 * and gives the at-rest scan one needle per run: the first 12 bytes (magic and seed), which any
 * plaintext written in the run starts with, 16 bytes apart.
 */
export const MARKER_BYTES = 16;
const MAGIC = Buffer.from('BVSHRED:', 'ascii');

/** The 12 bytes every marker of the run begins with: what the at-rest scan looks for. */
export function runNeedle(seed: number): Buffer {
  const needle = Buffer.alloc(12);
  MAGIC.copy(needle, 0);
  needle.writeUInt32BE(seed >>> 0, 8);
  return needle;
}

/** `length` bytes (a multiple of 16) of the marker of write `sequence`. */
export function markerPattern(seed: number, sequence: number, length: number): Buffer {
  if (length % MARKER_BYTES !== 0) throw new RangeError(`marker patterns are whole 16-byte markers, got ${length} bytes`);
  const marker = Buffer.alloc(MARKER_BYTES);
  MAGIC.copy(marker, 0);
  marker.writeUInt32BE(seed >>> 0, 8);
  marker.writeUInt32BE(sequence >>> 0, 12);
  const out = Buffer.allocUnsafe(length);
  for (let at = 0; at < length; at += MARKER_BYTES) marker.copy(out, at);
  return out;
}

/**
 * Whether data read at a 16-byte aligned offset is made only of zero chunks and markers of this
 * run (what a correct volume can hold). Returns the first bad chunk's byte offset, or -1.
 */
export function firstForeignChunk(data: Uint8Array, needle: Buffer): number {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  for (let at = 0; at + MARKER_BYTES <= bytes.length; at += MARKER_BYTES) {
    if (bytes.compare(needle, 0, needle.length, at, at + needle.length) === 0) continue;
    let zero = true;
    for (let i = at; i < at + MARKER_BYTES; i++) {
      if (bytes[i] !== 0) {
        zero = false;
        break;
      }
    }
    if (!zero) return at;
  }
  return -1;
}
