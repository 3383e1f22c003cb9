/**
 * The PKCS#11 session pool's bounds (src/hsm/pkcs11/session-pool.ts), on SoftHSM2: at most
 * `sessionsMax` sessions are open and in use at once, operations beyond that wait in the queue
 * and all complete, and the queue itself is bounded (SESSION_WAITERS_MAX): one more waiter is
 * refused at once with HSM_UNAVAILABLE, and the ones already queued still complete.
 *
 * The pool is per process and token, and takes sessionsMax from its first user; this file is its
 * own process's only user of the token, so the sessionsMax given here is the bound.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isBlockvaultError } from '../../src/errors.js';
import { resolvePkcs11Options } from '../../src/hsm/pkcs11/index.js';
import { Pkcs11Token, SESSION_WAITERS_MAX } from '../../src/hsm/pkcs11/session-pool.js';
import { softHsmCheck, softHsmToken } from '../helpers/softhsm.js';

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

  it(`the wait queue is bounded: waiter ${SESSION_WAITERS_MAX + 1} is refused with HSM_UNAVAILABLE, the queued ones still complete`, async () => {
    const held = gate();
    const { t, run } = tracker();
    const holding = Array.from({ length: SESSIONS_MAX }, () => token.withSession((session) => run(session, held.wait)()));
    await new Promise((resolve) => setImmediate(resolve));
    let queuedRan = 0;
    const queued = Array.from({ length: SESSION_WAITERS_MAX }, () => token.withSession(() => void (queuedRan += 1)));
    let refused: unknown = null;
    await token.withSession(() => undefined).catch((error: unknown) => (refused = error));
    expect(isBlockvaultError(refused, 'HSM_UNAVAILABLE')).toBe(true);
    expect((refused as Error).message).toContain(`more than ${SESSION_WAITERS_MAX} operations are waiting`);
    expect(queuedRan).toBe(0);
    held.open();
    await Promise.all([...holding, ...queued]);
    expect(t.completed).toBe(SESSIONS_MAX);
    expect(queuedRan).toBe(SESSION_WAITERS_MAX);
    // The queue drained: a new operation gets a session again.
    expect(await token.withSession(() => 'ran')).toBe('ran');
  });
});
