/**
 * XtsCipher: AES-256-XTS (IEEE 1619-2007) over batches of sectors, compatible with dm-crypt's
 * `aes-xts-plain64` as LUKS2 uses it: sector n of `sectorSize` bytes is one XTS data unit whose
 * tweak is the 64-bit little-endian number n * sectorSize / 512 (the number of its first
 * 512-byte unit), zero-padded to 16 bytes. A volume's ciphertext is therefore what LUKS2 with
 * `--sector-size <sectorSize>` holds at the same offsets.
 *
 * This is the boundary: every argument is checked here, once, for both backends (validate.ts),
 * and the backends only see valid input.
 *
 * Backend choice: `XtsCipher.create({ backend })` uses what it is told; without it, the env var
 * BLOCKVAULT_CIPHER (`native` | `ts`) decides; without that, native when the addon loads, else
 * the pure-TS fallback with one warning per process (not when ts was chosen explicitly).
 *
 * Zero-length data is valid: a batch of zero sectors. The calls return an empty Buffer (and the
 * Into variants do nothing) after the same checks of key, sector size and sector number.
 */
import { isMainThread } from 'node:worker_threads';
import type { BackendKeyHandle, CipherBackendName, Direction, XtsBackend } from './backend.js';
import { nativeAddon } from './native-binding.js';
import { nativeBackend } from './native-backend.js';
import { tsBackend } from './ts-backend.js';
import {
  argumentRangeError,
  argumentTypeError,
  checkBytes,
  checkDataUnitSize,
  checkDestination,
  checkFirstSector,
  checkKey,
  checkSectorSize,
  checkTweaks,
  checkWholeUnits,
  SECTOR_SIZES,
} from './validate.js';

export interface XtsCipherOptions {
  /** 'native' (the Rust addon; throws if it cannot load) or 'ts' (pure TypeScript). */
  backend?: CipherBackendName;
  /**
   * For benchmarks and tests only: the native addon's AES code path ('vaes-avx512', 'vaes-avx2', 'aesni-x8'
   * or 'portable'; `nativeCipherStatus().paths` lists which this CPU runs). Needs the native
   * backend; a path this CPU cannot run is refused here. Without it the addon picks the fastest
   * (or what BLOCKVAULT_XTS_PATH forces for the process).
   */
  nativePath?: string;
}

/** A sector number: a safe-integer number, or a bigint for sectors above 2^53 - 1. */
export type SectorNumber = number | bigint;

/**
 * A data key prepared once for many sector calls (XtsCipher.keyed): on both backends the AES
 * key schedules are expanded once here instead of on every call. Same output as the
 * plain calls with the same key. Sector numbers are numbers (safe integers) only.
 */
export interface XtsKeyHandle {
  encryptSectorsInto(firstSector: number, sectorSize: number, src: Uint8Array, dst: Uint8Array): void;
  decryptSectorsInto(firstSector: number, sectorSize: number, src: Uint8Array, dst: Uint8Array): void;
  /**
   * Decrypts one sector in place: `data` is the whole sector, its length (512 or 4096) the sector
   * size. Same bytes as decryptSectorsInto(sector, data.length, data, data), in a leaner native
   * call (the hot call of a random single-sector read).
   */
  decryptSectorInPlace(sector: number, data: Uint8Array): void;
  /** Zeroes the handle's key material now; every later call throws. Idempotent. */
  wipe(): void;
  readonly wiped: boolean;
}

const BACKEND_NAMES: readonly string[] = ['native', 'ts'];
export const CIPHER_ENV = 'BLOCKVAULT_CIPHER';

let nativeInstance: XtsBackend | undefined;
let fallbackWarned = false;

export class XtsCipher {
  readonly backend: CipherBackendName;
  /**
   * The native addon's AES code path this cipher's keys use ('vaes-avx512', 'vaes-avx2', 'aesni-x8',
   * 'portable'); undefined on the TS backend.
   */
  readonly nativePath: string | undefined;
  readonly #impl: XtsBackend;

