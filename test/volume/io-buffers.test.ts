/**
 * The I/O path's buffer economy. Buffers cut from a slab (src/volume/buffer-slab.ts): every
 * buffer is fresh (zeroed, never handed out twice, never overlapping another), a read's buffer is
 * never touched by later reads or writes, and two volumes' reads never share memory. Overlay
 * entries settled per lmdb-js batch (cluster-store.ts, PendingWrites) and one reused key buffer per
 * store (LookupKey): the lmdb-js behaviours those rely on, and every entry and budget byte
 * returned after the commits. Ciphertext slabs (CiphertextSlabs) and big ciphertext buffers
 * reused only once every value cut from them has settled (the big ones also checked against real
 * LMDB commits in flight).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { open, type Database } from 'lmdb';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { BlockvaultError } from '../../src/errors.js';
import { BufferSlab, CiphertextSlabs, FREE_BIG_BYTES_MAX, FREE_SLABS_MAX, SLAB_BYTES } from '../../src/volume/buffer-slab.js';
import { createClusterStore } from '../../src/volume/cluster-store.js';
import { WriteBudget } from '../../src/volume/write-budget.js';
import { CoreHarness } from '../helpers/core-harness.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

afterAll(() => removeTempDirs());

describe('BufferSlab', () => {
  it('hands out zeroed, disjoint views until the slab is used up, then starts a new slab', () => {
    const slab = new BufferSlab();
    const taken: Buffer[] = [];
    for (let i = 0; i < (SLAB_BYTES / 4096) * 2 + 3; i++) {
      const b = slab.take(4096);
      expect(b.length).toBe(4096);
      expect(b.every((x) => x === 0)).toBe(true);
      b.fill(i + 1); // a later take must not see or overwrite this
      taken.push(b);
    }
    taken.forEach((b, i) => expect(b.every((x) => x === i + 1), `buffer ${i}`).toBe(true));
    const slabs = new Set(taken.map((b) => b.buffer));
    expect(slabs.size).toBe(3);
    for (const ab of slabs) expect(ab.byteLength).toBe(SLAB_BYTES);
  });

  it('gives sizes above a quarter slab their own zeroed allocation; release starts a new slab', () => {
    const slab = new BufferSlab();
    const small = slab.take(512);
    const big = slab.take(SLAB_BYTES / 4 + 1);
    expect(big.buffer).not.toBe(small.buffer);
    expect(big.every((x) => x === 0)).toBe(true);
    expect(slab.take(512).buffer).toBe(small.buffer);
    slab.release();
    expect(slab.take(512).buffer).not.toBe(small.buffer);
    expect(() => slab.take(0)).toThrow();
    expect(() => slab.take(1.5)).toThrow();
  });
});

describe('CiphertextSlabs', () => {
  const PER_SLAB = SLAB_BYTES / 4096;

  it('reuses a slab once every pinned value in it is unpinned, and never while one is pinned', () => {
    const slabs = new CiphertextSlabs();
    const first = Array.from({ length: PER_SLAB }, () => slabs.take(4096));
    const firstMemory = first[0]!.buffer;
    expect(new Set(first.map((b) => b.buffer)).size).toBe(1);
    first.forEach((b, i) => b.fill(i + 1));
    slabs.pin(first[3]!);
    slabs.pin(first[3]!.subarray(0, 4072)); // the split layout pins a view of the sector's body
    // Many slabs' worth of takes: the pinned slab is never cut again, its bytes never change.
    for (let i = 0; i < PER_SLAB * (FREE_SLABS_MAX + 3); i++) {
      const b = slabs.take(4096);
      expect(b.buffer).not.toBe(firstMemory);
      b.fill(0xee);
    }
    expect(first[3]!.every((x) => x === 4)).toBe(true);
    slabs.unpin(first[3]!);
    expect(slabs.freeCount).toBe(0);
    slabs.unpin(first[3]!.subarray(0, 4072));
    expect(slabs.freeCount).toBe(1);
    // Close the current slab with a value pinned in it: the next slab is the freed one.
    const held = slabs.take(4096);
    slabs.pin(held);
    let next = slabs.take(4096);
    while (next.buffer === held.buffer) next = slabs.take(4096);
    expect(next.buffer).toBe(firstMemory);
    expect(() => slabs.unpin(first[3]!)).toThrow(/unpinned once per pin/);
  });

  it('reuses a slab closed with nothing pinned (values copied elsewhere), keeps at most FREE_SLABS_MAX, ignores foreign values', () => {
    const slabs = new CiphertextSlabs();
    const a = slabs.take(4096);
    for (let i = 1; i < PER_SLAB; i++) slabs.take(4096);
    // Closing a's slab with nothing pinned in it frees it, and it is the next slab at once.
    expect(slabs.take(4096).buffer).toBe(a.buffer);
    expect(slabs.freeCount).toBe(0);
    // Pin one value in each of many slabs, then unpin them all: only FREE_SLABS_MAX stay.
    const pinned: Buffer[] = [];
    for (let s = 0; s < FREE_SLABS_MAX + 4; s++) {
      const v = slabs.take(4096);
      slabs.pin(v);
      pinned.push(v);
      for (let i = 1; i < PER_SLAB; i++) slabs.take(4096);
    }
    slabs.take(4096);
    for (const v of pinned) slabs.unpin(v);
    expect(slabs.freeCount).toBe(FREE_SLABS_MAX);
    // Values from elsewhere (meta values) are not tracked.
    slabs.pin(Buffer.alloc(16));
    slabs.unpin(Buffer.alloc(16));
    slabs.release();
    expect(slabs.freeCount).toBe(0);
    slabs.unpin(pinned[0]!); // forgotten slabs are ignored, not an error
  });
});

describe('CiphertextSlabs: big buffers (a write step above a quarter slab)', () => {
  const MIB = 1024 * 1024;

  it('reuses a big buffer only once its last pin is gone and a later big cut was made; a buffer never pinned is dead at the next cut; free ones go once nothing big is pinned', () => {
    const slabs = new CiphertextSlabs();
    // A write still in flight the whole time (so the pool is not emptied as idle until the end).
    const inFlight = slabs.take(MIB);
    slabs.pin(inFlight);
    const a = slabs.take(MIB);
    expect(a.length).toBe(MIB);
    a.fill(1);
    // The split layout pins views of the sectors' bodies.
    slabs.pin(a.subarray(0, 4072));
    slabs.pin(a.subarray(4096, 4096 + 4072));
    const b = slabs.take(MIB);
    expect(b.buffer).not.toBe(a.buffer);
    slabs.unpin(a.subarray(0, 4072));
    // b was never pinned (its values were copied, as the compact layout does): the next cut reuses it.
    const c = slabs.take(MIB);
    expect(c.buffer).toBe(b.buffer);
    c.fill(2);
    expect(a.every((x) => x === 1)).toBe(true);
    slabs.pin(c.subarray(0, 4072));
    slabs.unpin(a.subarray(4096, 4096 + 4072));
    expect(slabs.freeBigBytesNow).toBe(MIB); // a: unpinned, and not the last cut
    slabs.unpin(c.subarray(0, 4072));
    expect(slabs.freeBigBytesNow).toBe(MIB); // c is the last cut: kept until the next one
    // Sizes share a power-of-two capacity: half a MiB and a byte comes from a 1 MiB buffer.
    const d = slabs.take(MIB / 2 + 1);
    expect(d.length).toBe(MIB / 2 + 1);
    expect(d.buffer.byteLength).toBe(MIB);
    expect([a.buffer, c.buffer]).toContain(d.buffer);
    expect(slabs.freeBigBytesNow).toBe(MIB);
    const e = slabs.take(2 * MIB);
    expect(e.buffer.byteLength).toBe(2 * MIB);
    expect(slabs.freeBigBytesNow).toBe(2 * MIB); // d's buffer back, next to the other 1 MiB one
    expect(() => slabs.unpin(a.subarray(0, 4072))).toThrow(/unpinned once per pin/);
    // Nothing big pinned any more: an idle volume keeps no free big buffers.
    slabs.unpin(inFlight);
    expect(slabs.freeBigBytesNow).toBe(0);
    expect([a.buffer, b.buffer, inFlight.buffer]).not.toContain(slabs.take(MIB).buffer);
  });

  it('keeps at most FREE_BIG_BYTES_MAX of free big buffers; release forgets them all', () => {
    const slabs = new CiphertextSlabs();
    const pinned: Buffer[] = [];
    for (let i = 0; i < FREE_BIG_BYTES_MAX / MIB + 3; i++) {
      const v = slabs.take(MIB);
      slabs.pin(v);
      pinned.push(v);
    }
    // One more in flight, and the last cut, so that the others go back to the pool.
    slabs.pin(slabs.take(MIB));
    for (const v of pinned) slabs.unpin(v);
    expect(slabs.freeBigBytesNow).toBe(FREE_BIG_BYTES_MAX);
    // The free ones come back one by one (each pinned, so none is dead at the next cut), all of
    // them buffers handed out before; then fresh ones.
    const before = new Set(pinned.map((v) => v.buffer));
    const reused = Array.from({ length: FREE_BIG_BYTES_MAX / MIB }, () => {
      const v = slabs.take(MIB);
      slabs.pin(v);
      return v.buffer;
    });
    expect(new Set(reused).size).toBe(FREE_BIG_BYTES_MAX / MIB);
    for (const memory of reused) expect(before.has(memory)).toBe(true);
    expect(slabs.freeBigBytesNow).toBe(0);
    expect(before.has(slabs.take(MIB).buffer)).toBe(false);
    slabs.release();
    expect(slabs.freeBigBytesNow).toBe(0);
    slabs.unpin(pinned[0]!); // forgotten buffers are ignored, not an error
  });

  it('on a real LMDB environment, many 1 MiB write-back writes in flight over the same MiBs read back as the last written, before and after a reopen', async () => {
    const dir = makeTempDir();
    const sizeBytes = 8 * MIB;
    const h = await CoreHarness.open({ dir, backend: 'native', sectorSize: 4096, clusterSectors: 8, layout: 'split', sizeBytes, writeStepBytesMax: MIB });
    const last = new Map<number, Buffer>();
    try {
      const writes: Promise<void>[] = [];
      // 64 writes over 8 MiBs: each MiB rewritten about 8 times while earlier commits are pending,
      // so big buffers are recycled while lmdb-js still reads some of them.
      for (let i = 0; i < 64; i++) {
        const mib = (i * 5) % 8;
        const data = randomBytes(MIB);
        last.set(mib, data);
        writes.push(h.core.write(mib * MIB, data, true));
      }
      await Promise.all(writes);
      await h.core.flush();
      for (const [mib, data] of last) expect(Buffer.from(await h.core.read(mib * MIB, MIB)).equals(data), `MiB ${mib} after flush`).toBe(true);
      await h.reopen();
      for (const [mib, data] of last) expect(Buffer.from(await h.core.read(mib * MIB, MIB)).equals(data), `MiB ${mib} after reopen`).toBe(true);
    } finally {
      await h.close();
    }
  });
});

describe('slabs of a volume that can no longer do I/O', () => {
  it('are released when the volume is shredded or soft-deleted', async () => {
    const releases = [vi.spyOn(BufferSlab.prototype, 'release'), vi.spyOn(CiphertextSlabs.prototype, 'release')];
    const h = await CoreHarness.open({ dir: makeTempDir(), backend: 'native', sectorSize: 4096, clusterSectors: 8, layout: 'split', sizeBytes: 1024 * 1024 });
    try {
      // [read slab releases, ciphertext slab releases] (CiphertextSlabs extends BufferSlab: its
      // release also reaches BufferSlab's, counted once, as the ciphertext slab's).
      const released = () => [releases[0]!.mock.contexts.filter((slab) => !(slab instanceof CiphertextSlabs)).length, releases[1]!.mock.calls.length];
      await h.core.write(0, Buffer.alloc(4096, 1));
      expect(released()).toEqual([0, 0]);
      h.core.shred(new BlockvaultError('VOLUME_LOCKED', 'test: shredded'));
      expect(released()).toEqual([1, 1]);
      h.core.wipeKeys();
      expect(released()).toEqual([2, 2]);
    } finally {
      await h.close();
      releases.forEach((r) => r.mockRestore());
    }
  });
});

describe('read buffers from the volume slab', () => {
  it('a read keeps its bytes through later reads and writes; two volumes never share a slab', async () => {
    const sizeBytes = 4 * 1024 * 1024;
    const open = (dir: string) => CoreHarness.open({ dir, backend: 'native', sectorSize: 4096, clusterSectors: 8, layout: 'split', sizeBytes });
    const a = await open(makeTempDir());
    const b = await open(makeTempDir());
    try {
      const data = randomBytes(sizeBytes);
      await a.core.write(0, data);
      await b.core.write(0, data);
      const sectors = Array.from({ length: 64 }, (_, i) => (i * 37) % (sizeBytes / 4096));
      const reads: Uint8Array[] = [];
      for (const s of sectors) reads.push(await a.core.read(s * 4096, 4096));
      // Unwritten-looking reads (trimmed) come from the slab too and must stay zero.
      await a.core.trim(0, 4096);
      const zero = await a.core.read(0, 4096);
      await a.core.write(0, randomBytes(64 * 4096));
      for (let i = 0; i < 64; i++) await a.core.read(((i * 11) % 64) * 4096, 4096);
      sectors.forEach((s, i) => {
        expect(Buffer.from(reads[i]!).equals(data.subarray(s * 4096, (s + 1) * 4096)), `sector ${s}`).toBe(true);
      });
      expect(zero.every((x) => x === 0)).toBe(true);
      const fromB = await b.core.read(4096, 4096);
      for (const r of reads) expect(r.buffer).not.toBe(fromB.buffer);
      // Partial reads too: never from Node's shared pool (the slab is the volume's own).
      const partA = await a.core.read(8192 + 5, 100);
      const partB = await b.core.read(8192 + 5, 100);
      expect(Buffer.from(partB).equals(data.subarray(8192 + 5, 8192 + 105))).toBe(true);
      expect(partA.buffer).not.toBe(partB.buffer);
      expect(partA.buffer).not.toBe(Buffer.from('pool').buffer);
      expect(partA.buffer.byteLength).toBe(SLAB_BYTES);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('commits settle per lmdb-js batch', () => {
  it('lmdb-js gives the puts of one event turn one promise (what lets PendingWrites settle them on one reaction)', async () => {
    const h = await CoreHarness.open({ dir: makeTempDir(), backend: 'native', sectorSize: 4096, clusterSectors: 8, layout: 'split', sizeBytes: 1024 * 1024 });
    try {
      const first = h.sectors.put(Buffer.from('a'), Buffer.alloc(8));
      const second = h.clusters.put(Buffer.from('b'), Buffer.alloc(8));
      const removal = h.sectors.remove(Buffer.from('c'));
      expect(second).toBe(first);
      expect(removal).toBe(first);
      await first;
      expect(h.sectors.put(Buffer.from('d'), Buffer.alloc(8))).not.toBe(first);
    } finally {
      await h.close();
    }
  });

  it('lmdb-js copies a put or remove key before the call returns (what lets the stores reuse one key buffer)', async () => {
    const h = await CoreHarness.open({ dir: makeTempDir(), backend: 'native', sectorSize: 4096, clusterSectors: 8, layout: 'split', sizeBytes: 1024 * 1024 });
    try {
      const key = Buffer.alloc(12);
      const writes: Promise<boolean>[] = [];
      for (let i = 0; i < 200; i++) {
        key.writeUInt32BE(i, 8);
        writes.push(h.sectors.put(key, Buffer.from(`value ${i}`)));
      }
      key.writeUInt32BE(7, 8);
      writes.push(h.sectors.remove(key));
      key.fill(0xff); // after every call returned: must not change what was written
      await Promise.all(writes);
      for (let i = 0; i < 200; i++) {
        key.fill(0);
        key.writeUInt32BE(i, 8);
        const stored = h.sectors.getBinary(key);
        if (i === 7) expect(stored).toBeUndefined();
        else expect(stored?.toString(), `key ${i}`).toBe(`value ${i}`);
      }
      key.fill(0xff);
      expect(h.sectors.getBinary(key)).toBeUndefined();
    } finally {
      await h.close();
    }
  });

  it('a put lmdb-js refuses synchronously leaves no overlay entry, budget or pin behind, and the write fails', async () => {
    const h = await CoreHarness.open({ dir: makeTempDir(), backend: 'native', sectorSize: 4096, clusterSectors: 8, layout: 'split', sizeBytes: 1024 * 1024 });
    try {
      const a = Buffer.alloc(4096, 0xaa);
      const b = Buffer.alloc(4096, 0xbb);
      await h.core.write(5 * 4096, a);
      const pendingB = h.core.write(5 * 4096, b); // in the overlay, not yet committed
      const pendingBefore = h.core.store.pendingCount;
      const budgetBefore = h.budget.used;
      const put = h.sectors.put;
      h.sectors.put = () => {
        throw new Error('simulated: the environment is closed');
      };
      await expect(h.core.write(5 * 4096, Buffer.alloc(4096, 0xcc))).rejects.toThrow(/simulated/);
      h.sectors.put = put;
      // The refused write is nowhere: the sector still reads as b, then (committed) b again.
      expect(h.core.store.pendingCount).toBe(pendingBefore);
      expect(h.budget.used).toBe(budgetBefore);
      expect(Buffer.from(await h.core.read(5 * 4096, 4096)).equals(b)).toBe(true);
      await pendingB;
      expect(h.core.store.pendingCount).toBe(0);
      expect(h.budget.used).toBe(0);
      expect(Buffer.from(await h.core.read(5 * 4096, 4096)).equals(b)).toBe(true);
      // And the volume goes on: a later write lands.
      await h.core.write(5 * 4096, a);
      expect(Buffer.from(await h.core.read(5 * 4096, 4096)).equals(a)).toBe(true);
    } finally {
      await h.close();
    }
  });

  it('a store refuses databases with lmdb-js caching, compression or an encoder (its buffer reuse needs raw bytes)', async () => {
    const root = open({ path: join(makeTempDir(), 'db.lmdb'), maxDbs: 8 });
    try {
      const raw = { keyEncoding: 'binary', encoding: 'binary', compression: false, cache: false } as const;
      const plain = root.openDB<Buffer, Buffer>('plain', raw);
      const g = { sectorSize: 4096 as const, clusterSectors: 8 };
      const deps = (clusters: Database<Buffer, Buffer>) => ({ clusters, sectors: plain, budget: new WriteBudget(1024 * 1024) });
      expect(() => createClusterStore('split', deps(plain), 1, g)).not.toThrow();
      for (const [name, options] of [
        ['cached', { ...raw, cache: true }],
        ['compressed', { ...raw, compression: true }],
        ['msgpack', { keyEncoding: 'binary', encoding: 'msgpack' }],
      ] as const) {
        const db = root.openDB<Buffer, Buffer>(name, options);
        expect(() => createClusterStore('split', deps(db), 1, g), name).toThrow(/the clusters database stores raw bytes/);
        expect(() => createClusterStore('compact', deps(db), 1, g), name).toThrow(/the clusters database stores raw bytes/);
      }
    } finally {
      await root.close();
    }
  });

  it('lmdb-js is done with a put value when its promise resolves (what lets ciphertext slabs be reused after the commit)', async () => {
    const h = await CoreHarness.open({ dir: makeTempDir(), backend: 'native', sectorSize: 4096, clusterSectors: 8, layout: 'split', sizeBytes: 1024 * 1024 });
    try {
      const values = Array.from({ length: 64 }, (_, i) => Buffer.alloc(4072, i + 1));
      const key = (i: number) => Buffer.from(`k${String(i).padStart(3, '0')}`);
      await Promise.all(values.map((v, i) => h.sectors.put(key(i), v)));
      for (const v of values) v.fill(0xee); // after the commits: must not reach the database
      await h.sectors.put(key(999), Buffer.alloc(8)); // and not on a later commit either
      values.forEach((_, i) => expect(h.sectors.getBinary(key(i))!.every((x) => x === i + 1), `value ${i}`).toBe(true));
    } finally {
      await h.close();
    }
  });

  it('every overlay entry and budget byte comes back once all writes resolve, and reads saw each write at once', async () => {
    // The ciphertext slabs cycle many times over here: count the distinct slabs writes were cut from.
    const take = vi.spyOn(CiphertextSlabs.prototype, 'take');
    const sizeBytes = 2 * 1024 * 1024;
    const h = await CoreHarness.open({ dir: makeTempDir(), backend: 'native', sectorSize: 4096, clusterSectors: 8, layout: 'split', sizeBytes, writeBufferBytesMax: 256 * 1024 });
    try {
      const model = Buffer.alloc(sizeBytes);
      const writes: Promise<void>[] = [];
      for (let i = 0; i < 600; i++) {
        const sector = (i * 97) % (sizeBytes / 4096);
        const data = randomBytes(4096);
        data.copy(model, sector * 4096);
        writes.push(h.core.write(sector * 4096, data));
        // Before its commit the write is served from the overlay.
        expect(Buffer.from(await h.core.read(sector * 4096, 4096)).equals(data)).toBe(true);
      }
      expect(h.core.store.pendingCount).toBeGreaterThan(0);
      await Promise.all(writes);
      expect(h.core.store.pendingCount).toBe(0);
      expect(h.budget.used).toBe(0);
      for (let s = 0; s < sizeBytes / 4096; s++) {
        expect(Buffer.from(await h.core.read(s * 4096, 4096)).equals(model.subarray(s * 4096, (s + 1) * 4096)), `sector ${s}`).toBe(true);
      }
      const slabsUsed = new Set(take.mock.results.map((r) => (r.value as Buffer).buffer)).size;
      expect(take.mock.results.length).toBe(600);
      expect(slabsUsed).toBeLessThan(600 / (SLAB_BYTES / 4096) / 2);
    } finally {
      take.mockRestore();
      await h.close();
    }
  });
});
