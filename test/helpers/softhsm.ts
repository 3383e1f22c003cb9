/**
 * A SoftHSM2 token for the PKCS#11 provider's tests, made once per test process in a temporary
 * directory: a softhsm2.conf whose directories.tokendir is a fresh temp dir, SOFTHSM2_CONF pointing
 * at it (SoftHSM reads it at C_Initialize, so it is set before the module is first loaded), and
 * `softhsm2-util --init-token --free`. Several harnesses share the token; each engine directory
 * has its own namespace of objects on it (src/hsm/pkcs11/marker.ts).
 *
 * Without the module (or the pkcs11js build) the PKCS#11 cases skip with the reason; with
 * BLOCKVAULT_REQUIRE_TOOLS=1 (CI) findTools fails instead.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Pkcs11Options } from '../../src/hsm/pkcs11/index.js';
import { findTools, type ToolCheck } from './external-tool.js';
import { removeAtFileEnd } from './file-end-cleanup.js';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
export const SOFTHSM_TOKEN_LABEL = 'blockvault-test';
export const SOFTHSM_PIN = '246810';
const SO_PIN = '13579111';

function checkSoftHsm(): ToolCheck {
  const tools = findTools([
    { name: SOFTHSM_MODULE, debianPackage: 'softhsm2' },
    { name: 'softhsm2-util', debianPackage: 'softhsm2' },
  ]);
  if (!tools.ok) return tools;
  try {
    createRequire(import.meta.url)('pkcs11js');
  } catch (error) {
    const reason = `the pkcs11js binding does not load (${(error as Error).message.split('\n')[0]}); run npm rebuild pkcs11js`;
    if (process.env['BLOCKVAULT_REQUIRE_TOOLS'] === '1') throw new Error(`BLOCKVAULT_REQUIRE_TOOLS=1 and ${reason}`);
    return { ok: false, reason };
  }
  return tools;
}

export const softHsmCheck: ToolCheck = checkSoftHsm();

export interface SoftHsmToken {
  /** The engine option. */
  options: Pkcs11Options;
  /** The token directory (for at-rest scans). */
  tokenDir: string;
  conf: string;
}

let token: SoftHsmToken | null = null;

/** This process's token, made on first use. */
export function softHsmToken(): SoftHsmToken {
  if (token !== null) return token;
  if (!softHsmCheck.ok) throw new Error(`SoftHSM2 is not usable: ${softHsmCheck.reason}`);
  const dir = mkdtempSync(join(tmpdir(), 'bv-softhsm-'));
  const tokenDir = join(dir, 'tokens');
  const conf = join(dir, 'softhsm2.conf');
  spawnSync('mkdir', ['-p', tokenDir]);
  writeFileSync(conf, `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  process.env['SOFTHSM2_CONF'] = conf;
  const init = spawnSync('softhsm2-util', ['--init-token', '--free', '--label', SOFTHSM_TOKEN_LABEL, '--pin', SOFTHSM_PIN, '--so-pin', SO_PIN], { encoding: 'utf8', env: process.env });
  if (init.status !== 0) throw new Error(`softhsm2-util --init-token failed: ${init.stderr}${init.stdout}`);
  // vitest ends its worker processes without an 'exit' event, so in a test file the directory
  // goes once the file has run (test/setup.ts); in a process outside vitest, at its exit.
  removeAtFileEnd(dir);
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  token = { options: { module: SOFTHSM_MODULE, tokenLabel: SOFTHSM_TOKEN_LABEL, pin: SOFTHSM_PIN }, tokenDir, conf };
  return token;
}

/**
 * The versions of a root key that have an object on the token, for an engine directory (its
 * namespace is in hsm/pkcs11.json): the PKCS#11 counterpart of counting sealed key files.
 */
export async function tokenKeyVersions(engineDir: string, keyId: string, versionsMax = 16): Promise<number[]> {
  const { Pkcs11Token } = await import('../../src/hsm/pkcs11/session-pool.js');
  const { resolvePkcs11Options } = await import('../../src/hsm/pkcs11/options.js');
  const { readPkcs11Marker } = await import('../../src/hsm/pkcs11/marker.js');
  const { labels } = await import('../../src/hsm/pkcs11/mechanisms.js');
  const marker = readPkcs11Marker(join(engineDir, 'hsm'));
  if (marker === null) throw new Error(`${engineDir}/hsm/pkcs11.json is missing`);
  const token = Pkcs11Token.acquire(resolvePkcs11Options(softHsmToken().options));
  try {
    return await token.withSession((session) => {
      const versions: number[] = [];
      for (let version = 1; version <= versionsMax; version += 1) {
        token.module.C_FindObjectsInit(session, [{ type: token.p.CKA_LABEL, value: labels.rootKey(marker.namespace, keyId, version) }]);
        try {
          if (token.module.C_FindObjects(session, 1).length > 0) versions.push(version);
        } finally {
          token.module.C_FindObjectsFinal(session);
        }
      }
      return versions;
    });
  } finally {
    token.release();
  }
}