  private constructor(impl: XtsBackend, nativePath?: string) {
    this.#impl = impl;
    this.backend = impl.name;
    this.nativePath = impl.name === 'native' ? (nativePath ?? nativeAddon().status.cpuPath) : undefined;
  }

  static create(opts: XtsCipherOptions = {}): XtsCipher {
    if (typeof opts !== 'object' || opts === null) {
      throw argumentTypeError(`opts must be an object like { backend: 'native' | 'ts' }, got ${opts === null ? 'null' : typeof opts}`);
    }
    if (opts.nativePath !== undefined) return XtsCipher.#onNativePath(opts);
    if (opts.backend !== undefined) return new XtsCipher(backendNamed(checkBackendName(opts.backend, 'backend')));
    const fromEnv = process.env[CIPHER_ENV];
    if (fromEnv !== undefined && fromEnv !== '') {
      return new XtsCipher(backendNamed(checkBackendName(fromEnv, `the ${CIPHER_ENV} environment variable`)));
    }
    const probe = nativeAddon();
    if (probe.addon !== undefined) return new XtsCipher(backendNamed('native'));
    warnFallbackOnce(probe.status.error ?? 'unknown error');
    return new XtsCipher(tsBackend);
  }

  /** `create` with `nativePath`: the native backend, its keys forced onto that code path. */
  static #onNativePath(opts: XtsCipherOptions): XtsCipher {
    const path = opts.nativePath;
    if (typeof path !== 'string') throw argumentTypeError(`nativePath must be a string, got ${typeof path}`);
    if (opts.backend !== undefined && checkBackendName(opts.backend, 'backend') !== 'native') {
      throw argumentRangeError(`nativePath needs backend 'native', got backend '${opts.backend}'`);
    }
    backendNamed('native'); // throws with the load error when the addon is unavailable
    const addon = nativeAddon().addon!;
    const info = addon.xtsPaths().find((p) => p.name === path);
    if (info === undefined) {
      throw argumentRangeError(`nativePath must be one of ${addon.xtsPaths().map((p) => `'${p.name}'`).join(', ')}, got '${path}'`);
    }
    if (!info.supported) {
      throw Object.assign(new Error(`nativePath '${path}' cannot run here: ${info.reason ?? 'unsupported'}`), { code: 'INVALID_ARGUMENT' });
    }
    return new XtsCipher(nativeBackend(addon, path), path);
  }

  /** Encrypts whole sectors; returns a new Buffer of the same length. */
  encryptSectors(key: Uint8Array, firstSector: SectorNumber, sectorSize: number, data: Uint8Array): Uint8Array {
    return this.#sectors('encrypt', key, firstSector, sectorSize, data);
  }

  decryptSectors(key: Uint8Array, firstSector: SectorNumber, sectorSize: number, data: Uint8Array): Uint8Array {
    return this.#sectors('decrypt', key, firstSector, sectorSize, data);
  }

  /** Encrypts `src` into `dst` (same length; `dst` may be `src` itself for in-place work). */
  encryptSectorsInto(key: Uint8Array, firstSector: SectorNumber, sectorSize: number, src: Uint8Array, dst: Uint8Array): void {
    this.#sectorsInto('encrypt', key, firstSector, sectorSize, src, dst);
  }

  decryptSectorsInto(key: Uint8Array, firstSector: SectorNumber, sectorSize: number, src: Uint8Array, dst: Uint8Array): void {
    this.#sectorsInto('decrypt', key, firstSector, sectorSize, src, dst);
  }

  /**
   * Like encryptSectors, off the JS thread on the native backend (libuv pool). Bad arguments
   * reject the promise. `data` must stay unchanged until the promise settles: the native
   * backend reads it from another thread.
   */
  encryptSectorsAsync(key: Uint8Array, firstSector: SectorNumber, sectorSize: number, data: Uint8Array): Promise<Uint8Array> {
    return this.#sectorsAsync('encrypt', key, firstSector, sectorSize, data);
  }

  decryptSectorsAsync(key: Uint8Array, firstSector: SectorNumber, sectorSize: number, data: Uint8Array): Promise<Uint8Array> {
    return this.#sectorsAsync('decrypt', key, firstSector, sectorSize, data);
  }

  /**
   * The standard's own interface (IEEE 1619-2007, 5.3): data units of `dataUnitSize` bytes
   * (a multiple of 16), each with its explicit 16-byte tweak in `tweaks` (16 bytes per unit,
   * the data unit sequence number as IEEE 1619 encodes it). For known-answer tests and for
   * callers with their own tweak scheme.
   */
  encryptDataUnits(key: Uint8Array, tweaks: Uint8Array, dataUnitSize: number, data: Uint8Array): Uint8Array {
    return this.#dataUnits('encrypt', key, tweaks, dataUnitSize, data);
  }

  decryptDataUnits(key: Uint8Array, tweaks: Uint8Array, dataUnitSize: number, data: Uint8Array): Uint8Array {
    return this.#dataUnits('decrypt', key, tweaks, dataUnitSize, data);
  }

  /**
   * A handle for `key` that validates and prepares it once. The handle keeps no reference to
   * `key`: zeroing `key` later does not affect it, so wipe the handle where the key is wiped.
   */
  keyed(key: Uint8Array): XtsKeyHandle {
    return new KeyHandle(this.#impl.keyed(checkKey(key)));
  }

  #sectors(direction: Direction, key: unknown, firstSector: unknown, sectorSize: unknown, data: unknown): Uint8Array {
    const args = checkSectorArgs(key, firstSector, sectorSize, data, 'data');
    if (args.data.length === 0) return Buffer.alloc(0);
    return this.#impl.sectors(direction, args.key, args.firstSector, args.sectorSize, args.data);
  }

  #sectorsInto(direction: Direction, key: unknown, firstSector: unknown, sectorSize: unknown, src: unknown, dst: unknown): void {
    const args = checkSectorArgs(key, firstSector, sectorSize, src, 'src');
    const out = checkDestination(args.data, dst);
    if (args.data.length === 0) return;
    this.#impl.sectorsInto(direction, args.key, args.firstSector, args.sectorSize, args.data, out);
  }

  async #sectorsAsync(direction: Direction, key: unknown, firstSector: unknown, sectorSize: unknown, data: unknown): Promise<Uint8Array> {
    const args = checkSectorArgs(key, firstSector, sectorSize, data, 'data');
    if (args.data.length === 0) return Buffer.alloc(0);
    return this.#impl.sectorsAsync(direction, args.key, args.firstSector, args.sectorSize, args.data);
  }

  #dataUnits(direction: Direction, key: unknown, tweaks: unknown, dataUnitSize: unknown, data: unknown): Uint8Array {
    const checkedKey = checkKey(key);
    const unitSize = checkDataUnitSize(dataUnitSize);
    const bytes = checkBytes(data, 'data');
    const unitCount = checkWholeUnits(bytes, 'data', unitSize, 'data unit');
    const checkedTweaks = checkTweaks(tweaks, unitCount);
    if (bytes.length === 0) return Buffer.alloc(0);
    return this.#impl.dataUnits(direction, checkedKey, checkedTweaks, unitSize, bytes);
  }
}

