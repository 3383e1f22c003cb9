/**
 * The on-disk cluster format: several consecutive sectors of one volume in one LMDB value.
 *
 * Why clusters: LMDB stores a value larger than about half a page in overflow pages, whole pages
 * each, with a 16-byte page header on the first one. One 4096-byte sector per value therefore
 * costs two 4 KiB pages (2.0x on disk). A value holding N sectors plus a small header costs
 * ceil((N * 4096 + 16 + 16) / 4096) pages: 32 KiB of sectors take 9 pages (1.125x), 16 KiB take
 * 5 (1.25x). bench/volume.bench.ts measures this; bench/results/volume.md has the figures.
 *
 * Value layout (all integers big-endian):
 *
 *   offset  size  field
 *        0     2  magic 0x4256 ("BV")
 *        2     1  format version (1)
 *        3     1  log2(sector size): 9 or 12
 *        4     4  DEK generation the sectors are encrypted under (src/volume/reencrypt-contract.ts)
 *        8     8  presence bitmap: bit (slot & 7) of byte (slot >> 3) is set when the slot holds a sector
 *       16     -  the ciphertext of the PRESENT slots only, in slot order, sectorSize bytes each
 *
 * Unwritten (or trimmed) slots take no space; a cluster with no sector left is deleted, never
 * stored empty. Because present sectors are stored in slot order, the sectors of slots below a
 * run form a prefix of the data region and those above it a suffix, so replacing or removing a
 * run of slots is three copies, with no decryption of the neighbours.
 *
 * The XTS tweak of a sector is its absolute sector number, clusterIndex * clusterSectors + slot
 * (IEEE 1619 data unit sequence number, dm-crypt plain64 as LUKS2 uses it), so a cluster's
 * ciphertext is exactly what LUKS2 would hold at the same offsets.
 *
 * Two physical layouts store this image (src/volume/cluster-store.ts picks one per volume):
 *
 *  - compact (format version 1): the image is the LMDB value itself.
 *  - split (format version 2, 4096-byte sectors only): a 4072-byte value is the largest that
 *    fits one 4 KiB overflow page in lmdb-js (page header included), so each sector's first
 *    SPLIT_BODY_BYTES go to their own value ("body", keyed by absolute sector number) and the last
 *    SPLIT_TAIL_BYTES go, with the header, into a small per-cluster "meta" value (same 16-byte
 *    header, then the tails of the present slots in slot order). A sector then costs one page plus
 *    24 bytes (about 1.02x on disk), and a random 4 KiB write rewrites one page and one small
 *    value instead of a whole cluster. The body and meta writes of one edit are issued in the same
 *    event turn, so lmdb-js commits them in one transaction (atomic per sector).
 *
 * The image (version 1) is what rotation snapshots, re-encrypts and compares, whatever the layout.
 *
 * This file is pure: no LMDB, no engine state. Rotation workers import it from worker threads.
 */
import { BlockvaultError, assert } from '../errors.js';

/**
 * A stored value that fails its checks: damage or an edit outside blockvault, never a caller's
 * mistake and never a blockvault bug, so it is a typed VOLUME_CORRUPT, not an invariant failure.
 * The volume's handle adds which volume (Volume.read/write/trim); this says which value.
 */
export function clusterCorrupt(place: string, why: string): never {
  throw new BlockvaultError('VOLUME_CORRUPT', `stored ${place} ${why}: the volume's data was damaged or edited outside blockvault. Restore the volume from a backup`, {
    place,
  });
}

export const CLUSTER_MAGIC = 0x4256;
/** A cluster image: header + the present sectors' ciphertext. */
export const CLUSTER_FORMAT_VERSION = 1;
/** A split-layout meta value: header + the present sectors' tails. */
export const SPLIT_META_FORMAT_VERSION = 2;
/** Largest value lmdb-js keeps in one 4 KiB overflow page (measured in bench/volume.bench.ts). */
export const SPLIT_BODY_BYTES = 4072;
export const SPLIT_TAIL_BYTES = 4096 - SPLIT_BODY_BYTES;
export const CLUSTER_HEADER_BYTES = 16;
/** The bitmap has 64 bits. */
export const CLUSTER_SECTORS_MAX = 64;
/** storeId (u32) + clusterIndex (u64). */
export const CLUSTER_KEY_BYTES = 12;
const BITMAP_OFFSET = 8;
const BITMAP_BYTES = 8;
const TWO_POW_32 = 0x1_0000_0000;

