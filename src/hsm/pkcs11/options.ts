import { isAbsolute } from 'node:path';
import { BlockvaultError } from '../../errors.js';
import { KWP_MECHANISM_DEFAULT } from './mechanisms.js';

/**
 * `Engine.open({ hsm: { pkcs11 } })`: which PKCS#11 module and token hold the root keys. Exactly
 * one of `slot` and `tokenLabel` names the token; the PIN logs in as the normal user (CKU_USER).
 */
export interface Pkcs11Options {
  /** Absolute path of the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so. */
  module: string;
  /** The slot id (as C_GetSlotList returns it). */
  slot?: number;
  /** The token's label (CKA token info, without the blank padding). */
  tokenLabel?: string;
  /** The user PIN. The CLI reads it from an environment variable or a file, never from argv. */
  pin: string;
  /**
   * The mechanism number of RFC 5649 AES key wrap with padding in this module. PKCS#11 3.0 names
   * it CKM_AES_KEY_WRAP_KWP (0x210B); SoftHSM 2.6.1 implements RFC 5649 under 0x210A
   * (CKM_AES_KEY_WRAP_PAD) and refuses 0x210B, so 0x210A is the tested default.
   */
  kwpMechanism?: number;
  /** Sessions opened for concurrent operations (default 4, at most 64). */
  sessionsMax?: number;
}

export interface ResolvedPkcs11Options {
  module: string;
  slot: number | null;
  tokenLabel: string | null;
  pin: string;
  kwpMechanism: number;
  sessionsMax: number;
}

export const SESSIONS_MAX_DEFAULT = 4;
export const SESSIONS_MAX_LIMIT = 64;
/** PKCS#11 token labels are 32 bytes, blank padded (CK_TOKEN_INFO.label). */
const TOKEN_LABEL_BYTES_MAX = 32;
/** ulPinLen is a CK_ULONG, but no token takes more than this; SoftHSM's maximum is 255. */
const PIN_LENGTH_MAX = 255;

function invalid(message: string): never {
  throw new BlockvaultError('INVALID_ARGUMENT', `hsm.pkcs11: ${message}`);
}

/** Validate once at the boundary; nothing is loaded or opened here. */
export function resolvePkcs11Options(options: unknown): ResolvedPkcs11Options {
  if (options === null || typeof options !== 'object') invalid('must be { module, slot | tokenLabel, pin }');
  const o = options as Record<string, unknown>;
  const known = new Set(['module', 'slot', 'tokenLabel', 'pin', 'kwpMechanism', 'sessionsMax']);
  for (const name of Object.keys(o)) if (!known.has(name)) invalid(`unknown option ${JSON.stringify(name)}`);
  if (typeof o['module'] !== 'string' || !isAbsolute(o['module'])) invalid('module must be the absolute path of the PKCS#11 module (.so)');
  const hasSlot = o['slot'] !== undefined;
  const hasLabel = o['tokenLabel'] !== undefined;
  if (hasSlot === hasLabel) invalid('name the token with exactly one of slot and tokenLabel');
  if (hasSlot && (typeof o['slot'] !== 'number' || !Number.isSafeInteger(o['slot']) || (o['slot'] as number) < 0)) invalid(`slot must be a whole number >= 0, got ${String(o['slot'])}`);
  if (hasLabel) {
    const label = o['tokenLabel'];
    if (typeof label !== 'string' || label.trim().length === 0 || Buffer.byteLength(label, 'utf8') > TOKEN_LABEL_BYTES_MAX) {
      invalid(`tokenLabel must be 1 to ${TOKEN_LABEL_BYTES_MAX} bytes of UTF-8`);
    }
  }
  const pin = o['pin'];
  if (typeof pin !== 'string' || pin.length === 0 || pin.length > PIN_LENGTH_MAX) invalid(`pin must be a non-empty string of at most ${PIN_LENGTH_MAX} characters`);
  const mechanism = o['kwpMechanism'] ?? KWP_MECHANISM_DEFAULT;
  if (typeof mechanism !== 'number' || !Number.isSafeInteger(mechanism) || mechanism < 0 || mechanism > 0xffffffff) invalid('kwpMechanism must be a CK_MECHANISM_TYPE number, e.g. 0x210A');
  const sessionsMax = o['sessionsMax'] ?? SESSIONS_MAX_DEFAULT;
  if (typeof sessionsMax !== 'number' || !Number.isSafeInteger(sessionsMax) || sessionsMax < 1 || sessionsMax > SESSIONS_MAX_LIMIT) {
    invalid(`sessionsMax must be a whole number from 1 to ${SESSIONS_MAX_LIMIT}`);
  }
  return {
    module: o['module'] as string,
    slot: hasSlot ? (o['slot'] as number) : null,
    tokenLabel: hasLabel ? (o['tokenLabel'] as string).trim() : null,
    pin,
    kwpMechanism: mechanism,
    sessionsMax,
  };
}