class KeyHandle implements XtsKeyHandle {
  #impl: BackendKeyHandle | null;

  constructor(impl: BackendKeyHandle) {
    this.#impl = impl;
  }

  get wiped(): boolean {
    return this.#impl === null;
  }

  encryptSectorsInto(firstSector: number, sectorSize: number, src: Uint8Array, dst: Uint8Array): void {
    this.#sectorsInto('encrypt', firstSector, sectorSize, src, dst);
  }

  decryptSectorsInto(firstSector: number, sectorSize: number, src: Uint8Array, dst: Uint8Array): void {
    this.#sectorsInto('decrypt', firstSector, sectorSize, src, dst);
  }

  decryptSectorInPlace(sector: number, data: Uint8Array): void {
    const impl = this.#live();
    const bytes = checkBytes(data, 'data');
    if (!SECTOR_SIZES.includes(bytes.length)) {
      throw argumentRangeError(`data must be one sector of 512 or 4096 bytes, got ${bytes.length} bytes`);
    }
    checkHandleSector(sector, 'sector', bytes.length, 1);
    impl.decryptSectorInPlace(sector, bytes);
  }

  wipe(): void {
    const impl = this.#impl;
    this.#impl = null;
    impl?.wipe();
  }

  #sectorsInto(direction: Direction, firstSector: unknown, sectorSize: unknown, src: unknown, dst: unknown): void {
    const impl = this.#live();
    // The same checks and messages as the plain calls, minus the key (checked once, in keyed()).
    const size = checkSectorSize(sectorSize);
    const bytes = checkBytes(src, 'src');
    const sectorCount = checkWholeUnits(bytes, 'src', size, 'sector');
    const first = checkHandleSector(firstSector, 'firstSector', size, sectorCount);
    const out = checkDestination(bytes, dst);
    if (bytes.length === 0) return;
    impl.sectorsInto(direction, first, size, bytes, out);
  }

  /** The backend handle, or the error every call after wipe() gives. */
  #live(): BackendKeyHandle {
    const impl = this.#impl;
    if (impl === null) throw Object.assign(new Error('this XtsKeyHandle was wiped; create a new one with XtsCipher.keyed(key)'), { code: 'INVALID_ARGUMENT' });
    return impl;
  }
}

