/**
 * Argument checks for the public cipher API, done once in the facade (xts.ts) for both backends,
 * so that native and TS reject exactly the same inputs with exactly the same errors.
 *
 * Wrong types are TypeErrors, wrong values RangeErrors, as in node:crypto; every message starts
 * with the argument's name and says what was expected and what was given. Like node:crypto's
 * errors (ERR_INVALID_ARG_TYPE), each also carries a stable `code`: INVALID_ARGUMENT, the
 * BlockvaultError code for the same mistake (src/errors.ts), so callers can match one code.
 */
/** XTS-AES-256 takes Key1 | Key2, two AES-256 keys (IEEE 1619-2007, 5.1). */
export const XTS_KEY_BYTES = 64;
export const AES_BLOCK_BYTES = 16;
/** The sector sizes a volume can have (DESIGN.md, "Sectors and the cipher"). */
export const SECTOR_SIZES: readonly number[] = [512, 4096];
/** dm-crypt's plain64 tweak counts 512-byte units, whatever the sector size. */
export const PLAIN64_UNIT_BYTES = 512;
/**
 * The largest data unit the explicit-tweak API takes: 1 MiB, the native addon's bound too, so
 * both backends accept the same sizes. IEEE 1619-2007 (5.1) allows up to 2^20 blocks (16 MiB);
 * no caller here needs more than a sector, and a bound keeps a bad argument from meaning a
 * huge single data unit. Smaller than one block would need ciphertext stealing within a unit
 * shorter than a block, which the standard does not define.
 */
export const DATA_UNIT_BYTES_MAX = 2 ** 20;
const TWEAK_MAX = 2n ** 64n - 1n;

export type CipherArgumentError<E extends Error> = E & { code: 'INVALID_ARGUMENT' };

export function argumentTypeError(message: string): CipherArgumentError<TypeError> {
  return Object.assign(new TypeError(message), { code: 'INVALID_ARGUMENT' as const });
}

export function argumentRangeError(message: string): CipherArgumentError<RangeError> {
  return Object.assign(new RangeError(message), { code: 'INVALID_ARGUMENT' as const });
}

export function checkBytes(value: unknown, name: string): Uint8Array {
  if (value instanceof Uint8Array) {
    // Another thread could change shared memory while the cipher reads or writes it (a data
    // race in the native code); the addon refuses such views too.
    if (value.buffer instanceof SharedArrayBuffer) {
      throw argumentTypeError(`${name} must not be a view of a SharedArrayBuffer (another thread could change it during the call); copy it into a Buffer first`);
    }
    return value;
  }
  throw argumentTypeError(`${name} must be a Uint8Array or Buffer, got ${describe(value)}`);
}

/** A 64-byte XTS key whose halves differ (IEEE 1619-2007, 5.1 requires Key1 != Key2 in effect). */
export function checkKey(value: unknown): Uint8Array {
  const key = checkBytes(value, 'key');
  if (key.length !== XTS_KEY_BYTES) {
    throw argumentRangeError(`key must be ${XTS_KEY_BYTES} bytes (two AES-256 halves), got ${key.length}`);
  }
  // Equal halves turn XTS into a mode with known attacks on the first block (the tweak
  // encryption leaks through Key1 = Key2); Linux's xts_verify_key refuses them too. The
  // comparison ORs the differences of all 32 byte pairs, so its time does not depend on where
  // the halves first differ (and it costs far less than a call into node:crypto per batch).
  let difference = 0;
  for (let i = 0; i < 32; i++) difference |= key[i]! ^ key[i + 32]!;
  if (difference === 0) {
    throw argumentRangeError('key halves must differ: bytes 0..31 (Key1) equal bytes 32..63 (Key2)');
  }
  return key;
}

export function checkSectorSize(value: unknown): number {
  if (typeof value !== 'number') throw argumentTypeError(`sectorSize must be a number, got ${describe(value)}`);
  if (!SECTOR_SIZES.includes(value)) {
    throw argumentRangeError(`sectorSize must be 512 or 4096 bytes, got ${String(value)}`);
  }
  return value;
}

export function checkDataUnitSize(value: unknown): number {
  if (typeof value !== 'number') throw argumentTypeError(`dataUnitSize must be a number, got ${describe(value)}`);
  if (!Number.isInteger(value) || value < AES_BLOCK_BYTES || value > DATA_UNIT_BYTES_MAX || value % AES_BLOCK_BYTES !== 0) {
    throw argumentRangeError(
      `dataUnitSize must be a multiple of ${AES_BLOCK_BYTES} bytes between ${AES_BLOCK_BYTES} and ${DATA_UNIT_BYTES_MAX}, got ${String(value)}`,
    );
  }
  return value;
}

