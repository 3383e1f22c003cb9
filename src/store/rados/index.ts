/**
 * The RADOS object layer (issue 16): Ceph objects through librados, for the RADOS sector store.
 * RadosCluster.connect -> cluster.openPool(name) -> read / writeFull / compareAndWrite / remove / stat.
 */
export { RadosCluster } from './cluster.js';
export type { RadosConnectOptions } from './cluster.js';
export { RadosPool } from './pool.js';
export type { RadosPoolOptions, RadosObjectStat, CompareExpectation, CompareAndWriteOutcome, RadosPoolStats } from './pool.js';
export { OBJECT_BYTES_MAX, OID_CHARS_MAX, POOL_NAME_CHARS_MAX, OPS_IN_FLIGHT_LIMIT, OPS_QUEUED_LIMIT, BYTES_IN_FLIGHT_LIMIT, TIMEOUT_MS_MIN, TIMEOUT_MS_MAX } from './limits.js';
