/**
 * `useCephCluster`: the test cluster of test/helpers/ceph.ts as vitest hooks. Kept apart from
 * ceph.ts so that benchmarks and scripts can start a cluster without importing vitest (which
 * refuses to load outside its runner).
 */
import { afterAll, beforeAll } from 'vitest';
import { startCephCluster, type CephCluster, type CephClusterOptions } from './ceph.js';

/**
 * One cluster for a test file: started in beforeAll (the hook gets the bring-up's own time
 * budget) and stopped in afterAll, whatever the tests did. The returned getter throws before
 * the cluster is up.
 */
export function useCephCluster(options: CephClusterOptions = {}): () => CephCluster {
  let cluster: CephCluster | undefined;
  beforeAll(async () => {
    cluster = await startCephCluster(options);
  }, (options.startTimeoutMs ?? 60_000) + 10_000);
  afterAll(async () => {
    await cluster?.stop();
  });
  return () => {
    if (cluster === undefined) throw new Error('the Ceph cluster is not running (its beforeAll failed or has not run)');
    return cluster;
  };
}
