/**
 * The test cluster itself (test/helpers/ceph.ts): it comes up well within 30 s, every daemon is a
 * child of this process, and stop() leaves no daemon and no directory behind.
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cephCheck, startCephCluster } from '../helpers/ceph.js';

describe.skipIf(!cephCheck.ok)(`test Ceph cluster (1 mon, 3 memstore OSDs)${cephCheck.ok ? '' : ` (skipped: ${cephCheck.reason})`}`, () => {
  it('comes up healthy within 30 s and stops by pid, removing its directory', async () => {
    const cluster = await startCephCluster();
    let pids: number[] = [];
    try {
      console.log(`ceph test cluster up in ${Math.round(cluster.startMs)} ms`);
      expect(cluster.startMs).toBeLessThan(30_000);
      pids = [...cluster.runningOsds().values()];
      expect(pids).toHaveLength(3);
      expect((await cluster.ceph(['health'])).trim()).toBe('HEALTH_OK');
      const pool = JSON.parse(await cluster.ceph(['osd', 'pool', 'get', 'bv-test', 'all', '-f', 'json'])) as { size: number; min_size: number };
      expect([pool.size, pool.min_size]).toEqual([3, 2]);
      await cluster.killOsd(1);
      expect([...cluster.runningOsds().keys()]).toEqual([0, 2]);
      await cluster.waitOsdsUp(2, 20_000);
    } finally {
      await cluster.stop();
    }
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
    expect(existsSync(cluster.dir)).toBe(false);
  });
});
