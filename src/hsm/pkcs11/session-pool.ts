import { createHash, timingSafeEqual } from 'node:crypto';
import type { PKCS11 } from 'pkcs11js';
import { BlockvaultError, assert, isBlockvaultError } from '../../errors.js';
import { loadBinding, type Pkcs11Binding } from './binding.js';
import { ckrName, isSessionLost, mapPkcs11Error } from './errors.js';
import { SESSIONS_MAX_LIMIT, type ResolvedPkcs11Options } from './options.js';

/**
 * One PKCS#11 token as this process uses it (PKCS#11 v2.40 sections 5.4 and 5.6):
 *
 * - The module is loaded and C_Initialize'd once per process, with CKF_OS_LOCKING_OK so that the
 *   module may use native locks (pkcs11js runs the *Async calls on libuv's thread pool).
 * - Login state belongs to the application and token, not to a session: the token logs in once,
 *   on its first session, and every later session shares that login. A second provider on the
 *   same token shares this object (reference counted), and its PIN is checked against the one
 *   that logged in, because the token itself would answer CKR_USER_ALREADY_LOGGED_IN to any PIN.
 * - A session runs one operation at a time, so operations borrow one from a bounded pool and wait
 *   (in a bounded queue) when all are out.
 * - Sessions and the login can be lost under the pool (the token removed, C_CloseAllSessions, a
 *   C_Logout): an operation that fails with a lost-session code (isSessionLost) drops its session
 *   and every idle one, and the next session opened logs in again, so an open engine recovers at
 *   the next operation once the token answers again.
 */
export const SESSION_WAITERS_MAX = 4096;
/** CK_STATE of a read/write session of a logged-in user (PKCS#11 v2.40 section 5.6; pkcs11js exports no CKS_* names). */
const CKS_RW_USER_FUNCTIONS = 3;

interface PooledSession {
  handle: Buffer;
  /** The pool's epoch when the session was opened (Pkcs11Token.epoch). */
  epoch: number;
}

interface Waiter {
  resolve: (session: PooledSession) => void;
  reject: (error: Error) => void;
}

interface ModuleRef {
  module: PKCS11;
  users: number;
}

const modules = new Map<string, ModuleRef>();
const tokens = new Map<string, Pkcs11Token>();

function openModule(p: Pkcs11Binding, path: string): PKCS11 {
  const existing = modules.get(path);
  if (existing !== undefined) {
    existing.users += 1;
    return existing.module;
  }
  const module = new p.PKCS11();
  try {
    module.load(path);
  } catch (error) {
    throw new BlockvaultError('HSM_UNAVAILABLE', `the PKCS#11 module ${path} does not load (${(error as Error).message}); install it (Debian: softhsm2) or fix hsm.pkcs11.module`, { module: path }, { cause: error });
  }
  try {
    module.C_Initialize({ flags: p.CKF_OS_LOCKING_OK });
  } catch (error) {
    if (ckrName(error) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
      module.close();
      throw mapPkcs11Error(error, `C_Initialize of ${path}`);
    }
  }
  modules.set(path, { module, users: 1 });
  return module;
}

function closeModule(path: string): void {
  const ref = modules.get(path);
  if (ref === undefined) return;
  ref.users -= 1;
  if (ref.users > 0) return;
  modules.delete(path);
  try {
    ref.module.C_Finalize();
  } catch {
    // Finalizing is best effort: the process may already be tearing the module down.
  }
  ref.module.close();
}

const trimLabel = (label: string): string => label.replace(/[\s\0]+$/, '');
const pinDigest = (pin: string): Buffer => createHash('sha256').update(pin, 'utf8').digest();

