/**
 * src/cipher: AES-256-XTS (IEEE 1619-2007) for blockvault's sectors, dm-crypt `aes-xts-plain64`
 * compatible. Two backends with byte-identical output: the Rust addon (native/) and a pure-TS
 * fallback on @noble/ciphers' AES core.
 *
 * Environment:
 *   BLOCKVAULT_CIPHER=native|ts      the backend XtsCipher.create() picks when not told one
 *   BLOCKVAULT_NATIVE_ADDON=<file>   load the addon from this file instead of native/blockvault-native.node
 *   BLOCKVAULT_XTS_PATH=<path>       benchmarks and tests: force the addon's AES code path for the process
 */
export { XtsCipher, CIPHER_ENV } from './xts.js';
export type { XtsCipherOptions, SectorNumber, XtsKeyHandle } from './xts.js';
export type { CipherBackendName } from './backend.js';
export { nativeCipherStatus } from './native-binding.js';
export type { NativeCipherStatus, NativeXtsPath } from './native-binding.js';
export { SECTOR_SIZES, XTS_KEY_BYTES } from './validate.js';
