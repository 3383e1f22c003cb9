/**
 * The cipher backends every suite runs against (DESIGN.md, "Style": each suite on every backend).
 * 'native' needs the built addon (`npm run build:native`); when it is missing the native suites
 * are skipped with a visible reason, unless BLOCKVAULT_REQUIRE_NATIVE=1 (CI) makes that a failure.
 */
import { nativeCipherStatus } from '../../src/cipher/index.js';

export type BackendName = 'native' | 'ts';

export interface BackendCase {
  backend: BackendName;
  /** Why this backend cannot run here, or null. */
  skipReason: string | null;
}

export function cipherBackends(): BackendCase[] {
  const status = nativeCipherStatus();
  const required = process.env.BLOCKVAULT_REQUIRE_NATIVE === '1';
  const nativeSkip = status.available || required ? null : `native addon unavailable: ${status.error ?? 'unknown'}`;
  return [
    { backend: 'ts', skipReason: null },
    { backend: 'native', skipReason: nativeSkip },
  ];
}
