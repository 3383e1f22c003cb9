/**
 * Authentication of stored metadata records (issue 13; the LUKS2 CVE-2021-4122 lesson: metadata
 * that decides how data is read must not be editable without detection). A record's MAC is
 * HMAC-SHA256 over a canonical encoding of its place (the LMDB key) and its value, under a key
 * derived from the HSM's metadata key, so nobody without the master key (or the PKCS#11 token)
 * can write a record that verifies.
 *
 * The encoding is canonical so that the MAC survives an encode/decode round trip through LMDB's
 * JSON or msgpack: object keys sorted, undefined members dropped, byte arrays (Buffer or
 * Uint8Array alike) as tagged hex, numbers as JSON numbers.
 */
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { assert } from '../errors.js';

export const MAC_BYTES = 32;

function canonical(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    assert(Number.isFinite(value), 'a stored number is finite');
    return JSON.stringify(value);
  }
  if (value instanceof Uint8Array) return `{"$bytes":"${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}"}`;
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  throw new Error(`blockvault invariant violated: a stored record holds no ${typeof value}`);
}

/** HMAC-SHA256(key, canonical([place, value])). */
export function recordMac(key: Uint8Array, place: unknown, value: unknown): Buffer {
  assert(key.length === MAC_BYTES, `a record MAC key is ${MAC_BYTES} bytes`);
  return createHmac('sha256', key).update(canonical([place, value])).digest();
}

export function macEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** A 32-byte sub-key of the HSM's metadata key for one purpose (HKDF-SHA256, RFC 5869). */
export function deriveRecordKey(metadataKey: Uint8Array, purpose: string): Buffer {
  assert(metadataKey.length === MAC_BYTES, `the HSM metadata key is ${MAC_BYTES} bytes`);
  return Buffer.from(hkdfSync('sha256', metadataKey, Buffer.alloc(0), `blockvault/v1/record-key/${purpose}`, MAC_BYTES));
}
