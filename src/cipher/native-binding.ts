/**
 * Loading the Rust addon (native/, napi-rs) and deciding whether it is usable.
 *
 * The addon counts as available only if it loads AND exports every function the cipher uses: a
 * stale build (an older .node, or the scaffold's `nativeVersion`-only one) is "unavailable",
 * with the missing names in the error, rather than a TypeError in the middle of a write.
 *
 * Where: `<package root>/native/blockvault-native.node`, the package root being the nearest
 * directory above this file whose package.json is named "blockvault". Walking up (instead of a
 * fixed `../../native`) keeps the path right both from the sources (src/cipher) and from the
 * build output (dist/src/cipher). BLOCKVAULT_NATIVE_ADDON overrides the file, for packagers who
 * ship the addon elsewhere and for tests that simulate a missing addon.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';

/** The addon's surface, as native/src exports it (buffers in, buffers out; sector numbers as bigint). */
export interface NativeAddon {
  xtsEncryptSectors(key: Buffer, firstSector: bigint, sectorSize: number, data: Buffer): Buffer;
  xtsDecryptSectors(key: Buffer, firstSector: bigint, sectorSize: number, data: Buffer): Buffer;
  xtsEncryptSectorsInto(key: Buffer, firstSector: bigint, sectorSize: number, src: Buffer, dst: Buffer): void;
  xtsDecryptSectorsInto(key: Buffer, firstSector: bigint, sectorSize: number, src: Buffer, dst: Buffer): void;
  xtsEncryptSectorsAsync(key: Buffer, firstSector: bigint, sectorSize: number, data: Buffer): Promise<Buffer>;
  xtsDecryptSectorsAsync(key: Buffer, firstSector: bigint, sectorSize: number, data: Buffer): Promise<Buffer>;
  xtsEncryptDataUnits(key: Buffer, tweaks: Buffer, dataUnitSize: number, data: Buffer): Buffer;
  xtsDecryptDataUnits(key: Buffer, tweaks: Buffer, dataUnitSize: number, data: Buffer): Buffer;
  /**
   * `path`: the XTS path keys made now on this thread use; `bestPath`: the fastest this CPU runs.
   * Throws when BLOCKVAULT_XTS_PATH names a path that cannot run here.
   */
  cpuFeatures(): { aesni: boolean; avx2: boolean; vaes: boolean; avx512f: boolean; path: string; bestPath: string };
  /** Every XTS path, fastest first, with whether this CPU can run it and why not. */
  xtsPaths(): NativeXtsPath[];
  /**
   * Benchmarks and tests only: keys expanded on this thread from now on use `name` (null: the
   * default again). Throws for an unknown or unsupported path; returns the previous override.
   */
  xtsUsePath(name: string | null): string | null;
  nativeVersion(): string;
  /**
   * A keyed handle: the key expanded once (validated: 64 bytes, halves differ), an opaque napi
   * External; its schedules are zeroized by xtsKeyWipe or when it is garbage-collected.
   */
  xtsKeyNew(key: Buffer): NativeKeyHandle;
  /** firstSector is a non-negative safe integer; src/dst any Uint8Array (dst may be src). */
  xtsKeyEncryptInto(key: NativeKeyHandle, firstSector: number, sectorSize: number, src: Uint8Array, dst: Uint8Array): void;
  xtsKeyDecryptInto(key: NativeKeyHandle, firstSector: number, sectorSize: number, src: Uint8Array, dst: Uint8Array): void;
  /** One sector in place: `data`'s length (512 or 4096) is the sector size. */
  xtsKeyDecryptSectorInPlace(key: NativeKeyHandle, sector: number, data: Uint8Array): void;
  xtsKeyWipe(key: NativeKeyHandle): void;
  xtsKeyWiped(key: NativeKeyHandle): boolean;
}

/** One AES-XTS implementation of the addon ('vaes-avx512', 'vaes-avx2', 'aesni-x8', 'portable'). */
export interface NativeXtsPath {
  name: string;
  supported: boolean;
  /** Why this CPU cannot run it (the features it lacks), when it cannot. */
  reason?: string | null;
}

/** The addon's keyed handle: opaque to JavaScript (a napi External holding the expanded key). */
export type NativeKeyHandle = { readonly __nativeKeyHandle: unique symbol };

