/**
 * Bad input, on both backends: the facade rejects it before either backend runs, with a
 * TypeError (wrong type) or RangeError (wrong value) whose message names the argument. Nothing
 * crashes, nothing is truncated, and the Into variants leave `dst` untouched.
 */
import { describe, expect, it } from 'vitest';
import { XtsCipher } from '../../src/cipher/index.js';
import { BACKENDS, cipherFor, randomKey } from './helpers.js';

const KEY = randomKey();
const SECTOR = Buffer.alloc(4096, 7);

type ErrorClass = typeof TypeError | typeof RangeError;

/** Runs `call` through every sync and async sector entry point, expecting the same error. */
async function expectSectorError(
  xts: XtsCipher,
  args: [key: unknown, firstSector: unknown, sectorSize: unknown, data: unknown],
  errorClass: ErrorClass,
  message: RegExp,
): Promise<void> {
  const [key, first, size, data] = args as [Uint8Array, number, number, Uint8Array];
  expect(() => xts.encryptSectors(key, first, size, data)).toThrow(errorClass);
  expect(() => xts.encryptSectors(key, first, size, data)).toThrow(message);
  expect(() => xts.decryptSectors(key, first, size, data)).toThrow(message);
  const dst = data instanceof Uint8Array ? new Uint8Array(data.length) : new Uint8Array(0);
  expect(() => xts.encryptSectorsInto(key, first, size, data, dst)).toThrow(message);
  expect(() => xts.decryptSectorsInto(key, first, size, data, dst)).toThrow(message);
  expect(dst.every((b) => b === 0)).toBe(true);
  await expect(xts.encryptSectorsAsync(key, first, size, data)).rejects.toThrow(errorClass);
  await expect(xts.decryptSectorsAsync(key, first, size, data)).rejects.toThrow(message);
}