function findSlot(p: Pkcs11Binding, module: PKCS11, options: ResolvedPkcs11Options): { slot: Buffer; label: string; serial: string } {
  let slots: Buffer[];
  try {
    slots = module.C_GetSlotList(true);
  } catch (error) {
    throw mapPkcs11Error(error, 'C_GetSlotList');
  }
  for (const slot of slots) {
    const info = module.C_GetTokenInfo(slot);
    const label = trimLabel(info.label);
    const matches = options.slot !== null ? slot.readUIntLE(0, Math.min(slot.length, 6)) === options.slot : label === options.tokenLabel;
    if (!matches) continue;
    if ((info.flags & p.CKF_TOKEN_INITIALIZED) === 0) break;
    return { slot, label, serial: trimLabel(info.serialNumber) };
  }
  const which = options.slot !== null ? `slot ${options.slot}` : `token label ${JSON.stringify(options.tokenLabel)}`;
  throw new BlockvaultError('HSM_UNAVAILABLE', `the PKCS#11 module ${options.module} has no initialized token at ${which}; initialize one (softhsm2-util --init-token) or fix hsm.pkcs11`, { module: options.module });
}

export class Pkcs11Token {
  readonly p: Pkcs11Binding;
  readonly label: string;
  readonly serial: string;
  private readonly idle: PooledSession[] = [];
  private readonly waiters: Waiter[] = [];
  /** Sessions open and counted against sessionsMax: idle ones and those lent out. */
  private opened = 0;
  private users = 1;
  private closed = false;
  /** See `epoch`. */
  private lossCount = 0;
  /** The next session opened logs in first: the token has not logged in yet, or lost its login. */
  private loginNeeded = true;
  /**
   * A login again after a loss that the token refused over the PIN (changed meanwhile, or locked):
   * every later operation gets this error without another C_Login, because each wrong try brings
   * a real token closer to locking the user PIN. Reopening the engine starts over.
   */
  private loginRefused: BlockvaultError | null = null;

  private constructor(
    private readonly key: string,
    readonly module: PKCS11,
    private readonly slot: Buffer,
    private readonly options: ResolvedPkcs11Options,
    private readonly pin: Buffer,
    found: { label: string; serial: string },
  ) {
    this.p = loadBinding();
    this.label = found.label;
    this.serial = found.serial;
  }

  /**
   * How many session losses the pool has seen. A session opened before the latest loss leaves the
   * pool when it comes back, and so must every object handle found before it: SoftHSM 2.6.1 gives
   * the token's private objects new handles at each login (an old one answers
   * CKR_*_KEY_HANDLE_INVALID), so a provider drops its cached handles when this changes.
   */
  get epoch(): number {
    return this.lossCount;
  }

  /** The shared token for these options, logged in; release() when done. */
  static acquire(options: ResolvedPkcs11Options): Pkcs11Token {
    const p = loadBinding();
    const module = openModule(p, options.module);
    let found: { slot: Buffer; label: string; serial: string };
    try {
      found = findSlot(p, module, options);
    } catch (error) {
      closeModule(options.module);
      throw error;
    }
    const key = `${options.module}\0${found.slot.toString('hex')}`;
    const shared = tokens.get(key);
    if (shared !== undefined) {
      closeModule(options.module); // the shared token holds its own module reference
      if (!timingSafeEqual(shared.pin, pinDigest(options.pin))) {
        throw new BlockvaultError('WRONG_PASSPHRASE', 'the PKCS#11 token refuses the PIN (it differs from the PIN this process logged in with)');
      }
      shared.users += 1;
      return shared;
    }
    const token = new Pkcs11Token(key, module, found.slot, options, pinDigest(options.pin), found);
    try {
      token.idle.push(token.openSession()); // logs in (loginNeeded starts true)
    } catch (error) {
      token.closeSessions();
      closeModule(options.module);
      throw error;
    }
    tokens.set(key, token);
    return token;
  }

