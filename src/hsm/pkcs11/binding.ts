import { createRequire } from 'node:module';
import { BlockvaultError } from '../../errors.js';

/**
 * The pkcs11js binding (PeculiarVentures, a thin N-API layer over the PKCS#11 C API), loaded
 * lazily: an engine on the software provider never needs its native build, so a machine where
 * it did not build still runs everything else.
 */
export type Pkcs11Binding = typeof import('pkcs11js');

let binding: Pkcs11Binding | null = null;

export function loadBinding(): Pkcs11Binding {
  if (binding !== null) return binding;
  try {
    binding = createRequire(import.meta.url)('pkcs11js') as Pkcs11Binding;
  } catch (error) {
    throw new BlockvaultError(
      'HSM_UNAVAILABLE',
      `the pkcs11js binding does not load (${(error as Error).message}); run \`npm rebuild pkcs11js\` (the package's install script does it)`,
      undefined,
      { cause: error },
    );
  }
  return binding;
}
