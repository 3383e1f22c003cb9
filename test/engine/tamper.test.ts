/**
 * Stored volume metadata is authenticated and every detected corruption is a typed error naming
 * the volume and the place (issue 13; the LUKS2 CVE-2021-4122 lesson). Each case edits the real
 * LMDB files of a closed engine, as an attacker with write access to the directory (but not the
 * passphrase) would, and checks that blockvault refuses instead of reading data with the edit.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import { afterAll, describe, expect, it } from 'vitest';
import { engineInternals } from '../../src/engine-internals.js';
import { BlockvaultError } from '../../src/errors.js';
import { clusterKey } from '../../src/volume/cluster-format.js';
import type { VolumeRecord } from '../../src/volume/record.js';
import { openTestEngine, rootKey } from '../helpers/engine.js';
import { forEachProvider, type ProviderName } from '../helpers/providers.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

const MIB = 1024 * 1024;
afterAll(removeTempDirs);

type Stored = VolumeRecord & { mac: Uint8Array };

function openEnv(dir: string): RootDatabase {
  return open({ path: join(dir, 'engine.lmdb'), maxDbs: 32 });
}

async function editRecords(dir: string, edit: (records: Map<string, Stored>) => Map<string, Stored>): Promise<void> {
  const env = openEnv(dir);
  try {
    const db = env.openDB<Stored, string>('volumes', { encoding: 'msgpack' });
    const before = new Map([...db.getRange()].map(({ key, value }) => [key, value] as const));
    const after = edit(new Map(before));
    await db.transaction(() => {
      for (const key of before.keys()) if (!after.has(key)) db.removeSync(key);
      for (const [key, value] of after) db.putSync(key, value);
    });
  } finally {
    await env.close();
  }
}

async function rejection(promise: Promise<unknown>): Promise<BlockvaultError> {
  const error = await promise.then(
    () => new Error('expected a rejection'),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BlockvaultError);
  return error as BlockvaultError;
}

/** An engine with two volumes on one root key, each holding known data; closed. */
async function twoVolumes(layout: 'split' | 'compact', sectorSize: 512 | 4096, provider: ProviderName = 'software') {
  const dir = makeTempDir('bv-tamper-');
  const engine = await openTestEngine(dir, { provider, volumeLayout: layout });
  const key = await rootKey(engine);
  const a = await engine.createVolume({ name: 'a', sizeBytes: MIB, sectorSize, diskEncryptionKeyCrn: key.crn });
  const b = await engine.createVolume({ name: 'b', sizeBytes: MIB, sectorSize, diskEncryptionKeyCrn: key.crn });
  const dataA = randomBytes(64 * 1024);
  const dataB = randomBytes(64 * 1024);
  await a.write(0, dataA);
  await b.write(0, dataB);
  const ids = { a: a.info().id, b: b.info().id };
  await engine.close();
  return { dir, ids, dataA, dataB };
}

async function storeIdOf(dir: string, id: string): Promise<number> {
  const env = openEnv(dir);
  try {
    return env.openDB<Stored, string>('volumes', { encoding: 'msgpack' }).get(id)!.storeId;
  } finally {
    await env.close();
  }
}

// On each key provider: the record key derives from the provider's metadata key (a token HMAC on PKCS#11).
forEachProvider('volume records are authenticated', (provider) => {
  const cases: [string, (records: Map<string, Stored>, ids: { a: string; b: string }) => void][] = [
    ['sector size edited', (r, ids) => void r.set(ids.a, { ...r.get(ids.a)!, sectorSize: 512 })],
    ['cluster geometry edited', (r, ids) => void r.set(ids.a, { ...r.get(ids.a)!, clusterSectors: r.get(ids.a)!.clusterSectors * 2 })],
    ['lock cleared', (r, ids) => void r.set(ids.a, { ...r.get(ids.a)!, lockedAtMs: null, lockReason: null, name: 'renamed' })],
    ['MAC removed', (r, ids) => {
      const { mac: _mac, ...bare } = r.get(ids.a)!;
      r.set(ids.a, bare as Stored);
    }],
    ['records swapped between ids', (r, ids) => {
      const a = r.get(ids.a)!;
      r.set(ids.a, r.get(ids.b)!);
      r.set(ids.b, a);
    }],
    ['wrapped data keys swapped (MACs kept)', (r, ids) => {
      const a = r.get(ids.a)!;
      const b = r.get(ids.b)!;
      r.set(ids.a, { ...a, generations: b.generations });
      r.set(ids.b, { ...b, generations: a.generations });
    }],
  ];

  it.each(cases)('%s: the engine refuses to open with VOLUME_CORRUPT naming the volume', async (_name, edit) => {
    const { dir, ids, dataA } = await twoVolumes('split', 4096, provider);
    let original: Map<string, Stored> | undefined;
    await editRecords(dir, (records) => {
      original = new Map(records);
      edit(records, ids);
      return records;
    });
    const error = await rejection(openTestEngine(dir, { provider }));
    expect(error.code).toBe('VOLUME_CORRUPT');
    expect([ids.a, ids.b]).toContain(error.details?.volumeId);
    expect(error.details?.place).toBe(`volumes/${String(error.details?.volumeId)}`);
    expect(error.message).toMatch(/restore/i);

    // The refusal released the directory: with the genuine records back, it opens and reads.
    await editRecords(dir, () => original!);
    const engine = await openTestEngine(dir, { provider });
    try {
      const a = await engine.openVolume(ids.a);
      expect(Buffer.from(await a.read(0, dataA.length)).equals(dataA)).toBe(true);
    } finally {
      await engine.close();
    }
  });

  it('a record written by the catalog itself (authenticated) opens: the MAC is over the stored form', async () => {
    const { dir, ids, dataB } = await twoVolumes('compact', 512, provider);
    let engine = await openTestEngine(dir, { provider });
    await engineInternals(engine).saveRecord({ ...withoutMac(await readThrough(engine, ids.b)), name: 'b-renamed' });
    await engine.close();
    engine = await openTestEngine(dir, { provider });
    try {
      expect(engine.listVolumes().map((v) => v.name).sort()).toEqual(['a', 'b-renamed']);
      const b = await engine.openVolume('b-renamed');
      expect(Buffer.from(await b.read(0, dataB.length)).equals(dataB)).toBe(true);
    } finally {
      await engine.close();
    }
  });

  it('wrapped data keys swapped by someone who can write authentic records: KEYSTORE_CORRUPT names the volume', async () => {
    // Defence in depth: the wrapped key is bound to its volume and generation (dek-binding.ts),
    // so even records that verify cannot make one volume decrypt with another's key.
    const { dir, ids } = await twoVolumes('split', 4096, provider);
    let engine = await openTestEngine(dir, { provider });
    const a = await readThrough(engine, ids.a);
    const b = await readThrough(engine, ids.b);
    await engineInternals(engine).saveRecord({ ...withoutMac(a), generations: b.generations });
    await engine.close();
    engine = await openTestEngine(dir, { provider });
    try {
      const error = await rejection(engine.openVolume(ids.a).then((v) => v.read(0, 4096)));
      expect(error.code).toBe('KEYSTORE_CORRUPT');
      expect(error.message).toContain(ids.a);
      // The other volume is untouched.
      const other = await engine.openVolume(ids.b);
      expect((await other.read(0, 4096)).length).toBe(4096);
    } finally {
      await engine.close();
    }
  });
});