export type SectorSize = 512 | 4096;

/** The part of src/cipher's XtsCipher this format needs (XtsCipher satisfies it). */
export interface SectorCipher {
  encryptSectors(key: Uint8Array, firstSector: number | bigint, sectorSize: number, data: Uint8Array): Uint8Array;
  encryptSectorsInto(key: Uint8Array, firstSector: number | bigint, sectorSize: number, src: Uint8Array, dst: Uint8Array): void;
  decryptSectorsInto(key: Uint8Array, firstSector: number | bigint, sectorSize: number, src: Uint8Array, dst: Uint8Array): void;
  /** A key prepared once for many calls (XtsCipher.keyed); optional for test ciphers. */
  keyed?(key: Uint8Array): SectorKeyHandle;
}

/** The part of src/cipher's XtsKeyHandle the volume uses. */
export interface SectorKeyHandle {
  encryptSectorsInto(firstSector: number, sectorSize: number, src: Uint8Array, dst: Uint8Array): void;
  decryptSectorsInto(firstSector: number, sectorSize: number, src: Uint8Array, dst: Uint8Array): void;
  decryptSectorInPlace(sector: number, data: Uint8Array): void;
  wipe(): void;
}

export interface ClusterGeometry {
  sectorSize: SectorSize;
  clusterSectors: number;
}

