/**
 * createImportToken on an HSM that stays full: the previous token is removed to make room, and
 * when the new transport key still cannot be made the caller hears that the instance now has no
 * token at all (not just HSM_FULL), the old key is gone, and nothing half-made is left.
 *
 * The software provider never runs out of room, so a thin wrapper refuses createTransportKey
 * with HSM_FULL while `full` is set (the PKCS#11 path to HSM_FULL is test/hsm/pkcs11-full.test.ts,
 * where destroying the old token always makes room, so this branch cannot be reached there).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockvaultError } from '../../src/errors.js';
import type { KeyProvider } from '../../src/hsm/provider.js';
import { SoftwareKeyProvider } from '../../src/hsm/software-provider.js';
import { expectCode, openHarness, setupKey, type Harness } from './helpers.js';

let full = false;
let transportKeysMade = 0;
function fillableProvider(args: { hsmDir: string; masterKey: Uint8Array }): KeyProvider {
  const inner = new SoftwareKeyProvider(args);
  return new Proxy(inner, {
    get(target, name, receiver) {
      if (name === 'createTransportKey') {
        return async (keyId: string) => {
          if (full) throw new BlockvaultError('HSM_FULL', 'the test HSM is full', { test: true });
          transportKeysMade++;
          return target.createTransportKey(keyId);
        };
      }
      const value: unknown = Reflect.get(target, name, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

const harnesses: Harness[] = [];
afterEach(async () => {
  full = false;
  for (const h of harnesses.splice(0)) await h.cleanup();
});

describe('createImportToken on an HSM that stays full', () => {
  it('removes the previous token to make room; when the retry fails too, the error says the instance has no token now, and the old key is destroyed', async () => {
    const h = await openHarness({ createProvider: fillableProvider });
    harnesses.push(h);
    const { instance } = await setupKey(h.hsm);
    await h.hsm.createImportToken(instance.id);
    const transportDir = join(h.dir, 'hsm', 'transport');
    expect(readdirSync(transportDir)).toHaveLength(1);

    full = true;
    const made = transportKeysMade;
    const error = await h.hsm.createImportToken(instance.id).then(
      () => null,
      (e: unknown) => e as BlockvaultError,
    );
    expect(error).toBeInstanceOf(BlockvaultError);
    expect(error!.code).toBe('HSM_FULL');
    expect(error!.message).toContain('the test HSM is full');
    expect(error!.message).toContain(`the previous import token of instance ${instance.id} was removed to make room for this one, so the instance has none now`);
    expect(error!.details).toEqual({ test: true });
    expect((error as Error & { cause?: unknown }).cause).toBeInstanceOf(BlockvaultError);
    expect(transportKeysMade).toBe(made);
    // The old token's record and its key are both gone; no new key was made.
    await expectCode(h.hsm.getImportToken(instance.id), 'NOT_FOUND');
    expect(readdirSync(transportDir)).toEqual([]);
    const events = h.audit.list({ action: 'hs-crypto.import-token.create' });
    expect(events.at(-1)).toMatchObject({ outcome: 'failure', code: 'HSM_FULL' });

    // Once there is room the instance gets a token again, and it works as a first one.
    full = false;
    const again = await h.hsm.createImportToken(instance.id);
    expect(again.retrievals).toBe(0);
    expect(readdirSync(transportDir)).toHaveLength(1);
    expect(h.audit.verify()).toMatchObject({ ok: true });
  });

  it('an instance without a token gets plain HSM_FULL: there is nothing to remove for room', async () => {
    const h = await openHarness({ createProvider: fillableProvider });
    harnesses.push(h);
    const { instance } = await setupKey(h.hsm);
    full = true;
    const error = await h.hsm.createImportToken(instance.id).then(
      () => null,
      (e: unknown) => e as BlockvaultError,
    );
    expect(error?.code).toBe('HSM_FULL');
    expect(error?.message).toBe('the test HSM is full');
    await expectCode(h.hsm.getImportToken(instance.id), 'NOT_FOUND');
  });
});
