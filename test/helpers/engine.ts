/**
 * Engines for tests: real LMDB files in a temp dir, a fixed passphrase, the background purge
 * timer off (tests call purgeExpired()), and a root key the storage service may use.
 */
import { Engine, type EngineOptions } from '../../src/engine.js';
import type { RootKeyInfo } from '../../src/hsm/types.js';
import type { ProviderName } from './providers.js';
import { softHsmToken } from './softhsm.js';

export const TEST_PASSPHRASE = 'test passphrase: correct horse battery staple';

/** `provider` picks the key provider when `hsm` is not given: the test passphrase (default) or the process's SoftHSM2 token. */
export type TestEngineOptions = Omit<EngineOptions, 'dir' | 'hsm'> & { hsm?: EngineOptions['hsm']; provider?: ProviderName };

export function testHsmOptions(provider: ProviderName = 'software'): EngineOptions['hsm'] {
  return provider === 'pkcs11' ? { pkcs11: softHsmToken().options } : { passphrase: TEST_PASSPHRASE };
}

export function openTestEngine(dir: string, options: TestEngineOptions = {}): Promise<Engine> {
  const { provider, ...rest } = options;
  return Engine.open({ purgeIntervalMs: 0, ...rest, dir, hsm: options.hsm ?? testHsmOptions(provider) });
}

/** An HSM instance with a root key, and (unless `authorize: false`) blockvault's Reader authorization on it. */
export async function rootKey(engine: Engine, options: { name?: string; authorize?: boolean; material?: Uint8Array } = {}): Promise<RootKeyInfo> {
  const instance = await engine.hsm.createInstance({ name: `${options.name ?? 'root'}-instance` });
  const key =
    options.material === undefined
      ? await engine.hsm.createRootKey(instance.id, { name: options.name ?? 'root' })
      : await engine.hsm.importRootKey(instance.id, { name: options.name ?? 'root', material: options.material });
  if (options.authorize !== false) {
    await engine.hsm.authorize({ sourceService: 'blockvault', targetInstance: instance.id, role: 'Reader' });
  }
  return key;
}
