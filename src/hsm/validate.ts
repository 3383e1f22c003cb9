import { BlockvaultError } from '../errors.js';
import { MS_PER_HOUR } from '../clock.js';
import type { CallerContext } from './types.js';

/** Input checks at the HSM's boundary: each failure is INVALID_ARGUMENT with what to pass instead. */

const NAME_LENGTH_MAX = 128;
const TEXT_LENGTH_MAX = 256;
export const ID_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/;
const SERVICE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
// Control characters make names unprintable in logs and terminals.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

export function invalid(message: string): never {
  throw new BlockvaultError('INVALID_ARGUMENT', message);
}

export function optionsObject<T extends object>(value: T | undefined, call: string): Partial<T> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) invalid(`${call} takes an options object`);
  return value;
}

export function checkName(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.trim().length === 0 || value.length > NAME_LENGTH_MAX || CONTROL.test(value)) {
    invalid(`${what} must be a non-empty string of at most ${NAME_LENGTH_MAX} printable characters, got ${JSON.stringify(value)}`);
  }
  return value;
}

export function checkId(value: unknown, what: string): string {
  if (typeof value !== 'string' || !ID_PATTERN.test(value)) invalid(`${what} must be an id like the one createInstance returned, got ${JSON.stringify(value)}`);
  return value;
}

// Characters a reader cannot see: format characters (zero-width space, joiners, bidi marks),
// default-ignorable code points (variation selectors, Hangul fillers) and control characters.
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}]/u;

/**
 * The identity of a person for dual authorization, so that one person cannot pass for two by
 * spelling their name differently: trimmed, Unicode NFKC (compatibility forms such as full-width
 * letters and ligatures fold to plain ones), case-folded (upper then lower case, so 'ß' and 'SS'
 * meet at 'ss'; JavaScript has no full case folding), inner white space collapsed to one space.
 * A name with an invisible character is refused rather than normalised: it can only be meant to
 * deceive. Returns `fallback` when the value is undefined.
 */
export function checkInitiator(value: unknown, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string') invalid(`initiator must be a string naming who acts, got ${typeof value}`);
  if (INVISIBLE.test(value)) invalid(`initiator ${JSON.stringify(value)} contains an invisible character (a zero-width, format or control character); name the person in plain text`);
  const normalized = value.normalize('NFKC').toUpperCase().toLowerCase().normalize('NFKC').trim().replace(/\s+/gu, ' ');
  if (normalized.length === 0 || normalized.length > TEXT_LENGTH_MAX || INVISIBLE.test(normalized)) {
    invalid(`initiator must be a non-empty name of at most ${TEXT_LENGTH_MAX} printable characters, got ${JSON.stringify(value)}`);
  }
  return normalized;
}

export function checkText(value: unknown, what: string, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || value.length === 0 || value.length > TEXT_LENGTH_MAX || CONTROL.test(value)) {
    invalid(`${what} must be a non-empty string of at most ${TEXT_LENGTH_MAX} printable characters`);
  }
  return value;
}

export function checkBoolean(value: unknown, what: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') invalid(`${what} must be true or false`);
  return value;
}

export function checkService(value: unknown, what: string): string {
  if (typeof value !== 'string' || !SERVICE_PATTERN.test(value)) invalid(`${what} must be a service name like 'blockvault', got ${JSON.stringify(value)}`);
  return value;
}

export function checkBytes(value: unknown, what: string, lengthMin: number, lengthMax: number): Uint8Array {
  if (!(value instanceof Uint8Array)) invalid(`${what} must be a Uint8Array (or Buffer)`);
  if (value.length < lengthMin || value.length > lengthMax) invalid(`${what} must be ${lengthMin === lengthMax ? lengthMin : `${lengthMin} to ${lengthMax}`} bytes, got ${value.length}`);
  return value;
}

export function checkVersion(value: unknown, what = 'keyVersion'): number {
  if (!Number.isSafeInteger(value) || (value as number) < 1) invalid(`${what} must be a whole number >= 1 (the version a wrap returned), got ${String(value)}`);
  return value as number;
}

export function checkIntegerRange(value: unknown, what: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max) invalid(`${what} must be a whole number from ${min} to ${max}, got ${String(value)}`);
  return value as number;
}

/** At least one hour (the KMS convention is 1 to 12 months; any interval from an hour up is accepted). */
export const ROTATION_INTERVAL_MS_MIN = MS_PER_HOUR;

export function checkRotationPolicy(value: unknown): { intervalMs: number } | null {
  if (value === null) return null;
  if (value === undefined || typeof value !== 'object' || Array.isArray(value)) invalid('the rotation policy must be { intervalMs } with an interval of at least one hour, or null to remove it');
  const intervalMs = (value as { intervalMs?: unknown }).intervalMs;
  if (!Number.isSafeInteger(intervalMs) || (intervalMs as number) < ROTATION_INTERVAL_MS_MIN) {
    invalid(`rotation intervalMs must be a whole number of milliseconds, at least one hour (${ROTATION_INTERVAL_MS_MIN}); the KMS convention is 1 to 12 months. Got ${String(intervalMs)}`);
  }
  return { intervalMs: intervalMs as number };
}

export function checkCaller(value: unknown): Required<Pick<CallerContext, 'sourceService'>> & { sourceInstance: string | undefined; initiator: string } {
  if (value === null || typeof value !== 'object') {
    invalid("this operation needs a caller context { sourceService, sourceInstance?, initiator? }, e.g. { sourceService: 'blockvault' }");
  }
  const ctx = value as CallerContext;
  const sourceService = checkService(ctx.sourceService, 'sourceService');
  let sourceInstance: string | undefined;
  if (ctx.sourceInstance !== undefined) sourceInstance = checkText(ctx.sourceInstance, 'sourceInstance', '');
  return { sourceService, sourceInstance, initiator: checkText(ctx.initiator, 'initiator', sourceService) };
}
