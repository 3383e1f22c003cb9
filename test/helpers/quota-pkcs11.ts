/**
 * The quota PKCS#11 module (test/hsm/fixtures/quota-pkcs11.c), built at test time: SoftHSM2 behind
 * an object limit, so that a real PKCS#11 module answers CKR_DEVICE_MEMORY once the token is full.
 * It is compiled with the system C compiler into a temp directory named by the source's SHA-256,
 * so later test processes (and runs) reuse the build.
 *
 * Without a C compiler the cases skip with the reason; with BLOCKVAULT_REQUIRE_TOOLS=1 (CI)
 * findTools fails instead (.ci/apt.d/pkcs11.txt lists gcc and libc6-dev). A source that does not
 * compile always fails: that is a bug in the fixture, not a missing tool.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findTools, type ToolCheck } from './external-tool.js';
import { SOFTHSM_MODULE, softHsmCheck } from './softhsm.js';

const SOURCE = fileURLToPath(new URL('../hsm/fixtures/quota-pkcs11.c', import.meta.url));

/** Where the fixture's module looks for the module it forwards to, and for its object limit. */
export const QUOTA_INNER_ENV = 'BLOCKVAULT_QUOTA_INNER';
export const QUOTA_OBJECTS_ENV = 'BLOCKVAULT_QUOTA_OBJECTS';
/** Set to 1: the module SIGKILLs its process on entering C_GenerateKey (a crash at a chosen point). */
export const QUOTA_KILL_ON_GENERATE_KEY_ENV = 'BLOCKVAULT_QUOTA_KILL_ON_GENERATE_KEY';

function check(): ToolCheck {
  if (!softHsmCheck.ok) return softHsmCheck;
  return findTools([{ name: 'cc', debianPackage: 'gcc' }]);
}

export const quotaModuleCheck: ToolCheck = check();

let built: string | null = null;

/** The path of the built module (libquota.so), compiled on first use. */
export function quotaModule(): string {
  if (built !== null) return built;
  if (!quotaModuleCheck.ok) throw new Error(`the quota PKCS#11 module cannot be built: ${quotaModuleCheck.reason}`);
  const source = readFileSync(SOURCE);
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const dir = join(tmpdir(), `bv-quota-pkcs11-${hash}`);
  const path = join(dir, 'libquota.so');
  if (!existsSync(path)) {
    mkdirSync(dir, { recursive: true });
    // Built beside the final name and renamed, so a concurrent test process never loads half a file.
    const partial = join(dir, `libquota.so.${process.pid}.tmp`);
    const cc = spawnSync('cc', ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-Werror', '-o', partial, SOURCE, '-ldl'], { encoding: 'utf8' });
    if (cc.status !== 0) {
      rmSync(partial, { force: true });
      throw new Error(`cc failed to build ${SOURCE}: ${cc.stderr}${cc.stdout}${cc.error?.message ?? ''}`);
    }
    renameSync(partial, path);
  }
  built = path;
  return path;
}

/**
 * Configure the quota module for this process: it reads both variables once, when the module is
 * first loaded (C_GetFunctionList), so this must come before the first engine opens on it.
 */
export function setQuota(objects: number, inner: string = SOFTHSM_MODULE): void {
  process.env[QUOTA_INNER_ENV] = inner;
  process.env[QUOTA_OBJECTS_ENV] = String(objects);
}
