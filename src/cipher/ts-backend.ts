/** The pure-TypeScript backend: ts-xts.ts behind the XtsBackend interface. */
import type { Direction, XtsBackend } from './backend.js';
import { TsXtsKey, tsXtsDataUnitsInto, tsXtsSectorsInto } from './ts-xts.js';

export const tsBackend: XtsBackend = {
  name: 'ts',
  sectors(direction, key, firstSector, sectorSize, data) {
    const out = newResult(data.length);
    tsXtsSectorsInto(direction, key, firstSector, sectorSize, data, out);
    return out;
  },
  sectorsInto(direction, key, firstSector, sectorSize, src, dst) {
    tsXtsSectorsInto(direction, key, firstSector, sectorSize, src, dst);
  },
  // No thread to move to: the work is done before the promise is returned, and the promise
  // resolves with it. Large batches in the TS fallback belong on a worker thread.
  async sectorsAsync(direction: Direction, key, firstSector, sectorSize, data) {
    return tsBackend.sectors(direction, key, firstSector, sectorSize, data);
  },
  dataUnits(direction, key, tweaks, dataUnitSize, data) {
    const out = newResult(data.length);
    tsXtsDataUnitsInto(direction, key, tweaks, dataUnitSize, data, out);
    return out;
  },
  // The schedules are expanded once here (TsXtsKey) and zeroed by wipe(); the key bytes are not kept.
  keyed(key) {
    const schedules = new TsXtsKey(key);
    return {
      sectorsInto(direction, firstSector, sectorSize, src, dst) {
        schedules.sectorsInto(direction, BigInt(firstSector), sectorSize, src, dst);
      },
      decryptSectorInPlace(sector, data) {
        schedules.sectorsInto('decrypt', BigInt(sector), data.length, data, data);
      },
      wipe() {
        schedules.wipe();
      },
    };
  },
};

/**
 * Results are Buffers on both backends (the native one returns Buffers), so callers see one type.
 * allocUnsafeSlow: never from the shared pool, so 4-byte aligned and the fast path applies; not
 * zero-filled, which is fine because XTS writes every byte.
 */
function newResult(length: number): Buffer {
  return Buffer.allocUnsafeSlow(length);
}
