/**
 * The HSM's public shapes (DESIGN.md, "Key hierarchy" and "States"). These are the contract
 * between src/hsm and its callers (engine, volume, rotation, CLI). Extend, don't rename.
 */

/** Root-key states, numbered as the KMS numbers them. */
export const KeyState = {
  Active: 1,
  Suspended: 2,
  Deactivated: 3,
  Destroyed: 5,
} as const;
export type KeyState = (typeof KeyState)[keyof typeof KeyState];
export type KeyStateName = 'Active' | 'Suspended' | 'Deactivated' | 'Destroyed';

export interface HsmInstanceInfo {
  id: string;
  name: string;
  crn: string;
  createdAtMs: number;
  /** The internal 'platform' instance that holds platform-managed root keys. */
  platformManaged?: boolean;
}

export interface RootKeyVersionInfo {
  version: number; // 1, 2, ... ; the newest wraps, all non-destroyed ones unwrap
  createdAtMs: number;
  /** When this version's material was destroyed (with the key); null while it exists. */
  destroyedAtMs?: number | null;
}

export interface RotationPolicy {
  /** At least one hour; the KMS convention is 1 to 12 months. */
  intervalMs: number;
}

export interface RootKeyInfo {
  id: string;
  name: string;
  crn: string;
  instanceId: string;
  state: KeyState;
  stateName: KeyStateName;
  /** The current (newest) version; wrap always uses it. */
  version: number;
  versions: RootKeyVersionInfo[];
  createdAtMs: number;
  rotatedAtMs: number | null;
  imported: boolean;
  /** Created by blockvault for a volume provisioned without a customer key. */
  platformManaged: boolean;
  dualAuthDelete: boolean;
  /** Who called setKeyForDeletion, when dual authorization is on and a deletion is pending. */
  deletionAuthorizedBy: string | null;
  /** Until when that pending authorization is valid (7 days after setKeyForDeletion). */
  deletionAuthorizedUntilMs?: number | null;
  rotationPolicy: RotationPolicy | null;
  destroyedAtMs: number | null;
}

/** Who is calling: wrap, unwrap and registration requests are checked against authorizations. */
export interface CallerContext {
  sourceService: string;
  sourceInstance?: string;
  /** Free text for the audit log (a user, a process); defaults to sourceService. */
  initiator?: string;
}

export interface WrapResult {
  keyCrn: string;
  keyVersion: number;
  /** AES-KWP (RFC 5649) output under that key version. */
  wrapped: Uint8Array;
}

export interface UnwrapResult {
  plaintext: Uint8Array;
  keyVersion: number;
  /** True when `keyVersion` is older than the key's current version. */
  rewrapRecommended: boolean;
}

export type AuthorizationRole = 'Reader';

export interface Authorization {
  id: string;
  sourceService: string;
  /** '*' means every instance of the source service. */
  sourceInstance: string;
  targetInstance: string;
  role: AuthorizationRole;
  createdAtMs: number;
}

export interface Registration {
  keyCrn: string;
  resourceCrn: string;
  keyVersion: number;
  preventKeyDeletion: boolean;
  createdAtMs: number;
  updatedAtMs?: number;
}

export interface ImportTokenInfo {
  instanceId: string;
  /** RSA-OAEP-SHA256 public key, SPKI PEM. Encrypt the 32-byte material to it. */
  publicKeyPem: string;
  createdAtMs: number;
  expiresAtMs: number;
  maxRetrievals: number;
  retrievals: number;
}

/** What createImportToken returns: the token's terms, without its public key (fetching that counts). */
export type ImportTokenStatus = Omit<ImportTokenInfo, 'publicKeyPem'>;

/** What one run of the rotation-policy scheduler did. */
export interface RotationSchedulerResult {
  /** Keys rotated because their policy was due, with what `hooks.onRotated` returned for each. */
  rotated: { keyCrn: string; version: number; tasks: unknown[] }[];
  /** Keys whose policy was due but that were not rotated, and why (imported, not Active). */
  skipped: { keyCrn: string; reason: string }[];
  /** Keys whose rotation failed; the others still ran. */
  failed: { keyCrn: string; code: string; message: string }[];
  /** When the next policy falls due (null when no Active key has a policy). */
  nextDueAtMs: number | null;
}

export interface DeleteKeyResult {
  key: RootKeyInfo;
  /** Resource CRNs that were registered against the key when it was destroyed. */
  affectedResources: string[];
}

/**
 * How the engine reacts to key lifecycle events. The HSM calls these; it knows nothing about
 * volumes or tasks.
 */
export interface HsmHooks {
  /**
   * After a new key version exists: start the "Syncing KMS state" tasks for the registered
   * resources and return them (`engine.hsm.rotateKey` returns this list).
   */
  onRotated?(key: RootKeyInfo, options: { rewrapOnly: boolean }): Promise<unknown[]>;
  /**
   * Called synchronously by `deleteKey`, in the call itself, once the key is known to be
   * deletable and is unusable in memory, before any durable work: lock every affected resource
   * and wipe its data keys now. Must not call back into the HSM; must not throw.
   */
  onDestroying?(keyCrn: string, affectedResources: string[]): void;
  /**
   * After the material is destroyed (durably) and before `deleteKey` returns; also on open, for
   * a destruction a crash interrupted: make the resources' locks durable.
   */
  onDestroyed?(key: RootKeyInfo, affectedResources: string[]): void | Promise<void>;
  /**
   * Synchronously after every committed metadata change (a state change, an authorization
   * granted or revoked, ...): who may use which key may have changed, so resources that are open
   * re-check their access (`SoftHsm.keyAccessError`). Must not call back into the HSM's mutex.
   */
  onAccessChanged?(changed: { keyCrns: string[]; authorizations: boolean }): void;
}
