/**
 * Cryptoshredding and crashes: the process is SIGKILLed right after deleteKey returns, or at a
 * random moment while it runs, with writers busy. On reopen the outcome is all or nothing: the
 * key destroyed and every volume locked with nothing readable by any API or in any file, or (a
 * kill before the delete took effect) the key alive and the data intact. Never a destroyed key
 * with a readable volume.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { Engine, type EngineOptions } from '../../src/engine.js';
import { KeyState } from '../../src/hsm/types.js';
import { markerPattern, runNeedle } from '../../src/shred/markers.js';
import { scanForNeedles } from '../../src/shred/scan.js';
import { checkAfterRestart } from '../../src/shred/verify-restart.js';
import { testHsmOptions } from '../helpers/engine.js';
import { runChildUntilKilled } from '../helpers/kill-child.js';
import { forEachProvider, type ProviderName } from '../helpers/providers.js';
import { softHsmToken } from '../helpers/softhsm.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { MIB, expectStoredVersions } from './helpers.js';

afterAll(() => removeTempDirs());

const CHILD = fileURLToPath(new URL('./fixtures/shred-child.ts', import.meta.url));

/** Run the child; SIGKILL it `delayMs` after it prints `line`. Resolves with what it printed. */
async function runAndKill(p: Prepared, seed: number, line: 'deleting' | 'deleted', delayMs: number): Promise<string[]> {
  const lines: string[] = [];
  await runChildUntilKilled(CHILD, [p.dir, p.keyFile, p.keyCrn, String(seed)], {
    name: 'shred child',
    // SOFTHSM2_CONF is in process.env once the token exists (test/helpers/softhsm.ts).
    ...(p.provider === 'pkcs11' ? { env: { ...process.env, BLOCKVAULT_TEST_HSM: JSON.stringify(p.hsm) } } : {}),
    onLine: (printed, control) => {
      lines.push(printed);
      if (printed === line) control.kill(delayMs);
    },
  });
  return lines;
}

interface Prepared {
  provider: ProviderName;
  /** What opens the engine: the key file (software) or the token. */
  hsm: EngineOptions['hsm'];
  dir: string;
  keyFile: string;
  keyCrn: string;
  keyId: string;
  material: Buffer;
  prefix: Map<string, Buffer>;
  ids: string[];
  softId: string;
}

async function prepare(seed: number, provider: ProviderName): Promise<Prepared> {
  const root = makeTempDir('bv-shred-crash-');
  const keyFile = join(root, 'hsm.key');
  writeFileSync(keyFile, randomBytes(32), { mode: 0o600 });
  const dir = join(root, 'engine');
  const hsm: EngineOptions['hsm'] = provider === 'pkcs11' ? testHsmOptions(provider) : { keyFile };
  const engine = await Engine.open({ dir, hsm, purgeIntervalMs: 0 });
  try {
    const instance = await engine.hsm.createInstance({ name: 'crash' });
    await engine.hsm.authorize({ sourceService: 'blockvault', targetInstance: instance.id, role: 'Reader' });
    const material = randomBytes(32);
    const key = await engine.hsm.importRootKey(instance.id, { name: 'crash', material: Buffer.from(material) });
    const prefix = new Map<string, Buffer>();
    const ids: string[] = [];
    for (const name of ['a', 'b', 'c']) {
      const vol = await engine.createVolume({ name, sizeBytes: 2 * MIB, sectorSize: name === 'b' ? 512 : 4096, diskEncryptionKeyCrn: key.crn });
      const data = markerPattern(seed, name.charCodeAt(0), MIB);
      await vol.write(0, data);
      prefix.set(name, data);
      ids.push(vol.info().id);
    }
    await engine.deleteVolume('c');
    return { provider, hsm, dir, keyFile, keyCrn: key.crn, keyId: key.id, material, prefix, ids, softId: ids[2]! };
  } finally {
    await engine.close();
  }
}

async function keyStateAfterReopen(p: Prepared): Promise<{ state: number; volumeStates: string[] }> {
  const engine = await Engine.open({ dir: p.dir, hsm: p.hsm, purgeIntervalMs: 0 });
  try {
    const key = await engine.hsm.getKey(p.keyCrn);
    return { state: key.state, volumeStates: engine.listVolumes().map((v) => v.state) };
  } finally {
    await engine.close();
  }
}

/** The shredded outcome: locked everywhere, nothing readable by any API, no plaintext or key material in any file. */
async function expectShredded(p: Prepared, seed: number): Promise<void> {
  const report = await checkAfterRestart({ dir: p.dir, hsm: p.hsm, cipher: undefined, keyCrn: p.keyCrn, volumeIds: p.ids, softDeletedId: p.softId });
  expect(report).toMatchObject({ volumes: 3, volumesLocked: 3, metadataReadable: true, dataReadable: 0 });
  expect(Object.values(report.refusals).every((code) => code === 'VOLUME_LOCKED' || code === 'KEY_DESTROYED')).toBe(true);
  await expectStoredVersions(p.dir, p.keyId, p.provider, []);
  const scan = scanForNeedles(p.dir, [runNeedle(seed), p.material]);
  expect(scan.hits).toBe(0);
  // On PKCS#11 the imported material went into the token: it must not lie in its files in the clear.
  if (p.provider === 'pkcs11') expect(scanForNeedles(softHsmToken().tokenDir, [p.material]).hits).toBe(0);
}

forEachProvider('cryptoshredding survives SIGKILL', (provider) => {
  it('killed right after deleteKey returns: on reopen every volume is locked and nothing is readable', async () => {
    for (const seed of [1, 2]) {
      const p = await prepare(seed, provider);
      const lines = await runAndKill(p, seed, 'deleted', 0);
      expect(lines).toContain('deleted');
      const after = await keyStateAfterReopen(p);
      expect(after).toEqual({ state: KeyState.Destroyed, volumeStates: ['locked', 'locked', 'locked'] });
      await expectShredded(p, seed);
    }
  });

  it('killed at a random moment during the delete: all or nothing on reopen', async () => {
    const outcomes: string[] = [];
    for (const [trial, delayMs] of [0, 1, 3, 6, 10, 20].entries()) {
      const seed = 100 + trial;
      const p = await prepare(seed, provider);
      await runAndKill(p, seed, 'deleting', delayMs);
      const after = await keyStateAfterReopen(p);
      if (after.state === KeyState.Destroyed) {
        outcomes.push('shredded');
        expect(after.volumeStates).toEqual(['locked', 'locked', 'locked']);
        await expectShredded(p, seed);
      } else {
        outcomes.push('intact');
        expect(after).toEqual({ state: KeyState.Active, volumeStates: ['active', 'active', 'deleted'] });
        const engine = await Engine.open({ dir: p.dir, hsm: p.hsm, purgeIntervalMs: 0 });
        try {
          for (const name of ['a', 'b']) {
            const vol = await engine.openVolume(name);
            expect(Buffer.from(await vol.read(0, MIB)).equals(p.prefix.get(name)!)).toBe(true);
          }
        } finally {
          await engine.close();
        }
      }
    }
    // Both outcomes are legitimate; which one a kill lands in depends on timing.
    expect(outcomes).toHaveLength(6);
    console.info(`shred crash trials (${provider}): ${outcomes.join(", ")}`);
  });
});
