/**
 * The PKCS#11 session pool's bounds (src/hsm/pkcs11/session-pool.ts), on SoftHSM2: at most
 * `sessionsMax` sessions are open and in use at once, operations beyond that wait in the queue
 * and all complete, and the queue itself is bounded (SESSION_WAITERS_MAX): one more waiter is
 * refused at once with HSM_UNAVAILABLE, and the ones already queued still complete. And when the
 * sessions are lost under it (C_CloseAllSessions, as a removed token does): the dead ones leave the
 * pool, the operations waiting get fresh sessions after one new login, the re-login is never a
 * loop, and nothing waits forever for a session that cannot be opened.
 *
 * The pool is per process and token, and takes sessionsMax from its first user; this file is its
 * own process's only user of the token, so the sessionsMax given here is the bound.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { isBlockvaultError, type BlockvaultError } from '../../src/errors.js';
import { resolvePkcs11Options } from '../../src/hsm/pkcs11/index.js';
import { Pkcs11Token, SESSION_WAITERS_MAX } from '../../src/hsm/pkcs11/session-pool.js';
import { SOFTHSM_PIN, softHsmCheck, softHsmToken } from '../helpers/softhsm.js';

const SESSIONS_MAX = 2;
/** CK_STATE of a read/write session of a logged-in user (PKCS#11 v2.40, section 5.6). */
const CKS_RW_USER_FUNCTIONS = 3;

