/**
 * Pure-TypeScript XTS-AES-256 (IEEE 1619-2007) on @noble/ciphers' AES core: the fallback when the
 * native addon cannot load, and the reference the native path is cross-checked against.
 *
 * Inputs are validated by the facade (xts.ts) before they get here; this file only asserts.
 * Data units are whole multiples of the 16-byte AES block, so ciphertext stealing
 * (IEEE 1619-2007, 5.3.2 for a partial last block) never applies.
 *
 * Speed: the key schedules a call needs (K1 forward or inverse, K2 forward) are expanded once
 * per call, not per sector, or once per key for a keyed handle (TsXtsKey), and the blocks are read and written through
 * Uint32Array views, in the little-endian word layout the AES core works in. Buffers that are
 * not 4-byte aligned (or a big-endian host) go through an aligned scratch data unit instead.
 */
import { unsafe as aes } from '@noble/ciphers/aes.js';
import { assert } from '../errors.js';
import { GF128_REDUCTION, loadTweakBytes, setTweakNumber } from './gf128.js';

// Module-level bindings of the block functions: calls through them inline better than `aes.x`.
const aesEncrypt = aes.encrypt;
const aesDecrypt = aes.decrypt;
const expandKeyEnc = aes.expandKeyLE;
const expandKeyDec = aes.expandKeyDecLE;
const AES_BLOCK_BYTES = 16;
/** dm-crypt's plain64 IV counts 512-byte units, whatever the sector size (LUKS2 `--sector-size`). */
const PLAIN64_UNIT_BYTES = 512;
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const TWO_POW_32 = 0x1_0000_0000;

type Direction = 'encrypt' | 'decrypt';
/** Fills `t` with the (not yet encrypted) tweak of data unit number `unitIndex` of this call. */
type TweakSource = (unitIndex: number, t: Uint32Array) => void;

/**
 * XTS over the sectors in `src`, written to `dst` (which may be `src`), with dm-crypt's
 * `aes-xts-plain64` tweak: sector `firstSector + k` of `sectorSize` bytes has the data unit
 * sequence number `(firstSector + k) * sectorSize / 512`.
 */
export function tsXtsSectorsInto(
  direction: Direction,
  key: Uint8Array,
  firstSector: bigint,
  sectorSize: number,
  src: Uint8Array,
  dst: Uint8Array,
): void {
  withSchedules(direction, key, (xk1, xk2) => xtsUnits(direction, xk1, xk2, sectorSize, src, dst, plain64Tweaks(firstSector, sectorSize)));
}

/** XTS over data units of `dataUnitSize` bytes with an explicit 16-byte tweak per unit. */
export function tsXtsDataUnitsInto(
  direction: Direction,
  key: Uint8Array,
  tweaks: Uint8Array,
  dataUnitSize: number,
  src: Uint8Array,
  dst: Uint8Array,
): void {
  withSchedules(direction, key, (xk1, xk2) =>
    xtsUnits(direction, xk1, xk2, dataUnitSize, src, dst, (unitIndex, t) => loadTweakBytes(t, tweaks, unitIndex * 16)),
  );
}

/**
 * A key's three schedules expanded once (K1 forward and inverse, K2 forward), for the keyed
 * handle: a 4 KiB sector per call would otherwise pay two or three expansions each time.
 * wipe() zeroes them; the facade refuses calls after it, and so does this class.
 */
export class TsXtsKey {
  readonly #xk1Enc: Uint32Array;
  readonly #xk1Dec: Uint32Array;
  readonly #xk2: Uint32Array;
  #wiped = false;

  constructor(key: Uint8Array) {
    assert(key.length === 64, 'key is 64 bytes');
    // IEEE 1619-2007, 5.1: Key = Key1 | Key2; Key1 encrypts the data, Key2 the tweak.
    this.#xk1Enc = expandKeyEnc(key.subarray(0, 32));
    this.#xk1Dec = expandKeyDec(key.subarray(0, 32));
    this.#xk2 = expandKeyEnc(key.subarray(32, 64));
  }

