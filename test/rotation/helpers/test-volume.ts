/**
 * A ReencryptTarget for the rotation tests and benchmark, backed by real LMDB, with its own simple
 * cluster format (test-cluster-format.ts) and a toy KMS. It follows the rules src/volume must
 * follow: a write picks the write generation inside its LMDB write transaction, reads decrypt with
 * whatever generation the cluster carries, commitReencrypted stores a cluster only if it is
 * byte-identical to what was read, and retireGenerations refuses while a cluster still needs an
 * older key (so a runner bug shows up as a failed task, not silent data loss).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Database, RootDatabase } from 'lmdb';
import type { ClusterSnapshot, ReencryptTarget } from '../../../src/volume/reencrypt-contract.js';
import { bytesEqual } from './content.js';
import type { SectorCipherLike } from './test-cipher.js';
import { clusterGeneration, decodeCluster, encodeCluster } from './test-cluster-format.js';

interface GenerationRecord {
  rootKeyVersion: number;
  wrapped: Uint8Array;
}

interface VolumeRecord {
  volumeId: string;
  sectorSize: number;
  clusterSectors: number;
  sizeSectors: number;
  writeGeneration: number;
  generations: Record<string, GenerationRecord>;
}

type ClusterKey = [string, number];

/** Root key versions of the toy KMS; key material is derived from the version (tests only). */
export class TestKms {
  private readonly db: Database<number, string>;

  constructor(root: RootDatabase) {
    this.db = root.openDB<number, string>({ name: 'tv-kms', encoding: 'msgpack' });
  }

  currentVersion(): number {
    return this.db.get('version') ?? 1;
  }

  async rotate(): Promise<number> {
    const next = this.currentVersion() + 1;
    await this.db.put('version', next);
    return next;
  }

  wrap(version: number, dek: Uint8Array): Uint8Array {
    return xor(dek, TestKms.material(version));
  }

  unwrap(version: number, wrapped: Uint8Array): Uint8Array {
    return xor(wrapped, TestKms.material(version));
  }

  private static material(version: number): Uint8Array {
    return createHash('sha512').update(`test-root-key-v${version}`).digest();
  }
}

function xor(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i % b.length]!;
  return out;
}

function freshDek(): Uint8Array {
  for (;;) {
    const dek = new Uint8Array(randomBytes(64));
    // IEEE 1619: the two XTS key halves must differ.
    if (!bytesEqual(dek.subarray(0, 32), dek.subarray(32))) return dek;
  }
}

export interface TestVolumeHooks {
  /** Called with what staleClusters is about to return (tests race foreground writes here). */
  afterStaleClusters?(snapshots: ClusterSnapshot[]): void;
  /** Called before commitReencrypted opens its transaction. */
  beforeCommit?(items: { expected: ClusterSnapshot; raw: Uint8Array }[]): void | Promise<void>;
}

export interface CreateTestVolumeOptions {
  volumeId: string;
  sizeSectors: number;
  sectorSize?: number;
  clusterSectors?: number;
}

export class TestVolume implements ReencryptTarget {
  readonly volumeId: string;
  readonly sectorSize: number;
  readonly clusterSectors: number;
  readonly sizeSectors: number;
  hooks: TestVolumeHooks = {};
  /** Every key copy dataKey() handed out: the runner must zeroize them. */
  readonly keysHandedOut: Uint8Array[] = [];
  readonly calls = { rewrapAll: 0, beginGeneration: 0, commitReencrypted: 0, retireGenerations: 0 };

  private record: VolumeRecord;
  private readonly keys = new Map<number, Uint8Array>();

  private constructor(
    private readonly root: RootDatabase,
    private readonly meta: Database<VolumeRecord, string>,
    private readonly clusters: Database<Uint8Array, ClusterKey>,
    private readonly kms: TestKms,
    private readonly cipher: SectorCipherLike,
    record: VolumeRecord,
  ) {
    this.record = record;
    this.volumeId = record.volumeId;
    this.sectorSize = record.sectorSize;
    this.clusterSectors = record.clusterSectors;
    this.sizeSectors = record.sizeSectors;
    this.loadKeys();
  }

  private static dbs(root: RootDatabase): { meta: Database<VolumeRecord, string>; clusters: Database<Uint8Array, ClusterKey> } {
    return {
      meta: root.openDB<VolumeRecord, string>({ name: 'tv-meta', encoding: 'msgpack' }),
      clusters: root.openDB<Uint8Array, ClusterKey>({ name: 'tv-clusters', encoding: 'binary' }),
    };
  }

  static async create(root: RootDatabase, cipher: SectorCipherLike, options: CreateTestVolumeOptions): Promise<TestVolume> {
    const { meta, clusters } = TestVolume.dbs(root);
    const kms = new TestKms(root);
    const version = kms.currentVersion();
    const record: VolumeRecord = {
      volumeId: options.volumeId,
      sectorSize: options.sectorSize ?? 512,
      clusterSectors: options.clusterSectors ?? 8,
      sizeSectors: options.sizeSectors,
      writeGeneration: 1,
      generations: { '1': { rootKeyVersion: version, wrapped: kms.wrap(version, freshDek()) } },
    };
    await meta.put(options.volumeId, record);
    return new TestVolume(root, meta, clusters, kms, cipher, record);
  }

