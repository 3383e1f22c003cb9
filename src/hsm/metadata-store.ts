import type { Database, RootDatabase } from 'lmdb';
import { BlockvaultError, assert } from '../errors.js';
import { MAC_BYTES, macEqual, recordMac } from '../util/record-mac.js';
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
/** The entry that authenticates the set of records as a whole (outside every record prefix). */
const HEAD_KEY: Key = ['~head'];

/** How a record is stored: the value and its MAC (record-mac.ts) over [key, value]. */
interface Sealed {
  r: unknown;
  m: string;
}

/**
 * Authentication (issue 13): every record is stored with an HMAC over its key and value, and the
 * head entry holds the XOR of all record MACs, MACed itself. A record edited, added, removed or
 * moved to another key fails its MAC; an older but genuine version of a record put back (a
 * Suspended key replayed as its earlier Active record) changes the XOR and fails the head. (A copy
 * of the whole database from earlier is consistent in itself and cannot be told apart without
 * state outside it: the same limit as any disk-encryption header.) The XOR of PRF outputs is a
 * set hash nobody without the key can steer. Verified in full at open (`authenticate`), and every
 * read checks its record's MAC again.
 */
export class MetadataStore {
  private readonly db: Database<unknown, Key>;
  private macKey: Buffer | null = null;
  /** XOR of the MACs of every record (the head's content). */
  private digest: Buffer = Buffer.alloc(MAC_BYTES);

  constructor(private readonly root: RootDatabase) {
    this.db = root.openDB<unknown, Key>(HSM_DB_NAME, { encoding: 'json' });
  }

  /**
   * Verify every record and the head under `key` (a sub-key of the provider's metadata key) and
   * authenticate everything from now on. KEYSTORE_CORRUPT names the first record that fails.
   */
  authenticate(key: Uint8Array): void {
    const macKey = Buffer.from(key);
    const digest = Buffer.alloc(MAC_BYTES);
    let head: unknown;
    let records = 0;
    for (const { key: place, value } of this.db.getRange({})) {
      if (isHead(place)) {
        head = value;
        continue;
      }
      records++;
      xorInto(digest, verifiedMac(macKey, place, value));
    }
    if (head === undefined) {
      if (records > 0) tampered(`the HSM metadata holds ${records} record(s) but no authentication head (it was removed, or written by a blockvault without metadata authentication)`, HEAD_KEY);
    } else {
      const h = head as { x?: unknown; m?: unknown };
      const ok = typeof h.x === 'string' && typeof h.m === 'string' && macEqual(Buffer.from(h.m, 'base64'), recordMac(macKey, HEAD_KEY, h.x)) && macEqual(Buffer.from(h.x, 'hex'), digest);
      if (!ok) tampered('the set of HSM metadata records is not the one last written (a record was removed, added, or an older version of one put back)', HEAD_KEY);
    }
    this.macKey = macKey;
    this.digest = digest;
  }

  private open(place: Key, stored: unknown): unknown {
    assert(this.macKey !== null, 'the HSM metadata is authenticated before it is read');
    verifiedMac(this.macKey, place, stored);
    return (stored as Sealed).r;
  }

  private get(place: Key): unknown {
    const stored = this.db.get(place);
    return stored === undefined ? undefined : this.open(place, stored);
  }

  private values<T>(prefix: Key): T[] {
    const out: T[] = [];
    for (const { key, value } of this.db.getRange({ start: prefix, end: [...prefix, RANGE_END] })) out.push(this.open(key, value) as T);
    return out;
  }

  /** Called after every committed transaction with what it changed (HsmCore: hooks.onAccessChanged). */
  onCommit: ((changed: MetadataChanges) => void) | null = null;

  /** Run `write` in one synchronous, durable LMDB write transaction (records and head together). */
  transact(write: (tx: MetadataWriter) => void): void {
    assert(this.macKey !== null, 'the HSM metadata is authenticated before it is written');
    const writer = new MetadataWriter(this.db, this.macKey, Buffer.from(this.digest));
    this.root.transactionSync(() => {
      write(writer);
      const x = writer.digest.toString('hex');
      this.db.putSync(HEAD_KEY, { x, m: recordMac(this.macKey!, HEAD_KEY, x).toString('base64') });
    });
    this.digest = writer.digest;
    this.onCommit?.(writer.changes);
  }

  instance(id: string): InstanceRecord | undefined {
    return this.get(['instance', id]) as InstanceRecord | undefined;
  }

