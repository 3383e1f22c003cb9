/**
 * The slice of the Engine API the CLI uses, and how it opens one. The CLI codes against the
 * stable public names of DESIGN.md ("Public API").
 */
import type { VolumeStoreOptions } from '../store/volume-store.js';
import type {
  Authorization,
  DeleteKeyResult,
  HsmInstanceInfo,
  ImportTokenInfo,
  Registration,
  RootKeyInfo,
} from '../hsm/types.js';
import type { AuditRecord } from '../audit/types.js';
import type { TaskProgressEvent, TaskRecord } from '../rotation/task-types.js';
import type { VolumeInfo } from '../volume/record.js';
import type { HsmSecret } from './passphrase.js';
import type { NbdExportOptions, NbdServeOptions, NbdServerHandle } from '../nbd/serve.js';
import type { NbdListenOptions } from '../nbd/server.js';

export type { VolumeInfo };
import { Engine } from '../engine.js';

export interface VolumeHandle {
  write(offset: number, bytes: Uint8Array): Promise<unknown>;
  read(offset: number, length: number): Promise<Uint8Array>;
  trim(offset: number, length: number): Promise<unknown>;
  flush(): Promise<unknown>;
  info(): VolumeInfo;
  close(): Promise<unknown>;
}

/** A task as engine.tasks returns it (src/rotation/task-types.ts). */
export type TaskInfo = TaskRecord;
export type { TaskProgressEvent };

export interface TaskApi {
  list(): Promise<TaskInfo[]> | TaskInfo[];
  get(id: string): Promise<TaskInfo> | TaskInfo;
  wait(id: string, options?: { timeoutMs?: number }): Promise<TaskInfo>;
  cancel(id: string): Promise<unknown>;
  on(event: 'progress', listener: (event: TaskProgressEvent) => void): unknown;
  off(event: 'progress', listener: (event: TaskProgressEvent) => void): unknown;
}

export type AuditEvent = AuditRecord;

export interface AuditFilter {
  action?: string;
  keyCrn?: string;
  sinceMs?: number;
  untilMs?: number;
  afterSeq?: number;
  limit?: number;
  order?: 'asc' | 'desc';
}

export interface AuditApi {
  list(filter?: AuditFilter): Promise<AuditEvent[]> | AuditEvent[];
  verify(): Promise<unknown> | unknown;
}

export interface HsmApi {
  createInstance(options: { name: string }): Promise<HsmInstanceInfo>;
  listInstances(): Promise<HsmInstanceInfo[]> | HsmInstanceInfo[];
  createRootKey(
    instanceId: string,
    options: { name: string; dualAuthDelete?: boolean; rotationPolicy?: { intervalMs: number } },
  ): Promise<RootKeyInfo>;
  importRootKey(instanceId: string, options: { name: string; material: Uint8Array }): Promise<RootKeyInfo>;
  createImportToken(instanceId: string, options?: { expiresInMs?: number; maxRetrievals?: number }): Promise<Omit<ImportTokenInfo, 'publicKeyPem'>>;
  getImportToken(instanceId: string): Promise<ImportTokenInfo>;
  importRootKeyWithToken(instanceId: string, options: { name: string; encryptedMaterial: Uint8Array }): Promise<RootKeyInfo>;
  getKey(crn: string): Promise<RootKeyInfo> | RootKeyInfo;
  listKeys(filter?: { instanceId?: string }): Promise<RootKeyInfo[]> | RootKeyInfo[];
  rotateKey(crn: string, options?: { material?: Uint8Array; rewrapOnly?: boolean }): Promise<TaskInfo[]>;
  enableKey(crn: string): Promise<RootKeyInfo>;
  disableKey(crn: string): Promise<RootKeyInfo>;
  deleteKey(crn: string, options?: { force?: boolean; initiator?: string }): Promise<DeleteKeyResult>;
  setKeyForDeletion(crn: string, options: { initiator: string }): Promise<RootKeyInfo>;
  unsetKeyForDeletion(crn: string, options: { initiator: string }): Promise<RootKeyInfo>;
  setDualAuthDelete(crn: string, options: { enabled: boolean }): Promise<RootKeyInfo>;
  setRotationPolicy(crn: string, policy: { intervalMs: number } | null): Promise<RootKeyInfo>;
  authorize(options: { sourceService: string; sourceInstance?: string; targetInstance: string; role: 'Reader' }): Promise<Authorization>;
  revoke(id: string): Promise<unknown>;
  listAuthorizations(): Promise<Authorization[]> | Authorization[];
  listRegistrations(filter?: { keyCrn?: string; resourceCrn?: string }): Promise<Registration[]> | Registration[];
}

export interface EngineApi {
  readonly hsm: HsmApi;
  readonly events: AuditApi;
  readonly tasks: TaskApi;
  createVolume(options: { name: string; sizeBytes: number; sectorSize?: number; diskEncryptionKeyCrn?: string }): Promise<VolumeHandle>;
  openVolume(idOrName: string): Promise<VolumeHandle>;
  listVolumes(): VolumeInfo[];
  deleteVolume(id: string): Promise<unknown>;
  restoreVolume(id: string): Promise<unknown>;
  serveNbd(listen: NbdListenOptions, exports: readonly NbdExportOptions[], options?: NbdServeOptions): Promise<NbdServerHandle>;
  close(): Promise<void>;
}

export interface OpenOptions {
  dir: string;
  hsm: HsmSecret;
  /** Where the volumes' sectors live (--rados-pool); LMDB when left out. */
  store?: VolumeStoreOptions;
}

/**
 * Opens the engine. The compile-time check below keeps this port honest: if the real Engine
 * stops satisfying EngineApi (a renamed method, a changed shape), the build fails here.
 */
export async function openEngine(options: OpenOptions): Promise<EngineApi> {
  const engine: EngineApi = await Engine.open(options);
  return engine;
}
