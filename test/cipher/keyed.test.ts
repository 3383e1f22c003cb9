/**
 * XtsCipher.keyed: a handle that validates and prepares a key once (both backends expand its
 * AES schedules once) gives exactly the plain API's bytes on both backends, in place too;
 * wipe() makes every later call throw; bad arguments are refused like the plain calls.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TsXtsKey, tsXtsSectorsInto } from '../../src/cipher/ts-xts.js';
import { BACKENDS, cipherFor, randomKey } from './helpers.js';

const keyArb = fc
  .uint8Array({ minLength: 64, maxLength: 64 })
  .filter((k) => !Buffer.from(k.subarray(0, 32)).equals(Buffer.from(k.subarray(32))));

describe.each(BACKENDS)('keyed handle (%s backend)', (backend) => {
  it('equals the plain API over random keys, sectors and batches, out of place and in place', () => {
    const cipher = cipherFor(backend);
    fc.assert(
      fc.property(
        keyArb,
        fc.constantFrom(512, 4096),
        fc.oneof(fc.integer({ min: 0, max: 1_000_000 }), fc.integer({ min: Number.MAX_SAFE_INTEGER - 2000, max: Number.MAX_SAFE_INTEGER - 64 })),
        fc.integer({ min: 0, max: 12 }),
        fc.integer({ min: 0, max: 2 ** 31 }),
        (key, sectorSize, firstSector, count, seed) => {
          const data = Buffer.alloc(count * sectorSize);
          for (let i = 0; i < data.length; i++) data[i] = (seed + i * 2654435761) >>> 24;
          const handle = cipher.keyed(key);
          const expectedCt = Buffer.alloc(data.length);
          cipher.encryptSectorsInto(key, firstSector, sectorSize, data, expectedCt);
          const ct = Buffer.alloc(data.length);
          handle.encryptSectorsInto(firstSector, sectorSize, data, ct);
          expect(ct.equals(expectedCt)).toBe(true);
          // In place, on a plain Uint8Array view too.
          const inPlace = new Uint8Array(ct);
          handle.decryptSectorsInto(firstSector, sectorSize, inPlace, inPlace);
          expect(Buffer.from(inPlace).equals(data)).toBe(true);
          const pt = Buffer.alloc(data.length);
          cipher.decryptSectorsInto(key, firstSector, sectorSize, ct, pt);
          expect(pt.equals(data)).toBe(true);
          handle.wipe();
        },
      ),
      { numRuns: 150 },
    );
  });

  it('decryptSectorInPlace equals decryptSectorsInto of that one sector, and refuses anything but one sector', () => {
    const cipher = cipherFor(backend);
    fc.assert(
      fc.property(
        keyArb,
        fc.constantFrom(512, 4096),
        fc.oneof(fc.integer({ min: 0, max: 1_000_000 }), fc.integer({ min: Number.MAX_SAFE_INTEGER - 64, max: Number.MAX_SAFE_INTEGER })),
        fc.integer({ min: 0, max: 2 ** 31 }),
        (key, sectorSize, sector, seed) => {
          const ct = Buffer.alloc(sectorSize);
          for (let i = 0; i < ct.length; i++) ct[i] = (seed + i * 2654435761) >>> 24;
          const handle = cipher.keyed(key);
          const expected = Buffer.alloc(sectorSize);
          handle.decryptSectorsInto(sector, sectorSize, ct, expected);
          const inPlace = new Uint8Array(ct); // a plain Uint8Array, not a Buffer
          handle.decryptSectorInPlace(sector, inPlace);
          expect(Buffer.from(inPlace).equals(expected)).toBe(true);
          handle.wipe();
        },
      ),
      { numRuns: backend === 'ts' ? 25 : 200 },
    );
    const handle = cipher.keyed(randomKey());
    for (const bad of [0, 16, 513, 1024, 8192]) {
      expect(() => handle.decryptSectorInPlace(0, Buffer.alloc(bad)), `${bad} bytes`).toThrow(/one sector of 512 or 4096 bytes/);
    }
    expect(() => handle.decryptSectorInPlace(0, 'x' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => handle.decryptSectorInPlace(-1, Buffer.alloc(512))).toThrow(RangeError);
    expect(() => handle.decryptSectorInPlace(1.5, Buffer.alloc(512))).toThrow(RangeError);
    expect(() => handle.decryptSectorInPlace(1n as unknown as number, Buffer.alloc(512))).toThrow(TypeError);
    handle.wipe();
    expect(() => handle.decryptSectorInPlace(0, Buffer.alloc(512))).toThrow(/wiped/);
  });

  it('keeps no reference to the key: zeroing the caller key does not change the handle', () => {
    const cipher = cipherFor(backend);
    const key = randomKey();
    const copy = Buffer.from(key);
    const handle = cipher.keyed(key);
    key.fill(0);
    const data = Buffer.alloc(4096, 7);
    const a = Buffer.alloc(4096);
    const b = Buffer.alloc(4096);
    handle.encryptSectorsInto(5, 4096, data, a);
    cipher.encryptSectorsInto(copy, 5, 4096, data, b);
    expect(a.equals(b)).toBe(true);
  });

  it('throws on every call after wipe(); wipe() is idempotent', () => {
    const handle = cipherFor(backend).keyed(randomKey());
    const buf = Buffer.alloc(512);
    handle.decryptSectorsInto(0, 512, buf, buf);
    expect(handle.wiped).toBe(false);
    handle.wipe();
    handle.wipe();
    expect(handle.wiped).toBe(true);
    expect(() => handle.decryptSectorsInto(0, 512, buf, buf)).toThrow(/wiped/);
    expect(() => handle.encryptSectorsInto(0, 512, buf, Buffer.alloc(512))).toThrow(/wiped/);
  });

  it('refuses bad keys and bad arguments with the plain API messages', () => {
    const cipher = cipherFor(backend);
    expect(() => cipher.keyed(Buffer.alloc(32, 1))).toThrow(RangeError);
    expect(() => cipher.keyed(Buffer.alloc(64, 1))).toThrow(/halves must differ/);
    expect(() => cipher.keyed('k' as unknown as Uint8Array)).toThrow(TypeError);
    const handle = cipher.keyed(randomKey());
    const src = Buffer.alloc(1024);
    expect(() => handle.encryptSectorsInto(0, 1024, src, Buffer.alloc(1024))).toThrow(/sectorSize/);
    expect(() => handle.encryptSectorsInto(0, 4096, src, Buffer.alloc(1024))).toThrow(/whole number of sectors/);
    expect(() => handle.encryptSectorsInto(-1, 512, src, Buffer.alloc(1024))).toThrow(/negative/);
    expect(() => handle.encryptSectorsInto(1.5, 512, src, Buffer.alloc(1024))).toThrow(/integer/);
    expect(() => handle.encryptSectorsInto(2 ** 53, 512, src, Buffer.alloc(1024))).toThrow(/MAX_SAFE_INTEGER/);
    expect(() => handle.encryptSectorsInto(1n as unknown as number, 512, src, Buffer.alloc(1024))).toThrow(TypeError);
    expect(() => handle.encryptSectorsInto(0, 512, src, Buffer.alloc(512))).toThrow(/dst length/);
    expect(() => handle.encryptSectorsInto(0, 512, src, src.subarray(16, 16 + 1024) as Buffer)).toThrow();
    expect(() => handle.encryptSectorsInto(0, 512, src, 'x' as unknown as Uint8Array)).toThrow(TypeError);
    // Empty batches are fine.
    handle.encryptSectorsInto(0, 512, Buffer.alloc(0), Buffer.alloc(0));
  });
});

describe('TS keyed handles directly (TsXtsKey: schedules expanded once)', () => {
  it('gives the per-call function\'s bytes in both directions, and after wipe() refuses to run on zeroed schedules', () => {
    const key = randomKey();
    const k = new TsXtsKey(key);
    const plain = new Uint8Array(3 * 512).map((_, i) => i * 31);
    const viaKey = new Uint8Array(plain.length);
    const viaCall = new Uint8Array(plain.length);
    k.sectorsInto('encrypt', 2n ** 40n, 512, plain, viaKey);
    tsXtsSectorsInto('encrypt', key, 2n ** 40n, 512, plain, viaCall);
    expect(Buffer.from(viaKey).equals(Buffer.from(viaCall))).toBe(true);
    k.sectorsInto('decrypt', 2n ** 40n, 512, viaKey, viaKey);
    expect(Buffer.from(viaKey).equals(Buffer.from(plain))).toBe(true);
    k.wipe();
    expect(() => k.sectorsInto('decrypt', 0n, 512, viaCall, viaCall)).toThrow(/wiped key is not used/);
  });
});

describe('native keyed handles directly (their own checks, behind the facade)', () => {
  it.runIf(BACKENDS.includes('native'))('rejects what the facade would and works on Uint8Arrays', async () => {
    const { nativeAddon } = await import('../../src/cipher/native-binding.js');
    const addon = nativeAddon().addon!;
    expect(() => addon.xtsKeyNew(Buffer.alloc(64, 3))).toThrow(/different 32-byte halves/);
    expect(() => addon.xtsKeyNew(Buffer.alloc(63))).toThrow(/64 bytes/);
    const key = randomKey();
    const k = addon.xtsKeyNew(key);
    const buf = new Uint8Array(1024);
    expect(() => addon.xtsKeyEncryptInto(k, 2 ** 53, 512, buf, buf)).toThrow(/firstSector/);
    expect(() => addon.xtsKeyEncryptInto(k, -1, 512, buf, buf)).toThrow(/firstSector/);
    expect(() => addon.xtsKeyEncryptInto(k, 0, 512, new Uint16Array(512) as unknown as Uint8Array, buf)).toThrow(/src: expected a Buffer or Uint8Array/);
    expect(() => addon.xtsKeyEncryptInto(k, 0, 512, buf, buf.subarray(16, 16 + 512))).toThrow(/dst/);
    expect(() => addon.xtsKeyEncryptInto(k, 0, 512, buf.subarray(0, 1000), buf.subarray(0, 1000))).toThrow(/src/);
    // Not a handle: refused by every keyed call, with the argument named.
    const notHandles: [unknown, string][] = [
      [{}, 'an object'],
      [Buffer.alloc(64), 'an object'],
      [null, 'null'],
      [undefined, 'undefined'],
      [7, 'a number'],
    ];
    for (const [bad, got] of notHandles) {
      // Whole message: nothing may follow `got` (a buffer is not described as a data argument).
      const message = new RegExp(`key: expected a key handle from xtsKeyNew, got ${got}$`);
      const handle = bad as typeof k;
      expect(() => addon.xtsKeyEncryptInto(handle, 0, 512, buf, buf)).toThrow(message);
      expect(() => addon.xtsKeyDecryptInto(handle, 0, 512, buf, buf)).toThrow(message);
      expect(() => addon.xtsKeyDecryptSectorInPlace(handle, 0, Buffer.alloc(512))).toThrow(message);
      expect(() => addon.xtsKeyWipe(handle)).toThrow(message);
      expect(() => addon.xtsKeyWiped(handle)).toThrow(message);
    }
    // Views of shared memory: another thread could write them during the call (a data race).
    const sharedView = new Uint8Array(new SharedArrayBuffer(1024));
    expect(() => addon.xtsKeyEncryptInto(k, 0, 512, sharedView, buf)).toThrow(/src: a view of a SharedArrayBuffer is not accepted/);
    expect(() => addon.xtsKeyDecryptInto(k, 0, 512, buf, sharedView)).toThrow(/dst: a view of a SharedArrayBuffer is not accepted/);
    expect(() => addon.xtsKeyDecryptSectorInPlace(k, 0, sharedView.subarray(0, 512))).toThrow(/data: a view of a SharedArrayBuffer is not accepted/);
    const sharedBuffer = Buffer.from(new SharedArrayBuffer(512));
    expect(() => addon.xtsEncryptSectorsInto(key, 0n, 512, sharedBuffer, Buffer.alloc(512))).toThrow(/src: a view of a SharedArrayBuffer is not accepted/);
    expect(() => addon.xtsEncryptSectors(key, 0n, 512, sharedBuffer)).toThrow(/data: a view of a SharedArrayBuffer is not accepted/);
    expect(() => addon.xtsEncryptSectorsAsync(key, 0n, 512, sharedBuffer)).toThrow(/data: a view of a SharedArrayBuffer is not accepted/);
    expect(() => addon.xtsKeyEncryptInto(k, '0' as unknown as number, 512, buf, buf)).toThrow('firstSector: expected a number, got a string');
    expect(() => addon.xtsKeyDecryptInto(k, 0, undefined as unknown as number, buf, buf)).toThrow('sectorSize: expected a number, got undefined');
    expect(() => addon.xtsKeyDecryptSectorInPlace(k, 1n as unknown as number, Buffer.alloc(512))).toThrow('sector: expected a number, got a bigint');
    const big = Buffer.alloc(1024 + 1024);
    const a = big.subarray(0, 1024);
    const b = big.subarray(1024);
    addon.xtsKeyEncryptInto(k, 9, 512, a, b);
    const expected = Buffer.alloc(1024);
    addon.xtsEncryptSectorsInto(key, 9n, 512, Buffer.alloc(1024), expected);
    expect(b.equals(expected)).toBe(true);
    const back = Buffer.alloc(1024);
    addon.xtsKeyDecryptInto(k, 9, 512, b, back);
    expect(back.equals(Buffer.alloc(1024))).toBe(true);
    expect(addon.xtsKeyWiped(k)).toBe(false);
    // The single-sector in-place call: the sector size is the data's length.
    const sector = Buffer.from(b.subarray(512, 1024));
    addon.xtsKeyDecryptSectorInPlace(k, 10, sector);
    expect(sector.equals(Buffer.alloc(512))).toBe(true);
    expect(() => addon.xtsKeyDecryptSectorInPlace(k, 0, Buffer.alloc(1024))).toThrow(/data: expected one sector of 512 or 4096 bytes, got 1024/);
    expect(() => addon.xtsKeyDecryptSectorInPlace(k, -1, Buffer.alloc(512))).toThrow(/sector/);
    expect(() => addon.xtsKeyDecryptSectorInPlace(k, 0, 'x' as unknown as Uint8Array)).toThrow(/data: expected a Buffer or Uint8Array/);
    expect(() => addon.xtsKeyDecryptSectorInPlace({} as typeof k, 0, Buffer.alloc(512))).toThrow();
    addon.xtsKeyWipe(k);
    expect(addon.xtsKeyWiped(k)).toBe(true);
    expect(() => addon.xtsKeyDecryptSectorInPlace(k, 0, Buffer.alloc(512))).toThrow(/wiped/);
    expect(() => addon.xtsKeyDecryptInto(k, 0, 512, buf, buf)).toThrow(/wiped/);
    expect(() => addon.xtsKeyEncryptInto(k, 0, 512, buf, buf)).toThrow(/wiped/);
    addon.xtsKeyWipe(k);
    expect(addon.xtsKeyWiped(k)).toBe(true);
  });

  // The addon finds a handle's key through a per-thread registry of live handles (native/src/
  // handle.rs): collected handles must leave it, and worker threads keep their own.
  it.runIf(BACKENDS.includes('native'))('survives handles being garbage-collected and worker threads exiting (child process)', async () => {
    const { defaultAddonPath } = await import('../../src/cipher/native-binding.js');
    const script = `
      const { Worker, isMainThread, workerData, parentPort } = require('node:worker_threads');
      const addon = require(${JSON.stringify(defaultAddonPath())});
      const key = Buffer.alloc(64);
      for (let i = 0; i < 64; i++) key[i] = i;
      function churn(rounds) {
        const keep = addon.xtsKeyNew(key);
        const sector = Buffer.alloc(4096, 7);
        for (let i = 0; i < rounds; i++) {
          const h = addon.xtsKeyNew(key);
          addon.xtsKeyEncryptInto(h, i, 4096, sector, sector);
          if (i % 1000 === 0) globalThis.gc();
        }
        globalThis.gc();
        for (let i = rounds - 1; i >= 0; i--) addon.xtsKeyDecryptInto(keep, i, 4096, sector, sector);
        return sector.every((b) => b === 7);
      }
      if (isMainThread) {
        const workers = [0, 1].map(() => new Promise((resolve, reject) => {
          const w = new Worker(__filename, { workerData: 5000 });
          w.on('message', resolve);
          w.on('error', reject);
        }));
        Promise.all(workers).then((fromWorkers) => {
          console.log(JSON.stringify({ main: churn(20000), workers: fromWorkers }));
        });
      } else {
        parentPort.postMessage(churn(workerData));
      }
    `;
    const dir = mkdtempSync(join(tmpdir(), 'bv-handles-'));
    const file = join(dir, 'churn.cjs');
    writeFileSync(file, script);
    try {
      const { stdout, status, stderr } = spawnSync(process.execPath, ['--expose-gc', file], { encoding: 'utf8', timeout: 60_000 });
      expect(stderr).toBe('');
      expect(status).toBe(0);
      expect(JSON.parse(stdout)).toEqual({ main: true, workers: [true, true] });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
