/**
 * Forcing the native addon's AES code path, for benchmarks and tests: XtsCipher.create's
 * `nativePath` per cipher, BLOCKVAULT_XTS_PATH per process. Unknown names and paths this CPU
 * cannot run are refused with the reason; the known-answer and cross-check suites (kat.test.ts,
 * properties.test.ts) run on every path through `nativePath`.
 */
import { spawnSync } from 'node:child_process';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { XtsCipher } from '../../src/cipher/index.js';
import { findPackageRoot } from '../../src/cipher/native-binding.js';
import { NATIVE_STATUS, REQUIRE_NATIVE, cipherChildEnv, randomKey } from './helpers.js';

const ROOT = findPackageRoot(dirname(fileURLToPath(import.meta.url)))!;
const FIXTURE = fileURLToPath(new URL('./fixtures/select-backend.ts', import.meta.url));
const NO_ADDON = !NATIVE_STATUS.available && !REQUIRE_NATIVE;
const PATHS = NATIVE_STATUS.paths ?? [];

function childWithPath(path: string) {
  const run = spawnSync(process.execPath, ['--import', 'tsx', FIXTURE, 'native'], { cwd: ROOT, env: cipherChildEnv({ BLOCKVAULT_XTS_PATH: path }), encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(0);
  return JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { ok: boolean; message?: string; status: { cpuPath?: string; error?: string } };
}

describe.skipIf(NO_ADDON)(`native XTS paths${NO_ADDON ? ` (skipped: native addon unavailable: ${NATIVE_STATUS.error})` : ''}`, () => {
  it('lists every path, fastest first, and the default is the fastest this CPU runs (unless BLOCKVAULT_XTS_PATH forces one)', () => {
    expect(PATHS.map((p) => p.name)).toEqual(['vaes-avx512', 'vaes-avx2', 'aesni-x8', 'portable']);
    expect(PATHS.find((p) => p.name === 'portable')!.supported).toBe(true);
    const forced = process.env.BLOCKVAULT_XTS_PATH;
    expect(NATIVE_STATUS.cpuPath).toBe(forced !== undefined && forced !== '' ? forced : PATHS.find((p) => p.supported)!.name);
    for (const p of PATHS) if (!p.supported) expect(p.reason).toMatch(/^this CPU lacks /);
  });

  it('nativePath forces the path per cipher and gives the same bytes on each', () => {
    const key = randomKey();
    const data = Buffer.alloc(4096 * 9, 0xa5);
    const outputs = PATHS.filter((p) => p.supported).map((p) => {
      const xts = XtsCipher.create({ nativePath: p.name });
      expect([xts.backend, xts.nativePath]).toEqual(['native', p.name]);
      const handle = xts.keyed(key);
      const viaHandle = Buffer.alloc(data.length);
      handle.encryptSectorsInto(77, 4096, data, viaHandle);
      handle.wipe();
      const plain = Buffer.from(xts.encryptSectors(key, 77, 4096, data));
      expect(viaHandle.equals(plain)).toBe(true);
      return plain.toString('hex');
    });
    expect(new Set(outputs).size).toBe(1);
    expect(XtsCipher.create({ backend: 'native' }).nativePath).toBe(NATIVE_STATUS.cpuPath);
    expect(XtsCipher.create({ backend: 'ts' }).nativePath).toBeUndefined();
  });

  it('refuses an unknown path, a path without the native backend, and a path this CPU lacks', () => {
    expect(() => XtsCipher.create({ nativePath: 'vaes' })).toThrow(/nativePath must be one of 'vaes-avx512', 'vaes-avx2', 'aesni-x8', 'portable', got 'vaes'/);
    expect(() => XtsCipher.create({ backend: 'ts', nativePath: 'portable' })).toThrow(/nativePath needs backend 'native'/);
    for (const p of PATHS.filter((q) => !q.supported)) {
      expect(() => XtsCipher.create({ nativePath: p.name })).toThrow(`nativePath '${p.name}' cannot run here: ${p.reason}`);
    }
  });

  it('BLOCKVAULT_XTS_PATH forces the path for a process, and a bad value makes the addon refuse to load with the reason', () => {
    const forced = childWithPath('portable');
    expect(forced.ok).toBe(true);
    expect(forced.status.cpuPath).toBe('portable');
    const bad = childWithPath('bogus');
    expect(bad.ok).toBe(false);
    expect(bad.message).toContain('BLOCKVAULT_XTS_PATH=bogus: unknown XTS path "bogus"; the paths are vaes-avx512, vaes-avx2, aesni-x8, portable');
  });
});
