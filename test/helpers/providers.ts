/**
 * The key providers the HSM and engine suites run against: the software keystore and the PKCS#11
 * provider on a SoftHSM2 token made for the test process (test/helpers/softhsm.ts). Without
 * SoftHSM2 the PKCS#11 cases skip and their title says why; in CI (BLOCKVAULT_REQUIRE_TOOLS=1)
 * they must run.
 */
import { softHsmCheck } from './softhsm.js';

export type ProviderName = 'software' | 'pkcs11';

export interface ProviderCase {
  provider: ProviderName;
  available: boolean;
  /** A describe title: the provider, and why it skips when it does. */
  title: string;
}

export const PROVIDERS: ProviderCase[] = [
  { provider: 'software', available: true, title: 'software provider' },
  { provider: 'pkcs11', available: softHsmCheck.ok, title: softHsmCheck.ok ? 'PKCS#11 provider (SoftHSM2)' : `PKCS#11 provider (skipped: ${softHsmCheck.reason})` },
];
