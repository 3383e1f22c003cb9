import type { Database, RootDatabase } from 'lmdb';
import type { Authorization, KeyState, Registration, RotationPolicy } from './types.js';

/**
 * HSM metadata in one LMDB sub-database, `hsm-metadata`, keyed by tuples:
 *   ['instance', id]                 InstanceRecord
 *   ['key', id]                      KeyRecord
 *   ['auth', id]                     Authorization
 *   ['reg', keyId, resourceCrn]      RegistrationRecord
 *   ['token', instanceId]            ImportTokenRecord
 * Root-key material is never here (see software-provider.ts for why). Every change is one
 * synchronous LMDB transaction, so each HSM operation's metadata moves atomically and is durable
 * before the operation reports success.
 */
export const HSM_DB_NAME = 'hsm-metadata';

export interface InstanceRecord {
  id: string;
  name: string;
  createdAtMs: number;
  platformManaged: boolean;
}

export interface KeyVersionRecord {
  version: number;
  createdAtMs: number;
  destroyedAtMs: number | null;
}

/** An interrupted destruction is finished when the HSM opens again. */
export interface PendingDestroy {
  versions: number[];
  force: boolean;
  initiator: string;
  affectedResources: string[];
}

export interface KeyRecord {
  id: string;
  name: string;
  instanceId: string;
  state: KeyState;
  versions: KeyVersionRecord[];
  createdAtMs: number;
  rotatedAtMs: number | null;
  imported: boolean;
  platformManaged: boolean;
  dualAuthDelete: boolean;
  deletionAuthorizedBy: string | null;
  deletionAuthorizedAtMs: number | null;
  rotationPolicy: RotationPolicy | null;
  destroyedAtMs: number | null;
  pendingDestroy: PendingDestroy | null;
}

export interface RegistrationRecord {
  keyId: string;
  resourceCrn: string;
  keyVersion: number;
  preventKeyDeletion: boolean;
  createdAtMs: number;
  updatedAtMs: number;
}

export interface ImportTokenRecord {
  instanceId: string;
  transportKeyId: string;
  publicKeyPem: string;
  createdAtMs: number;
  expiresAtMs: number;
  maxRetrievals: number;
  retrievals: number;
}

type Key = (string | number)[];
const RANGE_END = '\uffff';

export class MetadataStore {
  private readonly db: Database<unknown, Key>;

  constructor(private readonly root: RootDatabase) {
    this.db = root.openDB<unknown, Key>(HSM_DB_NAME, { encoding: 'json' });
  }

  private values<T>(prefix: Key): T[] {
    const out: T[] = [];
    for (const { value } of this.db.getRange({ start: prefix, end: [...prefix, RANGE_END] })) out.push(value as T);
    return out;
  }

  /** Called after every committed transaction with what it changed (HsmCore: hooks.onAccessChanged). */
  onCommit: ((changed: MetadataChanges) => void) | null = null;

  /** Run `write` in one synchronous, durable LMDB write transaction. */
  transact(write: (tx: MetadataWriter) => void): void {
    const writer = new MetadataWriter(this.db);
    this.root.transactionSync(() => write(writer));
    this.onCommit?.(writer.changes);
  }

  instance(id: string): InstanceRecord | undefined {
    return this.db.get(['instance', id]) as InstanceRecord | undefined;
  }

  instances(): InstanceRecord[] {
    return this.values<InstanceRecord>(['instance']);
  }

  key(id: string): KeyRecord | undefined {
    return this.db.get(['key', id]) as KeyRecord | undefined;
  }

  keys(): KeyRecord[] {
    return this.values<KeyRecord>(['key']);
  }

  authorizations(): Authorization[] {
    return this.values<Authorization>(['auth']);
  }

  authorization(id: string): Authorization | undefined {
    return this.db.get(['auth', id]) as Authorization | undefined;
  }

  registration(keyId: string, resourceCrn: string): RegistrationRecord | undefined {
    return this.db.get(['reg', keyId, resourceCrn]) as RegistrationRecord | undefined;
  }

  registrationsOfKey(keyId: string): RegistrationRecord[] {
    return this.values<RegistrationRecord>(['reg', keyId]);
  }

  registrations(): RegistrationRecord[] {
    return this.values<RegistrationRecord>(['reg']);
  }

  token(instanceId: string): ImportTokenRecord | undefined {
    return this.db.get(['token', instanceId]) as ImportTokenRecord | undefined;
  }

  tokens(): ImportTokenRecord[] {
    return this.values<ImportTokenRecord>(['token']);
  }

  /** True when the HSM holds anything at all (then its keystore file must exist). */
  isEmpty(): boolean {
    for (const _entry of this.db.getKeys({ limit: 1 })) return false;
    return true;
  }
}

/** What one transaction changed that can change who may use a key. */
export interface MetadataChanges {
  /** Key records written (state, versions, pending destruction). */
  keys: KeyRecord[];
  /** An authorization was granted or revoked. */
  authorizations: boolean;
}

/** Writes inside one transaction. */
export class MetadataWriter {
  readonly changes: MetadataChanges = { keys: [], authorizations: false };

  constructor(private readonly db: Database<unknown, Key>) {}

  putInstance(record: InstanceRecord): void {
    this.db.putSync(['instance', record.id], record);
  }

  putKey(record: KeyRecord): void {
    this.db.putSync(['key', record.id], record);
    this.changes.keys.push(record);
  }

  putAuthorization(record: Authorization): void {
    this.db.putSync(['auth', record.id], record);
    this.changes.authorizations = true;
  }

  removeAuthorization(id: string): void {
    this.db.removeSync(['auth', id]);
    this.changes.authorizations = true;
  }

  putRegistration(record: RegistrationRecord): void {
    this.db.putSync(['reg', record.keyId, record.resourceCrn], record);
  }

  removeRegistration(keyId: string, resourceCrn: string): void {
    this.db.removeSync(['reg', keyId, resourceCrn]);
  }

  putToken(record: ImportTokenRecord): void {
    this.db.putSync(['token', record.instanceId], record);
  }

  removeToken(instanceId: string): void {
    this.db.removeSync(['token', instanceId]);
  }
}