  static open(root: RootDatabase, cipher: SectorCipherLike, volumeId: string): TestVolume {
    const { meta, clusters } = TestVolume.dbs(root);
    const record = meta.get(volumeId);
    if (record === undefined) throw new Error(`no test volume ${volumeId}`);
    return new TestVolume(root, meta, clusters, new TestKms(root), cipher, record);
  }

  private loadKeys(): void {
    for (const key of this.keys.values()) key.fill(0);
    this.keys.clear();
    for (const [gen, g] of Object.entries(this.record.generations)) this.keys.set(Number(gen), this.kms.unwrap(g.rootKeyVersion, g.wrapped));
  }

  get clusterCount(): number {
    return Math.ceil(this.sizeSectors / this.clusterSectors);
  }

  // ------------------------------------------------------------------------------- foreground I/O

  /** Write whole sectors from `firstSector`; one LMDB transaction, read-modify-write per cluster. */
  async write(firstSector: number, data: Uint8Array): Promise<void> {
    const ss = this.sectorSize;
    if (data.length % ss !== 0 || firstSector < 0 || firstSector + data.length / ss > this.sizeSectors) throw new RangeError('write out of range');
    await this.root.transaction(() => {
      // The write generation is read from the record inside the write transaction: a write can
      // never land under a generation older than one beginGeneration has already committed.
      const record = this.meta.get(this.volumeId)!;
      if (record.writeGeneration !== this.record.writeGeneration) {
        this.record = record;
        this.loadKeys();
      }
      const generation = record.writeGeneration;
      const key = this.keys.get(generation)!;
      const sectors = data.length / ss;
      let s = 0;
      while (s < sectors) {
        const sector = firstSector + s;
        const clusterIndex = Math.floor(sector / this.clusterSectors);
        const slot = sector % this.clusterSectors;
        const count = Math.min(sectors - s, this.clusterSectors - slot);
        const plaintext = this.readClusterPlaintext(clusterIndex);
        plaintext.set(data.subarray(s * ss, (s + count) * ss), slot * ss);
        this.clusters.putSync([this.volumeId, clusterIndex], encodeCluster(this.cipher, key, generation, clusterIndex, ss, this.clusterSectors, plaintext));
        s += count;
      }
    });
  }

  /** Remove a whole cluster (a trim of all its sectors). */
  async trimCluster(clusterIndex: number): Promise<void> {
    await this.clusters.remove([this.volumeId, clusterIndex]);
  }

  read(firstSector: number, sectors = 1): Uint8Array {
    const ss = this.sectorSize;
    const out = new Uint8Array(sectors * ss);
    for (let s = 0; s < sectors; s++) {
      const sector = firstSector + s;
      const clusterIndex = Math.floor(sector / this.clusterSectors);
      const slot = sector % this.clusterSectors;
      out.set(this.readClusterPlaintext(clusterIndex).subarray(slot * ss, (slot + 1) * ss), s * ss);
    }
    return out;
  }

  private readClusterPlaintext(clusterIndex: number): Uint8Array {
    const raw = this.clusters.get([this.volumeId, clusterIndex]);
    if (raw === undefined) return new Uint8Array(this.sectorSize * this.clusterSectors);
    const generation = clusterGeneration(raw);
    if (!this.keys.has(generation)) this.reload(); // written through another handle
    const key = this.keys.get(generation);
    if (key === undefined) throw new Error(`cluster ${clusterIndex} of ${this.volumeId} is under generation ${generation}, whose key is gone`);
    return decodeCluster(this.cipher, key, raw, clusterIndex, this.sectorSize, this.clusterSectors);
  }

  // ------------------------------------------------------------------------------- inspection

  storedGenerations(): number[] {
    return Object.keys(this.record.generations).map(Number).sort((a, b) => a - b);
  }

  rootKeyVersions(): Record<number, number> {
    return Object.fromEntries(Object.entries(this.record.generations).map(([g, r]) => [Number(g), r.rootKeyVersion]));
  }

  /** How many stored clusters carry each generation. */
  clusterGenerations(): Map<number, number> {
    const counts = new Map<number, number>();
    for (const { value } of this.clusters.getRange({ start: [this.volumeId, 0], end: [this.volumeId, Number.MAX_SAFE_INTEGER] })) {
      const g = clusterGeneration(value);
      counts.set(g, (counts.get(g) ?? 0) + 1);
    }
    return counts;
  }

  /** Re-read the record from LMDB (after another process changed it). */
  reload(): void {
    this.record = this.meta.get(this.volumeId)!;
    this.loadKeys();
  }

  // ------------------------------------------------------------------------------- ReencryptTarget