describe('corrupt cluster data is a typed error naming the volume and the place', () => {
  type Edit = (value: Buffer) => Buffer | null;
  const headerEdits: [string, Edit][] = [
    ['magic', (v) => Buffer.concat([Buffer.from([0x00, 0x00]), v.subarray(2)])],
    ['format version', (v) => withByte(v, 2, 99)],
    ['sector shift', (v) => withByte(v, 3, v[3] === 9 ? 12 : 9)],
    ['generation', (v) => withU32(v, 4, 77)],
    ['bitmap emptied', (v) => Buffer.concat([v.subarray(0, 8), Buffer.alloc(8), v.subarray(16)])],
    ['truncated', (v) => v.subarray(0, v.length - 3)],
  ];

  for (const [layout, sectorSize] of [
    ['compact', 512],
    ['split', 4096],
  ] as const) {
    it.each(headerEdits)(`${layout} layout, ${sectorSize}-byte sectors: %s edited`, async (_name, edit) => {
      const { dir, ids, dataB } = await twoVolumes(layout, sectorSize);
      const storeId = await storeIdOf(dir, ids.a);
      await editValue(dir, 'clusters', clusterKey(storeId, 0), edit);
      const engine = await openTestEngine(dir);
      try {
        const a = await engine.openVolume(ids.a);
        const error = await rejection(a.read(0, 4096));
        expect(error.code).toBe('VOLUME_CORRUPT');
        expect(error.details?.volumeId).toBe(ids.a);
        expect(error.details?.volumeName).toBe('a');
        expect(String(error.details?.place)).toMatch(/^cluster/);
        expect(error.message).toContain('volume a');
        // Nothing else is harmed: the other volume reads its data.
        const b = await engine.openVolume(ids.b);
        expect(Buffer.from(await b.read(0, dataB.length)).equals(dataB)).toBe(true);
      } finally {
        await engine.close();
      }
    });
  }

  it('split layout: a missing sector body is VOLUME_CORRUPT naming the sector', async () => {
    const { dir, ids } = await twoVolumes('split', 4096);
    const storeId = await storeIdOf(dir, ids.a);
    await editValue(dir, 'sectors', clusterKey(storeId, 1), () => null);
    const engine = await openTestEngine(dir);
    try {
      const a = await engine.openVolume(ids.a);
      const error = await rejection(a.read(0, 8192));
      expect(error.code).toBe('VOLUME_CORRUPT');
      expect(error.details).toMatchObject({ volumeId: ids.a, place: 'sector body' });
      expect(error.message).toContain('sector 1');
    } finally {
      await engine.close();
    }
  });
});

function withByte(v: Buffer, at: number, byte: number): Buffer {
  const out = Buffer.from(v);
  out[at] = byte;
  return out;
}

function withU32(v: Buffer, at: number, value: number): Buffer {
  const out = Buffer.from(v);
  out.writeUInt32BE(value, at);
  return out;
}

async function editValue(dir: string, dbName: string, key: Buffer, edit: (value: Buffer) => Buffer | null): Promise<void> {
  const env = openEnv(dir);
  try {
    const db = env.openDB<Buffer, Buffer>(dbName, { keyEncoding: 'binary', encoding: 'binary' });
    const value = db.getBinary(key);
    expect(value, `${dbName} holds the value to edit`).toBeDefined();
    const next = edit(Buffer.from(value!));
    if (next === null) await db.remove(key);
    else await db.put(key, next);
  } finally {
    await env.close();
  }
}

/** The current record of a volume as the engine holds it. */
async function readThrough(engine: Awaited<ReturnType<typeof openTestEngine>>, id: string): Promise<VolumeRecord> {
  const info = engine.listVolumes().find((v) => v.id === id);
  expect(info).toBeDefined();
  return engineInternals(engine).record(id);
}

function withoutMac(record: VolumeRecord & { mac?: unknown }): VolumeRecord {
  const { mac: _mac, ...rest } = record;
  return rest;
}