  instances(): InstanceRecord[] {
    return this.values<InstanceRecord>(['instance']);
  }

  key(id: string): KeyRecord | undefined {
    return this.get(['key', id]) as KeyRecord | undefined;
  }

  keys(): KeyRecord[] {
    return this.values<KeyRecord>(['key']);
  }

  authorizations(): Authorization[] {
    return this.values<Authorization>(['auth']);
  }

  authorization(id: string): Authorization | undefined {
    return this.get(['auth', id]) as Authorization | undefined;
  }

  registration(keyId: string, resourceCrn: string): RegistrationRecord | undefined {
    return this.get(['reg', keyId, resourceCrn]) as RegistrationRecord | undefined;
  }

  registrationsOfKey(keyId: string): RegistrationRecord[] {
    return this.values<RegistrationRecord>(['reg', keyId]);
  }

  registrations(): RegistrationRecord[] {
    return this.values<RegistrationRecord>(['reg']);
  }

  token(instanceId: string): ImportTokenRecord | undefined {
    return this.get(['token', instanceId]) as ImportTokenRecord | undefined;
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

/** lmdb's ordered-binary keys decode a one-element tuple as its element. */
function isHead(place: unknown): boolean {
  return place === HEAD_KEY[0] || (Array.isArray(place) && place.length === 1 && place[0] === HEAD_KEY[0]);
}

function xorInto(into: Buffer, mac: Uint8Array): void {
  for (let i = 0; i < MAC_BYTES; i++) into[i]! ^= mac[i]!;
}

function tampered(message: string, place: unknown): never {
  throw new BlockvaultError('KEYSTORE_CORRUPT', `${message}; the HSM refuses to open. Restore the engine directory from a backup`, { place: JSON.stringify(place) });
}

/** The MAC of a stored record, after checking it; KEYSTORE_CORRUPT naming the record if it fails. */
function verifiedMac(key: Buffer, place: unknown, stored: unknown): Buffer {
  const sealed = stored as Partial<Sealed> | null;
  if (sealed === null || typeof sealed !== 'object' || typeof sealed.m !== 'string' || !('r' in sealed)) {
    tampered(`HSM metadata record ${JSON.stringify(place)} is not an authenticated record`, place);
  }
  const mac = recordMac(key, place, sealed.r);
  if (!macEqual(Buffer.from(sealed.m, 'base64'), mac)) tampered(`HSM metadata record ${JSON.stringify(place)} fails authentication (it was edited or moved)`, place);
  return mac;
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

  constructor(
    private readonly db: Database<unknown, Key>,
    private readonly macKey: Buffer,
    /** The head's XOR, kept current with every put and remove of this transaction. */
    readonly digest: Buffer,
  ) {}

  private put(place: Key, record: unknown): void {
    this.forget(place);
    // Stored through a JSON round trip, so the MAC covers exactly what a later read decodes.
    const value = JSON.parse(JSON.stringify(record)) as unknown;
    const mac = recordMac(this.macKey, place, value);
    xorInto(this.digest, mac);
    this.db.putSync(place, { r: value, m: mac.toString('base64') });
  }

  private remove(place: Key): void {
    this.forget(place);
    this.db.removeSync(place);
  }

  /** Take the record now at `place` (if any) out of the head's XOR. */
  private forget(place: Key): void {
    const old = this.db.get(place);
    if (old !== undefined) xorInto(this.digest, verifiedMac(this.macKey, place, old));
  }

  putInstance(record: InstanceRecord): void {
    this.put(['instance', record.id], record);
  }

  putKey(record: KeyRecord): void {
    this.put(['key', record.id], record);
    this.changes.keys.push(record);
  }

  putAuthorization(record: Authorization): void {
    this.put(['auth', record.id], record);
    this.changes.authorizations = true;
  }

  removeAuthorization(id: string): void {
    this.remove(['auth', id]);
    this.changes.authorizations = true;
  }

  putRegistration(record: RegistrationRecord): void {
    this.put(['reg', record.keyId, record.resourceCrn], record);
  }

  removeRegistration(keyId: string, resourceCrn: string): void {
    this.remove(['reg', keyId, resourceCrn]);
  }

  putToken(record: ImportTokenRecord): void {
    this.put(['token', record.instanceId], record);
  }

  removeToken(instanceId: string): void {
    this.remove(['token', instanceId]);
  }
}
