/**
 * Crash safety (issue 4): a child process writes and flushes a deterministic sequence, reporting
 * each flush; it is SIGKILLed in the middle of writes; after reopening, every flushed write is
 * there and every sector is exactly one version of itself (never half old, half new).
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { Engine } from '../../src/engine.js';
import { cipherBackends } from '../helpers/cipher-backends.js';
import { testHsmOptions } from '../helpers/engine.js';
import { runChildUntilKilled } from '../helpers/kill-child.js';
import { forEachProvider, type ProviderName } from '../helpers/providers.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { crashOp } from './fixtures/crash-ops.js';

afterAll(() => removeTempDirs());

const WRITER = fileURLToPath(new URL('./fixtures/crash-writer.ts', import.meta.url));
const SIZE = 1024 * 1024;
const BATCH = 8;

interface ChildRun {
  flushedOps: number;
}

/** Run the writer until it has reported `flushesBeforeKill` flushes, then SIGKILL it mid-batch. */
async function runAndKill(args: string[], backend: string, provider: ProviderName, flushesBeforeKill: number): Promise<ChildRun> {
  let flushedOps = 0;
  let flushes = 0;
  await runChildUntilKilled(WRITER, args, {
    name: 'writer',
    // SOFTHSM2_CONF is in process.env once the token exists (test/helpers/softhsm.ts).
    env: { ...process.env, BLOCKVAULT_CIPHER: backend, ...(provider === 'pkcs11' ? { BLOCKVAULT_TEST_HSM: JSON.stringify(testHsmOptions(provider)) } : {}) },
    onLine: (line, control) => {
      const match = /^flushed (\d+)$/.exec(line);
      if (match === null) return;
      flushedOps = Number(match[1]);
      // Somewhere inside the next batch's writes.
      if (++flushes === flushesBeforeKill) control.kill(Math.floor(Math.random() * 4));
    },
  });
  return { flushedOps };
}

/**
 * Every sector must equal its content after ops 0..j for some j >= flushedOps (the flushed ones
 * all applied, the in-flight batch applied up to some point), sector by sector.
 */
function verify(actual: Buffer, seed: number, flushedOps: number, sectorSize: number): { matchedUpTo: number } {
  const model = Buffer.alloc(SIZE);
  for (let i = 0; i < flushedOps; i++) {
    const op = crashOp(seed, i, SIZE);
    op.data.copy(model, op.offset);
  }
  const sectors = SIZE / sectorSize;
  const matched = new Array<boolean>(sectors).fill(false);
  let matchedUpTo = flushedOps;
  for (let j = flushedOps; j <= flushedOps + 4 * BATCH; j++) {
    if (j > flushedOps) {
      const op = crashOp(seed, j - 1, SIZE);
      op.data.copy(model, op.offset);
    }
    for (let s = 0; s < sectors; s++) {
      if (matched[s]) continue;
      if (actual.subarray(s * sectorSize, (s + 1) * sectorSize).equals(model.subarray(s * sectorSize, (s + 1) * sectorSize))) {
        matched[s] = true;
        matchedUpTo = Math.max(matchedUpTo, j);
      }
    }
  }
  const bad = matched.findIndex((m) => !m);
  expect(bad, `sector ${bad} matches no version at or after the last flush`).toBe(-1);
  return { matchedUpTo };
}

for (const { backend, skipReason } of cipherBackends()) {
  forEachProvider(`crash safety [${backend}]`, (provider) => {
    /** The software keystore under a fresh key file, or the process's SoftHSM2 token. */
    const hsmOf = (keyFile: string) => (provider === 'pkcs11' ? testHsmOptions(provider) : { keyFile });
    for (const sectorSize of [4096, 512] as const) {
      it(`keeps every flushed write through SIGKILL (${sectorSize}-byte sectors)`, async () => {
        for (const seed of [1, 2]) {
          const dir = makeTempDir('bv-crash-');
          const keyFile = join(dir, 'hsm.key');
          writeFileSync(keyFile, randomBytes(32), { mode: 0o600 });
          const setup = await Engine.open({ dir: join(dir, 'engine'), hsm: hsmOf(keyFile), purgeIntervalMs: 0, cipher: backend });
          await setup.createVolume({ name: 'crash', sizeBytes: SIZE, sectorSize });
          await setup.close();

          const run = await runAndKill([join(dir, 'engine'), keyFile, 'crash', String(seed), String(BATCH)], backend, provider, 6 + seed * 3);
          expect(run.flushedOps).toBeGreaterThanOrEqual(6 * BATCH);

          const engine = await Engine.open({ dir: join(dir, 'engine'), hsm: hsmOf(keyFile), purgeIntervalMs: 0, cipher: backend });
          try {
            const vol = await engine.openVolume('crash');
            const actual = Buffer.from(await vol.read(0, SIZE));
            verify(actual, seed, run.flushedOps, sectorSize);
            // The check has teeth: a sector half old, half new, or one flushed write missing, fails it.
            const op = crashOp(seed, run.flushedOps - 1, SIZE);
            const torn = Buffer.from(actual);
            torn.fill(0xee, op.offset, op.offset + Math.min(op.data.length, 300));
            expect(() => verify(torn, seed, run.flushedOps, sectorSize)).toThrow();
            // The volume is fully usable after the crash.
            await vol.write(5, Buffer.from('after'));
            expect(Buffer.from(await vol.read(5, 5)).toString()).toBe('after');
          } finally {
            await engine.close();
          }
        }
      });
    }
  }, skipReason);
}