describe.each(BACKENDS)('argument validation, %s backend', (backend) => {
  const xts = () => cipherFor(backend);

  it('key: not bytes -> TypeError naming key', async () => {
    for (const bad of ['a'.repeat(64), null, undefined, 42, [...KEY], new Uint16Array(32), new DataView(KEY.buffer)]) {
      await expectSectorError(xts(), [bad, 0, 4096, SECTOR], TypeError, /^key must be a Uint8Array or Buffer, got /);
    }
  });

  it('key: wrong length -> RangeError with the expected size', async () => {
    for (const length of [0, 32, 63, 65, 128]) {
      await expectSectorError(
        xts(),
        [Buffer.concat([randomKey(), randomKey()]).subarray(0, length), 0, 4096, SECTOR],
        RangeError,
        new RegExp(`^key must be 64 bytes \\(two AES-256 halves\\), got ${length}$`),
      );
    }
  });

  it('key: equal halves -> RangeError', async () => {
    const half = randomKey().subarray(0, 32);
    await expectSectorError(xts(), [Buffer.concat([half, half]), 0, 4096, SECTOR], RangeError, /^key halves must differ/);
    await expectSectorError(xts(), [Buffer.alloc(64), 0, 4096, SECTOR], RangeError, /^key halves must differ/);
  });

  it('sectorSize: not 512 or 4096', async () => {
    for (const size of [0, 16, 1024, 2048, 8192, -512, 512.5, NaN, Infinity]) {
      await expectSectorError(xts(), [KEY, 0, size, SECTOR], RangeError, /^sectorSize must be 512 or 4096 bytes, got /);
    }
    await expectSectorError(xts(), [KEY, 0, '4096', SECTOR], TypeError, /^sectorSize must be a number, got a string/);
    await expectSectorError(xts(), [KEY, 0, 4096n, SECTOR], TypeError, /^sectorSize must be a number/);
  });

  it('data: not bytes -> TypeError naming data (src for Into)', async () => {
    await expectSectorError(xts(), [KEY, 0, 4096, 'plaintext'], TypeError, /^data must be a Uint8Array or Buffer|^src must be/);
    expect(() => xts().encryptSectorsInto(KEY, 0, 4096, {} as Uint8Array, SECTOR)).toThrow(/^src must be a Uint8Array or Buffer, got an instance of Object$/);
    expect(() => xts().encryptSectors(KEY, 0, 4096, new ArrayBuffer(4096) as unknown as Uint8Array)).toThrow(
      /^data must be a Uint8Array or Buffer, got an instance of ArrayBuffer$/,
    );
  });

  it('views of a SharedArrayBuffer are refused wherever bytes go in or out (key, data, dst, keyed calls)', async () => {
    const shared = (bytes: Uint8Array): Uint8Array => {
      const view = new Uint8Array(new SharedArrayBuffer(bytes.length));
      view.set(bytes);
      return view;
    };
    const sab = /must not be a view of a SharedArrayBuffer/;
    await expectSectorError(xts(), [shared(KEY), 0, 4096, SECTOR], TypeError, /^key must not be a view of a SharedArrayBuffer/);
    await expectSectorError(xts(), [KEY, 0, 4096, shared(SECTOR)], TypeError, /^(data|src) must not be a view of a SharedArrayBuffer/);
    expect(() => xts().encryptSectorsInto(KEY, 0, 4096, SECTOR, shared(SECTOR))).toThrow(/^dst must not be a view of a SharedArrayBuffer/);
    const handle = xts().keyed(KEY);
    expect(() => handle.encryptSectorsInto(0, 4096, shared(SECTOR), Buffer.alloc(4096))).toThrow(sab);
    expect(() => handle.decryptSectorInPlace(0, shared(SECTOR))).toThrow(sab);
    handle.wipe();
  });

  it('data: not a whole number of sectors -> RangeError, never truncation', async () => {
    for (const [size, length] of [[4096, 4095], [4096, 4097], [4096, 512], [512, 511], [512, 1000], [512, 16]] as const) {
      await expectSectorError(
        xts(),
        [KEY, 0, size, Buffer.alloc(length)],
        RangeError,
        new RegExp(`^(data|src) length must be a whole number of sectors \\(a multiple of ${size} bytes\\), got ${length} bytes$`),
      );
    }
  });

  it('zero-length data is a batch of zero sectors: empty result, Into is a no-op', async () => {
    const x = xts();
    const empty = new Uint8Array(0);
    expect(x.encryptSectors(KEY, 0, 4096, empty)).toHaveLength(0);
    expect(x.decryptSectors(KEY, 5n, 512, empty)).toHaveLength(0);
    expect(() => x.encryptSectorsInto(KEY, 0, 4096, empty, empty)).not.toThrow();
    expect(await x.encryptSectorsAsync(KEY, 0, 4096, empty)).toHaveLength(0);
    expect(x.encryptDataUnits(KEY, empty, 512, empty)).toHaveLength(0);
    // The other arguments are still checked.
    expect(() => x.encryptSectors(Buffer.alloc(64), 0, 4096, empty)).toThrow(/key halves must differ/);
    expect(() => x.encryptSectors(KEY, -1, 4096, empty)).toThrow(/firstSector must not be negative/);
    expect(() => x.encryptSectors(KEY, 2n ** 64n, 512, empty)).toThrow(/firstSector .* overflows the 64-bit plain64 tweak/);
  });

  it('firstSector: wrong type, negative, fractional, unsafe number', async () => {
    const x = xts();
    await expectSectorError(x, [KEY, '0', 4096, SECTOR], TypeError, /^firstSector must be a number or a bigint, got a string$/);
    await expectSectorError(x, [KEY, null, 4096, SECTOR], TypeError, /^firstSector must be a number or a bigint, got null$/);
    await expectSectorError(x, [KEY, -1, 4096, SECTOR], RangeError, /^firstSector must not be negative, got -1$/);
    await expectSectorError(x, [KEY, -1n, 4096, SECTOR], RangeError, /^firstSector must not be negative, got -1n$/);
    await expectSectorError(x, [KEY, 1.5, 4096, SECTOR], RangeError, /^firstSector must be an integer, got 1.5$/);
    await expectSectorError(x, [KEY, NaN, 4096, SECTOR], RangeError, /^firstSector must be an integer, got NaN$/);
    await expectSectorError(x, [KEY, Infinity, 4096, SECTOR], RangeError, /^firstSector must be an integer, got Infinity$/);
    await expectSectorError(x, [KEY, 2 ** 53, 4096, SECTOR], RangeError, /^firstSector 9007199254740992 is above Number.MAX_SAFE_INTEGER .* pass it as a bigint$/);
    // The same sector as a bigint is fine.
    expect(x.encryptSectors(KEY, 2n ** 53n, 4096, SECTOR)).toHaveLength(4096);
  });

  it('firstSector: the last sector of the batch must have a plain64 tweak below 2^64', async () => {
    const x = xts();
    const max512 = 2n ** 64n - 1n;
    const max4096 = (2n ** 64n - 1n) / 8n;
    // Exactly at the top: accepted.
    expect(x.encryptSectors(KEY, max512, 512, Buffer.alloc(512))).toHaveLength(512);
    expect(x.encryptSectors(KEY, max512 - 1n, 512, Buffer.alloc(1024))).toHaveLength(1024);
    expect(x.encryptSectors(KEY, max4096, 4096, SECTOR)).toHaveLength(4096);
    // One past it, for a single sector and for the last sector of a batch.
    await expectSectorError(x, [KEY, max512 + 1n, 512, Buffer.alloc(512)], RangeError, /^firstSector \d+ with 1 sector\(s\) of 512 bytes overflows the 64-bit plain64 tweak/);
    await expectSectorError(x, [KEY, max512, 512, Buffer.alloc(1024)], RangeError, /overflows the 64-bit plain64 tweak: sector 18446744073709551616 would need tweak/);
    await expectSectorError(x, [KEY, max4096 + 1n, 4096, SECTOR], RangeError, /^firstSector 2305843009213693952 with 1 sector\(s\) of 4096 bytes overflows/);
    await expectSectorError(x, [KEY, max4096, 4096, Buffer.alloc(8192)], RangeError, /overflows the 64-bit plain64 tweak/);
  });

  it('dst: wrong type, wrong length, partial overlap', () => {
    const x = xts();
    expect(() => x.encryptSectorsInto(KEY, 0, 4096, SECTOR, 'out' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => x.encryptSectorsInto(KEY, 0, 4096, SECTOR, 'out' as unknown as Uint8Array)).toThrow(/^dst must be a Uint8Array or Buffer, got a string$/);
    for (const length of [0, 4095, 4097, 8192]) {
      const dst = Buffer.alloc(length);
      expect(() => x.encryptSectorsInto(KEY, 0, 4096, SECTOR, dst)).toThrow(RangeError);
      expect(() => x.decryptSectorsInto(KEY, 0, 4096, SECTOR, dst)).toThrow(new RegExp(`^dst length must equal src length \\(4096 bytes\\), got ${length}$`));
      expect(dst.every((b) => b === 0)).toBe(true);
    }
    const arena = Buffer.alloc(3 * 4096, 1);
    const src = arena.subarray(0, 8192);
    for (const offset of [16, 4096]) {
      const dst = arena.subarray(offset, offset + 8192);
      expect(() => x.encryptSectorsInto(KEY, 0, 4096, src, dst)).toThrow(RangeError);
      expect(() => x.encryptSectorsInto(KEY, 0, 4096, dst, src)).toThrow(/^dst must be src itself \(in place\) or not overlap src/);
    }
    expect(arena.every((b) => b === 1)).toBe(true);
    // Adjacent but disjoint halves of one buffer are fine, and so is the same memory through two views.
    x.encryptSectorsInto(KEY, 0, 4096, arena.subarray(0, 4096), arena.subarray(4096, 8192));
    const again = new Uint8Array(arena.buffer, arena.byteOffset, 4096);
    x.encryptSectorsInto(KEY, 0, 4096, arena.subarray(0, 4096), again);
  });

  it('explicit tweaks: types, lengths and data unit size', () => {
    const x = xts();
    const data = Buffer.alloc(1024);
    const tweaks = Buffer.alloc(32);
    expect(x.encryptDataUnits(KEY, tweaks, 512, data)).toHaveLength(1024);
    expect(() => x.encryptDataUnits(KEY, 'tweaks' as unknown as Uint8Array, 512, data)).toThrow(TypeError);
    expect(() => x.encryptDataUnits(KEY, 'tweaks' as unknown as Uint8Array, 512, data)).toThrow(/^tweaks must be a Uint8Array or Buffer/);
    for (const length of [0, 16, 31, 33, 48]) {
      expect(() => x.encryptDataUnits(KEY, Buffer.alloc(length), 512, data)).toThrow(RangeError);
      expect(() => x.decryptDataUnits(KEY, Buffer.alloc(length), 512, data)).toThrow(
        new RegExp(`^tweaks must hold 16 bytes per data unit \\(2 unit\\(s\\): 32 bytes\\), got ${length}$`),
      );
    }
    for (const size of [0, 8, 24, 500, 2 ** 20 + 16, 2 ** 24, 1.5, -16]) {
      expect(() => x.encryptDataUnits(KEY, tweaks, size, data)).toThrow(RangeError);
      expect(() => x.encryptDataUnits(KEY, tweaks, size, data)).toThrow(/^dataUnitSize must be a multiple of 16 bytes between 16 and 1048576, got /);
    }
    expect(() => x.encryptDataUnits(KEY, tweaks, '512' as unknown as number, data)).toThrow(/^dataUnitSize must be a number, got a string$/);
    expect(() => x.encryptDataUnits(KEY, tweaks, 512, Buffer.alloc(1000))).toThrow(
      /^data length must be a whole number of data units \(a multiple of 512 bytes\), got 1000 bytes$/,
    );
    expect(() => x.encryptDataUnits(Buffer.alloc(32), tweaks, 512, data)).toThrow(/^key must be 64 bytes/);
    // Any multiple of 16 works as a data unit, e.g. 16 bytes: one block per unit.
    expect(x.encryptDataUnits(KEY, Buffer.alloc(16 * 64), 16, data)).toHaveLength(1024);
  });
});

describe('XtsCipher.create arguments', () => {
  it('rejects an unknown backend name, and non-object options', () => {
    expect(() => XtsCipher.create({ backend: 'openssl' as 'ts' })).toThrow(RangeError);
    expect(() => XtsCipher.create({ backend: 'openssl' as 'ts' })).toThrow(/^backend must be 'native' or 'ts', got 'openssl'$/);
    expect(() => XtsCipher.create({ backend: 1 as unknown as 'ts' })).toThrow(TypeError);
    expect(() => XtsCipher.create('ts' as unknown as { backend: 'ts' })).toThrow(/^opts must be an object/);
  });
});
