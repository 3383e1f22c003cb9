/**
 * The shipped addon on CPUs this machine is not: qemu-x86_64 (user-mode emulation, Debian's
 * qemu-user) runs Node with the CPUID of an older CPU model, and its translator traps every
 * instruction that model lacks (SIGILL), so a kernel that strayed outside its path's features, or
 * a build that assumed the build machine's CPU, fails here rather than on a customer's server.
 * Each model must pick the path expected for it, and every path it supports must pass the IEEE
 * 1619 vectors and the node:crypto cross-check (fixtures/emulated-cpu-check.ts).
 *
 * This checks correctness and path selection only: the emulator's speed says nothing about the
 * CPU's, so the AES-NI figures in the README stay the ones measured natively (forced path).
 */
import { spawnSync } from 'node:child_process';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { findPackageRoot } from '../../src/cipher/native-binding.js';
import { findTools } from '../helpers/external-tool.js';
import { NATIVE_STATUS, REQUIRE_NATIVE, cipherChildEnv } from './helpers.js';

const ROOT = findPackageRoot(dirname(fileURLToPath(import.meta.url)))!;
const FIXTURE = fileURLToPath(new URL('./fixtures/emulated-cpu-check.ts', import.meta.url));
const ON_X64 = process.arch === 'x64' && process.platform === 'linux';
const TOOLS = ON_X64 ? findTools([{ name: 'qemu-x86_64', debianPackage: 'qemu-user' }]) : { ok: false, reason: `not an x86-64 Linux host (${process.platform}-${process.arch})` };
const NO_ADDON = !NATIVE_STATUS.available && !REQUIRE_NATIVE;
const SKIP = NO_ADDON ? `native addon unavailable: ${NATIVE_STATUS.error}` : !TOOLS.ok ? TOOLS.reason : '';

/** Generous: a run takes about 4 s on this machine; the emulator is slow under load. */
const RUN_TIMEOUT_MS = 120_000;

function underQemu(cpuModel: string, extraEnv: Record<string, string> = {}) {
  const run = spawnSync('qemu-x86_64', ['-cpu', cpuModel, process.execPath, '--import', 'tsx', FIXTURE], {
    cwd: ROOT,
    env: cipherChildEnv(extraEnv),
    encoding: 'utf8',
    timeout: RUN_TIMEOUT_MS,
  });
  // qemu warns about host features TCG cannot emulate (pcid, x2apic, ...); those lines are noise.
  const stderr = run.stderr.split('\n').filter((l) => !l.includes("TCG doesn't support requested feature")).join('\n');
  return { status: run.status, signal: run.signal, stdout: run.stdout, stderr };
}

const MODELS = [
  { model: 'Nehalem', why: 'no AES-NI', path: 'portable', supported: ['portable'] },
  { model: 'Westmere', why: 'AES-NI and SSE4.2, no AVX at all', path: 'aesni-x8', supported: ['aesni-x8', 'portable'] },
  { model: 'Haswell', why: 'AES-NI and AVX2, no VAES (most servers in use)', path: 'aesni-x8', supported: ['aesni-x8', 'portable'] },
] as const;

describe.skipIf(SKIP !== '')(`the addon on emulated CPUs${SKIP ? ` (skipped: ${SKIP})` : ''}`, () => {
  for (const m of MODELS) {
    it(`${m.model} (${m.why}) picks ${m.path} and every path it supports passes the vectors and cross-checks`, () => {
      const run = underQemu(m.model);
      expect({ status: run.status, signal: run.signal }, run.stderr).toEqual({ status: 0, signal: null });
      const report = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { cpuPath: string; supported: string[]; checks: number };
      expect(report.cpuPath).toBe(m.path);
      expect(report.supported).toEqual(m.supported);
      // 10 vector checks and 14 batch shapes x 6 calls per path.
      expect(report.checks).toBe(m.supported.length * (10 + 14 * 6));
    }, RUN_TIMEOUT_MS);
  }

  it('on Haswell, forcing a VAES path refuses to load the addon and names the missing feature', () => {
    const run = underQemu('Haswell', { BLOCKVAULT_XTS_PATH: 'vaes-avx2' });
    expect(run.signal, run.stderr).toBeNull();
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/native addon unavailable: .*BLOCKVAULT_XTS_PATH=vaes-avx2: .*this CPU lacks VAES/);
  }, RUN_TIMEOUT_MS);
});
