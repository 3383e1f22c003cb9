/**
 * blockvault: an embeddable encrypted block-storage engine (DESIGN.md). The public API.
 */
export { Engine, STORAGE_SERVICE, DEFAULT_RETENTION_MS, DEFAULT_CLUSTER_BYTES } from './engine.js';
export type { EngineOptions, CreateVolumeOptions, HsmSecretOptions, EngineHsm } from './engine.js';
export type { Pkcs11Options } from './hsm/pkcs11/options.js';
export type { TaskRecord, TaskState, TaskProgressEvent, RotationOptions } from './rotation/index.js';
export { Volume, ALLOCATION_CLUSTERS_MAX } from './volume/volume.js';
export type { AllocationExtent, WriteOptions, WriteZeroesOptions } from './volume/volume.js';
export { nbdUri, DEFAULT_NBD_HOST, PAYLOAD_BYTES_MAX as NBD_PAYLOAD_BYTES_MAX } from './nbd/index.js';
export type { NbdListenOptions, NbdAddress, NbdExportOptions, NbdServeOptions, NbdServerHandle, NbdExportInfo, ConnectionEvent as NbdConnectionEvent } from './nbd/index.js';
export type { VolumeInfo, VolumeState } from './volume/record.js';
export { XtsCipher } from './cipher/index.js';
export type { XtsCipherOptions, SectorNumber, CipherBackendName } from './cipher/index.js';
export { BlockvaultError, ERROR_CODES, isBlockvaultError } from './errors.js';
export type { ErrorCode } from './errors.js';
export { ManualClock, systemClock, MS_PER_DAY, MS_PER_HOUR } from './clock.js';
export type { Clock } from './clock.js';
export { KeyState } from './hsm/types.js';
export type {
  KeyStateName,
  RootKeyInfo,
  RootKeyVersionInfo,
  HsmInstanceInfo,
  Authorization,
  Registration,
  WrapResult,
  UnwrapResult,
  CallerContext,
  DeleteKeyResult,
  ImportTokenInfo,
  RotationPolicy,
} from './hsm/types.js';
export { parseCrn, formatCrn } from './crn.js';
export type { Crn } from './crn.js';
