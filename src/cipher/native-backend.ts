/**
 * The native backend: the Rust addon behind the XtsBackend interface. The addon takes Buffers;
 * a plain Uint8Array is wrapped in a Buffer view of the same memory (no copy), so the in-place
 * variant still writes into the caller's array.
 */
import type { XtsBackend } from './backend.js';
import type { NativeAddon } from './native-binding.js';
import { asBuffer } from '../util/bytes.js';

/**
 * `forcedPath` (benchmarks and tests only): every call expands its key for that AES code path
 * ('vaes-avx512', 'vaes-avx2', 'aesni-x8', 'portable'), by setting the addon's per-thread override around the
 * call (the key schedules are made synchronously inside it, also for the async calls). The
 * caller checked that this CPU runs it. Without it, the addon's default path is used.
 */
export function nativeBackend(addon: NativeAddon, forcedPath?: string): XtsBackend {
  const onPath: <T>(call: () => T) => T =
    forcedPath === undefined
      ? (call) => call()
      : (call) => {
          const previous = addon.xtsUsePath(forcedPath);
          try {
            return call();
          } finally {
            addon.xtsUsePath(previous);
          }
        };
  return {
    name: 'native',
    sectors(direction, key, firstSector, sectorSize, data) {
      const fn = direction === 'encrypt' ? addon.xtsEncryptSectors : addon.xtsDecryptSectors;
      return onPath(() => fn(asBuffer(key), firstSector, sectorSize, asBuffer(data)));
    },
    sectorsInto(direction, key, firstSector, sectorSize, src, dst) {
      const fn = direction === 'encrypt' ? addon.xtsEncryptSectorsInto : addon.xtsDecryptSectorsInto;
      const srcBuffer = asBuffer(src);
      // In place: hand the addon one Buffer for both, so it sees the aliasing it must handle.
      const dstBuffer = dst === src || (dst.buffer === src.buffer && dst.byteOffset === src.byteOffset) ? srcBuffer : asBuffer(dst);
      onPath(() => fn(asBuffer(key), firstSector, sectorSize, srcBuffer, dstBuffer));
    },
    sectorsAsync(direction, key, firstSector, sectorSize, data) {
      const fn = direction === 'encrypt' ? addon.xtsEncryptSectorsAsync : addon.xtsDecryptSectorsAsync;
      return onPath(() => fn(asBuffer(key), firstSector, sectorSize, asBuffer(data)));
    },
    dataUnits(direction, key, tweaks, dataUnitSize, data) {
      const fn = direction === 'encrypt' ? addon.xtsEncryptDataUnits : addon.xtsDecryptDataUnits;
      return onPath(() => fn(asBuffer(key), asBuffer(tweaks), dataUnitSize, asBuffer(data)));
    },
    keyed(key) {
      // The addon expands the schedules now and keeps only them (zeroized on wipe or GC).
      const handle = onPath(() => addon.xtsKeyNew(asBuffer(key)));
      return {
        // The addon takes any Uint8Array here (no Buffer wrapping) and checks the aliasing.
        sectorsInto(direction, firstSector, sectorSize, src, dst) {
          if (direction === 'encrypt') addon.xtsKeyEncryptInto(handle, firstSector, sectorSize, src, dst);
          else addon.xtsKeyDecryptInto(handle, firstSector, sectorSize, src, dst);
        },
        decryptSectorInPlace(sector, data) {
          addon.xtsKeyDecryptSectorInPlace(handle, sector, data);
        },
        wipe() {
          addon.xtsKeyWipe(handle);
        },
      };
    },
  };
}
