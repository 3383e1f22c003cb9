/**
 * Engine.open's numeric options: each bad value is refused with INVALID_ARGUMENT naming the
 * option, before anything is created in the directory; values at the bounds open a working
 * engine.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockvaultError, Engine, type EngineOptions } from '../../src/index.js';
import { openTestEngine, TEST_PASSPHRASE } from '../helpers/engine.js';
import { useTempDirs } from '../helpers/temp-dir.js';

const tempDir = useTempDirs('bv-options-');

type NumericOption = 'retentionMs' | 'purgeIntervalMs' | 'clusterBytes' | 'writeBufferBytesMax' | 'lmdbTxnBytesMax' | 'lmdbFreePagesKeptMax' | 'metaCacheClustersMax' | 'mapSizeBytes' | 'lockWaitMs';

const BAD: Record<NumericOption, unknown[]> = {
  retentionMs: [-1, 1.5, Number.NaN, '1'],
  purgeIntervalMs: [-1, 0.5, Number.POSITIVE_INFINITY],
  clusterBytes: [256, 3000, 1.5, 2 ** 30],
  writeBufferBytesMax: [1024, -1, 2.5],
  // Above the write buffer (64 MiB by default) a transaction could never reach it.
  lmdbTxnBytesMax: [-1, 1.5, 64 * 1024 * 1024 + 1, '8', Number.NaN],
  // LMDB takes it as a C int, and a bound below one page means nothing.
  lmdbFreePagesKeptMax: [0, -1, 2 ** 31, 1.5, '5000', Number.NaN],
  metaCacheClustersMax: [-1, 2 ** 24 + 1, '8'],
  mapSizeBytes: [0, 1024 ** 2 - 1, 2 ** 47 + 4096, 1.5 * 1024 ** 3 + 0.5, Number.NaN, '1073741824', -(1024 ** 3)],
  // NaN made the lock wait's deadline NaN (no wait), Infinity waited forever (issue 13).
  lockWaitMs: [Number.NaN, -1, Number.POSITIVE_INFINITY, 1.5, '100'],
};

async function refusal(options: Partial<EngineOptions>): Promise<unknown> {
  const dir = join(tempDir(), 'engine');
  const error = await Engine.open({ dir, hsm: { passphrase: TEST_PASSPHRASE }, ...options }).then(
    async (engine) => {
      await engine.close();
      return null;
    },
    (e: unknown) => e,
  );
  // Refused before the directory was created: nothing left behind.
  expect(existsSync(dir)).toBe(false);
  return error;
}

describe('Engine.open numeric options', () => {
  for (const [name, values] of Object.entries(BAD) as [NumericOption, unknown[]][]) {
    it(`refuses bad ${name} values with INVALID_ARGUMENT naming it`, async () => {
      for (const value of values) {
        const error = await refusal({ [name]: value } as Partial<EngineOptions>);
        expect(error, `${name}: ${String(value)}`).toBeInstanceOf(BlockvaultError);
        expect((error as BlockvaultError).code).toBe('INVALID_ARGUMENT');
        expect((error as Error).message).toContain(name);
      }
    });
  }

  it('refuses bad rotation options and clocks before creating anything', async () => {
    for (const extra of [{ rotation: 5 }, { rotation: { workers: 0 } }, { rotation: { bandwidthBytesPerSecond: -1 } }, { clock: {} }]) {
      const error = await refusal(extra as Partial<EngineOptions>);
      expect(error, JSON.stringify(extra)).toBeInstanceOf(BlockvaultError);
      expect((error as BlockvaultError).code).toBe('INVALID_ARGUMENT');
    }
  });

  it('opens and works with mapSizeBytes at its lower bound and a large one', async () => {
    for (const mapSizeBytes of [1024 ** 2, 2 ** 40]) {
      const engine = await openTestEngine(tempDir(), { mapSizeBytes, purgeIntervalMs: 0 });
      try {
        const vol = await engine.createVolume({ name: 'v', sizeBytes: 64 * 1024 });
        await vol.write(4096, Buffer.alloc(4096, 9));
        expect(Buffer.from(await vol.read(4096, 4096)).equals(Buffer.alloc(4096, 9))).toBe(true);
        await vol.close();
      } finally {
        await engine.close();
      }
    }
  });
});

describe('lmdbFreePagesKeptMax', () => {
  // At 1, LMDB drops its in-memory free list at the end of nearly every transaction and reads it
  // back from the free database when it needs pages: the path a long run with the default takes
  // now and then, here taken all the time, with real frees (overwrites and trims) in between.
  it('keeps every sector exact across overwrites, trims and a reopen when LMDB keeps one free page in memory', async () => {
    const dir = tempDir();
    const sectorBytes = 4096;
    const sectors = 512;
    const expected = new Map<number, number>();
    let engine = await openTestEngine(dir, { lmdbFreePagesKeptMax: 1, lmdbTxnBytesMax: 64 * 1024, purgeIntervalMs: 0 });
    try {
      const vol = await engine.createVolume({ name: 'v', sizeBytes: sectors * sectorBytes, sectorSize: sectorBytes });
      let seed = 7;
      const next = (n: number): number => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed % n;
      };
      for (let pass = 0; pass < 6; pass++) {
        const writes: Promise<void>[] = [];
        for (let i = 0; i < 256; i++) {
          const sector = next(sectors);
          const fill = 1 + next(255);
          expected.set(sector, fill);
          writes.push(vol.write(sector * sectorBytes, Buffer.alloc(sectorBytes, fill)));
        }
        await Promise.all(writes);
        const first = next(sectors - 16);
        await vol.trim(first * sectorBytes, 16 * sectorBytes);
        for (let s = first; s < first + 16; s++) expected.delete(s);
        await vol.flush();
      }
      await vol.close();
    } finally {
      await engine.close();
    }
    engine = await openTestEngine(dir, { lmdbFreePagesKeptMax: 1, purgeIntervalMs: 0 });
    try {
      const vol = await engine.openVolume('v');
      const all = Buffer.from(await vol.read(0, sectors * sectorBytes));
      for (let s = 0; s < sectors; s++) {
        const want = Buffer.alloc(sectorBytes, expected.get(s) ?? 0);
        expect(all.subarray(s * sectorBytes, (s + 1) * sectorBytes).equals(want), `sector ${s}`).toBe(true);
      }
      await vol.close();
    } finally {
      await engine.close();
    }
  });
});

describe('hsm: passphrase, keyFile or pkcs11', () => {
  it('refuses none, two at once, and bad PKCS#11 options with INVALID_ARGUMENT before anything is created', async () => {
    const pkcs11 = { module: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 'blockvault', pin: '1234' };
    const bad: unknown[] = [
      {},
      { passphrase: TEST_PASSPHRASE, pkcs11 },
      { keyFile: '/tmp/k', pkcs11 },
      { pkcs11: { ...pkcs11, module: 'relative/libsofthsm2.so' } },
      { pkcs11: { ...pkcs11, slot: 0 } }, // both slot and tokenLabel
      { pkcs11: { module: pkcs11.module, pin: '1234' } }, // neither
      { pkcs11: { ...pkcs11, pin: '' } },
      { pkcs11: { ...pkcs11, tokenLabel: 'x'.repeat(33) } },
      { pkcs11: { ...pkcs11, sessionsMax: 65 } },
      { pkcs11: { ...pkcs11, kwpMechanism: -1 } },
      { pkcs11: { ...pkcs11, pinFile: '/tmp/pin' } }, // unknown option
      { pkcs11: 'softhsm' },
    ];
    for (const hsm of bad) {
      const dir = join(tempDir(), 'engine');
      const error = await Engine.open({ dir, hsm: hsm as EngineOptions['hsm'] }).catch((e: unknown) => e);
      expect(error, JSON.stringify(hsm)).toBeInstanceOf(BlockvaultError);
      expect((error as BlockvaultError).code, JSON.stringify(hsm)).toBe('INVALID_ARGUMENT');
      expect(existsSync(dir), JSON.stringify(hsm)).toBe(false);
    }
  });
});