  writeGeneration(): number {
    return this.record.writeGeneration;
  }

  async beginGeneration(expectedPrevious: number): Promise<number> {
    this.calls.beginGeneration++;
    return this.root.transaction(() => {
      const record = this.meta.get(this.volumeId)!;
      if (record.writeGeneration > expectedPrevious) return record.writeGeneration;
      const generation = Math.max(...Object.keys(record.generations).map(Number)) + 1;
      const version = this.kms.currentVersion();
      const dek = freshDek();
      const next: VolumeRecord = {
        ...record,
        writeGeneration: generation,
        generations: { ...record.generations, [generation]: { rootKeyVersion: version, wrapped: this.kms.wrap(version, dek) } },
      };
      this.meta.putSync(this.volumeId, next);
      this.record = next;
      this.keys.set(generation, dek);
      return generation;
    });
  }

  async rewrapAll(): Promise<void> {
    this.calls.rewrapAll++;
    await this.root.transaction(() => {
      const record = this.meta.get(this.volumeId)!;
      const version = this.kms.currentVersion();
      const generations: Record<string, GenerationRecord> = {};
      for (const [g, r] of Object.entries(record.generations)) {
        const dek = this.kms.unwrap(r.rootKeyVersion, r.wrapped);
        generations[g] = { rootKeyVersion: version, wrapped: this.kms.wrap(version, dek) };
        dek.fill(0);
      }
      const next = { ...record, generations };
      this.meta.putSync(this.volumeId, next);
      this.record = next;
    });
  }

  staleClusters(fromClusterIndex: number, generation: number, limit: number): ClusterSnapshot[] {
    const out: ClusterSnapshot[] = [];
    for (const { key, value } of this.clusters.getRange({ start: [this.volumeId, fromClusterIndex], end: [this.volumeId, Number.MAX_SAFE_INTEGER] })) {
      const g = clusterGeneration(value);
      if (g >= generation) continue;
      out.push({ clusterIndex: (key as ClusterKey)[1], generation: g, raw: Uint8Array.from(value) });
      if (out.length >= limit) break;
    }
    this.hooks.afterStaleClusters?.(out);
    return out;
  }

  dataKey(generation: number): Uint8Array {
    const key = this.keys.get(generation);
    if (key === undefined) throw new Error(`volume ${this.volumeId} has no generation ${generation}`);
    const copy = Uint8Array.from(key);
    this.keysHandedOut.push(copy);
    return copy;
  }

  async commitReencrypted(items: { expected: ClusterSnapshot; raw: Uint8Array }[], checkpoint: () => void): Promise<number> {
    this.calls.commitReencrypted++;
    await this.hooks.beforeCommit?.(items);
    return this.root.transaction(() => {
      let stored = 0;
      for (const { expected, raw } of items) {
        const key: ClusterKey = [this.volumeId, expected.clusterIndex];
        const current = this.clusters.get(key);
        if (current === undefined || !bytesEqual(current, expected.raw)) continue;
        this.clusters.putSync(key, raw);
        stored++;
      }
      checkpoint();
      return stored;
    });
  }

  async retireGenerations(generation: number): Promise<void> {
    this.calls.retireGenerations++;
    await this.root.transaction(() => {
      const stale = this.staleClustersUnhooked(generation);
      if (stale > 0) throw new Error(`retireGenerations(${generation}) with ${stale} clusters still under older generations`);
      const record = this.meta.get(this.volumeId)!;
      const generations = Object.fromEntries(Object.entries(record.generations).filter(([g]) => Number(g) >= generation));
      const next = { ...record, generations };
      this.meta.putSync(this.volumeId, next);
      this.record = next;
    });
    for (const [g, key] of this.keys) {
      if (g < generation) {
        key.fill(0);
        this.keys.delete(g);
      }
    }
  }

  storedClusterCount(): number {
    let count = 0;
    for (const _ of this.clusters.getKeys({ start: [this.volumeId, 0], end: [this.volumeId, Number.MAX_SAFE_INTEGER] })) count++;
    return count;
  }

  private staleClustersUnhooked(generation: number): number {
    let count = 0;
    for (const { value } of this.clusters.getRange({ start: [this.volumeId, 0], end: [this.volumeId, Number.MAX_SAFE_INTEGER] })) {
      if (clusterGeneration(value) < generation) count++;
    }
    return count;
  }
}

/** Fill every sector with sectorContent(version 0), in transactions of `clustersPerTxn` clusters. */
export async function fillVolume(volume: TestVolume, content: (sector: number) => Uint8Array, clustersPerTxn = 64): Promise<void> {
  const per = volume.clusterSectors * clustersPerTxn;
  const ss = volume.sectorSize;
  for (let first = 0; first < volume.sizeSectors; first += per) {
    const count = Math.min(per, volume.sizeSectors - first);
    const data = new Uint8Array(count * ss);
    for (let s = 0; s < count; s++) data.set(content(first + s), s * ss);
    await volume.write(first, data);
  }
}
