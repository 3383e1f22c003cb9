/**
 * The cryptoshred lock (DESIGN.md, "Deletion and cryptoshredding"): every volume that used a
 * destroyed root key is marked locked and its data keys are wiped, synchronously, so no step that
 * runs afterwards can read or write it; the lock is then persisted and audited. A locked volume
 * keeps its record (metadata) for good; nothing unlocks it.
 *
 * Whoever finds a key destroyed locks through here: the HSM's delete hook, an open whose unwrap
 * said KEY_DESTROYED, and the reconciliation on engine open.
 */
import type { Clock } from '../clock.js';
import type { VolumeCatalog } from './catalog.js';
import { keysShreddedError, type OpenVolumes, type VolumeAudit } from './open-volumes.js';
import { infoOf, withChanges, type VolumeInfo, type VolumeRecord } from './record.js';

export interface ShredLockDeps {
  catalog: VolumeCatalog;
  volumes: OpenVolumes;
  audit: VolumeAudit;
  clock: Clock;
  /** Told, in the same synchronous turn, which volumes were just locked (the engine stops their rotation tasks). */
  onLocked(records: readonly VolumeRecord[]): void;
}

export class ShredLock {
  readonly #deps: ShredLockDeps;
  /** Locked in memory (lockNow) but not persisted yet, by key CRN. */
  readonly #unpersisted = new Map<string, VolumeRecord[]>();

  constructor(deps: ShredLockDeps) {
    this.#deps = deps;
  }

  /**
   * The synchronous half: lock every volume using `keyCrn` (or registered as one of
   * `resourceCrns`) that is not locked yet. When this returns, the records say locked, the keys
   * are wiped (and an unwrap still under way cannot put one back: KeyRing.shred), and `onLocked`
   * has run. The HSM calls this from deleteKey before any durable work (hooks.onDestroying);
   * `lockForKey` makes it durable.
   */
  lockNow(keyCrn: string, resourceCrns: readonly string[] = [], reason = 'root key destroyed'): VolumeRecord[] {
    const { catalog, volumes } = this.#deps;
    const resources = new Set(resourceCrns);
    const now = this.#deps.clock.nowMs();
    const locked: VolumeRecord[] = [];
    for (const record of catalog.records()) {
      if (record.lockedAtMs !== null) continue;
      if (record.diskEncryptionKeyCrn !== keyCrn && !resources.has(record.crn)) continue;
      const next = withChanges(record, { lockedAtMs: now, lockReason: reason });
      catalog.set(next); // synchronous: every step that runs after this sees the lock
      volumes.get(record.id)?.shred(keysShreddedError(next));
      locked.push(next);
    }
    if (locked.length > 0) {
      this.#unpersisted.set(keyCrn, [...(this.#unpersisted.get(keyCrn) ?? []), ...locked]);
      this.#deps.onLocked(locked);
    }
    return locked;
  }

  /**
   * Lock (lockNow) and make durable every lock of `keyCrn` not persisted yet, then audit each.
   * Resolves with the volumes whose lock this call persisted.
   */
  lockForKey(keyCrn: string, resourceCrns: readonly string[] = [], reason = 'root key destroyed'): Promise<VolumeInfo[]> {
    this.lockNow(keyCrn, resourceCrns, reason);
    const locked = this.#unpersisted.get(keyCrn) ?? [];
    this.#unpersisted.delete(keyCrn);
    return (async () => {
      // The record may have changed since it was locked (a rotation's mark): persist what is current.
      const current = locked.map((record) => this.#deps.catalog.get(record.id)).filter((r): r is VolumeRecord => r !== undefined);
      await this.#deps.catalog.persist(current);
      for (const record of current) await this.#deps.audit('blockvault.volume.lock', record);
      return current.map(infoOf);
    })();
  }
}
