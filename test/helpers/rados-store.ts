/**
 * Volumes on RADOS in tests: whether this machine can run them (the addon's RADOS binding, the
 * Ceph packages), and the Engine.open store option for a test cluster (test/helpers/ceph.ts).
 * Outside CI a missing part skips with its reason; in CI (CI or BLOCKVAULT_REQUIRE_TOOLS set)
 * it fails the file, so the RADOS tests can never silently not run there.
 */
import { nativeAddon } from '../../src/cipher/native-binding.js';
import type { VolumeStoreOptions } from '../../src/store/volume-store.js';
import { cephCheck, type CephCluster } from './ceph.js';

/** The pool test clusters create (test/helpers/ceph.ts). */
export const TEST_POOL = 'bv-test';
/** Long enough for the re-peering after one OSD dies (about 1.3 s measured), short enough to wait for. */
export const TEST_RADOS_TIMEOUT_MS = 6000;

function skipReasonNow(): string {
  const addon = nativeAddon().addon as unknown as Record<string, unknown> | undefined;
  if (typeof addon?.['RadosClient'] !== 'function') return 'the native addon has no RADOS binding; npm run build:native';
  return cephCheck.ok ? '' : cephCheck.reason;
}

/** '' when RADOS tests can run here; throws in CI when they cannot. */
export function radosSkipReason(): string {
  const reason = skipReasonNow();
  const mustRun = Boolean(process.env['CI']) || process.env['BLOCKVAULT_REQUIRE_TOOLS'] === '1';
  if (reason !== '' && mustRun) throw new Error(`the RADOS tests must run here (CI) but cannot: ${reason}`);
  return reason;
}

/** Engine.open's store option for a pool of the test cluster. */
export function radosStoreOf(ceph: CephCluster, pool = TEST_POOL): VolumeStoreOptions {
  return { rados: { conf: ceph.confPath, user: 'admin', timeoutMs: TEST_RADOS_TIMEOUT_MS, pool } };
}
