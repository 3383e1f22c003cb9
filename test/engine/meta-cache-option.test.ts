/**
 * Engine.open's metaCacheClustersMax: validated, and applied to every split-layout volume. A
 * cached cluster's random read does one LMDB get (the body); with the cache off or too small
 * it does two (meta, then body). Counted on lmdb-js's getBinaryFast for the 'clusters' database.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, expect, it } from 'vitest';
import type { Engine } from '../../src/engine.js';
import { BlockvaultError } from '../../src/errors.js';
import { openTestEngine } from '../helpers/engine.js';
import { forEachProvider, type ProviderName } from '../helpers/providers.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

afterAll(() => removeTempDirs());

/**
 * lmdb-js makes one store class per environment; patch the engine environment's (reached through
 * the audit log's database, a TypeScript-private field) to count the clusters database's gets.
 */
let clusterGets = 0;
function countClusterGets(engine: Engine): () => void {
  const proto = Object.getPrototypeOf((engine.events as unknown as { db: object }).db) as {
    getBinaryFast: (this: { name?: string }, ...args: unknown[]) => unknown;
  };
  const original = proto.getBinaryFast;
  proto.getBinaryFast = function (this: { name?: string }, ...args: unknown[]) {
    if (this.name === 'clusters') clusterGets++;
    return original.apply(this, args);
  };
  return () => {
    proto.getBinaryFast = original;
  };
}

const SIZE = 4 * 1024 * 1024; // 128 clusters of 8 x 4096-byte sectors

async function clusterGetsForReads(provider: ProviderName, metaCacheClustersMax: number | undefined): Promise<number> {
  const engine = await openTestEngine(makeTempDir('bv-mc-'), metaCacheClustersMax === undefined ? { provider } : { provider, metaCacheClustersMax });
  const restore = countClusterGets(engine);
  try {
    const vol = await engine.createVolume({ name: 'v', sizeBytes: SIZE });
    const data = randomBytes(SIZE);
    await vol.write(0, data);
    await vol.flush();
    await vol.close();
    const reopened = await engine.openVolume(vol.info().id); // a fresh, empty cache
    const before = clusterGets;
    for (let pass = 0; pass < 2; pass++) {
      for (let sector = 0; sector < SIZE / 4096; sector += 8) {
        const bytes = await reopened.read(sector * 4096, 4096);
        expect(Buffer.from(bytes).equals(data.subarray(sector * 4096, (sector + 1) * 4096))).toBe(true);
      }
    }
    await reopened.close();
    return clusterGets - before;
  } finally {
    restore();
    await engine.close();
  }
}

// On each key provider: reopening a volume unwraps its data key through the provider.
forEachProvider('Engine.open metaCacheClustersMax', (provider) => {
  it('by default caches every cluster of a small volume: the second pass reads no meta from LMDB', async () => {
    expect(await clusterGetsForReads(provider, undefined)).toBe(128);
  });

  it('0 turns the cache off; a bound below the volume keeps missing; every read stays correct', async () => {
    expect(await clusterGetsForReads(provider, 0)).toBe(256);
    // 16 clusters (two generations of 8): reading 128 clusters in order evicts each before reuse.
    expect(await clusterGetsForReads(provider, 16)).toBe(256);
    expect(await clusterGetsForReads(provider, 1024)).toBe(128);
  });

  it('refuses values that are not whole numbers from 0 to 2^24', async () => {
    for (const bad of [-1, 1.5, 2 ** 24 + 1, Number.NaN, '8' as unknown as number]) {
      const error = await openTestEngine(makeTempDir('bv-mc-'), { provider, metaCacheClustersMax: bad }).then(
        async (engine) => {
          await engine.close();
          return null;
        },
        (e: unknown) => e,
      );
      expect(error, String(bad)).toBeInstanceOf(BlockvaultError);
      expect((error as BlockvaultError).code).toBe('INVALID_ARGUMENT');
      expect((error as Error).message).toMatch(/metaCacheClustersMax/);
    }
  });
});
