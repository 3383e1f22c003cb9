import { BlockvaultError } from '../../errors.js';

/**
 * PKCS#11 return values (CKR_*) as blockvault's typed errors (pkcs11js's two shapes of error are
 * described at ckrName); anything else passes through unchanged.
 */
const UNAVAILABLE = new Set([
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_TOKEN_NOT_RECOGNIZED',
  'CKR_DEVICE_REMOVED',
  'CKR_DEVICE_ERROR',
  'CKR_SLOT_ID_INVALID',
  'CKR_SESSION_CLOSED',
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_CRYPTOKI_NOT_INITIALIZED',
  'CKR_USER_NOT_LOGGED_IN',
]);
/**
 * CKR values that mean the session itself is gone or has lost its login, so the pool must not hand
 * it out again (src/hsm/pkcs11/session-pool.ts). Measured on SoftHSM 2.6.1: after
 * C_CloseAllSessions every old handle answers CKR_SESSION_HANDLE_INVALID; after a C_Logout the
 * open sessions answer CKR_USER_NOT_LOGGED_IN. CKR_SESSION_CLOSED (closed during the call) and
 * CKR_DEVICE_REMOVED / CKR_TOKEN_NOT_PRESENT (PKCS#11 v2.40 section 5.6: removing the token
 * closes every session with it) are what other modules say for the same events.
 */
const SESSION_LOST = new Set(['CKR_SESSION_HANDLE_INVALID', 'CKR_SESSION_CLOSED', 'CKR_USER_NOT_LOGGED_IN']);
const TOKEN_REMOVED = new Set(['CKR_DEVICE_REMOVED', 'CKR_TOKEN_NOT_PRESENT']);
const FULL = new Set(['CKR_DEVICE_MEMORY']);
const WRONG_PIN = new Set(['CKR_PIN_INCORRECT', 'CKR_PIN_LEN_RANGE', 'CKR_PIN_INVALID']);

/**
 * pkcs11js 2.1 throws a Pkcs11Error whose message is the CKR name from most calls, but a plain
 * Error whose message is `CKR_NAME:number` from the three methods its PKCS11 class overrides
 * (C_CreateObject, C_CopyObject, C_SetAttributeValue); both are PKCS#11 failures.
 */
const CKR_MESSAGE = /^(CKR_[A-Z0-9_]+)(?::\d+)?$/;

/** The CKR name of a pkcs11js error, or null for any other value. */
export function ckrName(error: unknown): string | null {
  if (!(error instanceof Error)) return null;
  return CKR_MESSAGE.exec(error.message)?.[1] ?? null;
}

/**
 * Whether `error` (a pkcs11js error, or a BlockvaultError that mapPkcs11Error made of one) says the
 * session it came from is dead or logged out.
 */
export function isSessionLost(error: unknown): boolean {
  const name = ckrName(error) ?? (error instanceof BlockvaultError ? error.details?.['pkcs11'] : null);
  return typeof name === 'string' && (SESSION_LOST.has(name) || TOKEN_REMOVED.has(name));
}

/** Map a failed C_* call; `what` names the operation in the message ("wrap under key k1 v2"). */
export function mapPkcs11Error(error: unknown, what: string): unknown {
  const name = ckrName(error);
  if (name === null) return error;
  const details = { pkcs11: name };
  if (FULL.has(name)) return new BlockvaultError('HSM_FULL', `the PKCS#11 token is full (${name}) during ${what}; delete keys or use a token with more room`, details, { cause: error });
  if (WRONG_PIN.has(name)) return new BlockvaultError('WRONG_PASSPHRASE', `the PKCS#11 token refuses the PIN (${name}); give the token's user PIN`, details, { cause: error });
  if (name === 'CKR_PIN_LOCKED') return new BlockvaultError('HSM_UNAVAILABLE', 'the PKCS#11 token\'s user PIN is locked after too many wrong PINs; the security officer must reset it', details, { cause: error });
  if (SESSION_LOST.has(name)) {
    return new BlockvaultError(
      'HSM_UNAVAILABLE',
      `the PKCS#11 token lost this session or its login (${name}) during ${what}; the session was dropped, and the next operation opens a new one and logs in again: retry once the token is present`,
      details,
      { cause: error },
    );
  }
  if (UNAVAILABLE.has(name)) return new BlockvaultError('HSM_UNAVAILABLE', `the PKCS#11 token is not available (${name}) during ${what}; check that the token is present and the module configured`, details, { cause: error });
  return new BlockvaultError('HSM_UNAVAILABLE', `the PKCS#11 module failed ${what} with ${name}`, details, { cause: error });
}
