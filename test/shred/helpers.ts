/**
 * Helpers for the cryptoshredding tests: capture every plaintext data key the main thread holds
 * (so a test can prove they were all zeroized), read a volume record straight from LMDB (its
 * wrapped data keys), and settle promises with a deadline (no test may hang on a stuck op).
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { open } from 'lmdb';
import { expect, vi } from 'vitest';
import type { ProviderName } from '../helpers/providers.js';
import { tokenKeyVersions } from '../helpers/softhsm.js';
import { KeyRing } from '../../src/volume/data-key.js';
import type { VolumeRecord } from '../../src/volume/record.js';
import { VolumeReencryptTarget } from '../../src/volume/reencrypt-target.js';

export const MIB = 1024 * 1024;

/**
 * From now on, every data key handed to any volume's key ring and every copy the re-encryption
 * target hands a rotation runner. Call `restore()` when done.
 */
export function captureDataKeys(): { ringKeys: Uint8Array[]; runnerCopies: Uint8Array[]; restore(): void } {
  const ringKeys: Uint8Array[] = [];
  const runnerCopies: Uint8Array[] = [];
  const originalSet = KeyRing.prototype.set;
  const setSpy = vi.spyOn(KeyRing.prototype, 'set').mockImplementation(function (this: KeyRing, generation: number, key: Uint8Array) {
    ringKeys.push(key);
    return originalSet.call(this, generation, key);
  });
  const originalDataKey = VolumeReencryptTarget.prototype.dataKey;
  const dataKeySpy = vi.spyOn(VolumeReencryptTarget.prototype, 'dataKey').mockImplementation(function (this: VolumeReencryptTarget, generation: number) {
    const copy = originalDataKey.call(this, generation);
    runnerCopies.push(copy);
    return copy;
  });
  return {
    ringKeys,
    runnerCopies,
    restore: () => {
      setSpy.mockRestore();
      dataKeySpy.mockRestore();
    },
  };
}

export function allZero(keys: readonly Uint8Array[]): boolean {
  return keys.every((key) => key.every((byte) => byte === 0));
}

/** The persisted record of a volume (engine closed first: a second environment handle in-process is not wanted). */
export async function readVolumeRecord(engineDir: string, id: string): Promise<VolumeRecord | undefined> {
  const env = open({ path: join(engineDir, 'engine.lmdb'), maxDbs: 32 });
  try {
    return env.openDB<VolumeRecord, string>('volumes', {}).get(id);
  } finally {
    await env.close();
  }
}

/** Sealed material files of a root key (one per version) in the software HSM's keystore. */
export function sealedKeyFiles(engineDir: string, keyId: string): string[] {
  const keysDir = join(engineDir, 'hsm', 'keys');
  if (!existsSync(keysDir)) return [];
  return readdirSync(keysDir).filter((name) => name.startsWith(`${keyId}.`));
}

/**
 * The versions of a root key whose material is still stored, for either provider: the sealed
 * files by name (software keystore), or the objects on the token (PKCS#11).
 */
export async function expectStoredVersions(engineDir: string, keyId: string, provider: ProviderName, versions: number[]): Promise<void> {
  if (provider === 'software') expect(sealedKeyFiles(engineDir, keyId).sort()).toEqual(versions.map((v) => `${keyId}.v${v}.sealed`));
  else expect(await tokenKeyVersions(engineDir, keyId)).toEqual(versions);
}

export type Outcome<T> = { status: 'ok'; value: T; atMs: number } | { status: 'error'; code: string; atMs: number };

/**
 * The promise's outcome and the moment it settled. Call it where the operation is issued: the
 * handler is attached at once, so a rejection is never an unhandled one while the test awaits
 * something else.
 */
export function observe<T>(promise: Promise<T>): Promise<Outcome<T>> {
  return promise.then(
    (value) => ({ status: 'ok' as const, value, atMs: performance.now() }),
    (error: unknown) => ({ status: 'error' as const, code: String((error as { code?: unknown }).code ?? (error as Error).message), atMs: performance.now() }),
  );
}

/** The outcomes of observed operations; 'hung' for those still pending after `timeoutMs`. */
export async function settleAll<T>(observed: Promise<Outcome<T>>[], timeoutMs: number): Promise<(Outcome<T> | { status: 'hung' })[]> {
  const outcomes: (Outcome<T> | { status: 'hung' })[] = observed.map(() => ({ status: 'hung' }));
  const tracked = observed.map((p, i) => p.then((outcome) => void (outcomes[i] = outcome)));
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(tracked), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
  clearTimeout(timer);
  return outcomes;
}

export async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'OK';
  } catch (error) {
    return String((error as { code?: unknown }).code ?? (error as Error).message);
  }
}