  /** As tsXtsSectorsInto, under this key. */
  sectorsInto(direction: Direction, firstSector: bigint, sectorSize: number, src: Uint8Array, dst: Uint8Array): void {
    assert(!this.#wiped, 'a wiped key is not used');
    const xk1 = direction === 'encrypt' ? this.#xk1Enc : this.#xk1Dec;
    xtsUnits(direction, xk1, this.#xk2, sectorSize, src, dst, plain64Tweaks(firstSector, sectorSize));
  }

  wipe(): void {
    this.#wiped = true;
    this.#xk1Enc.fill(0);
    this.#xk1Dec.fill(0);
    this.#xk2.fill(0);
  }
}

/** dm-crypt's plain64 tweaks of the sectors from `firstSector` on, in order. */
function plain64Tweaks(firstSector: bigint, sectorSize: number): TweakSource {
  const step = sectorSize / PLAIN64_UNIT_BYTES;
  const first = firstSector * BigInt(step);
  // Carry the 64-bit unit number as two 32-bit halves: no bigint arithmetic per sector.
  let lo = Number(first & 0xffff_ffffn);
  let hi = Number(first >> 32n);
  let next = 0;
  return (unitIndex, t) => {
    assert(unitIndex === next, 'sector tweaks are generated in order');
    setTweakNumber(t, lo, hi);
    next++;
    lo += step;
    if (lo >= TWO_POW_32) {
      lo -= TWO_POW_32;
      hi++;
    }
  };
}

/** `run` with the schedules one call needs, zeroed afterwards: they are key material. */
function withSchedules(direction: Direction, key: Uint8Array, run: (xk1: Uint32Array, xk2: Uint32Array) => void): void {
  assert(key.length === 64, 'key is 64 bytes');
  const key1 = key.subarray(0, 32);
  const xk2 = expandKeyEnc(key.subarray(32, 64));
  const xk1 = direction === 'encrypt' ? expandKeyEnc(key1) : expandKeyDec(key1);
  try {
    run(xk1, xk2);
  } finally {
    xk1.fill(0);
    xk2.fill(0);
  }
}

/** XTS over whole data units of `unitSize` bytes under the expanded schedules xk1 (data) and xk2 (tweak). */
function xtsUnits(
  direction: Direction,
  xk1: Uint32Array,
  xk2: Uint32Array,
  unitSize: number,
  src: Uint8Array,
  dst: Uint8Array,
  tweakOf: TweakSource,
): void {
  assert(unitSize > 0 && unitSize % AES_BLOCK_BYTES === 0, 'data unit is whole AES blocks');
  assert(src.length === dst.length && src.length % unitSize === 0, 'src and dst hold whole data units');
  const unitCount = src.length / unitSize;
  const unitWords = unitSize >>> 2;
  const t = new Uint32Array(4);
  const fast = LITTLE_ENDIAN && isAligned32(src) && isAligned32(dst);
  let scratch: Uint8Array | undefined;
  try {
    if (fast) {
      const src32 = new Uint32Array(src.buffer, src.byteOffset, src.length >>> 2);
      const dst32 = new Uint32Array(dst.buffer, dst.byteOffset, dst.length >>> 2);
      for (let u = 0; u < unitCount; u++) {
        tweakOf(u, t);
        encryptTweak(xk2, t);
        if (direction === 'encrypt') encryptUnit(xk1, t, src32, dst32, u * unitWords, unitWords);
        else decryptUnit(xk1, t, src32, dst32, u * unitWords, unitWords);
      }
    } else {
      scratch = new Uint8Array(unitSize);
      const scratch32 = new Uint32Array(scratch.buffer);
      for (let u = 0; u < unitCount; u++) {
        const offset = u * unitSize;
        scratch.set(src.subarray(offset, offset + unitSize));
        if (!LITTLE_ENDIAN) byteSwapWords(scratch32);
        tweakOf(u, t);
        encryptTweak(xk2, t);
        if (direction === 'encrypt') encryptUnit(xk1, t, scratch32, scratch32, 0, unitWords);
        else decryptUnit(xk1, t, scratch32, scratch32, 0, unitWords);
        if (!LITTLE_ENDIAN) byteSwapWords(scratch32);
        dst.set(scratch, offset);
      }
    }
  } finally {
    // Tweaks and plaintext copies are key-dependent material: leave none of it in the heap.
    t.fill(0);
    scratch?.fill(0);
  }
}

/** T = AES-enc(Key2, i): IEEE 1619-2007, 5.3.1 step 1. */
function encryptTweak(xk2: Uint32Array, t: Uint32Array): void {
  const r = aesEncrypt(xk2, t[0]!, t[1]!, t[2]!, t[3]!);
  t[0] = r.s0;
  t[1] = r.s1;
  t[2] = r.s2;
  t[3] = r.s3;
}

/**
 * One data unit, block j = 0, 1, ...: C_j = AES-enc(Key1, P_j xor T_j) xor T_j, then
 * T_{j+1} = T_j (x) alpha (IEEE 1619-2007, 5.3.1 steps 2-4 and 5.2).
 *
 * The tweak lives in four locals and the doubling is `mulAlpha` (gf128.ts) written out inline:
 * this loop is the whole cost of the fallback, and typed-array round trips per block cost ~15%.
 */
function encryptUnit(xk1: Uint32Array, t: Uint32Array, src32: Uint32Array, dst32: Uint32Array, start: number, words: number): void {
  let t0 = t[0]! | 0;
  let t1 = t[1]! | 0;
  let t2 = t[2]! | 0;
  let t3 = t[3]! | 0;
  for (let i = start, end = start + words; i < end; i += 4) {
    const r = aesEncrypt(xk1, src32[i]! ^ t0, src32[i + 1]! ^ t1, src32[i + 2]! ^ t2, src32[i + 3]! ^ t3);
    dst32[i] = r.s0 ^ t0;
    dst32[i + 1] = r.s1 ^ t1;
    dst32[i + 2] = r.s2 ^ t2;
    dst32[i + 3] = r.s3 ^ t3;
    const carry = GF128_REDUCTION & -(t3 >>> 31);
    t3 = (t3 << 1) | (t2 >>> 31);
    t2 = (t2 << 1) | (t1 >>> 31);
    t1 = (t1 << 1) | (t0 >>> 31);
    t0 = (t0 << 1) ^ carry;
  }
}

/** The inverse (IEEE 1619-2007, 5.4.1): P_j = AES-dec(Key1, C_j xor T_j) xor T_j. */
function decryptUnit(xk1: Uint32Array, t: Uint32Array, src32: Uint32Array, dst32: Uint32Array, start: number, words: number): void {
  let t0 = t[0]! | 0;
  let t1 = t[1]! | 0;
  let t2 = t[2]! | 0;
  let t3 = t[3]! | 0;
  for (let i = start, end = start + words; i < end; i += 4) {
    const r = aesDecrypt(xk1, src32[i]! ^ t0, src32[i + 1]! ^ t1, src32[i + 2]! ^ t2, src32[i + 3]! ^ t3);
    dst32[i] = r.s0 ^ t0;
    dst32[i + 1] = r.s1 ^ t1;
    dst32[i + 2] = r.s2 ^ t2;
    dst32[i + 3] = r.s3 ^ t3;
    const carry = GF128_REDUCTION & -(t3 >>> 31);
    t3 = (t3 << 1) | (t2 >>> 31);
    t2 = (t2 << 1) | (t1 >>> 31);
    t1 = (t1 << 1) | (t0 >>> 31);
    t0 = (t0 << 1) ^ carry;
  }
}

function isAligned32(bytes: Uint8Array): boolean {
  return bytes.byteOffset % 4 === 0;
}

/** Big-endian hosts only: turns the bytes into the little-endian words the AES core expects. */
function byteSwapWords(words: Uint32Array): void {
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    words[i] = ((w & 0xff) << 24) | ((w & 0xff00) << 8) | ((w >>> 8) & 0xff00) | (w >>> 24);
  }
}
