/**
 * The key providers the HSM and engine suites run against: the software keystore and the PKCS#11
 * provider on a SoftHSM2 token made for the test process (test/helpers/softhsm.ts). Without
 * SoftHSM2 the PKCS#11 cases skip and their title says why; in CI (BLOCKVAULT_REQUIRE_TOOLS=1)
 * softHsmCheck throws when this module loads, so every file that runs suites per provider fails
 * instead of skipping.
 */
import { describe } from 'vitest';
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

/**
 * One `describe` per key provider, titled `<name> (<provider>)`, whose body `body(provider)`
 * declares the cases. A provider that cannot run here skips its cases, and the title says why;
 * `skipReason` (a cipher backend that is missing, say) skips every provider's cases the same way.
 */
export function forEachProvider(name: string, body: (provider: ProviderName) => void, skipReason: string | null = null): void {
  for (const { provider, available, title } of PROVIDERS) {
    const skipped = skipReason !== null ? ` (skipped: ${skipReason})` : '';
    describe.skipIf(!available || skipReason !== null)(`${name} (${title})${skipped}`, () => body(provider));
  }
}
