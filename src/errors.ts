/**
 * Every failure a caller can cause is a BlockvaultError with a stable `code` (DESIGN.md, "Errors").
 * Codes are part of the public API: scripts match on them, so never rename one; add new ones.
 * Programming errors in arguments of the low-level cipher API stay TypeError / RangeError, as
 * in noble-ciphers and node:crypto, and carry the code INVALID_ARGUMENT as well (src/cipher/validate.ts).
 */
export const ERROR_CODES = [
  'INVALID_ARGUMENT', // a parameter has the wrong type, shape or range
  'INVALID_CRN', // not a full `crn:v1:...:key:<id>` (a bare key id is refused too)
  'NOT_FOUND', // no such instance, key, volume, task, token or registration
  'ALREADY_EXISTS', // a name that must be unique is taken
  'NOT_AUTHORIZED', // the source service holds no Reader authorization on the key's instance
  'KEY_IN_USE', // delete refused: registrations exist (force to cryptoshred)
  'KEY_DELETION_PREVENTED', // a registration with preventKeyDeletion blocks even a forced delete
  'KEY_DELETION_NOT_AUTHORIZED', // dual authorization: setKeyForDeletion by another caller first
  'KEY_DESTROYED', // the root key's material is gone
  'KEY_STATE', // the key's state does not allow the operation (Suspended, Deactivated, ...)
  'IMPORT_TOKEN_EXPIRED', // the import token's time or retrieval limit has passed
  'WRONG_PASSPHRASE', // the HSM keystore cannot be unsealed with what was given
  'KEYSTORE_CORRUPT', // the sealed keystore, the HSM's metadata or a wrapped data key fails authentication
  'VOLUME_LOCKED', // the volume's key was destroyed; metadata only
  'VOLUME_DELETED', // the volume is soft-deleted; restore it or wait for the purge
  'VOLUME_CLOSED', // the handle was closed (or the engine was)
  'OUT_OF_RANGE', // offset/length negative, non-integer, or past the end of the volume
  'TASK_FAILED', // a rotation task ended in `failed`
  'TASK_CANCELLED', // a rotation task ended in `cancelled`
  'ENGINE_CLOSED', // the engine was closed
  'ENGINE_BUSY', // another live process (or engine in this process) has the directory open
  'TIMEOUT', // a wait (e.g. tasks.wait with timeoutMs) ran out of time; the operation itself goes on
  'AUDIT_TAMPERED', // the audit hash chain does not verify
  'VOLUME_CORRUPT', // a volume's stored record or cluster data fails its checks (details name the volume and the place)
  'LISTEN_FAILED', // the NBD server cannot listen on the address given (in use, no permission, no such directory)
  'HSM_UNAVAILABLE', // the PKCS#11 module does not load, or the slot or token named is missing or not present
  'HSM_FULL', // the PKCS#11 token has no room for another object (CKR_DEVICE_MEMORY)
  'WRITE_LOST', // a write-back write was acknowledged but its commit failed; every later flush says so
  'STORE_UNREACHABLE', // the RADOS store cannot be reached: no monitor answered within timeoutMs, the connection or authentication was refused, or librados is not installed
  'STORE_POOL_MISSING', // the RADOS pool named does not exist on the cluster
  'STORE_TIMEOUT', // a RADOS operation got no answer within timeoutMs (OSDs down or too few up to serve its placement group); a timed-out write may or may not have been applied
  'STORE_BUSY', // more RADOS operations are queued for a pool than its opsQueuedMax; slow down or raise the bound
  'STORE_CLOSED', // the RADOS pool or cluster handle was closed
  'STORE_IO', // any other failure of a RADOS operation; the message and details name the pool, object, operation and errno
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class BlockvaultError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BlockvaultError';
    this.code = code;
    this.details = details;
  }

  toJSON(): { code: ErrorCode; message: string; details?: Readonly<Record<string, unknown>> } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

export function isBlockvaultError(value: unknown, code?: ErrorCode): value is BlockvaultError {
  return value instanceof BlockvaultError && (code === undefined || value.code === code);
}

/** Invariant check: a failed assertion is a bug in blockvault, never a caller's mistake. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`blockvault invariant violated: ${message}`);
}
