/**
 * A VolumeCore on a real LMDB environment without the engine (no HSM): for storage-level tests
 * of src/volume. The data key is a plain random key held by the test.
 */
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { XtsCipher } from '../../src/cipher/index.js';
import { BlockvaultError } from '../../src/errors.js';
import type { SectorSize } from '../../src/volume/cluster-format.js';
import type { VolumeLayout } from '../../src/volume/cluster-store.js';
import type { ClusterObjects } from '../../src/volume/object-store.js';
import { generateDataKey } from '../../src/volume/data-key.js';
import type { GenerationKeeper } from '../../src/volume/reencrypt-target.js';
import { VOLUME_RECORD_VERSION, withChanges, type VolumeRecord } from '../../src/volume/record.js';
import { VolumeCore } from '../../src/volume/volume-core.js';
import { WriteBudget } from '../../src/volume/write-budget.js';

export interface CoreHarnessOptions {
  dir: string;
  backend: 'native' | 'ts';
  sectorSize: SectorSize;
  clusterSectors: number;
  layout: VolumeLayout;
  sizeBytes: number;
  writeBufferBytesMax?: number;
  writeStepBytesMax?: number;
  trimStepClustersMax?: number;
  metaCacheClustersMax?: number;
  /** Stand in front of the clusters and sectors databases (fault injection). */
  wrapDatabase?: (db: Database<Buffer, Buffer>) => Database<Buffer, Buffer>;
  /** Keep the clusters in this object pool instead of LMDB (layout 'compact'); it outlives reopen(). */
  objects?: ClusterObjects;
  /** Object names start with it (default HARNESS_OID_PREFIX). */
  oidPrefix?: string;
}

/** The object-name prefix of harness volumes in an object pool. */
export const HARNESS_OID_PREFIX = 'bv-test.';

export class CoreHarness {
  root!: RootDatabase;
  clusters!: Database<Buffer, Buffer>;
  sectors!: Database<Buffer, Buffer>;
  core!: VolumeCore;
  /** The core's write budget (bytes handed to LMDB and not yet committed). */
  budget!: WriteBudget;
  readonly dataKey = generateDataKey();
  readonly cipher: XtsCipher;
  readonly record: VolumeRecord;

  constructor(readonly options: CoreHarnessOptions) {
    this.cipher = XtsCipher.create({ backend: options.backend });
    this.record = {
      recordVersion: VOLUME_RECORD_VERSION,
      id: 'test-volume',
      storeId: 1,
      name: 'test',
      crn: 'crn:v1:local:private:blockvault:local:a/default:test:volume:test-volume',
      sizeBytes: options.sizeBytes,
      sectorSize: options.sectorSize,
      clusterSectors: options.clusterSectors,
      layout: options.layout,
      diskEncryptionKeyCrn: 'crn:v1:local:private:blockvault-hsm:local:a/default:test:key:k',
      platformManaged: true,
      generations: [{ generation: 1, keyVersion: 1, wrapped: new Uint8Array(72), createdAtMs: 0 }],
      writeGeneration: 1,
      createdAtMs: 0,
      deletedAtMs: null,
      purgeAtMs: null,
      purgingSinceMs: null,
      lockedAtMs: null,
      lockReason: null,
      syncTaskId: null,
    };
  }

  static async open(options: CoreHarnessOptions): Promise<CoreHarness> {
    const harness = new CoreHarness(options);
    harness.openNow();
    return harness;
  }

  private openNow(): void {
    this.root = open({ path: join(this.options.dir, 'engine.lmdb'), maxDbs: 8, pageSize: 4096, compression: false });
    this.clusters = this.root.openDB<Buffer, Buffer>('clusters', { keyEncoding: 'binary', encoding: 'binary', compression: false, cache: false });
    this.sectors = this.root.openDB<Buffer, Buffer>('sectors', { keyEncoding: 'binary', encoding: 'binary', compression: false, cache: false });
    const wrap = this.options.wrapDatabase ?? ((db: Database<Buffer, Buffer>) => db);
    this.core = new VolumeCore(this.record, {
      root: this.root,
      clusters: wrap(this.clusters),
      sectors: wrap(this.sectors),
      budget: (this.budget = new WriteBudget(this.options.writeBufferBytesMax ?? 64 * 1024 * 1024)),
      cipher: this.cipher,
      writeStepBytesMax: this.options.writeStepBytesMax ?? 4 * 1024 * 1024,
      trimStepClustersMax: this.options.trimStepClustersMax ?? 1024,
      metaCacheClustersMax: this.options.metaCacheClustersMax,
      objectPool: this.options.objects === undefined ? undefined : { objects: this.options.objects, oidPrefix: this.options.oidPrefix ?? HARNESS_OID_PREFIX },
    });
    this.core.keys.set(1, Uint8Array.from(this.dataKey));
  }

  async close(): Promise<void> {
    await this.core.close(new BlockvaultError('VOLUME_CLOSED', 'closed by the test'));
    await this.root.flushed;
    await this.root.close();
  }

  async reopen(): Promise<void> {
    await this.close();
    this.openNow();
  }

  storedClusterCount(): number {
    return this.clusters.getKeysCount();
  }
}

/**
 * The engine's side of re-encryption (GenerationKeeper), minus the HSM: generations live in the
 * record only. `retired` lists the generations retireGenerations removed, in order.
 */
export function testKeeper(): GenerationKeeper & { retired: number[] } {
  const retired: number[] = [];
  return {
    retired,
    async addGeneration(core: VolumeCore) {
      const generation = Math.max(...core.record.generations.map((g) => g.generation)) + 1;
      core.keys.set(generation, generateDataKey());
      core.setRecord(
        withChanges(core.record, {
          generations: [...core.record.generations, { generation, keyVersion: 2, wrapped: new Uint8Array(72), createdAtMs: 0 }],
          writeGeneration: generation,
        }),
      );
      return generation;
    },
    async rewrapAll() {},
    async retireGenerations(core: VolumeCore, generation: number) {
      for (const g of core.record.generations) {
        if (g.generation < generation) {
          core.keys.delete(g.generation);
          retired.push(g.generation);
        }
      }
      core.setRecord(withChanges(core.record, { generations: core.record.generations.filter((g) => g.generation >= generation) }));
    },
    async release() {},
  };
}
