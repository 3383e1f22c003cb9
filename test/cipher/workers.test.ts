/**
 * Both backends inside worker threads (rotation runs the cipher on piscina workers): several
 * workers at once, each result equal to the main thread's.
 */
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { BACKENDS, cipherFor, randomKey } from './helpers.js';

// A .mjs entry that registers tsx itself: see the comment in fixtures/ts-worker-boot.mjs.
const BOOT = new URL('./fixtures/ts-worker-boot.mjs', import.meta.url);
const WORKER_TS = new URL('./fixtures/xts-worker.ts', import.meta.url).href;

interface WorkerResult {
  backend: string;
  ct: Uint8Array;
  asyncCt: Uint8Array;
  pt: Uint8Array;
}

function runWorker(workerData: Record<string, unknown>): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(BOOT, { workerData: { ...workerData, tsEntry: WORKER_TS } });
    worker.once('message', (msg: WorkerResult) => resolve(msg));
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`worker exited with code ${code}`));
    });
  });
}

describe.each(BACKENDS)('cipher in worker threads, %s backend', (backend) => {
  it('three concurrent workers produce the main thread bytes (sync, async, in place)', async () => {
    const main = cipherFor(backend);
    const jobs = [
      { key: randomKey(), firstSector: 0n, sectorSize: 4096, data: new Uint8Array(16 * 4096).fill(3) },
      { key: randomKey(), firstSector: 2n ** 40n + 7n, sectorSize: 512, data: Uint8Array.from({ length: 64 * 512 }, (_, i) => i * 31) },
      { key: randomKey(), firstSector: 2n ** 61n - 1000n, sectorSize: 4096, data: new Uint8Array(4096).fill(0xa5) },
    ];
    const results = await Promise.all(jobs.map((job) => runWorker({ backend, ...job })));
    results.forEach((result, i) => {
      const job = jobs[i]!;
      const expected = Buffer.from(main.encryptSectors(job.key, job.firstSector, job.sectorSize, job.data));
      expect(result.backend).toBe(backend);
      expect(Buffer.from(result.ct).equals(expected)).toBe(true);
      expect(Buffer.from(result.asyncCt).equals(expected)).toBe(true);
      expect(Buffer.from(result.pt).equals(Buffer.from(job.data))).toBe(true);
    });
  });
});
