import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MS_PER_DAY, MS_PER_HOUR } from '../../src/clock.js';
import { STORAGE, expectCode, setupKey, forEachProviderHarness } from './helpers.js';

// Every case runs against each key provider, on a fresh harness per test (test/hsm/helpers.ts).
forEachProviderHarness('rotation policies', (h) => {
  describe('rotation policies and the scheduler', () => {
    it('accepts intervals of at least one hour and refuses shorter ones with INVALID_ARGUMENT', async () => {
      const { key } = await setupKey(h.hsm);
      for (const bad of [{ intervalMs: MS_PER_HOUR - 1 }, { intervalMs: 0 }, { intervalMs: -5 }, { intervalMs: 1.5 * MS_PER_HOUR + 0.5 }, {}, 'monthly']) {
        const error = await expectCode(h.hsm.setRotationPolicy(key.crn, bad as never), 'INVALID_ARGUMENT');
        expect(error.message).toMatch(/one hour/);
      }
      expect((await h.hsm.setRotationPolicy(key.crn, { intervalMs: MS_PER_HOUR })).rotationPolicy).toEqual({ intervalMs: MS_PER_HOUR });
      expect((await h.hsm.setRotationPolicy(key.crn, null)).rotationPolicy).toBeNull();
      const writes = h.audit.list({ action: 'hs-crypto.policies.write', keyCrn: key.crn });
      expect(writes.filter((e) => e.outcome === 'success')).toHaveLength(2);
      expect(writes.filter((e) => e.outcome === 'failure')).toHaveLength(6);
    });

    it('rotates due keys by the clock, counting from the last rotation', async () => {
      const { key } = await setupKey(h.hsm);
      const tasksFor: string[] = [];
      h.hsm.setHooks({ onRotated: async (info) => (tasksFor.push(info.crn), [`task-${info.version}`]) });
      await h.hsm.setRotationPolicy(key.crn, { intervalMs: 30 * MS_PER_DAY });
      expect(await h.hsm.runScheduler()).toEqual({ rotated: [], skipped: [], failed: [], nextDueAtMs: key.createdAtMs + 30 * MS_PER_DAY });

      h.clock.advanceMs(30 * MS_PER_DAY - 1);
      expect((await h.hsm.runScheduler()).rotated).toEqual([]);
      h.clock.advanceMs(1);
      const run = await h.hsm.runScheduler();
      expect(run.rotated).toEqual([{ keyCrn: key.crn, version: 2, tasks: ['task-2'] }]);
      expect(run.nextDueAtMs).toBe(h.clock.nowMs() + 30 * MS_PER_DAY);
      expect(tasksFor).toEqual([key.crn]);
      // Not due again right away, however often the scheduler runs.
      expect((await h.hsm.runScheduler()).rotated).toEqual([]);
      // A manual rotation resets the interval.
      h.clock.advanceMs(20 * MS_PER_DAY);
      await h.hsm.rotateKey(key.crn);
      h.clock.advanceMs(20 * MS_PER_DAY);
      expect((await h.hsm.runScheduler()).rotated).toEqual([]);
      h.clock.advanceMs(10 * MS_PER_DAY);
      expect((await h.hsm.runScheduler()).rotated.map((r) => r.version)).toEqual([4]);
      const rotations = h.audit.list({ action: 'hs-crypto.secrets.rotate', keyCrn: key.crn });
      expect(rotations.map((e) => [e.initiator, e.details.trigger])).toEqual([
        ['rotation-scheduler', 'policy'],
        ['operator', 'manual'],
        ['rotation-scheduler', 'policy'],
      ]);
    });

    it('skips imported keys (they rotate only with new material) and keys that are not Active, and says so', async () => {
      const { instance, key } = await setupKey(h.hsm);
      h.clock.advanceMs(1); // distinct creation times: "oldest first" is otherwise a tie in random id order
      const imported = await h.hsm.importRootKey(instance.id, { name: 'byok', material: randomBytes(32), rotationPolicy: { intervalMs: MS_PER_HOUR } });
      await h.hsm.setRotationPolicy(key.crn, { intervalMs: MS_PER_HOUR });
      await h.hsm.disableKey(key.crn);
      h.clock.advanceMs(2 * MS_PER_HOUR);
      const run = await h.hsm.runScheduler();
      expect(run.rotated).toEqual([]);
      // Oldest key first.
      expect(run.skipped).toEqual([
        { keyCrn: key.crn, reason: expect.stringMatching(/Suspended/) },
        { keyCrn: imported.crn, reason: expect.stringMatching(/imported key.*new material/) },
      ]);
      expect(run.skipped).toHaveLength(2);
      expect((await h.hsm.getKey(imported.crn)).version).toBe(1);
      await h.hsm.enableKey(key.crn);
      expect((await h.hsm.runScheduler()).rotated.map((r) => r.keyCrn)).toEqual([key.crn]);
    });

    it('reports a failing hook per key and keeps going', async () => {
      const { key } = await setupKey(h.hsm);
      await h.hsm.setRotationPolicy(key.crn, { intervalMs: MS_PER_HOUR });
      h.hsm.setHooks({
        onRotated: async () => {
          throw new Error('task store unavailable');
        },
      });
      h.clock.advanceMs(MS_PER_HOUR);
      const run = await h.hsm.runScheduler();
      expect(run.failed).toEqual([{ keyCrn: key.crn, code: 'INTERNAL', message: 'task store unavailable' }]);
      // The new version exists even though the hook failed; wrap uses it.
      expect((await h.hsm.wrap(key.crn, randomBytes(64), STORAGE)).keyVersion).toBe(2);
    });

    it('policies survive a reopen', async () => {
      const { key } = await setupKey(h.hsm);
      await h.hsm.setRotationPolicy(key.crn, { intervalMs: 90 * MS_PER_DAY });
      await h.reopen();
      expect((await h.hsm.getKey(key.crn)).rotationPolicy).toEqual({ intervalMs: 90 * MS_PER_DAY });
      h.clock.advanceMs(90 * MS_PER_DAY);
      expect((await h.hsm.runScheduler()).rotated.map((r) => r.version)).toEqual([2]);
    });
  });
});
