export { SoftHsm, HSM_SERVICE, PLATFORM_INSTANCE_ID, STORAGE_SERVICE_NAME, type SoftHsmOptions } from './soft-hsm.js';
export type { KeyProvider, KeyVersionRef, ImportMaterial, ProviderInventory } from './provider.js';
export { SoftwareKeyProvider } from './software-provider.js';
export { HSM_DB_NAME } from './metadata-store.js';
export { DUAL_AUTH_WINDOW_MS } from './key-info.js';
export { ROTATION_INTERVAL_MS_MIN } from './validate.js';
export { kwpWrap, kwpUnwrap, KeyUnwrapError } from './kwp.js';
export * from './types.js';
