/**
 * `blockvault volume serve` as a user runs it: a child process that prints the NBD URI, serves
 * until SIGTERM, then flushes, closes and exits 0, removing its socket. What a client wrote is in
 * the volume afterwards (read back with `volume export`), also after the server is killed: what
 * a FLUSH answered (write-back, the default) or every answered write (--write-through).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runBlockvault } from '../cli/helpers.js';
import { useTempDirs } from '../helpers/temp-dir.js';
import { startCliServer, type CliServer } from './helpers/cli-server.js';
import { CMD, RawClient } from './helpers/raw-client.js';

const tempDir = useTempDirs('blockvault-nbd-cli-');
let server: CliServer | null = null;
let raw: RawClient | null = null;

afterEach(() => {
  raw?.close();
  server?.kill();
  server = raw = null;
});

describe('blockvault volume serve', () => {
  it('prints the nbd+unix URI, serves, and on SIGTERM flushes, closes and exits 0', async () => {
    const dir = join(tempDir(), 'engine');
    expect((await runBlockvault(['hsm', 'init', '--dir', dir])).code).toBe(0);
    expect((await runBlockvault(['volume', 'create', '--dir', dir, '--name', 'disk', '--size', '4MiB'])).code).toBe(0);
    const socketPath = join(dir, 'disk.sock');
    server = await startCliServer(['disk', '--dir', dir, '--socket', socketPath]);
    const uri = server.firstLine;
    expect(uri).toBe(`nbd+unix:///disk?socket=${socketPath}`);

    raw = await RawClient.connect(socketPath);
    const { sizeBytes } = await raw.go('disk');
    expect(sizeBytes).toBe(4n * 1024n * 1024n);
    const data = Buffer.from('written over NBD through the CLI server '.repeat(100));
    raw.request(CMD.WRITE, 1n, 8192, data.length, 0, data);
    expect((await raw.reply()).error).toBe(0);
    raw.close();

    expect(await server.stop('SIGTERM')).toBe(0);
    expect(server.stderr()).toContain('SIGTERM');
    expect(existsSync(socketPath)).toBe(false);
    const exported = await runBlockvault(['volume', 'export', 'disk', '--dir', dir, '--offset', '8192', '--length', String(data.length)]);
    expect(exported.stderr).toBe('');
    expect(exported.stdout.equals(data)).toBe(true);
  });

  it('--read-only on TCP port 0 prints nbd://127.0.0.1:<port>/name and the export refuses writes', async () => {
    const dir = join(tempDir(), 'engine');
    expect((await runBlockvault(['hsm', 'init', '--dir', dir])).code).toBe(0);
    expect((await runBlockvault(['volume', 'create', '--dir', dir, '--name', 'ro', '--size', '1MiB'])).code).toBe(0);
    server = await startCliServer(['ro', '--dir', dir, '--port', '0', '--read-only', '--json']);
    const doc = JSON.parse(server.firstLine) as { uri: string; export: { readOnly: boolean } };
    expect(doc.uri).toMatch(/^nbd:\/\/127\.0\.0\.1:\d+\/ro$/);
    expect(doc.export.readOnly).toBe(true);
    raw = await RawClient.connect(Number(/:(\d+)\//.exec(doc.uri)![1]));
    const { flags } = await raw.go('ro');
    expect(flags & 2).toBe(2); // NBD_FLAG_READ_ONLY
    raw.request(CMD.WRITE, 1n, 0, 512, 0, Buffer.alloc(512, 1));
    expect((await raw.reply()).error).toBe(1); // EPERM
    raw.close();
    expect(await server.stop('SIGINT')).toBe(0);
  });

  // A real crash (SIGKILL of the server process): what a FLUSH answered is in the volume, and so,
  // with --write-through, is every answered write without a flush.
  it.each([
    { mode: 'write-back (default): writes answered before a FLUSH', args: [] as string[], flush: true },
    { mode: '--write-through: every answered write, no FLUSH sent', args: ['--write-through'], flush: false },
  ])('$mode survive a SIGKILL of the server', async ({ args, flush }) => {
    const dir = join(tempDir(), 'engine');
    expect((await runBlockvault(['hsm', 'init', '--dir', dir])).code).toBe(0);
    expect((await runBlockvault(['volume', 'create', '--dir', dir, '--name', 'crash', '--size', '64MiB'])).code).toBe(0);
    const socketPath = join(dir, 'crash.sock');
    server = await startCliServer(['crash', '--dir', dir, '--socket', socketPath, ...args]);
    raw = await RawClient.connect(socketPath);
    await raw.go('crash');
    // 48 MiB pipelined: answered (write-back) far faster than LMDB commits it, so without the
    // FLUSH waiting for the commits much of it would be lost (checked: it is, without the FLUSH).
    const blockBytes = 256 * 1024;
    const blocks = 192;
    const data = randomBytes(blocks * blockBytes);
    for (let i = 0; i < blocks; i++) raw.request(CMD.WRITE, BigInt(i), i * blockBytes, blockBytes, 0, data.subarray(i * blockBytes, (i + 1) * blockBytes));
    if (flush) raw.request(CMD.FLUSH, BigInt(blocks), 0, 0);
    for (let i = 0; i < blocks + (flush ? 1 : 0); i++) expect((await raw.reply()).error).toBe(0);
    server.child.kill('SIGKILL');
    await new Promise((resolve) => server!.child.once('exit', resolve));
    raw.close();
    const exported = await runBlockvault(['volume', 'export', 'crash', '--dir', dir, '--length', String(data.length)]);
    expect(exported.stderr).toBe('');
    expect(exported.stdout.equals(data)).toBe(true);
  });

  it('--socket with --port is a usage error', async () => {
    const result = await runBlockvault(['volume', 'serve', 'x', '--socket', '/tmp/x.sock', '--port', '1']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('either --socket or --port');
  });
});