export const NATIVE_FUNCTIONS = [
  'xtsEncryptSectors',
  'xtsDecryptSectors',
  'xtsEncryptSectorsInto',
  'xtsDecryptSectorsInto',
  'xtsEncryptSectorsAsync',
  'xtsDecryptSectorsAsync',
  'xtsEncryptDataUnits',
  'xtsDecryptDataUnits',
  'cpuFeatures',
  'xtsPaths',
  'xtsUsePath',
  'nativeVersion',
  'xtsKeyNew',
  'xtsKeyEncryptInto',
  'xtsKeyDecryptInto',
  'xtsKeyDecryptSectorInPlace',
  'xtsKeyWipe',
  'xtsKeyWiped',
] as const satisfies readonly (keyof NativeAddon)[];

export interface NativeCipherStatus {
  available: boolean;
  /** Why the addon is unavailable (load error, or the functions it lacks). */
  error?: string;
  /** The addon file that was (or would have been) loaded. */
  path?: string;
  /** `nativeVersion()` of a loaded addon. */
  version?: string;
  /**
   * Which AES code path the addon uses by default on this CPU (`cpuFeatures().path`: the fastest
   * it supports, unless BLOCKVAULT_XTS_PATH forces another).
   */
  cpuPath?: string;
  /** Every AES code path of the addon, with whether this CPU can run it (`xtsPaths()`). */
  paths?: NativeXtsPath[];
}

export interface NativeProbe {
  addon: NativeAddon | undefined;
  status: NativeCipherStatus;
}

const ADDON_FILE = 'blockvault-native.node';
const PACKAGE_NAME = 'blockvault';

/** The directory holding the package.json named "blockvault", searched upwards from `fromDir`. */
export function findPackageRoot(fromDir: string): string | undefined {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        const parsed = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown };
        if (parsed.name === PACKAGE_NAME) return dir;
      } catch {
        // An unreadable package.json of some other package: keep walking.
      }
    }
    if (dirname(dir) === dir) return undefined;
  }
}

export function defaultAddonPath(): string | undefined {
  const override = process.env.BLOCKVAULT_NATIVE_ADDON;
  if (override !== undefined && override !== '') return override;
  const root = findPackageRoot(dirname(fileURLToPath(import.meta.url)));
  return root === undefined ? undefined : join(root, 'native', ADDON_FILE);
}

/** Loads the addon at `path` and checks its surface. Never throws. */
export function probeNativeAddon(path: string | undefined): NativeProbe {
  if (path === undefined) {
    return { addon: undefined, status: { available: false, error: `no package.json named "${PACKAGE_NAME}" above ${fileURLToPath(import.meta.url)}` } };
  }
  let loaded: unknown;
  try {
    loaded = createRequire(import.meta.url)(path);
  } catch (err) {
    return { addon: undefined, status: { available: false, path, error: `cannot load ${path}: ${errorMessage(err)}` } };
  }
  const exports = loaded as Record<string, unknown>;
  const missing = NATIVE_FUNCTIONS.filter((name) => typeof exports[name] !== 'function');
  if (missing.length > 0) {
    return {
      addon: undefined,
      status: { available: false, path, error: `${path} is an incomplete or outdated build: it lacks ${missing.join(', ')}` },
    };
  }
  const addon = loaded as NativeAddon;
  try {
    return {
      addon,
      status: { available: true, path, version: addon.nativeVersion(), cpuPath: addon.cpuFeatures().path, paths: addon.xtsPaths() },
    };
  } catch (err) {
    return { addon: undefined, status: { available: false, path, error: `${path} loaded but failed its self-description: ${errorMessage(err)}` } };
  }
}

let cached: NativeProbe | undefined;

/** The addon for this thread, loaded once (later calls return the same result, good or bad). */
export function nativeAddon(): NativeProbe {
  cached ??= probeNativeAddon(defaultAddonPath());
  return cached;
}

/** Whether the native cipher can be used in this thread, and if not, why. */
export function nativeCipherStatus(): NativeCipherStatus {
  const status = nativeAddon().status;
  return { ...status, ...(status.paths ? { paths: status.paths.map((p) => ({ ...p })) } : {}) };
}

// Load on the main thread as soon as the cipher is imported: an addon first loaded inside a
// worker would have its lifetime tied to that worker's environment, while the main thread's
// copy lives as long as the process and keeps the shared library resident for every worker.
if (isMainThread) nativeAddon();

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