  /**
   * Open a session and, if the token has no login (the first session, or the first after a loss),
   * log in on it: login state is per token, so one C_Login serves every session. At most one
   * C_OpenSession and one C_Login per call, and none at all after a PIN refusal: no login loop.
   */
  private openSession(): PooledSession {
    if (this.loginRefused !== null) throw this.loginRefused;
    let handle: Buffer;
    try {
      handle = this.module.C_OpenSession(this.slot, this.p.CKF_SERIAL_SESSION | this.p.CKF_RW_SESSION);
    } catch (error) {
      throw mapPkcs11Error(error, 'C_OpenSession');
    }
    if (this.loginNeeded) {
      try {
        this.module.C_Login(handle, this.p.CKU_USER, this.options.pin);
      } catch (error) {
        // Already logged in: the loss took the sessions but not the login, which is all we need.
        if (ckrName(error) !== 'CKR_USER_ALREADY_LOGGED_IN') {
          this.closeSession(handle);
          const mapped = mapPkcs11Error(error, 'C_Login');
          const pinRefused = isBlockvaultError(mapped, 'WRONG_PASSPHRASE') || (isBlockvaultError(mapped) && mapped.details?.['pkcs11'] === 'CKR_PIN_LOCKED');
          if (pinRefused && this.lossCount > 0) {
            this.loginRefused = new BlockvaultError(
              mapped.code,
              `${mapped.message}. This was the login again after the token lost its sessions; blockvault does not try the PIN again (each wrong try brings the token closer to locking it): close the engines on this token and open them with the right PIN`,
              mapped.details,
              { cause: error },
            );
            throw this.loginRefused;
          }
          throw mapped;
        }
      }
      this.loginNeeded = false;
    }
    this.opened += 1;
    return { handle, epoch: this.lossCount };
  }

