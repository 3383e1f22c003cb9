import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { open, type RootDatabase } from 'lmdb';
import { TaskManager, type RotationOptions } from '../../../src/rotation/task-manager.js';
import type { RotationAuditAction, TaskRecord } from '../../../src/rotation/task-types.js';
import { sectorContent } from './content.js';
import { createTestCipher, type SectorCipherLike } from './test-cipher.js';
import { TestVolume, fillVolume } from './test-volume.js';

export const TEST_OPS_PATH = fileURLToPath(new URL('./test-cluster-ops.ts', import.meta.url));

/** The test ClusterOps module's URL with options in its query (see test-cluster-ops.ts). */
export function testOpsUrl(params: Record<string, string | number> = {}): string {
  const url = new URL('./test-cluster-ops.ts', import.meta.url);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, String(v));
  return url.href;
}

export function tempDir(prefix = 'bv-rot-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export function openRoot(dir: string): RootDatabase {
  // The engine's durability: synchronous commits (lmdb-js default).
  return open({ path: join(dir, 'data.mdb'), maxDbs: 32 });
}

export interface Harness {
  root: RootDatabase;
  cipher: SectorCipherLike;
  volumes: Map<string, TestVolume>;
  manager: TaskManager;
  events: { action: RotationAuditAction; details: Record<string, unknown> }[];
  close(): Promise<void>;
}

export async function openHarness(
  dir: string,
  options: { rotation?: RotationOptions; opsUrl?: string; backend?: string; volumes?: TestVolume[]; beforeOpenTarget?: (task: TaskRecord) => Promise<void> } = {},
): Promise<Harness> {
  const root = openRoot(dir);
  const cipher = await createTestCipher(options.backend);
  const volumes = new Map<string, TestVolume>();
  const events: Harness['events'] = [];
  const manager = new TaskManager({
    root,
    openTarget: async (task: TaskRecord) => {
      await options.beforeOpenTarget?.(task);
      let volume = volumes.get(task.volumeId);
      if (volume === undefined) {
        volume = TestVolume.open(root, cipher, task.volumeId);
        volumes.set(task.volumeId, volume);
      }
      return volume;
    },
    rotation: { workers: 2, backend: options.backend, progressIntervalMs: 0, ...options.rotation },
    clusterOpsModule: options.opsUrl ?? testOpsUrl(),
    onEvent: (action, details) => {
      events.push({ action, details });
    },
  });
  return {
    root,
    cipher,
    volumes,
    manager,
    events,
    async close() {
      await manager.close();
      await root.close();
    },
  };
}

/** A new test volume filled with sectorContent(version 0). */
export async function createFilledVolume(
  h: Harness,
  volumeId: string,
  geometry: { sizeSectors: number; sectorSize?: number; clusterSectors?: number },
): Promise<TestVolume> {
  const volume = await TestVolume.create(h.root, h.cipher, { volumeId, ...geometry });
  await fillVolume(volume, (sector) => sectorContent(volume.sectorSize, sector, 0));
  h.volumes.set(volumeId, volume);
  return volume;
}

export const KEY_CRN = 'crn:v1:bluemix:public:hs-crypto:us-south:a/acct:inst-1:key:root-1';