export function assertGeometry(g: ClusterGeometry): void {
  assert(g.sectorSize === 512 || g.sectorSize === 4096, `sector size ${g.sectorSize} is 512 or 4096`);
  assert(
    Number.isInteger(g.clusterSectors) && g.clusterSectors >= 1 && g.clusterSectors <= CLUSTER_SECTORS_MAX,
    `clusterSectors ${g.clusterSectors} is in 1..${CLUSTER_SECTORS_MAX}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Keys: (storeId u32 BE, clusterIndex u64 BE), so one volume's clusters are one key range, in
// cluster order.

export function clusterKey(storeId: number, clusterIndex: number): Buffer {
  assert(Number.isInteger(storeId) && storeId >= 0 && storeId < TWO_POW_32, `storeId ${storeId} is a u32`);
  assert(Number.isSafeInteger(clusterIndex) && clusterIndex >= 0, `clusterIndex ${clusterIndex} is a safe integer >= 0`);
  const key = Buffer.allocUnsafe(CLUSTER_KEY_BYTES);
  key.writeUInt32BE(storeId, 0);
  key.writeUInt32BE(Math.floor(clusterIndex / TWO_POW_32), 4);
  key.writeUInt32BE(clusterIndex % TWO_POW_32, 8);
  return key;
}

export function parseClusterKey(key: Uint8Array): { storeId: number; clusterIndex: number } {
  assert(key.length === CLUSTER_KEY_BYTES, `cluster key is ${CLUSTER_KEY_BYTES} bytes, got ${key.length}`);
  const view = new DataView(key.buffer, key.byteOffset, key.byteLength);
  return {
    storeId: view.getUint32(0),
    clusterIndex: view.getUint32(4) * TWO_POW_32 + view.getUint32(8),
  };
}

/** [start, end) of one volume's clusters, for LMDB range scans. */
export function storeKeyRange(storeId: number): { start: Buffer; end: Buffer } {
  assert(storeId < TWO_POW_32 - 1, 'storeId leaves room for the range end');
  return { start: clusterKey(storeId, 0), end: clusterKey(storeId + 1, 0) };
}

// ---------------------------------------------------------------------------------------------
// Header and bitmap.

const POPCOUNT8 = new Uint8Array(256);
for (let i = 1; i < 256; i++) POPCOUNT8[i] = (i & 1) + POPCOUNT8[i >> 1]!;

export interface ClusterView {
  raw: Uint8Array;
  generation: number;
  /** The header's 8 bitmap bytes: a view of them, or (for a value just built) an equal copy. Never modified. */
  bitmap: Uint8Array;
  presentCount: number;
}

function sectorShift(sectorSize: SectorSize): number {
  return sectorSize === 512 ? 9 : 12;
}

/** Decode and check a cluster image: magic, version, sector size, bitmap range, and length. */
export function decodeCluster(raw: Uint8Array, g: ClusterGeometry): ClusterView {
  return decodeWithUnit(raw, g, CLUSTER_FORMAT_VERSION, g.sectorSize);
}

/** Decode and check a split-layout meta value (header + 24-byte tails). */
export function decodeSplitMeta(raw: Uint8Array, g: ClusterGeometry): ClusterView {
  assert(g.sectorSize === 4096, 'the split layout is for 4096-byte sectors');
  return decodeWithUnit(raw, g, SPLIT_META_FORMAT_VERSION, SPLIT_TAIL_BYTES);
}

function decodeWithUnit(raw: Uint8Array, g: ClusterGeometry, version: number, unitBytes: number): ClusterView {
  // Every check is `if (!ok) fail(message)`: this runs on every cold read and every write, and a
  // template message would be built (numbers formatted) even when the check passes.
  const place = version === CLUSTER_FORMAT_VERSION ? 'cluster' : 'cluster meta';
  if (raw.length < CLUSTER_HEADER_BYTES) clusterCorrupt(place, `of ${raw.length} bytes is shorter than its header`);
  const magic = (raw[0]! << 8) | raw[1]!;
  if (magic !== CLUSTER_MAGIC) clusterCorrupt(place, `has magic 0x${magic.toString(16)}, not 0x${CLUSTER_MAGIC.toString(16)}`);
  if (raw[2] !== version) clusterCorrupt(place, `has format version ${raw[2]}, not ${version}`);
  if (raw[3] !== sectorShift(g.sectorSize)) clusterCorrupt(place, `has sector shift ${raw[3]}, which does not match the volume's sector size ${g.sectorSize}`);
  const generation = readU32(raw, 4);
  const bitmap = raw.subarray(BITMAP_OFFSET, BITMAP_OFFSET + BITMAP_BYTES);
  let presentCount = 0;
  for (let i = 0; i < BITMAP_BYTES; i++) presentCount += POPCOUNT8[bitmap[i]!]!;
  if (presentCount === 0) clusterCorrupt(place, 'holds no sector (a stored cluster holds at least one)');
  if (highestSlot(bitmap) >= g.clusterSectors) clusterCorrupt(place, `has a bitmap slot beyond the volume's ${g.clusterSectors} sectors per cluster`);
  if (raw.length !== CLUSTER_HEADER_BYTES + presentCount * unitBytes) {
    clusterCorrupt(place, `has length ${raw.length}, not its header + ${presentCount} present units of ${unitBytes}`);
  }
  return { raw, generation, bitmap, presentCount };
}

/** The generation field alone (for rotation scans), after the header checks. */
export function clusterGeneration(raw: Uint8Array): number {
  if (!(raw.length >= CLUSTER_HEADER_BYTES && ((raw[0]! << 8) | raw[1]!) === CLUSTER_MAGIC)) clusterCorrupt('cluster', 'has no valid header');
  return readU32(raw, 4);
}

export function isPresent(bitmap: Uint8Array, slot: number): boolean {
  return (bitmap[slot >> 3]! & (1 << (slot & 7))) !== 0;
}

/** How many present slots come before `slot`: the slot's position in the data region. */
export function rankOf(bitmap: Uint8Array, slot: number): number {
  let count = 0;
  const fullBytes = slot >> 3;
  for (let i = 0; i < fullBytes; i++) count += POPCOUNT8[bitmap[i]!]!;
  const rest = slot & 7;
  if (rest !== 0) count += POPCOUNT8[bitmap[fullBytes]! & ((1 << rest) - 1)]!;
  return count;
}

function highestSlot(bitmap: Uint8Array): number {
  for (let i = BITMAP_BYTES - 1; i >= 0; i--) {
    const b = bitmap[i]!;
    if (b !== 0) return i * 8 + (31 - Math.clz32(b));
  }
  return -1;
}

function readU32(raw: Uint8Array, at: number): number {
  return ((raw[at]! << 24) >>> 0) + (raw[at + 1]! << 16) + (raw[at + 2]! << 8) + raw[at + 3]!;
}

function writeHeader(out: Uint8Array, g: ClusterGeometry, generation: number, bitmap: Uint8Array, version = CLUSTER_FORMAT_VERSION): void {
  if (!(Number.isInteger(generation) && generation >= 0 && generation < TWO_POW_32)) assert(false, `generation ${generation} is a u32`);
  out[0] = CLUSTER_MAGIC >> 8;
  out[1] = CLUSTER_MAGIC & 0xff;
  out[2] = version;
  out[3] = sectorShift(g.sectorSize);
  out[4] = generation >>> 24;
  out[5] = (generation >>> 16) & 0xff;
  out[6] = (generation >>> 8) & 0xff;
  out[7] = generation & 0xff;
  out.set(bitmap, BITMAP_OFFSET);
}

function assertSlotRun(g: ClusterGeometry, firstSlot: number, lastSlot: number): void {
  assert(
    Number.isInteger(firstSlot) && Number.isInteger(lastSlot) && firstSlot >= 0 && firstSlot <= lastSlot && lastSlot < g.clusterSectors,
    `slot run ${firstSlot}..${lastSlot} lies in 0..${g.clusterSectors - 1}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Edits. Each returns a fresh buffer: a value handed to LMDB is never modified afterwards.

/**
 * A new cluster value with slots firstSlot..firstSlot+runSectors-1 present, every other slot
 * carried over from `old`, and the run's bytes (at `runOffset`) left for the caller to fill with
 * ciphertext under `generation` (encrypting straight into the value saves a copy). `old` must be
 * under `generation` too unless the run covers every slot: the caller re-encrypts a stale cluster
 * first, so a rewritten cluster always lands under one generation.
 */
export function spliceSlots(
  old: ClusterView | null,
  g: ClusterGeometry,
  firstSlot: number,
  runSectors: number,
  generation: number,
): { value: Buffer; runOffset: number } {
  const ss = g.sectorSize;
  const lastSlot = firstSlot + runSectors - 1;
  assertSlotRun(g, firstSlot, lastSlot);
  const bitmap = new Uint8Array(BITMAP_BYTES);
  let below = 0;
  let above = 0;
  if (old !== null) {
    assert(
      old.generation === generation || runSectors === g.clusterSectors,
      `cluster under generation ${old.generation} is rewritten under ${generation} only as a whole`,
    );
    bitmap.set(old.bitmap);
    below = rankOf(old.bitmap, firstSlot);
    above = old.presentCount - rankOf(old.bitmap, lastSlot + 1);
  }
  for (let s = firstSlot; s <= lastSlot; s++) bitmap[s >> 3]! |= 1 << (s & 7);
  const value = Buffer.allocUnsafe(CLUSTER_HEADER_BYTES + (below + runSectors + above) * ss);
  writeHeader(value, g, generation, bitmap);
  const runOffset = CLUSTER_HEADER_BYTES + below * ss;
  if (old !== null && below > 0) value.set(old.raw.subarray(CLUSTER_HEADER_BYTES, runOffset), CLUSTER_HEADER_BYTES);
  if (old !== null && above > 0) value.set(old.raw.subarray(old.raw.length - above * ss), runOffset + runSectors * ss);
  return { value, runOffset };
}

/** spliceSlots with the run's ciphertext given (whole sectors, absolute sector numbers). */
export function writeSlots(
  old: ClusterView | null,
  g: ClusterGeometry,
  firstSlot: number,
  ciphertext: Uint8Array,
  generation: number,
): Buffer {
  if (!(ciphertext.length > 0 && ciphertext.length % g.sectorSize === 0)) assert(false, `ciphertext of ${ciphertext.length} bytes is whole sectors`);
  const { value, runOffset } = spliceSlots(old, g, firstSlot, ciphertext.length / g.sectorSize, generation);
  value.set(ciphertext, runOffset);
  return value;
}

/** The ciphertext of present slots slot..slot+count-1 (all present) of a compact image: a view of it. */
export function compactRun(image: ClusterView, g: ClusterGeometry, slot: number, count: number): Uint8Array {
  const at = CLUSTER_HEADER_BYTES + rankOf(image.bitmap, slot) * g.sectorSize;
  return image.raw.subarray(at, at + count * g.sectorSize);
}

/** The cluster without slots firstSlot..lastSlot, or null when no sector is left. */
export function removeSlots(old: ClusterView, g: ClusterGeometry, firstSlot: number, lastSlot: number): Buffer | null {
  assertSlotRun(g, firstSlot, lastSlot);
  const ss = g.sectorSize;
  const below = rankOf(old.bitmap, firstSlot);
  const above = old.presentCount - rankOf(old.bitmap, lastSlot + 1);
  if (below + above === 0) return null;
  const bitmap = Uint8Array.from(old.bitmap);
  for (let s = firstSlot; s <= lastSlot; s++) bitmap[s >> 3]! &= ~(1 << (s & 7));
  const out = Buffer.allocUnsafe(CLUSTER_HEADER_BYTES + (below + above) * ss);
  writeHeader(out, g, old.generation, bitmap);
  out.set(old.raw.subarray(CLUSTER_HEADER_BYTES, CLUSTER_HEADER_BYTES + below * ss), CLUSTER_HEADER_BYTES);
  out.set(old.raw.subarray(old.raw.length - above * ss), CLUSTER_HEADER_BYTES + below * ss);
  return out;
}

/**
 * Visit the runs of consecutive present slots within firstSlot..lastSlot: `visit(slot, count,
 * dataOffset)`, where dataOffset is where the run's ciphertext starts in `raw`.
 */
export function forEachPresentRun(
  view: ClusterView,
  g: ClusterGeometry,
  firstSlot: number,
  lastSlot: number,
  visit: (slot: number, count: number, dataOffset: number) => void,
): void {
  assertSlotRun(g, firstSlot, lastSlot);
  let rank = rankOf(view.bitmap, firstSlot);
  let slot = firstSlot;
  while (slot <= lastSlot) {
    if (!isPresent(view.bitmap, slot)) {
      slot++;
      continue;
    }
    const start = slot;
    while (slot <= lastSlot && isPresent(view.bitmap, slot)) slot++;
    const count = slot - start;
    visit(start, count, CLUSTER_HEADER_BYTES + rank * g.sectorSize);
    rank += count;
  }
}

/**
 * Decrypt the present slots of firstSlot..lastSlot into `out`, where out[0] is the first byte of
 * slot firstSlot. Absent slots are left untouched (the caller passes zeroed memory).
 */
export function decryptSlotsInto(
  cipher: SectorCipher,
  view: ClusterView,
  g: ClusterGeometry,
  clusterIndex: number,
  key: Uint8Array,
  firstSlot: number,
  lastSlot: number,
  out: Uint8Array,
): void {
  const ss = g.sectorSize;
  assert(out.length >= (lastSlot - firstSlot + 1) * ss, 'decrypt target holds the slot run');
  const base = clusterIndex * g.clusterSectors;
  forEachPresentRun(view, g, firstSlot, lastSlot, (slot, count, dataOffset) => {
    const bytes = count * ss;
    cipher.decryptSectorsInto(
      key,
      base + slot,
      ss,
      view.raw.subarray(dataOffset, dataOffset + bytes),
      out.subarray((slot - firstSlot) * ss, (slot - firstSlot) * ss + bytes),
    );
  });
}

/**
 * Re-encrypt every present sector of a cluster from `oldKey` to `newKey` and stamp it with
 * `newGeneration`; the bitmap is unchanged. Matches ReencryptClusterFn in src/volume/reencrypt-contract.ts.
 * The plaintext exists only in the returned buffer's memory for the moment between the two
 * cipher calls (decrypted and re-encrypted in place).
 */
export function reencryptCluster(
  cipher: SectorCipher,
  raw: Uint8Array,
  clusterIndex: number,
  sectorSize: number,
  clusterSectors: number,
  oldKey: Uint8Array,
  newKey: Uint8Array,
  newGeneration: number,
): Uint8Array {
  const g: ClusterGeometry = { sectorSize: sectorSize as SectorSize, clusterSectors };
  assertGeometry(g);
  const view = decodeCluster(raw, g);
  const out = Buffer.allocUnsafe(raw.length);
  writeHeader(out, g, newGeneration, view.bitmap);
  const base = clusterIndex * clusterSectors;
  forEachPresentRun(view, g, 0, clusterSectors - 1, (slot, count, dataOffset) => {
    const end = dataOffset + count * sectorSize;
    const run = out.subarray(dataOffset, end);
    cipher.decryptSectorsInto(oldKey, base + slot, sectorSize, raw.subarray(dataOffset, end), run);
    cipher.encryptSectorsInto(newKey, base + slot, sectorSize, run, run);
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// The split layout: image <-> (meta value, bodies).

/** The meta value of an image: the same header (version 2) and each present sector's tail. */
export function splitMetaOf(image: ClusterView, g: ClusterGeometry): Buffer {
  assert(g.sectorSize === 4096, 'the split layout is for 4096-byte sectors');
  const meta = Buffer.allocUnsafe(CLUSTER_HEADER_BYTES + image.presentCount * SPLIT_TAIL_BYTES);
  writeHeader(meta, g, image.generation, image.bitmap, SPLIT_META_FORMAT_VERSION);
  for (let i = 0; i < image.presentCount; i++) {
    const sectorEnd = CLUSTER_HEADER_BYTES + (i + 1) * 4096;
    meta.set(image.raw.subarray(sectorEnd - SPLIT_TAIL_BYTES, sectorEnd), CLUSTER_HEADER_BYTES + i * SPLIT_TAIL_BYTES);
  }
  return meta;
}

/**
 * A meta value like `old` (or empty) with slots firstSlot..lastSlot set from `runCiphertext` (the
 * run's whole 4096-byte ciphertext sectors, whose last SPLIT_TAIL_BYTES each are the tails; or
 * null to remove the run), under `generation`. Returns the new value already decoded (its view:
 * the value, its generation and bitmap, its present count), or null when no slot is left.
 */
export function spliceSplitMeta(
  old: ClusterView | null,
  g: ClusterGeometry,
  firstSlot: number,
  lastSlot: number,
  runCiphertext: Uint8Array | null,
  generation: number,
): ClusterView | null {
  assertSlotRun(g, firstSlot, lastSlot);
  const runSectors = lastSlot - firstSlot + 1;
  const bitmap = new Uint8Array(BITMAP_BYTES);
  let below = 0;
  let above = 0;
  if (old !== null) {
    assert(
      old.generation === generation || (runCiphertext !== null && runSectors === g.clusterSectors),
      `cluster under generation ${old.generation} is rewritten under ${generation} only as a whole`,
    );
    bitmap.set(old.bitmap);
    below = rankOf(old.bitmap, firstSlot);
    above = old.presentCount - rankOf(old.bitmap, lastSlot + 1);
  }
  if (runCiphertext !== null) assert(runCiphertext.length === runSectors * 4096, 'the run ciphertext is the run\'s whole sectors');
  for (let s = firstSlot; s <= lastSlot; s++) {
    if (runCiphertext === null) bitmap[s >> 3]! &= ~(1 << (s & 7));
    else bitmap[s >> 3]! |= 1 << (s & 7);
  }
  const inRun = runCiphertext === null ? 0 : runSectors;
  const count = below + inRun + above;
  if (count === 0) return null;
  const meta = Buffer.allocUnsafe(CLUSTER_HEADER_BYTES + count * SPLIT_TAIL_BYTES);
  writeHeader(meta, g, generation, bitmap, SPLIT_META_FORMAT_VERSION);
  let at = CLUSTER_HEADER_BYTES;
  if (old !== null && below > 0) {
    meta.set(old.raw.subarray(CLUSTER_HEADER_BYTES, CLUSTER_HEADER_BYTES + below * SPLIT_TAIL_BYTES), at);
    at += below * SPLIT_TAIL_BYTES;
  }
  if (runCiphertext !== null) {
    // 24 bytes per sector: a plain loop, no view to allocate.
    for (let i = 0; i < runSectors; i++) {
      for (let from = i * 4096 + SPLIT_BODY_BYTES, end = (i + 1) * 4096; from < end; from++) meta[at++] = runCiphertext[from]!;
    }
  }
  if (old !== null && above > 0) {
    meta.set(old.raw.subarray(old.raw.length - above * SPLIT_TAIL_BYTES), at);
    at += above * SPLIT_TAIL_BYTES;
  }
  assert(at === meta.length, 'split meta edit filled the value exactly');
  return { raw: meta, generation, bitmap, presentCount: count };
}

/** Rebuild the image from a meta value and the bodies (`bodyOf(slot)`, SPLIT_BODY_BYTES each). */
export function joinSplitImage(meta: ClusterView, g: ClusterGeometry, bodyOf: (slot: number) => Uint8Array): Buffer {
  const image = Buffer.allocUnsafe(CLUSTER_HEADER_BYTES + meta.presentCount * 4096);
  writeHeader(image, g, meta.generation, meta.bitmap);
  let i = 0;
  for (let slot = 0; slot < g.clusterSectors; slot++) {
    if (!isPresent(meta.bitmap, slot)) continue;
    const at = CLUSTER_HEADER_BYTES + i * 4096;
    const body = bodyOf(slot);
    if (body.length !== SPLIT_BODY_BYTES) clusterCorrupt('sector body', `is ${body.length} bytes, not ${SPLIT_BODY_BYTES}`);
    image.set(body, at);
    image.set(meta.raw.subarray(CLUSTER_HEADER_BYTES + i * SPLIT_TAIL_BYTES, CLUSTER_HEADER_BYTES + (i + 1) * SPLIT_TAIL_BYTES), at + SPLIT_BODY_BYTES);
    i++;
  }
  return image;
}
