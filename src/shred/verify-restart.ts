/**
 * After the shred, a restart: the engine is opened again on the same directory and every way to
 * the data is tried. Metadata must stay readable (listVolumes, openVolume().info()), and nothing
 * may return or accept data: reads, writes, restoring the soft-deleted volume, a re-encryption
 * target, rotating the destroyed key.
 */
import { Engine, type HsmSecretOptions } from '../engine.js';
import { isBlockvaultError } from '../errors.js';
import { engineInternals } from '../engine-internals.js';

export interface AfterRestartReport {
  volumes: number;
  volumesLocked: number;
  /** Name, size, key CRN, state and sector size of every volume were there. */
  metadataReadable: boolean;
  /** Reads that returned bytes, writes, restores, targets or rotations that were accepted: must be zero. */
  dataReadable: number;
  /** Error codes of the refusals, by operation. */
  refusals: Record<string, string>;
}

export interface RestartCheck {
  dir: string;
  hsm: HsmSecretOptions;
  cipher: 'native' | 'ts' | undefined;
  keyCrn: string;
  volumeIds: string[];
  softDeletedId: string;
}

export async function checkAfterRestart(check: RestartCheck): Promise<AfterRestartReport> {
  const engine = await Engine.open({ dir: check.dir, hsm: check.hsm, purgeIntervalMs: 0, ...(check.cipher === undefined ? {} : { cipher: check.cipher }) });
  const refusals: Record<string, string> = {};
  let dataReadable = 0;
  /** An attempt that must be refused; its code is recorded, an acceptance counted. */
  const refused = async (what: string, attempt: () => Promise<unknown>): Promise<void> => {
    try {
      await attempt();
      dataReadable++;
      refusals[what] = 'ACCEPTED';
    } catch (error) {
      refusals[what] ??= isBlockvaultError(error) ? error.code : `${(error as Error).name}: ${(error as Error).message}`;
    }
  };
  try {
    const infos = engine.listVolumes().filter((v) => check.volumeIds.includes(v.id));
    const metadataReadable =
      infos.length === check.volumeIds.length &&
      infos.every((v) => v.name.length > 0 && v.sizeBytes > 0 && v.diskEncryptionKeyCrn === check.keyCrn && (v.sectorSize === 512 || v.sectorSize === 4096) && v.lockedAtMs !== null);
    for (const id of check.volumeIds) {
      const vol = await engine.openVolume(id); // metadata access works in every state
      try {
        await refused('read', () => vol.read(0, vol.info().sectorSize));
        await refused('write', () => vol.write(0, new Uint8Array(16)));
        await refused('flush+read', () => vol.flush().then(() => vol.read(0, 16)));
      } finally {
        await vol.close();
      }
      await refused('reencryptTarget', async () => {
        const target = await engineInternals(engine).reencryptTarget(id);
        await target.close();
      });
    }
    await refused('restoreVolume', () => engine.restoreVolume(check.softDeletedId));
    await refused('rotateKey', () => engine.hsm.rotateKey(check.keyCrn, { material: new Uint8Array(32).fill(7) }));
    return { volumes: infos.length, volumesLocked: infos.filter((v) => v.state === 'locked').length, metadataReadable, dataReadable, refusals };
  } finally {
    await engine.close();
  }
}
