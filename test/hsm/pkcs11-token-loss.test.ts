/**
 * The PKCS#11 token going away under an open engine (SoftHSM2). Two ways it happens for real, both
 * reproduced here on the test process's token:
 *
 * - The token is removed (a USB token pulled, a network HSM's partition reset or failed over):
 *   PKCS#11 v2.40 section 5.6 says every session with it is closed and the login is gone. The test
 *   calls C_CloseAllSessions on the slot through its own handle on the module, which is exactly
 *   that from the application's point of view: every pooled session handle is dead.
 * - The token's storage goes away (SoftHSM2 keeps each token in a directory and re-reads it on
 *   use; an unmounted or deleted token directory): the test renames the token directory, so the
 *   root keys' objects vanish while the sessions stay open.
 *
 * Either way the next key operation must fail with HSM_UNAVAILABLE within a bounded time, nothing
 * may crash or hang, the volumes must not be taken for shredded (a missing token is not a
 * destroyed key), the engine must close, and once the token is back a reopened engine reads the
 * data again.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine.js';
import { isBlockvaultError } from '../../src/errors.js';
import { resolvePkcs11Options } from '../../src/hsm/pkcs11/index.js';
import { Pkcs11Token } from '../../src/hsm/pkcs11/session-pool.js';
import { openTestEngine, rootKey } from '../helpers/engine.js';
import { softHsmCheck, softHsmToken } from '../helpers/softhsm.js';

const MIB = 1024 * 1024;
/** A key operation on a token that is gone must answer well within this. */
const ANSWER_WITHIN_MS = 10_000;

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** The code `promise` fails with, 'ok' if it resolves, 'hung' if it does neither in time. */
async function outcome(promise: Promise<unknown>): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<string>((resolve) => (timer = setTimeout(() => resolve('hung'), ANSWER_WITHIN_MS)));
  const settled = promise.then(
    () => 'ok',
    (error: unknown) => (isBlockvaultError(error) ? error.code : `untyped: ${String((error as Error)?.stack ?? error)}`),
  );
  try {
    return await Promise.race([settled, hung]);
  } finally {
    clearTimeout(timer);
  }
}

async function engineWithData(): Promise<{ dir: string; engine: Engine; keyCrn: string; data: Buffer }> {
  const dir = mkdtempSync(join(tmpdir(), 'bv-p11-loss-'));
  dirs.push(dir);
  const engine = await openTestEngine(dir, { provider: 'pkcs11' });
  const key = await rootKey(engine);
  const vol = await engine.createVolume({ name: 'v', sizeBytes: MIB, diskEncryptionKeyCrn: key.crn });
  const data = randomBytes(64 * 1024);
  await vol.write(0, data);
  await vol.flush();
  // Closed, so that opening it again has to unwrap its data key on the token.
  await vol.close();
  return { dir, engine, keyCrn: key.crn, data };
}

/** Every key operation the engine does: each must fail with HSM_UNAVAILABLE, none may hang. */
async function keyOperationOutcomes(engine: Engine, keyCrn: string): Promise<Record<string, string>> {
  return {
    createRootKey: await outcome(rootKey(engine, { name: 'after-loss' })),
    importRootKey: await outcome(rootKey(engine, { name: 'byok-after-loss', material: randomBytes(32) })),
    createVolume: await outcome(engine.createVolume({ name: 'v2', sizeBytes: MIB, diskEncryptionKeyCrn: keyCrn })),
    rotateKey: await outcome(engine.hsm.rotateKey(keyCrn)),
    // Opening a volume (no handle of it open) unwraps its data key under the root key.
    openVolume: await outcome(engine.openVolume('v')),
  };
}

const ALL_UNAVAILABLE = { createRootKey: 'HSM_UNAVAILABLE', importRootKey: 'HSM_UNAVAILABLE', createVolume: 'HSM_UNAVAILABLE', rotateKey: 'HSM_UNAVAILABLE', openVolume: 'HSM_UNAVAILABLE' };

/** After the token is back: a new engine on the directory reads what was written before the loss. */
async function readBackAfterReopen(dir: string, data: Buffer): Promise<void> {
  const engine = await openTestEngine(dir, { provider: 'pkcs11' });
  try {
    expect(engine.listVolumes().map((v) => v.state)).toEqual(['active']);
    const vol = await engine.openVolume('v');
    expect(Buffer.from(await vol.read(0, data.length)).equals(data)).toBe(true);
  } finally {
    await engine.close();
  }
}

// PKCS#11 only (the software keystore has no token to lose); skipped with the reason, or failing
// under BLOCKVAULT_REQUIRE_TOOLS=1, exactly like the PKCS#11 cases of forEachProvider.
const title = softHsmCheck.ok ? 'the PKCS#11 token goes away under an open engine' : `the PKCS#11 token goes away under an open engine (skipped: ${softHsmCheck.reason})`;

describe.skipIf(!softHsmCheck.ok)(title, () => {
  it('token removed (every session closed, login gone): key operations fail with HSM_UNAVAILABLE, nothing hangs, the engine closes and reopens', async () => {
    const { dir, engine, keyCrn, data } = await engineWithData();
    try {
      // The test's own reference to the process's shared token and module: the engine's sessions
      // are sessions of this same module, so closing all of the slot's sessions closes theirs.
      const token = Pkcs11Token.acquire(resolvePkcs11Options(softHsmToken().options));
      try {
        const slot = token.module.C_GetSlotList(true).find((s) => token.module.C_GetTokenInfo(s).label.trim() === softHsmToken().options.tokenLabel)!;
        token.module.C_CloseAllSessions(slot);
      } finally {
        token.release();
      }
      expect(await keyOperationOutcomes(engine, keyCrn)).toEqual(ALL_UNAVAILABLE);
      // A missing token is not a destroyed key: the volume is not locked, and its metadata reads.
      expect(engine.listVolumes().map((v) => [v.name, v.state])).toEqual([['v', 'active']]);
      expect(await outcome(engine.close())).toBe('ok');
    } finally {
      await engine.close();
    }
    await readBackAfterReopen(dir, data);
  });

  it('token storage gone (its directory renamed away): key operations fail with HSM_UNAVAILABLE, nothing hangs; with the directory back a reopened engine reads the data', async () => {
    const { dir, engine, keyCrn, data } = await engineWithData();
    const { tokenDir } = softHsmToken();
    const [uuid] = readdirSync(tokenDir);
    const present = join(tokenDir, uuid!);
    const away = join(tokenDir, '..', `${uuid!}.away`);
    const vol = await engine.openVolume('v');
    renameSync(present, away);
    try {
      // The open volume's data key is in memory: I/O on it does not need the token.
      expect(await outcome(vol.write(0, data.subarray(0, 4096)))).toBe('ok');
      await vol.close();
      expect(await keyOperationOutcomes(engine, keyCrn)).toEqual(ALL_UNAVAILABLE);
      expect(engine.listVolumes().map((v) => [v.name, v.state])).toEqual([['v', 'active']]);
      expect(await outcome(engine.close())).toBe('ok');
    } finally {
      await engine.close();
      renameSync(away, present);
    }
    await readBackAfterReopen(dir, data);
  });
});
