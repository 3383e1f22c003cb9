import { createHash, timingSafeEqual } from 'node:crypto';
import type { PKCS11 } from 'pkcs11js';
import { BlockvaultError, assert } from '../../errors.js';
import { loadBinding, type Pkcs11Binding } from './binding.js';
import { ckrName, mapPkcs11Error } from './errors.js';
import type { ResolvedPkcs11Options } from './options.js';

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
 */
export const SESSION_WAITERS_MAX = 4096;

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
  private readonly idle: Buffer[] = [];
  private readonly waiters: Array<{ resolve: (session: Buffer) => void; reject: (error: Error) => void }> = [];
  private opened = 0;
  private users = 1;
  private closed = false;

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
      const session = token.openSession();
      try {
        module.C_Login(session, p.CKU_USER, options.pin);
      } catch (error) {
        if (ckrName(error) !== 'CKR_USER_ALREADY_LOGGED_IN') throw mapPkcs11Error(error, 'C_Login');
      }
      token.idle.push(session);
    } catch (error) {
      token.closeSessions();
      closeModule(options.module);
      throw error;
    }
    tokens.set(key, token);
    return token;
  }

  private openSession(): Buffer {
    try {
      const session = this.module.C_OpenSession(this.slot, this.p.CKF_SERIAL_SESSION | this.p.CKF_RW_SESSION);
      this.opened += 1;
      return session;
    } catch (error) {
      throw mapPkcs11Error(error, 'C_OpenSession');
    }
  }

  private async borrow(): Promise<Buffer> {
    if (this.closed) throw new BlockvaultError('ENGINE_CLOSED', 'the HSM is closed; reopen the engine');
    const idle = this.idle.pop();
    if (idle !== undefined) return idle;
    if (this.opened < this.options.sessionsMax) return this.openSession();
    if (this.waiters.length >= SESSION_WAITERS_MAX) {
      throw new BlockvaultError('HSM_UNAVAILABLE', `more than ${SESSION_WAITERS_MAX} operations are waiting for a PKCS#11 session; slow down or raise hsm.pkcs11.sessionsMax`);
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private giveBack(session: Buffer): void {
    const next = this.waiters.shift();
    if (next !== undefined) next.resolve(session);
    else this.idle.push(session);
  }

  /** Run `fn` on a session of its own; the session returns to the pool however `fn` ends. */
  async withSession<T>(fn: (session: Buffer) => Promise<T> | T): Promise<T> {
    const session = await this.borrow();
    try {
      return await fn(session);
    } finally {
      if (this.closed) this.closeSession(session);
      else this.giveBack(session);
    }
  }

  private closeSession(session: Buffer): void {
    try {
      this.module.C_CloseSession(session);
    } catch {
      // Already closed (C_CloseAllSessions at release) or the token is gone: nothing to free.
    }
  }

  private closeSessions(): void {
    for (const session of this.idle.splice(0)) this.closeSession(session);
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
        this.module.C_Logout(session);
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