/**
 * A keyed handle's sector number: numbers only. A safe non-negative integer passes at once (its
 * tweak is at most (2^53 - 1 + count) * 8, far below 2^64); anything else goes to the plain
 * calls' full check for its error message.
 */
function checkHandleSector(value: unknown, name: string, sectorSize: number, sectorCount: number): number {
  if (typeof value !== 'number') throw argumentTypeError(`${name} must be a number, got ${typeof value}`);
  if (!(Number.isSafeInteger(value) && value >= 0)) checkFirstSector(value, sectorSize, sectorCount);
  return value;
}

function checkSectorArgs(key: unknown, firstSector: unknown, sectorSize: unknown, data: unknown, dataName: string) {
  const checkedKey = checkKey(key);
  const size = checkSectorSize(sectorSize);
  const bytes = checkBytes(data, dataName);
  const sectorCount = checkWholeUnits(bytes, dataName, size, 'sector');
  const first = checkFirstSector(firstSector, size, sectorCount);
  return { key: checkedKey, sectorSize: size, data: bytes, firstSector: first };
}

function checkBackendName(value: unknown, name: string): CipherBackendName {
  if (typeof value !== 'string') throw argumentTypeError(`${name} must be 'native' or 'ts', got ${typeof value}`);
  if (!BACKEND_NAMES.includes(value)) throw argumentRangeError(`${name} must be 'native' or 'ts', got '${value}'`);
  return value as CipherBackendName;
}

function backendNamed(name: CipherBackendName): XtsBackend {
  if (name === 'ts') return tsBackend;
  if (nativeInstance !== undefined) return nativeInstance;
  const probe = nativeAddon();
  if (probe.addon === undefined) {
    throw new Error(
      `blockvault: the native cipher was requested but cannot be used: ${probe.status.error ?? 'unknown error'}. ` +
        `Build it with \`npm run build:native\` (needs cargo), or choose backend 'ts'.`,
    );
  }
  nativeInstance = nativeBackend(probe.addon);
  return nativeInstance;
}

/**
 * One warning per process when the default falls back to TS: the user did not choose it and
 * should know why writes are slower. Worker threads stay silent; the main thread that started
 * them owns user-facing warnings (and loads the addon the same way, so it hits the same cause).
 */
function warnFallbackOnce(reason: string): void {
  if (fallbackWarned || !isMainThread) return;
  fallbackWarned = true;
  process.emitWarning(
    `blockvault: the native AES-XTS addon is unavailable, so the pure-TypeScript cipher is used (same ciphertext, much slower). ` +
      `Reason: ${reason}. Set ${CIPHER_ENV}=ts to choose it explicitly and silence this warning.`,
    { code: 'BLOCKVAULT_NATIVE_UNAVAILABLE' },
  );
}
