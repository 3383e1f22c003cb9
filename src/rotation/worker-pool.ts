import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { workerScript } from '../util/worker-script.js';
import type { ReencryptBatchRequest, ReencryptBatchResult, RotationWorkerData } from './batch-protocol.js';
import { defaultClusterOpsUrl, loadClusterOps, toModuleUrl } from './cluster-ops.js';

export interface RotationPoolOptions {
  /** Worker threads; default os.availableParallelism(). */
  workers?: number;
  /** The ClusterOps module (file URL or absolute path); default the volume's format and src/cipher. */
  clusterOpsModule?: string;
  /** Cipher backend passed to ClusterOps.createCipher: 'native', 'ts' or undefined (default). */
  backend?: string;
  /** Idle threads exit after this long; the pool starts them again on demand. */
  idleTimeoutMs?: number;
  /**
   * How much lower than the process the worker threads run (Unix nice increment, 0..19; default
   * ROTATION_NICE_INCREMENT). Re-encryption is background work: the threads that answer I/O and
   * lock volumes for a cryptoshred must win the CPU when cores are scarce.
   */
  niceIncrement?: number;
}

/**
 * The default nice increment of rotation threads. On Linux a thread's nice value is its own
 * (piscina calls nice() from inside each worker thread, through its optional @napi-rs/nice), so
 * only the workers are lowered; the main thread keeps the process's priority. Measured by
 * bench/shred-lock.bench.ts: with workers at the process's priority, a rotation running beside a
 * cryptoshred put the lock's worst runs above 10 ms on 2 cores.
 */
export const ROTATION_NICE_INCREMENT = 10;

/** A piscina pool of rotation workers shared by every task of an engine. */
export class RotationPool {
  readonly size: number;
  private readonly piscina: Piscina<unknown, unknown>;

  private constructor(piscina: Piscina<unknown, unknown>, size: number) {
    this.piscina = piscina;
    this.size = size;
  }

  static defaultWorkers(): number {
    return Math.max(1, availableParallelism());
  }

  static async create(options: RotationPoolOptions = {}): Promise<RotationPool> {
    const size = options.workers ?? RotationPool.defaultWorkers();
    if (!Number.isInteger(size) || size < 1 || size > 256) throw new RangeError(`rotation workers must be an integer in 1..256, got ${size}`);
    const niceIncrement = options.niceIncrement ?? ROTATION_NICE_INCREMENT;
    if (!Number.isInteger(niceIncrement) || niceIncrement < 0 || niceIncrement > 19) throw new RangeError(`rotation niceIncrement must be an integer in 0..19, got ${niceIncrement}`);
    const opsModuleUrl = options.clusterOpsModule === undefined ? defaultClusterOpsUrl() : toModuleUrl(options.clusterOpsModule);
    // Load the ops module (and with it the cipher's native addon) on the main thread first: a
    // napi addon first loaded by a worker thread is unloaded when that thread exits, and loading
    // it here also surfaces a broken module before any task starts.
    await loadClusterOps(opsModuleUrl);
    const script = workerScript(import.meta.url, 'rotation-worker');
    const workerData: RotationWorkerData = { opsModuleUrl, backend: options.backend };
    const piscina = new Piscina<unknown, unknown>({
      filename: script.filename,
      execArgv: script.execArgv,
      minThreads: 0,
      maxThreads: size,
      idleTimeout: options.idleTimeoutMs ?? 30_000,
      concurrentTasksPerWorker: 1,
      workerData,
      // Windows has no nice values (piscina would map it to thread priorities): left alone there.
      niceIncrement: process.platform === 'win32' ? 0 : niceIncrement,
      name: 'default',
    });
    return new RotationPool(piscina, size);
  }

  /** `request.clusters` and `request.keys` are transferred: detached on this thread from the call on. */
  async reencrypt(request: ReencryptBatchRequest): Promise<ReencryptBatchResult> {
    return (await this.piscina.run(request, { transferList: [...request.clusters, request.keys] })) as ReencryptBatchResult;
  }

  /** Tests: ask a worker for its ClusterOps.probe() report. */
  async probe(): Promise<unknown> {
    return this.piscina.run({ kind: 'probe' });
  }

  /** Start every thread now (they otherwise start on demand), e.g. before timing a rotation. */
  async warmUp(): Promise<void> {
    await Promise.all(Array.from({ length: this.size }, () => this.piscina.run({ kind: 'probe' })));
  }

  async destroy(): Promise<void> {
    await this.piscina.destroy();
  }
}
