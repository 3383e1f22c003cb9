/**
 * The engine's store-id counter (engine-meta/nextStoreId) is not authenticated, so an attacker
 * with write access to the directory could set it back to a live volume's store id: the next
 * volume created would then share that volume's clusters. The catalog checks the counter against
 * the authenticated records and refuses with VOLUME_CORRUPT; the other volume's data is untouched.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { open } from 'lmdb';
import { afterAll, describe, expect, it } from 'vitest';
import { openTestEngine, rootKey } from '../helpers/engine.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

afterAll(removeTempDirs);

async function setNextStoreId(dir: string, value: unknown): Promise<void> {
  const env = open({ path: join(dir, 'engine.lmdb'), maxDbs: 32 });
  try {
    await env.openDB<unknown, string>('engine-meta', { encoding: 'msgpack' }).put('nextStoreId', value);
  } finally {
    await env.close();
  }
}

describe('nextStoreId tampering', () => {
  it.each([
    ['set back to the live volume\'s store id', 1, /not above the store id 1 of volume a/],
    ['not a number', 'x', /not a store id/],
  ])('%s: createVolume refuses with VOLUME_CORRUPT and the live volume keeps its data', async (_name, value, message) => {
    const dir = makeTempDir('bv-storeid-');
    let engine = await openTestEngine(dir);
    const key = await rootKey(engine);
    const a = await engine.createVolume({ name: 'a', sizeBytes: 1 << 20, sectorSize: 4096, diskEncryptionKeyCrn: key.crn });
    const data = randomBytes(64 * 1024);
    await a.write(0, data);
    await engine.close();

    await setNextStoreId(dir, value);
    engine = await openTestEngine(dir);
    try {
      await expect(engine.createVolume({ name: 'b', sizeBytes: 1 << 20, sectorSize: 4096, diskEncryptionKeyCrn: key.crn })).rejects.toMatchObject({
        code: 'VOLUME_CORRUPT',
        details: { place: 'engine-meta/nextStoreId' },
        message: expect.stringMatching(message),
      });
      expect(engine.listVolumes().map((v) => v.name)).toEqual(['a']);
      const again = await engine.openVolume('a');
      expect(Buffer.from(await again.read(0, data.length)).equals(data)).toBe(true);
      await again.close();
    } finally {
      await engine.close();
    }
  });
});
