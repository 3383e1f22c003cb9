import { UsageError } from './usage-error.js';

/**
 * Byte sizes and durations as people type them on a command line: `64MiB`, `1.5GiB`, `4096`,
 * `90d`. Binary units (KiB = 1024) and decimal units (kB = 1000) are both accepted and never
 * confused: `64MB` is 64,000,000 bytes, `64MiB` is 67,108,864. Anything that does not come out
 * as a whole, safe number of bytes is refused with a message that says why.
 */
const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  tb: 1000 ** 4,
};

const SIZE_PATTERN = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/;

export function parseSize(text: string, what = 'size'): number {
  const trimmed = text.trim();
  const match = SIZE_PATTERN.exec(trimmed);
  if (match === null) {
    throw new UsageError(
      `${what} ${JSON.stringify(text)} is not a size: write a number of bytes with an optional unit, e.g. 4096, 64MiB, 1.5GiB (units B, KiB, MiB, GiB, TiB, kB, MB, GB, TB)`,
    );
  }
  const [, numberText, unitText] = match as unknown as [string, string, string];
  const unitKey = unitText.toLowerCase();
  const multiplier = unitKey === '' ? 1 : SIZE_UNITS[unitKey];
  if (multiplier === undefined) {
    const hint = /^[kmgt]$/i.test(unitText) ? ` (did you mean ${unitText.toUpperCase()}iB or ${unitText.toUpperCase()}B?)` : '';
    throw new UsageError(
      `${what} ${JSON.stringify(text)} has an unknown unit "${unitText}"${hint}: use B, KiB, MiB, GiB, TiB (powers of 1024) or kB, MB, GB, TB (powers of 1000)`,
    );
  }
  const bytes = exactProduct(numberText, multiplier);
  if (bytes === null) {
    throw new UsageError(`${what} ${JSON.stringify(text)} is not a whole number of bytes`);
  }
  if (!Number.isSafeInteger(bytes)) {
    throw new UsageError(`${what} ${JSON.stringify(text)} is too large (at most ${Number.MAX_SAFE_INTEGER} bytes)`);
  }
  return bytes;
}

/** `numberText * multiplier` computed exactly in decimal, or null when it is not an integer. */
function exactProduct(numberText: string, multiplier: number): number | null {
  const [whole, fraction = ''] = numberText.split('.') as [string, string?];
  const scale = 10n ** BigInt(fraction.length);
  const scaled = BigInt(whole + fraction) * BigInt(multiplier);
  if (scaled % scale !== 0n) return null;
  const result = scaled / scale;
  return result > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER + 1 : Number(result);
}

export function parseNonNegativeInteger(text: string, what: string): number {
  if (!/^\d+$/.test(text.trim())) throw new UsageError(`${what} ${JSON.stringify(text)} must be a whole number >= 0`);
  const value = Number(text.trim());
  if (!Number.isSafeInteger(value)) throw new UsageError(`${what} ${JSON.stringify(text)} is too large`);
  return value;
}

export function parsePositiveInteger(text: string, what: string): number {
  const value = parseNonNegativeInteger(text, what);
  if (value === 0) throw new UsageError(`${what} must be at least 1, got 0`);
  return value;
}

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

/** `90d`, `12h`, `30m`, `1500ms`; a bare number is refused so a unit is never guessed. */
export function parseDurationMs(text: string, what = 'duration'): number {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$/i.exec(text.trim());
  if (match === null) {
    throw new UsageError(
      `${what} ${JSON.stringify(text)} is not a duration: write a number with a unit, e.g. 90d, 12h, 30m, 45s, 500ms (units ms, s, m, h, d, w)`,
    );
  }
  const [, numberText, unitText] = match as unknown as [string, string, string];
  const ms = exactProduct(numberText, DURATION_UNITS[unitText.toLowerCase()]!);
  if (ms === null) throw new UsageError(`${what} ${JSON.stringify(text)} is not a whole number of milliseconds`);
  if (!Number.isSafeInteger(ms)) throw new UsageError(`${what} ${JSON.stringify(text)} is too long`);
  return ms;
}

/** A date for --since/--until: an ISO 8601 date or time, or a duration ago (`2h` = two hours ago). */
export function parseTimeMs(text: string, what: string, nowMs: number = Date.now()): number {
  if (/^\d+(?:\.\d+)?\s*(ms|s|m|h|d|w)$/i.test(text.trim())) return nowMs - parseDurationMs(text, what);
  const parsed = Date.parse(text);
  if (Number.isNaN(parsed)) {
    throw new UsageError(`${what} ${JSON.stringify(text)} is neither an ISO 8601 time (2026-01-31T12:00:00Z) nor a duration ago (2h, 7d)`);
  }
  return parsed;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 'B';
  for (const next of units) {
    if (value < 1024) break;
    value /= 1024;
    unit = next;
  }
  const text = Number.isInteger(value) ? String(value) : value.toFixed(value < 10 ? 2 : 1);
  return `${text} ${unit}`;
}

export function formatDurationMs(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const totalSeconds = Math.round(ms / 1000);
  if (totalSeconds < 60) return `${totalSeconds}s`;
  const minutes = Math.floor(totalSeconds / 60);
  const seconds = totalSeconds % 60;
  if (minutes < 60) return `${minutes}m${String(seconds).padStart(2, '0')}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h${String(minutes % 60).padStart(2, '0')}m`;
  return `${Math.round(hours / 24)}d`;
}
