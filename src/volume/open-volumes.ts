/**
 * The open volumes of an engine: at most one VolumeCore per volume, shared by every handle and
 * re-encryption target on it (reference counted), with its data keys unwrapped while it is open
 * and zeroized when the last holder lets go.
 *
 * Also the ports the volume modules use to reach the HSM (VolumeKeyService) and the audit log
 * (VolumeAudit): the engine binds them, so nothing in src/volume knows the HSM's API.
 */
import { BlockvaultError, assert, isBlockvaultError } from '../errors.js';
import type { VolumeCatalog } from './catalog.js';
import { assertDataKey } from './data-key.js';
import { unbindDataKey } from './dek-binding.js';
import { stateOf, type VolumeRecord } from './record.js';
import { Volume, type VolumeHost } from './volume.js';
import { VolumeCore, type VolumeCoreDeps } from './volume-core.js';

/** What the volume modules need from the HSM, in the storage service's name (the engine binds the caller). */
export interface VolumeKeyService {
  /** AES-KWP of a data key under the root key's newest version. */
  wrap(keyCrn: string, dataKey: Uint8Array): Promise<{ keyVersion: number; wrapped: Uint8Array }>;
  /** The data key; the caller owns (and zeroizes) the returned buffer. */
  unwrap(keyCrn: string, wrapped: Uint8Array, keyVersion: number): Promise<Uint8Array>;
  createRegistration(keyCrn: string, resourceCrn: string, keyVersion: number): Promise<void>;
  updateRegistration(keyCrn: string, resourceCrn: string, keyVersion: number): Promise<void>;
  /** Remove a registration; one already gone is not an error. */
  deleteRegistration(keyCrn: string, resourceCrn: string): Promise<void>;
}

/** Appends a volume event (create, delete, restore, lock, purge) to the audit log. */
export type VolumeAudit = (action: string, record: VolumeRecord) => Promise<void>;

export interface OpenVolumesDeps {
  catalog: VolumeCatalog;
  coreDeps: VolumeCoreDeps;
  keyService: VolumeKeyService;
  /** Refusal if the engine is closed, else null. */
  engineError(): BlockvaultError | null;
  /**
   * An open found the volume's root key destroyed (the HSM said KEY_DESTROYED on unwrap): lock
   * every volume of that key (the cryptoshred lock), as the HSM's delete hook would have.
   */
  onKeyDestroyed(keyCrn: string): Promise<unknown>;
}

export class OpenVolumes {
  readonly #deps: OpenVolumesDeps;
  readonly #cores = new Map<string, VolumeCore>();
  readonly #opening = new Map<string, Promise<VolumeCore>>();
  /** What every Volume handle asks of its engine. */
  readonly host: VolumeHost;

  constructor(deps: OpenVolumesDeps) {
    this.#deps = deps;
    this.host = {
      infoOf: (id) => deps.catalog.infoOrLast(id),
      engineError: () => deps.engineError(),
      release: (core) => this.release(core),
    };
  }

  /** The open core of a volume, if any (not acquired: the caller does not hold it). */
  get(volumeId: string): VolumeCore | undefined {
    return this.#cores.get(volumeId);
  }

