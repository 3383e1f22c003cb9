/**
 * Which root keys the storage service may not use right now, and why: a Suspended key (KMS
 * state 2), a revoked Reader authorization. A cloud service loses access to a key on its next use
 * of it; blockvault's open volumes hold unwrapped data keys, so without this gate they would go on
 * reading and writing with a key the customer has disabled. Every volume step asks the gate
 * (VolumeCore.ioError), so I/O stops at once and resumes, without a reopen, once access is back.
 *
 * The gate only records refusals; the engine fills it from the HSM (SoftHsm.keyAccessError)
 * whenever the HSM's metadata changes. A lookup is one Map read per I/O step.
 */
import { BlockvaultError, assert } from '../errors.js';

/** At most this many keys are refused at once (one entry per refused key; far above real use). */
export const REFUSED_KEYS_MAX = 1 << 20;

export class KeyAccess {
  readonly #refused = new Map<string, BlockvaultError>();

  /** Why I/O under `keyCrn` is refused, or null. */
  refusal(keyCrn: string): BlockvaultError | null {
    return this.#refused.get(keyCrn) ?? null;
  }

  /** Record the HSM's answer for one key: an error refuses it, null allows it again. */
  set(keyCrn: string, refusal: BlockvaultError | null): void {
    if (refusal === null) {
      this.#refused.delete(keyCrn);
      return;
    }
    assert(this.#refused.has(keyCrn) || this.#refused.size < REFUSED_KEYS_MAX, `more than ${REFUSED_KEYS_MAX} root keys refused at once`);
    this.#refused.set(keyCrn, refusal);
  }

  /** The keys refused now (they must be asked again when authorizations change). */
  refusedKeys(): string[] {
    return [...this.#refused.keys()];
  }
}

/** The error a volume's I/O fails with while its key is refused. */
export function accessRefusedError(volume: { id: string; name: string; diskEncryptionKeyCrn: string }, refusal: BlockvaultError): BlockvaultError {
  return new BlockvaultError(
    refusal.code,
    `volume ${volume.name} (${volume.id}) cannot be read or written now: ${refusal.message}. I/O continues, without reopening the volume, once the key is usable again`,
    { volumeId: volume.id, keyCrn: volume.diskEncryptionKeyCrn },
  );
}