/** A gate the held operations wait on until it opens. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

const title = softHsmCheck.ok ? 'PKCS#11 session pool bounds' : `PKCS#11 session pool bounds (skipped: ${softHsmCheck.reason})`;

describe.skipIf(!softHsmCheck.ok)(title, () => {
  let token: Pkcs11Token;
  beforeEach(() => {
    token = Pkcs11Token.acquire(resolvePkcs11Options({ ...softHsmToken().options, sessionsMax: SESSIONS_MAX }));
  });
  afterEach(() => {
    token.release();
  });

  /** Counts operations running at once, and the distinct sessions they ran on. */
  function tracker() {
    let running = 0;
    const t = { runningMax: 0, sessions: new Set<string>(), completed: 0 };
    const run = (session: Buffer, hold: Promise<void>) => async () => {
      running += 1;
      t.runningMax = Math.max(t.runningMax, running);
      t.sessions.add(session.toString('hex'));
      // A real call on the session: it is open and logged in (pkcs11js exports no CKS_* names).
      expect(token.module.C_GetSessionInfo(session).state).toBe(CKS_RW_USER_FUNCTIONS);
      await hold;
      running -= 1;
      t.completed += 1;
    };
    return { t, run };
  }

  it(`more concurrent operations than sessions (${SESSIONS_MAX}) wait in the queue, and all complete`, async () => {
    const held = gate();
    const { t, run } = tracker();
    const operations = Array.from({ length: 24 }, () => token.withSession((session) => run(session, held.wait)()));
    // Let every operation that can start, start: only SESSIONS_MAX of them hold a session.
    await new Promise((resolve) => setImmediate(resolve));
    expect(t.runningMax).toBe(SESSIONS_MAX);
    expect(t.completed).toBe(0);
    held.open();
    await Promise.all(operations);
    expect(t.completed).toBe(24);
    expect(t.runningMax).toBe(SESSIONS_MAX);
    expect(t.sessions.size).toBe(SESSIONS_MAX);
  });

  it(`the wait queue is bounded: waiter ${SESSION_WAITERS_MAX + 1} is refused with HSM_UNAVAILABLE saying the queue is full and its bound, the queued ones still complete`, async () => {
    const held = gate();
    const { t, run } = tracker();
    const holding = Array.from({ length: SESSIONS_MAX }, () => token.withSession((session) => run(session, held.wait)()));
    await new Promise((resolve) => setImmediate(resolve));
    let queuedRan = 0;
    const queued = Array.from({ length: SESSION_WAITERS_MAX }, () => token.withSession(() => void (queuedRan += 1)));
    let refused: unknown = null;
    await token.withSession(() => undefined).catch((error: unknown) => (refused = error));
    expect(isBlockvaultError(refused, 'HSM_UNAVAILABLE')).toBe(true);
    // No code of its own (HSM_UNAVAILABLE), so the message says plainly what refused it, and the bound.
    expect((refused as Error).message).toContain(`session wait queue is full: ${SESSION_WAITERS_MAX} operations (its bound) already wait for one of the ${SESSIONS_MAX} sessions`);
    expect((refused as BlockvaultError).details).toEqual({ sessionWaitersMax: SESSION_WAITERS_MAX, sessionsMax: SESSIONS_MAX });
    expect(queuedRan).toBe(0);
    held.open();
    await Promise.all([...holding, ...queued]);
    expect(t.completed).toBe(SESSIONS_MAX);
    expect(queuedRan).toBe(SESSION_WAITERS_MAX);
    // The queue drained: a new operation gets a session again.
    expect(await token.withSession(() => 'ran')).toBe('ran');
  });

  /** The test token's slot, for C_CloseAllSessions: what removing the token does to every session. */
  function slotOf(t: Pkcs11Token): Buffer {
    return t.module.C_GetSlotList(true).find((slot) => t.module.C_GetTokenInfo(slot).label.trim() === softHsmToken().options.tokenLabel)!;
  }

  /** The code an operation failed with, its CKR name if untyped, or 'ok'. */
  const codeOf = (promise: Promise<unknown>): Promise<string> =>
    promise.then(
      () => 'ok',
      (error: unknown) => (isBlockvaultError(error) ? error.code : String((error as Error).message)),
    );

  it('sessions lost under the pool: the operations on them fail with HSM_UNAVAILABLE, the waiting ones run on fresh sessions after one login, and the dead ones never come back', async () => {
    const held = gate();
    const heldLonger = gate();
    const login = vi.spyOn(token.module, 'C_Login');
    try {
      // Both sessions lent out: one operation will use its session after the loss, one will not.
      const usesItsSession = token.withSession(async (session) => {
        await held.wait;
        token.module.C_GetSessionInfo(session); // CKR_SESSION_HANDLE_INVALID by now
      });
      const leavesItAlone = token.withSession(() => heldLonger.wait);
      await new Promise((resolve) => setImmediate(resolve));
      const { t, run } = tracker();
      const released = gate();
      released.open();
      const waiting = Array.from({ length: 6 }, () => token.withSession((session) => run(session, released.wait)()));

      token.module.C_CloseAllSessions(slotOf(token));
      held.open();
      expect(await codeOf(usesItsSession)).toBe('HSM_UNAVAILABLE');
      // This one succeeds (it never touched its dead session) after the loss is known, so its session
      // leaves the pool instead of going to a waiter. (Had it come back before any operation met the
      // loss, the pool could not have known, and the waiter given it would fail, once, the same way.)
      heldLonger.open();
      expect(await codeOf(leavesItAlone)).toBe('ok');
      // Every waiter ran on a live, logged-in session (tracker checks CKS_RW_USER_FUNCTIONS), never
      // on one of the two from before the loss, and never more than sessionsMax at once.
      await Promise.all(waiting);
      expect(t.completed).toBe(6);
      expect(t.runningMax).toBeLessThanOrEqual(SESSIONS_MAX);
      expect(login).toHaveBeenCalledTimes(1);
      // The pool is whole again: sessionsMax operations at once, all on live sessions.
      const again = gate();
      const { t: t2, run: run2 } = tracker();
      const full = Array.from({ length: SESSIONS_MAX }, () => token.withSession((session) => run2(session, again.wait)()));
      await new Promise((resolve) => setImmediate(resolve));
      expect(t2.runningMax).toBe(SESSIONS_MAX);
      again.open();
      await Promise.all(full);
      expect(login).toHaveBeenCalledTimes(1);
    } finally {
      login.mockRestore();
    }
  });

  it('no session can be opened after the loss: the waiting operations fail with the reason instead of waiting forever, and the pool opens sessions again once the token is back', async () => {
    const held = gate();
    const holders = Array.from({ length: SESSIONS_MAX }, () =>
      token.withSession(async (session) => {
        await held.wait;
        token.module.C_GetSessionInfo(session);
      }),
    );
    await new Promise((resolve) => setImmediate(resolve));
    const waiting = Array.from({ length: 5 }, () => codeOf(token.withSession(() => 'ran')));
    token.module.C_CloseAllSessions(slotOf(token));
    // The token stays away: every C_OpenSession fails as a removed token's does.
    const open = vi.spyOn(token.module, 'C_OpenSession').mockImplementation(() => {
      throw new Error('CKR_TOKEN_NOT_PRESENT');
    });
    try {
      held.open();
      expect(await Promise.all(holders.map(codeOf))).toEqual(Array(SESSIONS_MAX).fill('HSM_UNAVAILABLE'));
      expect(await Promise.all(waiting)).toEqual(Array(5).fill('HSM_UNAVAILABLE'));
      // One try per freed place, not one per waiter: the rest failed with the same reason at once.
      expect(open.mock.calls.length).toBeLessThanOrEqual(SESSIONS_MAX);
      expect(await codeOf(token.withSession(() => 'ran'))).toBe('HSM_UNAVAILABLE');
    } finally {
      open.mockRestore();
    }
    expect(await token.withSession((session) => token.module.C_GetSessionInfo(session).state)).toBe(CKS_RW_USER_FUNCTIONS);
  });

  it('a PIN refused at the login after a loss is not tried again (each wrong try brings a real token closer to locking it)', async () => {
    const changedPin = `${SOFTHSM_PIN}9`;
    await token.withSession((session) => token.module.C_SetPIN(session, SOFTHSM_PIN, changedPin));
    try {
      token.module.C_CloseAllSessions(slotOf(token));
      const login = vi.spyOn(token.module, 'C_Login');
      try {
        // The idle session is dead: this operation fails, and the pool drops it.
        expect(await codeOf(token.withSession((session) => void token.module.C_GetSessionInfo(session)))).toBe('HSM_UNAVAILABLE');
        // The next one logs in again with the PIN it has, which the token refuses now.
        const refused = await token.withSession(() => 'ran').catch((error: unknown) => error);
        expect(isBlockvaultError(refused, 'WRONG_PASSPHRASE')).toBe(true);
        expect((refused as Error).message).toMatch(/does not try the PIN again/);
        // Later ones fail the same way without another C_Login.
        expect(await codeOf(token.withSession(() => 'ran'))).toBe('WRONG_PASSPHRASE');
        expect(await codeOf(token.withSession(() => 'ran'))).toBe('WRONG_PASSPHRASE');
        expect(login).toHaveBeenCalledTimes(1);
      } finally {
        login.mockRestore();
      }
    } finally {
      // Put the token's PIN back for the rest of the file, on a session of the test's own.
      const session = token.module.C_OpenSession(slotOf(token), token.p.CKF_SERIAL_SESSION | token.p.CKF_RW_SESSION);
      try {
        token.module.C_Login(session, token.p.CKU_USER, changedPin);
        token.module.C_SetPIN(session, changedPin, SOFTHSM_PIN);
        token.module.C_Logout(session);
      } finally {
        token.module.C_CloseSession(session);
      }
    }
  });
});