  private async borrow(): Promise<PooledSession> {
    if (this.closed) throw new BlockvaultError('ENGINE_CLOSED', 'the HSM is closed; reopen the engine');
    const idle = this.idle.pop();
    if (idle !== undefined) return idle;
    if (this.opened < this.options.sessionsMax) return this.openSession();
    if (this.waiters.length >= SESSION_WAITERS_MAX) {
      // HSM_UNAVAILABLE like any other "the HSM cannot take this now"; the message and details say
      // that it is the pool's own bound, not the token, that refused.
      const { sessionsMax } = this.options;
      throw new BlockvaultError(
        'HSM_UNAVAILABLE',
        `the PKCS#11 session wait queue is full: ${SESSION_WAITERS_MAX} operations (its bound) already wait for one of the ${sessionsMax} sessions (hsm.pkcs11.sessionsMax), so this one was refused without running; retry it later, send fewer key operations at once, or raise hsm.pkcs11.sessionsMax (at most ${SESSIONS_MAX_LIMIT})`,
        { sessionWaitersMax: SESSION_WAITERS_MAX, sessionsMax },
      );
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private giveBack(session: PooledSession): void {
    if (session.epoch !== this.lossCount) {
      // Opened before a loss: it may be dead or logged out even though this operation got through.
      this.discard(session);
      this.serveWaiters();
      return;
    }
    const next = this.waiters.shift();
    if (next !== undefined) next.resolve(session);
    else this.idle.push(session);
  }

  /**
   * `session` failed with a lost-session code. The first such failure of an epoch starts a new
   * one: the idle sessions share the fate (C_CloseAllSessions and a lost login hit every session of
   * the token), so they all go now instead of failing one operation each; the sessions lent out go
   * when they come back (giveBack); and the next session opened logs in again.
   */
  private dropLost(session: PooledSession): void {
    if (session.epoch === this.lossCount) {
      this.lossCount += 1;
      this.loginNeeded = true;
      for (const stale of this.idle.splice(0)) this.discard(stale);
    }
    this.discard(session);
    this.serveWaiters();
  }

  /** Close a session of the pool and free its place. */
  private discard(session: PooledSession): void {
    this.closeSession(session.handle);
    this.opened -= 1;
    assert(this.opened >= 0, 'PKCS#11 session pool closed more sessions than it opened');
  }

  /**
   * Places freed by dropped sessions go to the operations waiting, each with a new session (at
   * most sessionsMax opens). If one cannot be opened (the token is still gone), that waiter fails
   * with the reason, and so do the others when no session is lent out any more: nothing would ever
   * come back to them, and they must not hang.
   */
  private serveWaiters(): void {
    while (this.waiters.length > 0 && this.opened < this.options.sessionsMax) {
      const waiter = this.waiters.shift() as Waiter;
      let session: PooledSession;
      try {
        session = this.openSession();
      } catch (error) {
        const rest = this.opened === 0 ? this.waiters.splice(0) : [];
        for (const failed of [waiter, ...rest]) failed.reject(error as Error);
        return;
      }
      waiter.resolve(session);
    }
  }

  /**
   * Run `fn` on a session of its own; the session returns to the pool however `fn` ends, unless it
   * failed with a lost-session code, in which case it is dropped (dropLost).
   *
   * The operation that meets a lost session fails (HSM_UNAVAILABLE) and is not retried here, not
   * even the reads (wrap and unwrap leave only session objects, which die with the session): the
   * pool cannot tell a read from a create or a destroy that may have reached the token before the
   * session died, a retry on a token that is really gone doubles the wait for its answer, and the
   * caller sees the outage it would otherwise never hear of. The next operation gets a live session.
   */
  async withSession<T>(fn: (session: Buffer) => Promise<T> | T): Promise<T> {
    const session = await this.borrow();
    let lost = false;
    try {
      return await fn(session.handle);
    } catch (error) {
      if (!isSessionLost(error)) throw error;
      lost = true;
      throw error instanceof BlockvaultError ? error : mapPkcs11Error(error, 'an operation on a PKCS#11 session');
    } finally {
      if (this.closed) this.closeSession(session.handle);
      else if (lost) this.dropLost(session);
      else this.giveBack(session);
    }
  }

  /**
   * Throw HSM_UNAVAILABLE unless `session` is logged in and the token answers. Call it before taking
   * "no such object" for an answer: a logged-out session's C_FindObjects finds no private object at
   * all (SoftHSM 2.6.1, no error), and a token whose storage is gone finds nothing either, and
   * neither may read as a destroyed key (the engine locks a destroyed key's volumes for good).
   */
  assertLoggedIn(session: Buffer, what: string): void {
    let state: number;
    try {
      state = this.module.C_GetSessionInfo(session).state;
      this.module.C_GetTokenInfo(this.slot);
    } catch (error) {
      throw mapPkcs11Error(error, what);
    }
    if (state !== CKS_RW_USER_FUNCTIONS) {
      throw new BlockvaultError(
        'HSM_UNAVAILABLE',
        `the PKCS#11 session is not logged in (its login was lost) during ${what}, so finding no object there proves nothing; the session was dropped, and the next operation opens a new one and logs in again`,
        { pkcs11: 'CKR_USER_NOT_LOGGED_IN' },
      );
    }
  }

  private closeSession(session: Buffer): void {
    try {
      this.module.C_CloseSession(session);
    } catch {
      // Already closed (C_CloseAllSessions at release, or by whoever lost it) or the token is gone: nothing to free.
    }
  }

  private closeSessions(): void {
    for (const session of this.idle.splice(0)) this.closeSession(session.handle);
  }

  /** Drop one user; the last one logs out, closes every session and finalizes the module. */
  release(): void {
    assert(this.users > 0, 'PKCS#11 token released more often than acquired');
    this.users -= 1;
    if (this.users > 0) return;
    this.closed = true;
    tokens.delete(this.key);
    this.pin.fill(0);
    for (const waiter of this.waiters.splice(0)) waiter.reject(new BlockvaultError('ENGINE_CLOSED', 'the HSM is closed; reopen the engine'));
    const session = this.idle[0];
    if (session !== undefined) {
      try {
        this.module.C_Logout(session.handle);
      } catch {
        // Not logged in any more (the token was removed): nothing to undo.
      }
    }
    this.closeSessions();
    try {
      this.module.C_CloseAllSessions(this.slot);
    } catch {
      // Best effort, as above.
    }
    closeModule(this.options.module);
  }
}
