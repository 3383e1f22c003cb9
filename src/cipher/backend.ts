/**
 * What the facade (xts.ts) needs from a cipher implementation. Arguments arrive validated:
 * a 64-byte key with distinct halves, sectorSize 512 or 4096, whole non-empty batches, a
 * non-negative firstSector whose last plain64 tweak fits 64 bits, `dst` the same length as
 * `src` and either `src` itself or disjoint from it.
 */
export type CipherBackendName = 'native' | 'ts';

export type Direction = 'encrypt' | 'decrypt';

/**
 * A data key prepared once for many calls (both backends expand its AES key schedules once and
 * zero them on wipe). Arguments arrive validated, as for XtsBackend; firstSector is a safe integer.
 */
export interface BackendKeyHandle {
  sectorsInto(direction: Direction, firstSector: number, sectorSize: number, src: Uint8Array, dst: Uint8Array): void;
  /** Decrypts one sector in place; data.length (512 or 4096) is the sector size. */
  decryptSectorInPlace(sector: number, data: Uint8Array): void;
  /** Zeroes the key material the handle holds. */
  wipe(): void;
}

export interface XtsBackend {
  readonly name: CipherBackendName;
  sectors(direction: Direction, key: Uint8Array, firstSector: bigint, sectorSize: number, data: Uint8Array): Uint8Array;
  sectorsInto(direction: Direction, key: Uint8Array, firstSector: bigint, sectorSize: number, src: Uint8Array, dst: Uint8Array): void;
  sectorsAsync(direction: Direction, key: Uint8Array, firstSector: bigint, sectorSize: number, data: Uint8Array): Promise<Uint8Array>;
  dataUnits(direction: Direction, key: Uint8Array, tweaks: Uint8Array, dataUnitSize: number, data: Uint8Array): Uint8Array;
  /** A handle for `key` (validated); the handle does not keep a reference to `key` itself. */
  keyed(key: Uint8Array): BackendKeyHandle;
}
