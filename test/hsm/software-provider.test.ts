import { randomBytes } from 'node:crypto';
import { linkSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SoftwareKeyProvider } from '../../src/hsm/index.js';
import { kwpWrap } from '../../src/hsm/kwp.js';
import { STORAGE, expectCode, openHarness, setupKey } from './helpers.js';

let dir: string;
let provider: SoftwareKeyProvider;
const masterKey = randomBytes(32);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'bv-provider-'));
  provider = new SoftwareKeyProvider({ hsmDir: dir, masterKey });
});
afterEach(async () => {
  await provider.close();
  rmSync(dir, { recursive: true, force: true });
});

const cacheOf = (p: SoftwareKeyProvider): Map<string, Buffer> => (p as unknown as { cache: Map<string, Buffer> }).cache;

describe('SoftwareKeyProvider', () => {
  it('destroy overwrites the sealed file in place before unlinking it, and zeroizes the cached material', async () => {
    const material = randomBytes(32);
    await provider.import({ keyId: 'k1', version: 1 }, { material });
    const path = join(dir, 'keys', 'k1.v1.sealed');
    const sealed = readFileSync(path);
    // A second name for the same inode shows what happens to the bytes on disk.
    const witness = join(dir, 'witness');
    linkSync(path, witness);
    await provider.wrap({ keyId: 'k1', version: 1 }, randomBytes(64));
    const cached = cacheOf(provider).get('k1/1')!;
    expect(cached.equals(material)).toBe(true);
    await provider.destroy('k1', [1]);
    expect(cached.every((b) => b === 0)).toBe(true);
    const after = readFileSync(witness);
    expect(after.length).toBe(sealed.length);
    expect(after.equals(sealed)).toBe(false);
    await expectCode(provider.wrap({ keyId: 'k1', version: 1 }, randomBytes(64)), 'KEY_DESTROYED');
    await provider.destroy('k1', [1]); // idempotent
  });

  it('reopens sealed material with the same master key only', async () => {
    const material = randomBytes(32);
    await provider.import({ keyId: 'k1', version: 1 }, { material });
    const dek = randomBytes(64);
    const reopened = new SoftwareKeyProvider({ hsmDir: dir, masterKey });
    expect(Buffer.from(await reopened.wrap({ keyId: 'k1', version: 1 }, dek)).equals(kwpWrap(material, dek))).toBe(true);
    await reopened.close();
    const wrongMaster = new SoftwareKeyProvider({ hsmDir: dir, masterKey: randomBytes(32) });
    await expectCode(wrongMaster.wrap({ keyId: 'k1', version: 1 }, dek), 'KEYSTORE_CORRUPT');
    await wrongMaster.close();
  });

  it('close zeroizes every cached key and refuses further use', async () => {
    await provider.create({ keyId: 'a', version: 1 });
    await provider.create({ keyId: 'b', version: 1 });
    await provider.rotate({ keyId: 'b', version: 2 });
    const buffers = [...cacheOf(provider).values()];
    expect(buffers).toHaveLength(3);
    await provider.close();
    expect(buffers.every((b) => b.every((x) => x === 0))).toBe(true);
    await expectCode(provider.wrap({ keyId: 'a', version: 1 }, randomBytes(64)), 'ENGINE_CLOSED');
  });

  it('lists what it stores', async () => {
    await provider.create({ keyId: 'a', version: 1 });
    await provider.rotate({ keyId: 'a', version: 2 });
    await provider.createTransportKey('t1');
    const inventory = await provider.inventory();
    expect(inventory.keyVersions.sort((x, y) => x.version - y.version)).toEqual([
      { keyId: 'a', version: 1 },
      { keyId: 'a', version: 2 },
    ]);
    expect(inventory.transportKeyIds).toEqual(['t1']);
  });
});

describe('shredding under load', () => {
  it('wraps racing a forced delete either finish before it or fail with KEY_DESTROYED', async () => {
    const h = await openHarness();
    try {
      const { key } = await setupKey(h.hsm);
      let stop = false;
      const outcomes: string[] = [];
      const worker = async (): Promise<void> => {
        while (!stop) {
          try {
            await h.hsm.wrap(key.crn, randomBytes(64), STORAGE);
            outcomes.push('ok');
          } catch (error) {
            outcomes.push((error as { code?: string }).code ?? 'other');
            if ((error as { code?: string }).code === 'KEY_DESTROYED') return;
          }
        }
      };
      const workers = Array.from({ length: 4 }, worker);
      await new Promise((resolve) => setTimeout(resolve, 20));
      await h.hsm.deleteKey(key.crn, { force: true });
      stop = true;
      await Promise.all(workers);
      expect(new Set(outcomes)).toEqual(new Set(['ok', 'KEY_DESTROYED']));
      const firstDestroyed = outcomes.indexOf('KEY_DESTROYED');
      expect(outcomes.slice(firstDestroyed).every((o) => o === 'KEY_DESTROYED')).toBe(true);
    } finally {
      await h.cleanup();
    }
  });
});
