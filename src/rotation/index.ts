export { TaskManager, TaskWaitTimeoutError, validateRotationOptions, type RotationOptions, type TaskManagerOptions, type WaitOptions } from './task-manager.js';
export { RotationRunner, DEFAULT_RUNNER_OPTIONS, type RunnerOptions, type RunnerStats } from './runner.js';
export { RotationPool, type RotationPoolOptions } from './worker-pool.js';
export { TaskStore } from './task-store.js';
export type { ClusterOps, RotationCipher } from './cluster-ops.js';
export * from './task-types.js';
export type { ClusterSnapshot, ReencryptTarget, ReencryptClusterFn } from '../volume/reencrypt-contract.js';
