/**
 * Shared test setup for the cipher suites.
 *
 * Every suite runs against both backends. BLOCKVAULT_REQUIRE_NATIVE decides what happens when
 * the native addon cannot load, as for the other suites (test/helpers/cipher-backends.ts): with
 * '1' (CI, which builds the addon strictly) the native cases still run and FAIL with the load
 * error, so a broken build cannot hide; otherwise they are left out, and the backend-selection
 * suite shows a skipped test naming the load error. On a machine without cargo, npm test then
 * runs the TS half.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { XtsCipher, nativeCipherStatus, type CipherBackendName } from '../../src/cipher/index.js';

export const REQUIRE_NATIVE = process.env.BLOCKVAULT_REQUIRE_NATIVE === '1';
export const NATIVE_STATUS = nativeCipherStatus();
export const BACKENDS: CipherBackendName[] = NATIVE_STATUS.available || REQUIRE_NATIVE ? ['native', 'ts'] : ['ts'];

/**
 * One way of running the cipher: the TS backend, the native backend on its default AES code path,
 * or the native backend forced onto one of the addon's other paths (XtsCipher.create's
 * `nativePath`). A path this CPU cannot run keeps its case, with the reason in `skipReason`, so
 * the suites list it as skipped and say why instead of leaving it out.
 */
export interface CipherCase {
  /** For test titles, e.g. "native (aesni-x8 path)". */
  title: string;
  backend: CipherBackendName;
  nativePath?: string;
  skipReason: string | null;
}

/**
 * Every case the known-answer and cross-check suites run: ts, native on its default path, and
 * native on every other path the addon has (IEEE 1619 vectors and node:crypto agreement on each
 * code path, not only on the one this CPU picks by default).
 */
export function cipherCases(): CipherCase[] {
  const cases: CipherCase[] = BACKENDS.filter((b) => b === 'ts').map((b) => ({ title: b, backend: b, skipReason: null }));
  if (!BACKENDS.includes('native')) return cases;
  const defaultPath = NATIVE_STATUS.cpuPath;
  cases.push({ title: `native (default ${defaultPath ?? 'unknown'} path)`, backend: 'native', skipReason: null });
  for (const path of NATIVE_STATUS.paths ?? []) {
    if (path.name === defaultPath) continue;
    cases.push({
      title: `native (${path.name} path)`,
      backend: 'native',
      nativePath: path.name,
      skipReason: path.supported ? null : `this CPU cannot run the ${path.name} path: ${path.reason ?? 'unsupported'}`,
    });
  }
  return cases;
}

/** `title`, or for a case that cannot run here `title (skipped: reason)`. */
export function caseTitle(c: CipherCase, what: string): string {
  return c.skipReason === null ? `${what}, ${c.title}` : `${what}, ${c.title} (skipped: ${c.skipReason})`;
}

/** The cipher for a case (native with its forced path, if any). */
export function cipherForCase(c: CipherCase): XtsCipher {
  return c.nativePath === undefined ? cipherFor(c.backend) : XtsCipher.create({ backend: 'native', nativePath: c.nativePath });
}

/** The cipher for `name`; for native without an addon this throws, failing the test with the reason. */
export function cipherFor(name: CipherBackendName): XtsCipher {
  return XtsCipher.create({ backend: name });
}

/** A random XTS key with distinct halves. */
export function randomKey(): Buffer {
  for (;;) {
    const key = randomBytes(64);
    if (!key.subarray(0, 32).equals(key.subarray(32))) return key;
  }
}

/**
 * The environment for a child process that picks its cipher itself: this process's, without
 * BLOCKVAULT_CIPHER and BLOCKVAULT_XTS_PATH (a run that forces a path must not force the child's),
 * then `overrides`.
 */
export function cipherChildEnv(overrides: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.BLOCKVAULT_CIPHER;
  delete env.BLOCKVAULT_XTS_PATH;
  return { ...env, ...overrides };
}

/** dm-crypt plain64: the sector's first 512-byte unit number, 64-bit little-endian, zero-padded. */
export function plain64Tweak(sector: bigint, sectorSize: number): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64LE(sector * BigInt(sectorSize / 512));
  return iv;
}

/**
 * The reference: node:crypto's (OpenSSL's) aes-256-xts, one cipher object per sector with the
 * plain64 tweak as IV, which is how dm-crypt drives the kernel's xts(aes).
 */
export function nodeXtsSectors(direction: 'encrypt' | 'decrypt', key: Uint8Array, firstSector: bigint, sectorSize: number, data: Uint8Array): Buffer {
  const out = Buffer.alloc(data.length);
  for (let offset = 0, k = 0n; offset < data.length; offset += sectorSize, k++) {
    const iv = plain64Tweak(firstSector + k, sectorSize);
    const c = direction === 'encrypt' ? createCipheriv('aes-256-xts', key, iv) : createDecipheriv('aes-256-xts', key, iv);
    const part = Buffer.concat([c.update(data.subarray(offset, offset + sectorSize)), c.final()]);
    part.copy(out, offset);
  }
  return out;
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}
