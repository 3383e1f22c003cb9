import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import { afterEach, beforeEach, expect } from 'vitest';
import { AuditLog } from '../../src/audit/index.js';
import { ManualClock } from '../../src/clock.js';
import { isBlockvaultError, type ErrorCode } from '../../src/errors.js';
import { SoftHsm, type SoftHsmOptions } from '../../src/hsm/index.js';
import type { KeyProvider, ProviderInventory } from '../../src/hsm/provider.js';
import type { CallerContext } from '../../src/hsm/types.js';
import { forEachProvider, type ProviderName } from '../helpers/providers.js';
import { softHsmToken } from '../helpers/softhsm.js';

export const PASSPHRASE = 'correct horse battery staple';
/** Cheaper scrypt for tests; one test opens with the default cost. */
export const TEST_SCRYPT_N = 1 << 10;
export const STORAGE: CallerContext = { sourceService: 'blockvault', sourceInstance: 'engine-1', initiator: 'blockvault-engine' };

export { PROVIDERS, forEachProvider, type ProviderCase, type ProviderName } from '../helpers/providers.js';

/** The HSM options that open `provider`: the test passphrase, or the process's SoftHSM2 token. */
export function providerSecret(provider: ProviderName): Partial<SoftHsmOptions> {
  return provider === 'pkcs11' ? { pkcs11: softHsmToken().options } : { passphrase: PASSPHRASE };
}

export interface Harness {
  dir: string;
  provider: ProviderName;
  clock: ManualClock;
  root: RootDatabase;
  audit: AuditLog;
  hsm: SoftHsm;
  /** Close everything and open the same directory again. */
  reopen(options?: Partial<SoftHsmOptions>): Promise<void>;
  close(): Promise<void>;
  cleanup(): Promise<void>;
}

export async function openHarness(options: Partial<SoftHsmOptions> = {}, existingDir?: string, provider: ProviderName = 'software'): Promise<Harness> {
  const dir = existingDir ?? mkdtempSync(join(tmpdir(), 'bv-hsm-'));
  const clock = (options.clock as ManualClock | undefined) ?? new ManualClock(Date.UTC(2026, 0, 1));
  const h = { dir, clock, provider, closed: true } as Harness & { closed: boolean };
  const start = async (extra: Partial<SoftHsmOptions>): Promise<void> => {
    h.root = open({ path: join(dir, 'engine.lmdb') });
    h.audit = await AuditLog.open({ root: h.root, clock });
    const secret =
      extra.keyFile !== undefined
        ? { keyFile: extra.keyFile }
        : provider === 'pkcs11' && extra.passphrase === undefined
          ? { pkcs11: extra.pkcs11 ?? softHsmToken().options }
          : { passphrase: extra.passphrase ?? PASSPHRASE };
    try {
      h.hsm = await SoftHsm.open({ root: h.root, dir, clock, audit: h.audit, scryptN: TEST_SCRYPT_N, ...extra, ...secret });
    } catch (error) {
      await h.root.close();
      throw error;
    }
    h.closed = false;
  };
  h.close = async () => {
    if (h.closed) return;
    h.closed = true;
    await h.hsm.close();
    await h.audit.flush();
    h.audit.close();
    await h.root.close();
  };
  h.reopen = async (extra = {}) => {
    await h.close();
    await start({ ...options, ...extra });
  };
  h.cleanup = async () => {
    await h.close();
    rmSync(dir, { recursive: true, force: true });
  };
  await start(options);
  return h;
}

/**
 * forEachProvider with a fresh harness per test on that provider: opened in beforeEach, closed and
 * removed in afterEach. `h` stands for the running test's harness (a proxy that forwards to it),
 * so the cases read `h.hsm`, `h.reopen()`, ... as with a `let h` set in beforeEach.
 */
export function forEachProviderHarness(name: string, body: (h: Harness, provider: ProviderName) => void): void {
  forEachProvider(name, (provider) => {
    let current: Harness | null = null;
    beforeEach(async () => {
      current = await openHarness({}, undefined, provider);
    });
    afterEach(async () => {
      await current?.cleanup();
      current = null;
    });
    const h = new Proxy({} as Harness, {
      get(_target, property) {
        if (current === null) throw new Error('the harness exists only while a test runs (beforeEach to afterEach)');
        return Reflect.get(current, property);
      },
    });
    body(h, provider);
  });
}

/** What the harness's key provider stores (key versions, import-token keys), read through the provider itself. */
export function providerInventory(h: Harness): Promise<ProviderInventory> {
  return (h.hsm as unknown as { core: { provider: KeyProvider } }).core.provider.inventory();
}

/** Awaits `promise` and checks it failed with a BlockvaultError of `code`; returns the error. */
export async function expectCode(promise: Promise<unknown> | (() => unknown), code: ErrorCode): Promise<Error> {
  let error: unknown;
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (caught) {
    error = caught;
  }
  expect(error, `expected ${code}`).toBeDefined();
  if (!isBlockvaultError(error, code)) throw new Error(`expected ${code}, got ${String((error as { code?: string })?.code)}: ${(error as Error)?.message}`);
  return error;
}

/** A key with an instance and a Reader authorization for the storage service. */
export async function setupKey(hsm: SoftHsm, options: { name?: string; dualAuthDelete?: boolean } = {}) {
  const instance = await hsm.createInstance({ name: `crypto-${Math.random().toString(36).slice(2, 8)}` });
  await hsm.authorize({ sourceService: 'blockvault', targetInstance: instance.id, role: 'Reader' });
  const key = await hsm.createRootKey(instance.id, { name: options.name ?? 'db-root', ...(options.dualAuthDelete ? { dualAuthDelete: true } : {}) });
  return { instance, key };
}

export function volumeCrn(id: string): string {
  return `crn:v1:local:private:blockvault:local:a/default:engine-1:volume:${id}`;
}
