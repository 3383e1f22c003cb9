import { destroyKeyMaterial } from './deletion.js';
import type { HsmCore } from './hsm-core.js';
import { KeyState } from './types.js';

/**
 * Run when the HSM opens: finish destructions a crash interrupted (the key already refused all use,
 * its record says pendingDestroy), shred sealed material that no live key version owns (a crash
 * between writing material and committing its metadata, or a rotation that never committed), and
 * shred import-token keys whose token is gone or expired. One process opens a directory at a time.
 */
export async function recover(core: HsmCore): Promise<void> {
  for (const record of core.store.keys()) {
    if (record.pendingDestroy === null) continue;
    const { force, initiator, affectedResources } = record.pendingDestroy;
    const destroyed = await destroyKeyMaterial(core, record, { force, initiator, affectedResources });
    const info = core.keyInfo(destroyed);
    await core.audit.append({ action: 'hs-crypto.secrets.delete', initiator, keyCrn: info.crn, details: { force, affectedResources, resumedAfterRestart: true } });
    if (core.hooks.onDestroyed) await core.hooks.onDestroyed(info, affectedResources);
  }

  const inventory = await core.provider.inventory();
  const live = new Set<string>();
  for (const record of core.store.keys()) {
    if (record.state === KeyState.Destroyed) continue;
    for (const v of record.versions) if (v.destroyedAtMs === null) live.add(`${record.id}/${v.version}`);
  }
  const strays = new Map<string, number[]>();
  for (const ref of inventory.keyVersions) {
    if (!live.has(`${ref.keyId}/${ref.version}`)) strays.set(ref.keyId, [...(strays.get(ref.keyId) ?? []), ref.version]);
  }
  for (const [keyId, versions] of strays) await core.provider.destroy(keyId, versions);
  const stored = new Set(inventory.keyVersions.map((r) => `${r.keyId}/${r.version}`));
  for (const id of live) {
    if (!stored.has(id)) process.emitWarning(`blockvault HSM: the sealed material of root key version ${id} is missing; operations with it fail until the HSM directory is restored`);
  }

  const now = core.clock.nowMs();
  const tokens = new Map(core.store.tokens().map((t) => [t.transportKeyId, t]));
  for (const transportKeyId of inventory.transportKeyIds) {
    const token = tokens.get(transportKeyId);
    if (token === undefined || now >= token.expiresAtMs) await core.provider.destroyTransportKey(transportKeyId);
  }
}
