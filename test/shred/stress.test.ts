/**
 * The shred stress harness (src/shred/stress.ts) briefly, with fixed seeds, with and without
 * rotations running, on both cipher backends in turn: every must-be-zero counter is zero, and the
 * run really exercised the lock (writes acknowledged before it, refused after it, rotations caught
 * running).
 */
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { MUST_BE_ZERO, runShredStress } from '../../src/shred/stress.js';
import { cipherBackends } from '../helpers/cipher-backends.js';

const backends = cipherBackends().filter((b) => b.skipReason === null).map((b) => b.backend);
const RUNS = [
  { seed: 11, rotate: false },
  { seed: 11, rotate: true },
  { seed: 29, rotate: false },
  { seed: 29, rotate: true },
  { seed: 4242, rotate: false },
  { seed: 4242, rotate: true },
];

describe('shred stress harness', () => {
  RUNS.forEach(({ seed, rotate }, i) => {
    // Each backend sees both kinds of run.
    const cipher = backends[(i + Math.floor(i / 2)) % backends.length]!;
    it(`seed ${seed}${rotate ? ', rotating' : ''} [${cipher}]: nothing after the lock, no hang, no plaintext, nothing after a restart`, async () => {
      const report = await runShredStress({
        seed,
        rotate,
        cipher,
        durationMs: 1500,
        volumes: 3,
        writers: 3,
        readers: 3,
        sizeBytes: 2 * 1024 * 1024,
        rotationWorkers: 1,
      });
      const zeros = Object.fromEntries(MUST_BE_ZERO.map((name) => [name, report[name]]));
      expect(zeros).toEqual(Object.fromEntries(MUST_BE_ZERO.map((name) => [name, 0])));
      expect(report.violations).toEqual([]);
      expect(report.ok).toBe(true);
      // The run did what it claims: I/O on both sides of the lock, measured on the engine's own lock.
      expect(report.lockObserved).toBe(true);
      expect(report.writesAcknowledgedBeforeLock).toBeGreaterThan(0);
      expect(report.readsReturnedDataBeforeLock).toBeGreaterThan(0);
      expect(report.writesRejectedAfterLock).toBeGreaterThan(0);
      expect(report.readsRejectedAfterLock).toBeGreaterThan(0);
      expect(Object.keys({ ...report.writesRejectedAfterLockByCode, ...report.readsRejectedAfterLockByCode }).every((c) => ['KEY_DESTROYED', 'VOLUME_LOCKED'].includes(c))).toBe(true);
      expect(report.lockEffectiveMs).toBeGreaterThanOrEqual(0);
      expect(report.lockEffectiveMs).toBeLessThanOrEqual(report.deleteKeyMs);
      expect(report.audit).toMatchObject({ recorded: true, force: true });
      expect(report.audit.affectedVolumes).toBe(report.audit.expectedVolumes);
      expect(report.scan.files).toBeGreaterThan(0);
      expect(report.scan.bytes).toBeGreaterThan(report.prefilledBytes); // the ciphertext is all there, and none of it plain
      expect(report.afterRestart).toMatchObject({ metadataReadable: true, dataReadable: 0 });
      expect(report.afterRestart!.volumesLocked).toBe(report.afterRestart!.volumes);
      if (rotate) {
        expect(report.rotation.runningAtDelete).toBeGreaterThan(0);
        expect(report.rotation.stoppedByShred).toBeGreaterThan(0);
        expect(report.rotation.notStopped).toBe(0);
        expect(Object.keys(report.rotation.errorCodes)).toEqual(['KEY_DESTROYED']);
      } else {
        expect(report.rotation.tasks).toBe(0);
      }
    });
  });

  it('refuses bad options with INVALID_ARGUMENT before touching anything', async () => {
    const ownDirs = () => readdirSync(tmpdir()).filter((name) => name.startsWith('blockvault-shred-')).sort();
    const before = ownDirs();
    await expect(runShredStress({ volumes: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(runShredStress({ sizeBytes: 100_000 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(runShredStress({ durationMs: 10 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    // No temporary directory was made for a refused run (tests in other files may add their own meanwhile).
    expect(ownDirs().filter((name) => !before.includes(name))).toEqual([]);
  });
});
