/**
 * Mechanisms and object templates (PKCS#11 v2.40 / 3.0), in one place so that every object the
 * provider makes has exactly the attributes the issue and DESIGN.md ask for.
 */
import type { Template } from 'pkcs11js';
import type { Pkcs11Binding } from './binding.js';

/**
 * RFC 5649 AES key wrap with padding. PKCS#11 3.0 calls it CKM_AES_KEY_WRAP_KWP = 0x210B, but
 * SoftHSM 2.6.1 implements RFC 5649 under 0x210A (its CKM_AES_KEY_WRAP_PAD) and answers 0x210B
 * with CKR_MECHANISM_INVALID (measured). 0x210A is the default; `kwpMechanism` overrides it.
 */
export const KWP_MECHANISM_DEFAULT = 0x210a;
export const CKM_SHA256_HMAC = 0x251;

/**
 * SoftHSM 2.6.1's KWP output differs from RFC 5649 for plaintexts whose length is not a multiple
 * of 8 (measured: a 60-byte key wraps to other bytes than OpenSSL's id-aes256-wrap-pad). Data keys
 * are 64 bytes, so the provider refuses any length that is not a multiple of 8 rather than
 * produce a wrapped key that no other implementation unwraps.
 */
export const DATA_KEY_BYTES_MIN = 16;
/** Data keys are 64 bytes (AES-256-XTS); a bound well above that keeps buffers small. */
export const DATA_KEY_BYTES_MAX = 4096;
/** KWP adds one 64-bit block (the alternative IV) to a padded plaintext. */
export const KWP_OVERHEAD_BYTES = 8;
export { ROOT_KEY_BYTES } from '../provider.js';
export const METADATA_KEY_BYTES = 32;

/** Labels of the objects this provider owns, scoped by the engine directory's namespace. */
export const labels = {
  prefix: (namespace: string): string => `blockvault/${namespace}/`,
  rootKey: (namespace: string, keyId: string, version: number): string => `blockvault/${namespace}/root/${keyId}/v${version}`,
  metadataKey: (namespace: string): string => `blockvault/${namespace}/metadata`,
  transportKey: (namespace: string, id: string): string => `blockvault/${namespace}/transport/${id}`,
};

/**
 * A root key: AES-256 on the token, sensitive and never extractable, for wrapping and unwrapping
 * only (no CKA_ENCRYPT/DECRYPT, so it cannot be used as a raw AES oracle; no SIGN/DERIVE).
 * CKA_PRIVATE makes it invisible (and SoftHSM encrypts it at rest) until the user logs in.
 */
export function rootKeyAttributes(p: Pkcs11Binding, label: string): Template {
  return [
    { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
    { type: p.CKA_KEY_TYPE, value: p.CKK_AES },
    { type: p.CKA_TOKEN, value: true },
    { type: p.CKA_PRIVATE, value: true },
    { type: p.CKA_SENSITIVE, value: true },
    { type: p.CKA_EXTRACTABLE, value: false },
    { type: p.CKA_MODIFIABLE, value: false },
    { type: p.CKA_WRAP, value: true },
    { type: p.CKA_UNWRAP, value: true },
    { type: p.CKA_ENCRYPT, value: false },
    { type: p.CKA_DECRYPT, value: false },
    { type: p.CKA_SIGN, value: false },
    { type: p.CKA_VERIFY, value: false },
    { type: p.CKA_DERIVE, value: false },
    { type: p.CKA_LABEL, value: label },
  ];
}

/** The metadata key: a generic secret that only computes HMAC-SHA256 inside the token. */
export function metadataKeyAttributes(p: Pkcs11Binding, label: string): Template {
  return [
    { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
    { type: p.CKA_KEY_TYPE, value: p.CKK_GENERIC_SECRET },
    { type: p.CKA_VALUE_LEN, value: METADATA_KEY_BYTES },
    { type: p.CKA_TOKEN, value: true },
    { type: p.CKA_PRIVATE, value: true },
    { type: p.CKA_SENSITIVE, value: true },
    { type: p.CKA_EXTRACTABLE, value: false },
    { type: p.CKA_MODIFIABLE, value: false },
    { type: p.CKA_SIGN, value: true },
    { type: p.CKA_VERIFY, value: false },
    { type: p.CKA_DERIVE, value: false },
    { type: p.CKA_LABEL, value: label },
  ];
}

/**
 * A data key as a session object, so the token can wrap it: never on the token (CKA_TOKEN false),
 * extractable only by wrapping. `sensitive` false only for the object an unwrap reads back.
 * No CKA_VALUE_LEN: SoftHSM 2.6.1 refuses it in an unwrap template (CKR_ATTRIBUTE_READ_ONLY).
 */
export function dataKeyAttributes(p: Pkcs11Binding, options: { sensitive: boolean; value?: Buffer }): Template {
  const template: Template = [
    { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
    { type: p.CKA_KEY_TYPE, value: p.CKK_GENERIC_SECRET },
    { type: p.CKA_TOKEN, value: false },
    { type: p.CKA_PRIVATE, value: true },
    { type: p.CKA_SENSITIVE, value: options.sensitive },
    { type: p.CKA_EXTRACTABLE, value: true },
    { type: p.CKA_ENCRYPT, value: false },
    { type: p.CKA_DECRYPT, value: false },
    { type: p.CKA_SIGN, value: false },
    { type: p.CKA_VERIFY, value: false },
    { type: p.CKA_WRAP, value: false },
    { type: p.CKA_UNWRAP, value: false },
    { type: p.CKA_DERIVE, value: false },
  ];
  if (options.value !== undefined) template.push({ type: p.CKA_VALUE, value: options.value });
  return template;
}

/**
 * An import token's RSA private key, PKCS#8 DER as a private data object. SoftHSM 2.6.1 fails
 * RSA-OAEP with SHA-256 (only SHA-1 works), so the provider decrypts import material with
 * node:crypto and keeps the private key in the token as a private object (encrypted under the
 * user PIN at rest, readable only after login) rather than as a file.
 */
export function transportKeyAttributes(p: Pkcs11Binding, label: string, der: Buffer): Template {
  return [
    { type: p.CKA_CLASS, value: p.CKO_DATA },
    { type: p.CKA_TOKEN, value: true },
    { type: p.CKA_PRIVATE, value: true },
    { type: p.CKA_MODIFIABLE, value: false },
    { type: p.CKA_APPLICATION, value: 'blockvault import token' },
    { type: p.CKA_LABEL, value: label },
    { type: p.CKA_VALUE, value: der },
  ];
}
