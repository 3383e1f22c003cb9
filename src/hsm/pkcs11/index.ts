export { Pkcs11KeyProvider, type Pkcs11ProviderOpenOptions } from './provider.js';
export { resolvePkcs11Options, type Pkcs11Options, type ResolvedPkcs11Options } from './options.js';
export { PKCS11_MARKER_FILE_NAME, pkcs11MarkerExists } from './marker.js';
export { KWP_MECHANISM_DEFAULT } from './mechanisms.js';
