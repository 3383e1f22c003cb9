/**
 * The PKCS#11 token going away under an open engine (SoftHSM2). Three ways it happens for real,
 * reproduced here on the test process's token:
 *
 * - The token is removed (a USB token pulled, a network HSM's partition reset or failed over):
 *   PKCS#11 v2.40 section 5.6 says every session with it is closed and the login is gone. The test
 *   calls C_CloseAllSessions on the slot through its own handle on the module, which is exactly
 *   that from the application's point of view: every pooled session handle is dead (SoftHSM 2.6.1
 *   answers CKR_SESSION_HANDLE_INVALID on them).
 * - The login goes while the sessions stay open (C_Logout by anything sharing the module): the
 *   sessions turn public, SoftHSM answers CKR_USER_NOT_LOGGED_IN to key operations and, worse,
 *   C_FindObjects finds no private object at all, which must not be taken for a destroyed key.
 * - The token's storage goes away (SoftHSM2 keeps each token in a directory and re-reads it on
 *   use; an unmounted or deleted token directory): the test renames the token directory, so the
 *   root keys' objects vanish while the sessions stay open.
 *
 * Either way the next key operation must fail with HSM_UNAVAILABLE within a bounded time, nothing
 * may crash or hang, and the volumes must not be taken for shredded (a missing token is not a
 * destroyed key). After a lost session or login the pool drops the dead sessions and logs in again
 * on a fresh one, so the same open engine works again at the next operation; after lost storage
 * SoftHSM 2.6.1 only recovers once the module is finalized, so there the engines close and a
 * reopened one reads the data again.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
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

/**
 * Every key operation the engine does: each must fail with HSM_UNAVAILABLE, none may hang. `round`
 * keeps the names of a second round apart (the instances of the first are created: they are
 * records, not token objects).
 */
async function keyOperationOutcomes(engine: Engine, keyCrn: string, round = 1): Promise<Record<string, string>> {
  return {
    createRootKey: await outcome(rootKey(engine, { name: `after-loss-${round}` })),
    importRootKey: await outcome(rootKey(engine, { name: `byok-after-loss-${round}`, material: randomBytes(32) })),
    createVolume: await outcome(engine.createVolume({ name: `v2-${round}`, sizeBytes: MIB, diskEncryptionKeyCrn: keyCrn })),
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
    expect(engine.listVolumes().filter((v) => v.state !== 'active')).toEqual([]);
    const vol = await engine.openVolume('v');
    expect(Buffer.from(await vol.read(0, data.length)).equals(data)).toBe(true);
  } finally {
    await engine.close();
  }
}

/** The same data as `data`, read back through the open engine. */
async function readsBack(engine: Engine, data: Buffer): Promise<boolean> {
  const vol = await engine.openVolume('v');
  try {
    return Buffer.from(await vol.read(0, data.length)).equals(data);
  } finally {
    await vol.close();
  }
}

/**
 * The test's own reference to the process's shared token and module (Pkcs11Token.acquire shares
 * it with the engine): the engine's sessions are sessions of this same module and token, so what
 * the test does to the slot or the login happens to theirs.
 */
function sharedToken(): { token: Pkcs11Token; slot: Buffer } {
  const token = Pkcs11Token.acquire(resolvePkcs11Options(softHsmToken().options));
  const slot = token.module.C_GetSlotList(true).find((s) => token.module.C_GetTokenInfo(s).label.trim() === softHsmToken().options.tokenLabel)!;
  return { token, slot };
}

/** Make the pool hold `count` open sessions, all idle again when this resolves. */
async function fillPool(token: Pkcs11Token, count: number): Promise<void> {
  let open!: () => void;
  const held = new Promise<void>((resolve) => (open = resolve));
  const holders = Array.from({ length: count }, () => token.withSession(() => held));
  await new Promise((resolve) => setImmediate(resolve));
  open();
  await Promise.all(holders);
}

/** sessionsMax of the engine's pool (the pool takes it from its first user: the engine, default 4). */
const POOL_SESSIONS = 4;

// PKCS#11 only (the software keystore has no token to lose); skipped with the reason, or failing
// under BLOCKVAULT_REQUIRE_TOOLS=1, exactly like the PKCS#11 cases of forEachProvider.
const title = softHsmCheck.ok ? 'the PKCS#11 token goes away under an open engine' : `the PKCS#11 token goes away under an open engine (skipped: ${softHsmCheck.reason})`;

