/**
 * `blockvault volume serve` as a user runs it: a child process that prints the NBD URI, serves
 * until SIGTERM, then flushes, closes and exits 0, removing its socket. What a client wrote is in
 * the volume afterwards (read back with `volume export`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PASSPHRASE, REPO_ROOT, runBlockvault } from '../cli/helpers.js';
import { useTempDirs } from '../helpers/temp-dir.js';
import { CMD, RawClient } from './helpers/raw-client.js';

const tempDir = useTempDirs('blockvault-nbd-cli-');
let child: ChildProcess | null = null;
let raw: RawClient | null = null;

afterEach(() => {
  raw?.close();
  if (child !== null && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  child = raw = null;
});

function serve(args: string[]): { child: ChildProcess; firstLine: Promise<string>; exit: Promise<number | null>; stderr: () => string } {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, BLOCKVAULT_PASSPHRASE: PASSPHRASE })) {
    if (v !== undefined && !k.startsWith('VITEST') && k !== 'NODE_OPTIONS') env[k] = v;
  }
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'volume', 'serve', ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const firstLine = new Promise<string>((resolve, reject) => {
    proc.stdout!.on('data', (b: Buffer) => {
      stdout += b.toString();
      const newline = stdout.indexOf('\n');
      if (newline >= 0) resolve(stdout.slice(0, newline));
    });
    proc.on('exit', (code) => reject(new Error(`serve exited with ${code} before printing: ${stderr}`)));
  });
  const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { child: proc, firstLine, exit, stderr: () => stderr };
}

describe('blockvault volume serve', () => {
  it('prints the nbd+unix URI, serves, and on SIGTERM flushes, closes and exits 0', async () => {
    const dir = join(tempDir(), 'engine');
    expect((await runBlockvault(['hsm', 'init', '--dir', dir])).code).toBe(0);
    expect((await runBlockvault(['volume', 'create', '--dir', dir, '--name', 'disk', '--size', '4MiB'])).code).toBe(0);
    const socketPath = join(dir, 'disk.sock');
    const run = serve(['disk', '--dir', dir, '--socket', socketPath]);
    child = run.child;
    const uri = await run.firstLine;
    expect(uri).toBe(`nbd+unix:///disk?socket=${socketPath}`);

    raw = await RawClient.connect(socketPath);
    const { sizeBytes } = await raw.go('disk');
    expect(sizeBytes).toBe(4n * 1024n * 1024n);
    const data = Buffer.from('written over NBD through the CLI server '.repeat(100));
    raw.request(CMD.WRITE, 1n, 8192, data.length, 0, data);
    expect((await raw.reply()).error).toBe(0);
    raw.close();

    child.kill('SIGTERM');
    expect(await run.exit).toBe(0);
    expect(run.stderr()).toContain('SIGTERM');
    expect(existsSync(socketPath)).toBe(false);
    const exported = await runBlockvault(['volume', 'export', 'disk', '--dir', dir, '--offset', '8192', '--length', String(data.length)]);
    expect(exported.stderr).toBe('');
    expect(exported.stdout.equals(data)).toBe(true);
  });

  it('--read-only on TCP port 0 prints nbd://127.0.0.1:<port>/name and the export refuses writes', async () => {
    const dir = join(tempDir(), 'engine');
    expect((await runBlockvault(['hsm', 'init', '--dir', dir])).code).toBe(0);
    expect((await runBlockvault(['volume', 'create', '--dir', dir, '--name', 'ro', '--size', '1MiB'])).code).toBe(0);
    const run = serve(['ro', '--dir', dir, '--port', '0', '--read-only', '--json']);
    child = run.child;
    const doc = JSON.parse(await run.firstLine) as { uri: string; export: { readOnly: boolean } };
    expect(doc.uri).toMatch(/^nbd:\/\/127\.0\.0\.1:\d+\/ro$/);
    expect(doc.export.readOnly).toBe(true);
    raw = await RawClient.connect(Number(/:(\d+)\//.exec(doc.uri)![1]));
    const { flags } = await raw.go('ro');
    expect(flags & 2).toBe(2); // NBD_FLAG_READ_ONLY
    raw.request(CMD.WRITE, 1n, 0, 512, 0, Buffer.alloc(512, 1));
    expect((await raw.reply()).error).toBe(1); // EPERM
    raw.close();
    child.kill('SIGINT');
    expect(await run.exit).toBe(0);
  });

  it('--socket with --port is a usage error', async () => {
    const result = await runBlockvault(['volume', 'serve', 'x', '--socket', '/tmp/x.sock', '--port', '1']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('either --socket or --port');
  });
});