/** Whole units only: a partial sector would otherwise be silently dropped or mis-tweaked. */
export function checkWholeUnits(data: Uint8Array, name: string, unitSize: number, unitName: string): number {
  if (data.length % unitSize !== 0) {
    throw argumentRangeError(
      `${name} length must be a whole number of ${unitName}s (a multiple of ${unitSize} bytes), got ${data.length} bytes`,
    );
  }
  return data.length / unitSize;
}

/**
 * A sector number as a bigint. Numbers must be safe integers: above 2^53 - 1 a number no longer
 * names one sector, so those callers must pass a bigint. The plain64 tweak of every sector in
 * the batch, (firstSector + k) * sectorSize / 512, must fit in 64 bits (dm-crypt's plain64 is
 * a 64-bit counter; wrapping would reuse tweaks).
 */
export function checkFirstSector(value: unknown, sectorSize: number, sectorCount: number): bigint {
  let first: bigint;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw argumentRangeError(`firstSector must be an integer, got ${value}`);
    if (value < 0) throw argumentRangeError(`firstSector must not be negative, got ${value}`);
    if (!Number.isSafeInteger(value)) {
      throw argumentRangeError(
        `firstSector ${value} is above Number.MAX_SAFE_INTEGER (2^53 - 1) and may not be the sector meant; pass it as a bigint`,
      );
    }
    first = BigInt(value);
  } else if (typeof value === 'bigint') {
    if (value < 0n) throw argumentRangeError(`firstSector must not be negative, got ${value}n`);
    first = value;
  } else {
    throw argumentTypeError(`firstSector must be a number or a bigint, got ${describe(value)}`);
  }
  const unitsPerSector = sectorSize / PLAIN64_UNIT_BYTES;
  // Fast path without bigint arithmetic: a tweak below 2^53 is far below 2^64. Exact in
  // doubles: integer sums up to 2^53 are exact, and times 1 or 8 only changes the exponent.
  if (typeof value === 'number' && (value + sectorCount) * unitsPerSector <= Number.MAX_SAFE_INTEGER) return first;
  const lastSector = first + BigInt(Math.max(sectorCount - 1, 0));
  const lastTweak = lastSector * BigInt(unitsPerSector);
  if (lastTweak > TWEAK_MAX) {
    throw argumentRangeError(
      `firstSector ${first} with ${sectorCount} sector(s) of ${sectorSize} bytes overflows the 64-bit plain64 tweak: ` +
        `sector ${lastSector} would need tweak ${lastTweak} > 2^64 - 1`,
    );
  }
  return first;
}

export function checkTweaks(value: unknown, unitCount: number): Uint8Array {
  const tweaks = checkBytes(value, 'tweaks');
  if (tweaks.length !== unitCount * AES_BLOCK_BYTES) {
    throw argumentRangeError(
      `tweaks must hold ${AES_BLOCK_BYTES} bytes per data unit (${unitCount} unit(s): ${unitCount * AES_BLOCK_BYTES} bytes), got ${tweaks.length}`,
    );
  }
  return tweaks;
}

/**
 * `dst` must be as long as `src` and either be `src` itself (same memory: in place) or not
 * overlap it. A partial overlap would make a block be overwritten before it is read.
 */
export function checkDestination(src: Uint8Array, value: unknown): Uint8Array {
  const dst = checkBytes(value, 'dst');
  if (dst.length !== src.length) {
    throw argumentRangeError(`dst length must equal src length (${src.length} bytes), got ${dst.length}`);
  }
  if (dst.buffer === src.buffer && dst.byteOffset !== src.byteOffset && dst.length > 0) {
    const start = Math.max(dst.byteOffset, src.byteOffset);
    const end = Math.min(dst.byteOffset + dst.length, src.byteOffset + src.length);
    if (start < end) {
      throw argumentRangeError('dst must be src itself (in place) or not overlap src; it partially overlaps it');
    }
  }
  return dst;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'object') {
    const ctor = (value as { constructor?: { name?: unknown } }).constructor?.name;
    return typeof ctor === 'string' ? `an instance of ${ctor}` : 'an object';
  }
  if (typeof value === 'string') return `a string`;
  if (typeof value === 'bigint') return `a bigint (${value}n)`;
  return `${typeof value} (${String(value)})`;
}
