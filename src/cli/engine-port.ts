/**
 * The slice of the Engine API the CLI uses, and how it opens one. The CLI codes against the
 * stable public names of DESIGN.md ("Public API"); optional members are the parts that land
 * with later issues (rotation tasks, cryptoshredding), so a command can say precisely what is
 * missing instead of failing with a TypeError.
 */
import type {
  Authorization,
  DeleteKeyResult,
  HsmInstanceInfo,
  ImportTokenInfo,
  Registration,
  RootKeyInfo,
} from '../hsm/types.js';
import type { HsmSecret } from './passphrase.js';
import { CliFailure } from './usage-error.js';

export interface VolumeInfo {
  id: string;
  name: string;
  sizeBytes: number;
  sectorSize: number;
  state: string;
  diskEncryptionKeyCrn?: string | null;
  [field: string]: unknown;
}

export interface VolumeHandle {
  write(offset: number, bytes: Uint8Array): Promise<unknown>;
  read(offset: number, length: number): Promise<Uint8Array>;
  trim?(offset: number, length: number): Promise<unknown>;
  flush(): Promise<unknown>;
  info(): VolumeInfo;
  close?(): Promise<unknown> | unknown;
}

export interface TaskInfo {
  id: string;
  state: string;
  volumeId?: string;
  keyCrn?: string;
  sectorsDone?: number;
  sectorsTotal?: number;
  bytesPerSecond?: number;
  etaMs?: number | null;
  startedAtMs?: number | null;
  endedAtMs?: number | null;
  [field: string]: unknown;
}

export interface TaskProgressEvent {
  taskId: string;
  sectorsDone: number;
  sectorsTotal: number;
  bytesPerSecond: number;
  etaMs: number | null;
  state: string;
}

export interface TaskApi {
  list(): Promise<TaskInfo[]> | TaskInfo[];
  get(id: string): Promise<TaskInfo> | TaskInfo;
  wait(id: string, options?: { timeoutMs?: number }): Promise<TaskInfo>;
  cancel?(id: string): Promise<unknown>;
  on?(event: 'progress', listener: (event: TaskProgressEvent) => void): unknown;
  off?(event: 'progress', listener: (event: TaskProgressEvent) => void): unknown;
}

export interface AuditEvent {
  seq?: number;
  timeMs?: number;
  action: string;
  [field: string]: unknown;
}

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
  createImportToken(instanceId: string, options?: { expiresInMs?: number; maxRetrievals?: number }): Promise<ImportTokenInfo>;
  getImportToken(instanceId: string): Promise<ImportTokenInfo>;
  importRootKeyWithToken(instanceId: string, options: { name: string; encryptedMaterial: Uint8Array }): Promise<RootKeyInfo>;
  getKey(crn: string): Promise<RootKeyInfo> | RootKeyInfo;
  listKeys(filter?: { instanceId?: string }): Promise<RootKeyInfo[]> | RootKeyInfo[];
  rotateKey?(crn: string, options?: { material?: Uint8Array; rewrapOnly?: boolean }): Promise<unknown[] | unknown>;
  enableKey(crn: string): Promise<RootKeyInfo>;
  disableKey(crn: string): Promise<RootKeyInfo>;
  deleteKey(crn: string, options?: { force?: boolean }): Promise<DeleteKeyResult>;
  setKeyForDeletion?(crn: string, ...rest: unknown[]): Promise<unknown>;
  setRotationPolicy(crn: string, policy: { intervalMs: number } | null): Promise<RootKeyInfo>;
  authorize(options: { sourceService: string; sourceInstance?: string; targetInstance: string; role: 'Reader' }): Promise<Authorization>;
  revoke(id: string): Promise<unknown>;
  listAuthorizations(): Promise<Authorization[]> | Authorization[];
  listRegistrations(filter?: { keyCrn?: string; resourceCrn?: string }): Promise<Registration[]> | Registration[];
}

export interface EngineApi {
  readonly hsm: HsmApi;
  readonly events: AuditApi;
  readonly tasks?: TaskApi;
  createVolume(options: { name: string; sizeBytes: number; sectorSize?: number; diskEncryptionKeyCrn?: string }): Promise<VolumeHandle>;
  openVolume(idOrName: string): Promise<VolumeHandle>;
  listVolumes(): VolumeInfo[];
  deleteVolume(id: string): Promise<unknown>;
  restoreVolume(id: string): Promise<unknown>;
  close(): Promise<void>;
}

export interface OpenOptions {
  dir: string;
  hsm: HsmSecret;
}

/** The module that exports `Engine`; a variable so the CLI builds before the engine exists. */
const ENGINE_MODULE = '../index.js';

export async function openEngine(options: OpenOptions): Promise<EngineApi> {
  let mod: { Engine?: { open(options: OpenOptions): Promise<EngineApi> } };
  try {
    mod = (await import(ENGINE_MODULE)) as typeof mod;
  } catch (error) {
    if ((error as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw error;
    throw new CliFailure('NOT_AVAILABLE', `the engine module (src/index.ts) is not in this build yet: ${(error as Error).message}`);
  }
  if (mod.Engine === undefined) throw new CliFailure('NOT_AVAILABLE', 'src/index.ts does not export Engine yet');
  return mod.Engine.open(options);
}
