/**
 * Runs the CLI the way a user does: a real child process (`node --import tsx src/cli/main.ts`)
 * with the passphrase in the environment, stdin fed from a buffer, stdout and stderr captured.
 * Also an in-process runner with memory streams for the cheap parsing checks.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { CliContext } from '../../src/cli/context.js';
import { runCli } from '../../src/cli/program.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const PASSPHRASE = 'correct horse battery staple';

export interface CliResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  /** stdout parsed as the one JSON document of a --json run. */
  json<T = any>(): T;
  /** stderr parsed as the JSON error of a failed --json run. */
  jsonError(): { error: { code: string; message: string } };
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  input?: Buffer | string;
  timeoutMs?: number;
}

export function runBlockvault(args: readonly string[], options: RunOptions = {}): Promise<CliResult> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, BLOCKVAULT_PASSPHRASE: PASSPHRASE, ...options.env })) {
    if (v !== undefined && !k.startsWith('VITEST') && k !== 'NODE_OPTIONS') env[k] = v;
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      cwd: REPO_ROOT,
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 50_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out);
      const stderr = Buffer.concat(err).toString('utf8');
      resolve({
        code,
        stdout,
        stderr,
        json: () => {
          try {
            return JSON.parse(stdout.toString('utf8'));
          } catch {
            throw new Error(`stdout is not one JSON document (exit ${code}):\n${stdout.toString('utf8')}\nstderr:\n${stderr}`);
          }
        },
        jsonError: () => JSON.parse(stderr.trim().split('\n').at(-1)!),
      });
    });
    child.stdin.on('error', () => undefined); // the CLI may exit before reading all of its input
    child.stdin.end(options.input ?? '');
  });
}

export function tempDir(prefix = 'bv-cli-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

class MemoryWritable extends Writable {
  readonly chunks: Buffer[] = [];
  isTTY = false;
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.chunks.push(Buffer.from(chunk));
    cb();
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

/** Runs the program in this process, for checks that never open an engine. */
export async function runInProcess(argv: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new MemoryWritable();
  const stderr = new MemoryWritable();
  const stdin = Readable.from([]) as Readable & { isTTY?: boolean };
  const ctx: CliContext = { stdin, stdout, stderr, env };
  const code = await runCli(argv, ctx);
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}

