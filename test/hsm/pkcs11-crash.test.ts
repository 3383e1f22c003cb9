/**
 * A crash in the middle of a PKCS#11 engine directory's first open, for real: a child process
 * opens a new directory through the quota module (test/hsm/fixtures/quota-pkcs11.c) set to
 * SIGKILL its process on entering C_GenerateKey. The first open writes hsm/pkcs11.json (naming a
 * namespace) and then asks the token for the metadata key, so the child dies with the marker on
 * disk and no metadata key on the token. The directory must open afterwards, on plain SoftHSM2,
 * and work: nothing was ever stored under that namespace, so the open completes the first one.
 * (Before the fix the marker made every later open fail with KEYSTORE_CORRUPT, forever.)
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { openTestEngine, rootKey } from '../helpers/engine.js';
import { QUOTA_INNER_ENV, QUOTA_KILL_ON_GENERATE_KEY_ENV, QUOTA_OBJECTS_ENV, quotaModule, quotaModuleCheck } from '../helpers/quota-pkcs11.js';
import { SOFTHSM_MODULE, softHsmToken } from '../helpers/softhsm.js';
import { useTempDirs } from '../helpers/temp-dir.js';
import { resolvePkcs11Options, type Pkcs11Options } from '../../src/hsm/pkcs11/index.js';
import { Pkcs11Token } from '../../src/hsm/pkcs11/session-pool.js';

const tempDir = useTempDirs('bv-p11-crash-');
const MIB = 1024 * 1024;
/** Bound on the child's life: it dies on its first C_GenerateKey, long before this. */
const CHILD_TIMEOUT_MS = 60_000;

/** Open `dir` in a child on the quota module that kills itself in C_GenerateKey; its exit. */
function openAndDieInChild(dir: string, hsm: Pkcs11Options): Promise<{ code: number | null; signal: string | null; timedOut: boolean; stdout: string; stderr: string }> {
  const script = `
    import { Engine } from ${JSON.stringify(new URL('../../src/engine.ts', import.meta.url).href)};
    await Engine.open({ dir: ${JSON.stringify(dir)}, hsm: { pkcs11: JSON.parse(process.env.BLOCKVAULT_TEST_PKCS11) }, purgeIntervalMs: 0 });
    process.stdout.write('opened\\n');
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env, // SOFTHSM2_CONF, set by softHsmToken()
      BLOCKVAULT_TEST_PKCS11: JSON.stringify(hsm),
      [QUOTA_INNER_ENV]: SOFTHSM_MODULE,
      [QUOTA_OBJECTS_ENV]: '1000',
      [QUOTA_KILL_ON_GENERATE_KEY_ENV]: '1',
    },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, CHILD_TIMEOUT_MS);
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut, stdout, stderr });
    });
  });
}

/** How many metadata keys of `namespace` the token holds. */
async function metadataKeys(options: Pkcs11Options, namespace: string): Promise<number> {
  const token = Pkcs11Token.acquire(resolvePkcs11Options(options));
  try {
    return await token.withSession((s) => {
      token.module.C_FindObjectsInit(s, [{ type: token.p.CKA_LABEL, value: `blockvault/${namespace}/metadata` }]);
      try {
        return token.module.C_FindObjects(s, 4).length;
      } finally {
        token.module.C_FindObjectsFinal(s);
      }
    });
  } finally {
    token.release();
  }
}

const title = quotaModuleCheck.ok ? 'a crash during a PKCS#11 directory first open' : `a crash during a PKCS#11 directory first open (skipped: ${quotaModuleCheck.reason})`;

describe.skipIf(!quotaModuleCheck.ok)(title, () => {
  let softHsm: Pkcs11Options;
  beforeAll(() => {
    softHsm = softHsmToken().options;
  });

  it('a process killed between writing pkcs11.json and making the metadata key leaves a directory that opens and works', async () => {
    const dir = tempDir();
    const died = await openAndDieInChild(dir, { ...softHsm, module: quotaModule() });
    expect(died.stdout).not.toContain('opened');
    expect(died.timedOut, 'the child hung instead of dying in C_GenerateKey').toBe(false);
    expect(died.signal, `child stderr: ${died.stderr}`).toBe('SIGKILL');
    // The crash came where it was meant to: the marker is on disk, naming a namespace.
    const markerPath = join(dir, 'hsm', 'pkcs11.json');
    expect(existsSync(markerPath)).toBe(true);
    const marker = JSON.parse(readFileSync(markerPath, 'utf8')) as { namespace: string };
    // ...and the token has no metadata key under it.
    expect(await metadataKeys(softHsm, marker.namespace)).toBe(0);

    const engine = await openTestEngine(dir, { hsm: { pkcs11: softHsm } });
    let crn: string;
    try {
      // The first open was completed under the same marker, not replaced by a new one.
      expect(JSON.parse(readFileSync(markerPath, 'utf8'))).toMatchObject({ namespace: marker.namespace });
      expect(await metadataKeys(softHsm, marker.namespace)).toBe(1);
      const key = await rootKey(engine);
      crn = key.crn;
      const vol = await engine.createVolume({ name: 'after-crash', sizeBytes: MIB, diskEncryptionKeyCrn: crn });
      await vol.write(0, Buffer.from('written after the crash'));
      await vol.close();
    } finally {
      await engine.close();
    }

    // And it stays a directory like any other: it reopens, its key and data are there.
    const again = await openTestEngine(dir, { hsm: { pkcs11: softHsm } });
    try {
      expect((await again.hsm.listKeys()).map((k) => k.crn)).toContain(crn);
      const vol = await again.openVolume('after-crash');
      expect((await vol.read(0, 23)).toString()).toBe('written after the crash');
      await vol.close();
    } finally {
      await again.close();
    }
  });

  it('once the directory holds anything, a token that lost its metadata key is still refused (KEYSTORE_CORRUPT), not silently re-created', async () => {
    const dir = tempDir();
    const engine = await openTestEngine(dir, { hsm: { pkcs11: softHsm } });
    const namespace = (JSON.parse(readFileSync(join(dir, 'hsm', 'pkcs11.json'), 'utf8')) as { namespace: string }).namespace;
    try {
      await rootKey(engine);
    } finally {
      await engine.close();
    }
    // Destroy this directory's metadata key on the token, as an operator's mistake would.
    const token = Pkcs11Token.acquire(resolvePkcs11Options(softHsm));
    try {
      await token.withSession((s) => {
        token.module.C_FindObjectsInit(s, [{ type: token.p.CKA_LABEL, value: `blockvault/${namespace}/metadata` }]);
        const found = token.module.C_FindObjects(s, 4);
        token.module.C_FindObjectsFinal(s);
        expect(found).toHaveLength(1);
        token.module.C_DestroyObject(s, found[0]!);
      });
    } finally {
      token.release();
    }
    expect(await metadataKeys(softHsm, namespace)).toBe(0);
    await expect(openTestEngine(dir, { hsm: { pkcs11: softHsm } })).rejects.toMatchObject({ code: 'KEYSTORE_CORRUPT' });
  });
});