  /** The root-key CRNs of the volumes open now. */
  keyCrns(): Set<string> {
    const crns = new Set<string>();
    for (const core of this.#cores.values()) crns.add(core.record.diskEncryptionKeyCrn);
    return crns;
  }

  /** A new handle on a core the caller already holds (one reference per handle). */
  handle(core: VolumeCore): Volume {
    return new Volume(core, this.host);
  }

  /** Register the core of a volume just created, with its first data key loaded; the caller holds one reference. */
  adopt(core: VolumeCore): void {
    assert(!this.#cores.has(core.id) && !this.#opening.has(core.id), 'a new volume has no open core yet');
    core.refs = 1;
    this.#cores.set(core.id, core);
  }

  /** Follow a record change (the catalog's onRecord). */
  follow(record: VolumeRecord): void {
    this.#cores.get(record.id)?.setRecord(record);
  }

  /** Hold the volume's core open (opening it and unwrapping its data keys if needed). */
  async acquire(volumeId: string): Promise<VolumeCore> {
    const open = this.#cores.get(volumeId);
    if (open !== undefined) {
      open.refs++;
      return open;
    }
    let opening = this.#opening.get(volumeId);
    if (opening === undefined) {
      opening = this.#open(volumeId);
      this.#opening.set(volumeId, opening);
      void opening.finally(() => this.#opening.delete(volumeId)).catch(() => undefined);
    }
    const core = await opening;
    core.refs++;
    return core;
  }

  /** Let go of a core; the last holder closes it (its keys are zeroized). */
  async release(core: VolumeCore): Promise<void> {
    assert(core.refs > 0, 'a released core was held');
    core.refs--;
    if (core.refs > 0) return;
    if (this.#cores.get(core.id) === core) this.#cores.delete(core.id);
    await core.close(new BlockvaultError('VOLUME_CLOSED', `volume ${core.id} was closed; open it again with engine.openVolume`));
  }

  /** Close a volume's core whoever holds it (a purge): its holders' I/O fails with `error`. */
  async drop(volumeId: string, error: BlockvaultError): Promise<void> {
    const core = this.#cores.get(volumeId);
    if (core === undefined) return;
    this.#cores.delete(volumeId);
    await core.close(error);
  }

  /** Unwrap every data-key generation of the record that the core does not hold yet. */
  async loadKeys(core: VolumeCore, record: VolumeRecord): Promise<void> {
    for (const generation of record.generations) {
      if (core.keys.has(generation.generation)) continue;
      const unwrapped = await this.#deps.keyService.unwrap(record.diskEncryptionKeyCrn, generation.wrapped, generation.keyVersion);
      const key = unbindDataKey(unwrapped, record, generation.generation);
      assertDataKey(key);
      core.keys.set(generation.generation, key);
    }
  }

  /** Close every core (engine close), after opens under way have settled. */
  async closeAll(error: BlockvaultError): Promise<void> {
    await Promise.all([...this.#opening.values()].map((p) => p.catch(() => undefined)));
    const cores = [...this.#cores.values()];
    this.#cores.clear();
    await Promise.all(cores.map((core) => core.close(error)));
  }

  async #open(volumeId: string): Promise<VolumeCore> {
    const { catalog } = this.#deps;
    const record = catalog.get(volumeId);
    if (record === undefined) throw new BlockvaultError('NOT_FOUND', `volume ${volumeId} no longer exists (purged)`, { volumeId });
    const core = new VolumeCore(record, this.#deps.coreDeps);
    const state = stateOf(record);
    if (state === 'active' || state === 'syncing') {
      try {
        await this.loadKeys(core, record);
      } catch (error) {
        core.keys.wipe();
        if (!isBlockvaultError(error, 'KEY_DESTROYED')) throw error;
        await this.#deps.onKeyDestroyed(record.diskEncryptionKeyCrn);
      }
    }
    const current = catalog.current(volumeId);
    core.setRecord(current);
    // Locked while its keys were being unwrapped (the core was not registered yet, so the lock
    // could not wipe them): they go now.
    if (stateOf(current) === 'locked') core.shred(keysShreddedError(current));
    this.#cores.set(volumeId, core);
    return core;
  }
}

/** What a locked volume's key ring throws when a key is set after the shred (an unwrap that raced it). */
export function keysShreddedError(record: VolumeRecord): BlockvaultError {
  return new BlockvaultError(
    'VOLUME_LOCKED',
    `volume ${record.name} (${record.id}) is locked: its root key ${record.diskEncryptionKeyCrn} was destroyed, so its data keys can never be loaded again; only its metadata remains`,
    { volumeId: record.id, keyCrn: record.diskEncryptionKeyCrn },
  );
}
