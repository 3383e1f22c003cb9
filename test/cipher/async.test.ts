/**
 * The async variants: on the native backend the work runs on the libuv pool (napi AsyncTask), so
 * the event loop keeps turning while a large batch is encrypted; on ts the promise resolves with
 * the result computed synchronously. Both give the same bytes as the sync call.
 */
import { describe, expect, it } from 'vitest';
import { BACKENDS, cipherFor, randomKey } from './helpers.js';

describe.each(BACKENDS)('async sector API, %s backend', (backend) => {
  it('resolves to the sync result for a 32 MiB batch', async () => {
    const xts = cipherFor(backend);
    const key = randomKey();
    const data = Buffer.alloc(32 * 2 ** 20, 0x42);
    const viaAsync = await xts.encryptSectorsAsync(key, 12_345n, 4096, data);
    const viaSync = xts.encryptSectors(key, 12_345n, 4096, data);
    expect(Buffer.compare(Buffer.from(viaAsync), Buffer.from(viaSync))).toBe(0);
    expect(data.every((b) => b === 0x42)).toBe(true);
  });
});

describe('async sector API, native backend only', () => {
  it.runIf(BACKENDS.includes('native'))('runs off the JS thread: the event loop turns before a 64 MiB batch is done', async () => {
    const xts = cipherFor('native');
    const data = Buffer.alloc(64 * 2 ** 20, 1);
    let immediateRan = false;
    let immediateBeforeResult = false;
    const pending = xts.encryptSectorsAsync(randomKey(), 0, 4096, data).then((result) => {
      immediateBeforeResult = immediateRan;
      return result;
    });
    setImmediate(() => {
      immediateRan = true;
    });
    expect((await pending).length).toBe(data.length);
    expect(immediateBeforeResult).toBe(true);
  });
});
