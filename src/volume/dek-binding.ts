/**
 * A wrapped data key names the volume and generation it belongs to (the LUKS2 CVE-2021-4122
 * lesson: metadata an attacker can edit must not be able to move keys between contexts).
 *
 * AES-KWP (RFC 5649) authenticates what it wraps but takes no associated data, so the binding
 * goes inside: the root key wraps `dataKey (64 bytes) || binding (16 bytes)`, where binding is
 * the first 16 bytes of SHA-256("blockvault/v1/dek-binding\0" || volumeId || "\0" || generation).
 * Nobody without the root key can make a wrapped key whose binding names another volume, so a
 * wrapped key swapped in from another volume (or another generation of the same one) unwraps
 * under the right root key and is still refused, with KEYSTORE_CORRUPT naming the volume, instead
 * of decrypting sectors to garbage. 80 bytes is a multiple of 8, which keeps AES-KWP without
 * padding quirks in PKCS#11 tokens (SoftHSM 2.6.1 mis-pads other lengths). A rewrap inside the HSM
 * carries the binding along untouched.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { BlockvaultError, assert } from '../errors.js';
import { DATA_KEY_BYTES } from './data-key.js';

export const BINDING_BYTES = 16;
/** What the root key wraps for one data-key generation. */
export const BOUND_DATA_KEY_BYTES = DATA_KEY_BYTES + BINDING_BYTES;

function binding(volumeId: string, generation: number): Buffer {
  assert(Number.isSafeInteger(generation) && generation >= 1, `a data-key generation is a positive integer, got ${generation}`);
  return createHash('sha256').update(`blockvault/v1/dek-binding\0${volumeId}\0${generation}`).digest().subarray(0, BINDING_BYTES);
}

/** The plaintext to wrap: a new buffer the caller zeroizes after wrapping. */
export function bindDataKey(dataKey: Uint8Array, volumeId: string, generation: number): Uint8Array {
  assert(dataKey.length === DATA_KEY_BYTES, `a data key is ${DATA_KEY_BYTES} bytes`);
  const bound = new Uint8Array(BOUND_DATA_KEY_BYTES);
  bound.set(dataKey, 0);
  bound.set(binding(volumeId, generation), DATA_KEY_BYTES);
  return bound;
}

/**
 * The data key out of an unwrapped plaintext, after checking that it names this volume and
 * generation. Zeroizes `unwrapped` in every case; the caller owns the returned key.
 */
export function unbindDataKey(unwrapped: Uint8Array, volume: { id: string; name: string }, generation: number): Uint8Array {
  try {
    const ok = unwrapped.length === BOUND_DATA_KEY_BYTES && timingSafeEqual(unwrapped.subarray(DATA_KEY_BYTES), binding(volume.id, generation));
    if (!ok) {
      throw new BlockvaultError(
        'KEYSTORE_CORRUPT',
        `the wrapped data key of volume ${volume.name} (${volume.id}), generation ${generation}, does not belong to it (it was written for another volume or generation, or the record was edited); the volume's record must be restored from a backup`,
        { volumeId: volume.id, generation, place: `volume record ${volume.id}: generations[${generation}].wrapped` },
      );
    }
    return Uint8Array.from(unwrapped.subarray(0, DATA_KEY_BYTES));
  } finally {
    unwrapped.fill(0);
  }
}
