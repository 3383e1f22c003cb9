/**
 * Every bound of the RADOS object layer, and the checks of what callers hand it. Validation
 * happens once, here, at the boundary; the binding checks again only against misuse of itself.
 */
import { BlockvaultError } from '../../errors.js';
import { asBuffer } from '../../util/bytes.js';

/**
 * Object names: 1 to 256 characters of `A-Z a-z 0-9 . _ - :`. RADOS itself takes any bytes up to
 * osd_max_object_name_len (2048); a small plain alphabet keeps names safe in logs, CLI arguments
 * (`rados get <oid>`) and JSON, and leaves room for namespaces and locators later.
 */
export const OID_CHARS_MAX = 256;
/** The most names one listObjects returns (the addon's bound too): 2^24 names, about 1 GiB at most. */
export const LIST_NAMES_MAX = 2 ** 24;
const OID_PATTERN = /^[A-Za-z0-9._:-]+$/;
/** Pool names: Ceph allows more, but its CLI and most tooling expect this alphabet. */
export const POOL_NAME_CHARS_MAX = 128;
const POOL_NAME_PATTERN = /^[A-Za-z0-9._-]+$/;
/** Ceph user ids (the `admin` of `client.admin`). */
export const USER_CHARS_MAX = 64;
const USER_PATTERN = /^[A-Za-z0-9._-]+$/;

/**
 * One object, read or written whole, holds at most 64 MiB: below the OSD's osd_max_write_size
 * (90 MiB) and osd_max_object_size (128 MiB), which would refuse a bigger write only after it
 * crossed the network. The addon enforces the same bound.
 */
export const OBJECT_BYTES_MAX = 64 * 1024 * 1024;

/** librados takes its timeouts in whole seconds; timeoutMs is rounded up to one. */
export const TIMEOUT_MS_MIN = 1000;
export const TIMEOUT_MS_MAX = 600_000;

/** The addon refuses more than 512 operations in flight per pool. */
export const OPS_IN_FLIGHT_LIMIT = 512;
export const OPS_IN_FLIGHT_MAX_DEFAULT = 64;
/** Operations waiting for an in-flight slot, beyond which calls fail with STORE_BUSY. */
export const OPS_QUEUED_LIMIT = 65_536;
export const OPS_QUEUED_MAX_DEFAULT = 4096;
/**
 * Bytes of operations in flight per pool (data written plus bytes asked for by reads). At least
 * one whole object, so that any single operation can run.
 */
export const BYTES_IN_FLIGHT_MIN = OBJECT_BYTES_MAX;
export const BYTES_IN_FLIGHT_LIMIT = 4 * 1024 * 1024 * 1024;
export const BYTES_IN_FLIGHT_MAX_DEFAULT = 256 * 1024 * 1024;
/** Extra librados options (`config`) a caller may pass, and their sizes. */
export const CONFIG_ENTRIES_MAX = 64;
const CONFIG_VALUE_CHARS_MAX = 4096;
const PATH_CHARS_MAX = 4096;

export function invalid(message: string, details?: Record<string, unknown>): never {
  throw new BlockvaultError('INVALID_ARGUMENT', message, details);
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}

function named(what: string, value: unknown, pattern: RegExp, charsMax: number, alphabet: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > charsMax || !pattern.test(value)) {
    invalid(`${what} must be 1 to ${charsMax} characters of ${alphabet}, got ${describe(value)}`);
  }
  return value;
}

export function checkOid(oid: unknown): string {
  return named('a RADOS object name', oid, OID_PATTERN, OID_CHARS_MAX, 'A-Z a-z 0-9 . _ - :');
}

export function checkPoolName(name: unknown): string {
  return named('a RADOS pool name', name, POOL_NAME_PATTERN, POOL_NAME_CHARS_MAX, 'A-Z a-z 0-9 . _ -');
}

export function checkUser(user: unknown): string {
  if (typeof user === 'string' && user.startsWith('client.')) invalid(`user is the Ceph user id without the "client." prefix (e.g. "admin"), got ${describe(user)}`);
  return named('user (a Ceph user id)', user, USER_PATTERN, USER_CHARS_MAX, 'A-Z a-z 0-9 . _ -');
}

export function checkWholeNumber(what: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    invalid(`${what} must be a whole number from ${min} to ${max}, got ${describe(value)}`);
  }
  return value;
}

/**
 * Object data: a Buffer or Uint8Array (views of a SharedArrayBuffer are refused: another thread
 * could change them while librados copies them), at most OBJECT_BYTES_MAX bytes.
 */
export function checkBytes(what: string, value: unknown, options: { allowEmpty: boolean }): Buffer {
  if (!(value instanceof Uint8Array)) invalid(`${what} must be a Buffer or Uint8Array, got ${describe(value)}`);
  if (value.buffer instanceof SharedArrayBuffer) invalid(`${what} must not be a view of a SharedArrayBuffer`);
  if (value.byteLength > OBJECT_BYTES_MAX) invalid(`${what} is ${value.byteLength} bytes; at most ${OBJECT_BYTES_MAX} (OBJECT_BYTES_MAX)`);
  if (!options.allowEmpty && value.byteLength === 0) invalid(`${what} must not be empty`);
  return asBuffer(value);
}

export function checkPath(what: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > PATH_CHARS_MAX || value.includes('\0')) {
    invalid(`${what} must be a file path (1 to ${PATH_CHARS_MAX} characters, no NUL), got ${describe(value)}`);
  }
  return value;
}

/** `config`: more librados options by name, e.g. { ms_mon_client_mode: 'crc' }. */
export function checkConfig(value: unknown): Record<string, string> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) invalid(`config must be an object of librados option names to string values, got ${describe(value)}`);
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > CONFIG_ENTRIES_MAX) invalid(`config has ${entries.length} entries; at most ${CONFIG_ENTRIES_MAX}`);
  const out: Record<string, string> = {};
  for (const [key, v] of entries) {
    named('a config option name', key, /^[a-z0-9_ ]+$/, 128, 'a-z 0-9 _ and spaces');
    if (typeof v !== 'string' || v.length > CONFIG_VALUE_CHARS_MAX || v.includes('\0')) invalid(`config.${key} must be a string of at most ${CONFIG_VALUE_CHARS_MAX} characters without NUL, got ${describe(v)}`);
    out[key] = v;
  }
  return out;
}
