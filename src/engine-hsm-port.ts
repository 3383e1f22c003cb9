/**
 * The HSM as the engine's volumes see it: every call made in the storage service's name (its
 * Reader authorization on the key's instance is what lets it wrap and unwrap), the CRNs of the
 * volumes it registers, and the root-key checks provisioning needs.
 */
import { formatCrn, parseCrn } from './crn.js';
import { BlockvaultError, isBlockvaultError } from './errors.js';
import type { SoftHsm } from './hsm/index.js';
import { KeyState, type CallerContext, type RootKeyInfo } from './hsm/types.js';
import type { ProvisioningKey } from './volume/lifecycle.js';
import type { VolumeKeyService } from './volume/open-volumes.js';

/** The service name blockvault presents to the HSM: it needs a Reader authorization on the key's instance. */
export const STORAGE_SERVICE = 'blockvault';

export class StorageServicePort {
  readonly #hsm: SoftHsm;
  readonly #engineId: string;
  /** What src/volume calls to wrap, unwrap and register. */
  readonly keyService: VolumeKeyService;

  constructor(hsm: SoftHsm, engineId: string) {
    this.#hsm = hsm;
    this.#engineId = engineId;
    this.keyService = {
      wrap: async (keyCrn, dataKey) => hsm.wrap(keyCrn, dataKey, this.caller()),
      unwrap: async (keyCrn, wrapped, keyVersion) => (await hsm.unwrap(keyCrn, wrapped, keyVersion, this.caller())).plaintext,
      createRegistration: async (keyCrn, resourceCrn, keyVersion) => {
        await hsm.createRegistration({ keyCrn, resourceCrn, keyVersion }, this.caller());
      },
      updateRegistration: async (keyCrn, resourceCrn, keyVersion) => {
        await hsm.updateRegistration({ keyCrn, resourceCrn, keyVersion }, this.caller());
      },
      deleteRegistration: async (keyCrn, resourceCrn) => {
        try {
          await hsm.deleteRegistration(keyCrn, resourceCrn, this.caller());
        } catch (error) {
          if (!isBlockvaultError(error, 'NOT_FOUND')) throw error;
        }
      },
    };
  }

  caller(): CallerContext {
    return { sourceService: STORAGE_SERVICE, sourceInstance: this.#engineId, initiator: 'blockvault-engine' };
  }

  /** What an unwrap under `keyCrn` by the storage service would fail with now, or null (synchronous). */
  keyAccessError(keyCrn: string): BlockvaultError | null {
    return this.#hsm.keyAccessError(keyCrn, this.caller());
  }

  /** The root key a new volume is provisioned under: the caller's (it must be Active), or a new platform key. */
  async provisioningKey(crn: string | undefined): Promise<ProvisioningKey> {
    if (crn === undefined) return { crn: (await this.#hsm.createPlatformKey()).crn, platformManaged: true };
    const key = await this.#hsm.getKey(crn);
    checkKeyUsableForNewVolume(key);
    return { crn: key.crn, platformManaged: false };
  }

  /** A platform-managed root key serves exactly one volume; it goes with the volume (a failure is a warning: the key is only unused). */
  async deletePlatformKey(keyCrn: string, volumeId: string): Promise<void> {
    try {
      const key = await this.#hsm.getKey(keyCrn);
      if (key.state !== KeyState.Destroyed) await this.#hsm.deleteKey(keyCrn, { initiator: STORAGE_SERVICE });
    } catch (error) {
      process.emitWarning(`blockvault: could not delete the platform key of purged volume ${volumeId}: ${(error as Error).message}`);
    }
  }

  /** The CRN of this engine's volume `volumeId` under root key `keyCrn` (same cloud, region and account). */
  volumeCrn(keyCrn: string, volumeId: string): string {
    const key = parseCrn(keyCrn, 'key');
    return formatCrn({ ...key, service: STORAGE_SERVICE, instance: this.#engineId, resourceType: 'volume', resource: volumeId });
  }

  isOwnVolumeCrn(crn: string): boolean {
    try {
      const parsed = parseCrn(crn);
      return parsed.service === STORAGE_SERVICE && parsed.resourceType === 'volume' && parsed.instance === this.#engineId;
    } catch {
      return false;
    }
  }
}

/** A new volume needs a key that can wrap: Active. */
function checkKeyUsableForNewVolume(key: RootKeyInfo): void {
  if (key.state === KeyState.Active) return;
  if (key.state === KeyState.Destroyed) {
    throw new BlockvaultError('KEY_DESTROYED', `root key ${key.crn} was destroyed; a volume needs an active root key`, { keyCrn: key.crn });
  }
  const what = key.state === KeyState.Suspended ? 'suspended (enable it first)' : 'deactivated (it can only unwrap existing keys)';
  throw new BlockvaultError('KEY_STATE', `root key ${key.crn} is ${what}; a new volume needs an active root key`, {
    keyCrn: key.crn,
    state: key.stateName,
  });
}