describe.skipIf(!softHsmCheck.ok)(title, () => {
  it('token removed (every session closed, login gone): the operation that meets a dead session fails with HSM_UNAVAILABLE, the next ones succeed on the same open engine after one new login', async () => {
    const { dir, engine, keyCrn, data } = await engineWithData();
    const { token, slot } = sharedToken();
    const login = vi.spyOn(token.module, 'C_Login');
    try {
      // Every session of the pool open and idle, so that all of them die at once.
      await fillPool(token, POOL_SESSIONS);
      token.module.C_CloseAllSessions(slot);

      // The operation that meets a dead session fails, typed, and nothing hangs: it is not retried.
      expect(await outcome(engine.openVolume('v'))).toBe('HSM_UNAVAILABLE');
      expect(login).not.toHaveBeenCalled();

      // The same engine, not reopened: every dead session left the pool at once, a fresh one logged
      // in again, and every key operation works (the key objects have new handles after the new
      // login, so none of the old ones may be used).
      expect(await readsBack(engine, data)).toBe(true);
      expect(await outcome(rootKey(engine, { name: 'after-loss' }))).toBe('ok');
      expect(await outcome(rootKey(engine, { name: 'byok-after-loss', material: randomBytes(32) }))).toBe('ok');
      const v2 = await engine.createVolume({ name: 'v2', sizeBytes: MIB, diskEncryptionKeyCrn: keyCrn });
      await v2.write(0, data);
      await v2.close();
      const tasks = await engine.hsm.rotateKey(keyCrn);
      for (const task of tasks) expect((await engine.tasks.wait(task.id, { timeoutMs: 60_000 })).state).toBe('completed');
      expect(await readsBack(engine, data)).toBe(true);
      // One login for the token, however many sessions were reopened.
      expect(login).toHaveBeenCalledTimes(1);
      expect(engine.listVolumes().map((v) => [v.name, v.state])).toEqual([
        ['v', 'active'],
        ['v2', 'active'],
      ]);
    } finally {
      login.mockRestore();
      token.release();
      await engine.close();
    }
    await readBackAfterReopen(dir, data);
  });

  it('login gone while the sessions stay open (C_Logout): finding no key object is HSM_UNAVAILABLE, not a destroyed key, and nothing is locked; the next open succeeds', async () => {
    const { dir, engine: first, data } = await engineWithData();
    await first.close();
    // A fresh engine knows no key object handle yet, so opening the volume has to find its root key.
    const engine = await openTestEngine(dir, { provider: 'pkcs11' });
    const { token } = sharedToken();
    try {
      await fillPool(token, POOL_SESSIONS);
      await token.withSession((session) => token.module.C_Logout(session));

      // A logged-out session finds no private object; taken at its word that would be KEY_DESTROYED,
      // and the engine would lock (cryptoshred) every volume of the key.
      expect(await outcome(engine.openVolume('v'))).toBe('HSM_UNAVAILABLE');
      expect(engine.listVolumes().map((v) => [v.name, v.state])).toEqual([['v', 'active']]);

      expect(await readsBack(engine, data)).toBe(true);
      expect(await outcome(rootKey(engine, { name: 'after-logout' }))).toBe('ok');
    } finally {
      token.release();
      await engine.close();
    }
    await readBackAfterReopen(dir, data);
  });

  it('token storage gone (its directory renamed away): key operations fail with HSM_UNAVAILABLE, nothing hangs, also once the directory is back (SoftHSM 2.6.1 keeps the token invalid until C_Finalize); engines opened after that read the data', async () => {
    const { dir, engine, keyCrn, data } = await engineWithData();
    const { tokenDir } = softHsmToken();
    const [uuid] = readdirSync(tokenDir);
    const present = join(tokenDir, uuid!);
    const away = join(tokenDir, '..', `${uuid!}.away`);
    const vol = await engine.openVolume('v');
    renameSync(present, away);
    let back = false;
    try {
      // The open volume's data key is in memory: I/O on it does not need the token.
      expect(await outcome(vol.write(0, data.subarray(0, 4096)))).toBe('ok');
      await vol.close();
      expect(await keyOperationOutcomes(engine, keyCrn)).toEqual(ALL_UNAVAILABLE);
      expect(engine.listVolumes().map((v) => [v.name, v.state])).toEqual([['v', 'active']]);

      // With the directory back, SoftHSM 2.6.1 still answers CKR_GENERAL_ERROR (C_GetTokenInfo,
      // C_GenerateKey) and finds nothing, on old and new sessions alike, until the module is
      // finalized: its in-memory token stays invalid. The sessions are not dead, so the pool has
      // nothing to drop; the engine keeps failing typed, and still locks nothing.
      renameSync(away, present);
      back = true;
      expect(await keyOperationOutcomes(engine, keyCrn, 2)).toEqual(ALL_UNAVAILABLE);
      expect(engine.listVolumes().map((v) => [v.name, v.state])).toEqual([['v', 'active']]);
      expect(await outcome(engine.close())).toBe('ok');
    } finally {
      await engine.close();
      if (!back) renameSync(away, present);
    }
    // The last engine on the module closed, so the module was finalized: a new one sees the token.
    await readBackAfterReopen(dir, data);
  });
});
