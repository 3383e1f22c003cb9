/**
 * Choosing the backend: explicit option > BLOCKVAULT_CIPHER > native if it loads > ts with one
 * warning per process. A missing addon is simulated with BLOCKVAULT_NATIVE_ADDON pointing at a
 * file that does not exist, in a fresh child process (the choice and the warning are per process).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { findPackageRoot, probeNativeAddon, NATIVE_FUNCTIONS } from '../../src/cipher/native-binding.js';
import { NATIVE_STATUS, REQUIRE_NATIVE } from './helpers.js';

const ROOT = findPackageRoot(dirname(fileURLToPath(import.meta.url)))!;
const FIXTURE = fileURLToPath(new URL('./fixtures/select-backend.ts', import.meta.url));
const MISSING = join(tmpdir(), 'blockvault-no-such-addon.node');
const WARNING_CODE = 'BLOCKVAULT_NATIVE_UNAVAILABLE';

function select(mode: string, env: Record<string, string | undefined>) {
  const childEnv: Record<string, string | undefined> = { ...process.env, BLOCKVAULT_CIPHER: undefined, BLOCKVAULT_NATIVE_ADDON: undefined, ...env };
  for (const k of Object.keys(childEnv)) if (childEnv[k] === undefined) delete childEnv[k];
  const run = spawnSync(process.execPath, ['--import', 'tsx', FIXTURE, mode], { cwd: ROOT, env: childEnv as NodeJS.ProcessEnv, encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(0);
  const line = run.stdout.trim().split('\n').at(-1)!;
  return { result: JSON.parse(line) as Record<string, unknown> & { backends?: string[]; message?: string; name?: string }, stderr: run.stderr };
}

function warningCount(stderr: string): number {
  return stderr.split(WARNING_CODE).length - 1;
}

describe('backend selection without the addon', () => {
  const noAddon = { BLOCKVAULT_NATIVE_ADDON: MISSING };

  it('default falls back to ts with exactly one warning that says why', () => {
    const { result, stderr } = select('default', noAddon);
    expect(result.backends).toEqual(['ts', 'ts']);
    expect(warningCount(stderr)).toBe(1);
    expect(stderr).toContain('pure-TypeScript cipher is used');
    expect(stderr).toContain(`cannot load ${MISSING}`);
  });

  it('an explicit ts choice (option or BLOCKVAULT_CIPHER=ts) is silent', () => {
    const byOption = select('ts', noAddon);
    expect(byOption.result.backends).toEqual(['ts', 'ts']);
    expect(warningCount(byOption.stderr)).toBe(0);
    const byEnv = select('default', { ...noAddon, BLOCKVAULT_CIPHER: 'ts' });
    expect(byEnv.result.backends).toEqual(['ts', 'ts']);
    expect(warningCount(byEnv.stderr)).toBe(0);
  });

  it('asking for native throws with the load error (option or BLOCKVAULT_CIPHER=native)', () => {
    for (const run of [select('native', noAddon), select('default', { ...noAddon, BLOCKVAULT_CIPHER: 'native' })]) {
      expect(run.result.ok).toBe(false);
      expect(run.result.message).toMatch(/the native cipher was requested but cannot be used: cannot load .*blockvault-no-such-addon\.node/);
      expect(run.result.message).toContain('npm run build:native');
      expect(warningCount(run.stderr)).toBe(0);
    }
  });

  it('an unknown BLOCKVAULT_CIPHER value is a RangeError naming the variable', () => {
    const { result } = select('default', { ...noAddon, BLOCKVAULT_CIPHER: 'fast' });
    expect(result).toMatchObject({ ok: false, name: 'RangeError' });
    expect(result.message).toBe("the BLOCKVAULT_CIPHER environment variable must be 'native' or 'ts', got 'fast'");
  });

  it('the explicit option wins over BLOCKVAULT_CIPHER', () => {
    const { result } = select('ts', { ...noAddon, BLOCKVAULT_CIPHER: 'native' });
    expect(result.backends).toEqual(['ts', 'ts']);
  });
});

describe('backend selection with the real addon', () => {
  const skipped = NATIVE_STATUS.available || REQUIRE_NATIVE ? '' : ` (skipped with every native cipher case: the addon is unavailable: ${NATIVE_STATUS.error ?? 'unknown'}; BLOCKVAULT_REQUIRE_NATIVE=1 makes them fail instead)`;
  it.runIf(NATIVE_STATUS.available || REQUIRE_NATIVE)(`default is native, silently; BLOCKVAULT_CIPHER=ts overrides it${skipped}`, () => {
    const byDefault = select('default', {});
    expect(byDefault.result.backends).toEqual(['native', 'native']);
    expect(warningCount(byDefault.stderr)).toBe(0);
    expect(byDefault.result.status).toMatchObject({ available: true, path: join(ROOT, 'native', 'blockvault-native.node') });
    expect(select('default', { BLOCKVAULT_CIPHER: 'ts' }).result.backends).toEqual(['ts', 'ts']);
  });
});

describe('addon probing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'blockvault-addon-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('an addon lacking any XTS function counts as unavailable, naming what it lacks', () => {
    const stale = join(dir, 'stale.cjs');
    writeFileSync(stale, "exports.nativeVersion = () => '0.0.1';\n");
    const probe = probeNativeAddon(stale);
    expect(probe.addon).toBeUndefined();
    expect(probe.status.available).toBe(false);
    expect(probe.status.path).toBe(stale);
    expect(probe.status.error).toContain(`lacks ${NATIVE_FUNCTIONS.filter((f) => f !== 'nativeVersion').join(', ')}`);
  });

  it('a file that does not load gives its load error, and no exception', () => {
    const broken = join(dir, 'broken.cjs');
    writeFileSync(broken, 'throw new Error("simulated dlopen failure");\n');
    expect(probeNativeAddon(broken).status).toMatchObject({ available: false, error: expect.stringContaining('simulated dlopen failure') });
    expect(probeNativeAddon(MISSING).status).toMatchObject({ available: false, error: expect.stringContaining('cannot load') });
  });

  it('the package root is found from the sources and from the build output', () => {
    expect(findPackageRoot(join(ROOT, 'src', 'cipher'))).toBe(ROOT);
    expect(findPackageRoot(join(ROOT, 'dist', 'src', 'cipher'))).toBe(ROOT);
    expect(findPackageRoot(tmpdir())).toBeUndefined();
  });
});
