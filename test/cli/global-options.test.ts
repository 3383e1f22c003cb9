/**
 * Global options (--dir, --json, --key-file) as users of git and kubectl type them: before or
 * after the subcommand, listed in the help of every level; and `hsm init --new-key-file`, which
 * lets a script set up an engine directory without any passphrase.
 */
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/program.js';
import { runBlockvault, runInProcess, tempDir, type CliResult } from './helpers.js';

const GLOBAL_FLAGS = ['--dir', '--json', '--key-file'];
const { dir: root, cleanup } = tempDir('bv-cli-global-');
afterAll(() => cleanup());

/** No passphrase anywhere: everything below must work from the key file alone. */
const noPassphrase = { env: { BLOCKVAULT_PASSPHRASE: undefined } };

function expectOk(result: CliResult): void {
  expect(result.code, result.stderr).toBe(0);
}

function expectFailure(result: CliResult, code: string, exitCode = 1): void {
  expect({ exit: result.code, stdout: result.stdout.toString() }, result.stderr).toEqual({ exit: exitCode, stdout: '' });
  expect(result.jsonError().error.code, result.stderr).toBe(code);
}

function leaves(command: Command): Command[] {
  return command.commands.length === 0 ? [command] : command.commands.flatMap(leaves);
}

describe('global options', () => {
  const dir = path.join(root, 'engine');
  const keyFile = path.join(root, 'engine.key');

  beforeAll(async () => {
    const init = await runBlockvault(['hsm', 'init', '--dir', dir, '--new-key-file', keyFile, '--json'], noPassphrase);
    expectOk(init);
  });

  it('work before and after the subcommand, and mixed', async () => {
    const create = await runBlockvault(['--dir', dir, '--key-file', keyFile, 'volume', 'create', '--name', 'v1', '--size', '1MiB', '--json'], noPassphrase);
    expectOk(create);
    const [before, after, mixed] = await Promise.all([
      runBlockvault(['--dir', dir, '--json', '--key-file', keyFile, 'volume', 'list'], noPassphrase),
      runBlockvault(['volume', 'list', '--dir', dir, '--json', '--key-file', keyFile], noPassphrase),
      runBlockvault(['--json', 'volume', '--dir', dir, 'list', '--key-file', keyFile], noPassphrase),
    ]);
    for (const result of [before, after, mixed]) {
      expectOk(result);
      expect(result.json()).toEqual([expect.objectContaining({ name: 'v1', id: create.json().id })]);
    }
  });

  it('--dir before or after the subcommand names the directory it looked in, and beats $BLOCKVAULT_DIR', async () => {
    const missing = path.join(root, 'nowhere');
    const fromEnv = path.join(root, 'from-env');
    for (const argv of [
      ['--dir', missing, '--json', 'volume', 'list'],
      ['volume', 'list', '--dir', missing, '--json'],
      ['--json', 'tasks', 'list', `--dir=${missing}`],
    ]) {
      const result = await runInProcess(argv, { BLOCKVAULT_PASSPHRASE: 'p', BLOCKVAULT_DIR: fromEnv });
      expect(result.code, result.stderr).toBe(1);
      expect(JSON.parse(result.stderr).error).toMatchObject({ code: 'NOT_FOUND', message: expect.stringContaining(`no blockvault data in ${missing}`) });
    }
    // Without --dir, $BLOCKVAULT_DIR is the default (resolved when the command runs).
    const result = await runInProcess(['volume', 'list', '--json'], { BLOCKVAULT_PASSPHRASE: 'p', BLOCKVAULT_DIR: fromEnv });
    expect(JSON.parse(result.stderr).error.message).toContain(`no blockvault data in ${fromEnv}`);
  });

  it('the demo takes --dir on either side and still refuses a used directory', async () => {
    const used = path.join(root, 'used');
    mkdirSync(used);
    writeFileSync(path.join(used, 'something'), 'x');
    for (const argv of [['--dir', used, '--json', 'demo'], ['demo', '--dir', used, '--json']]) {
      const result = await runInProcess(argv, { BLOCKVAULT_PASSPHRASE: 'p' });
      expect(result.code, result.stderr).toBe(1);
      expect(JSON.parse(result.stderr).error).toMatchObject({ code: 'ALREADY_EXISTS', message: expect.stringContaining(used) });
    }
  });

  it.each([
    [['--help'], 'Options:'],
    [['volume', '--help'], 'Global Options:'],
    [['key', 'token', '--help'], 'Global Options:'],
    [['volume', 'list', '--help'], 'Global Options:'],
    [['key', 'token', 'create', '--help'], 'Global Options:'],
    [['hsm', 'init', '--help'], 'Global Options:'],
    [['demo', '--help'], 'Global Options:'],
    [['help', 'tasks', 'wait'], 'Global Options:'],
  ])('help of %j lists them', async (argv, heading) => {
    const result = await runInProcess(argv);
    expect(result.code).toBe(0);
    const section = result.stdout.slice(result.stdout.indexOf(heading));
    expect(result.stdout).toContain(heading);
    for (const flag of GLOBAL_FLAGS) expect(section).toMatch(new RegExp(`^\\s+${flag}\\b`, 'm'));
  });

  it('are declared once, on the root: no command redeclares one (it would shadow the global)', () => {
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    const program = buildProgram({ stdin: Readable.from([]), stdout: sink, stderr: sink, env: {} });
    expect(program.options.map((o) => o.long)).toEqual(expect.arrayContaining(GLOBAL_FLAGS));
    const all = leaves(program);
    expect(all.length).toBeGreaterThan(30);
    for (const leaf of all) {
      const redeclared = leaf.options.map((o) => o.long).filter((flag) => GLOBAL_FLAGS.includes(flag!));
      expect({ command: leaf.name(), redeclared }).toEqual({ command: leaf.name(), redeclared: [] });
    }
  });
});

describe('hsm init --new-key-file', () => {
  it('writes a 32-byte key file with mode 0600 that unseals the new directory, and no passphrase does', async () => {
    const dir = path.join(root, 'fresh');
    const keyFile = path.join(root, 'fresh.key');
    const init = await runBlockvault(['hsm', 'init', '--new-key-file', keyFile, '--dir', dir, '--json'], noPassphrase);
    expectOk(init);
    expect(init.json()).toMatchObject({ created: true, sealedWith: 'keyFile', keyFile, keyFileCreated: true, dir });
    const stats = statSync(keyFile);
    expect(stats.size).toBe(32);
    expect(stats.mode & 0o777).toBe(0o600);
    const [withKey, withPassphrase] = await Promise.all([
      runBlockvault(['hsm', 'status', '--dir', dir, '--key-file', keyFile, '--json'], noPassphrase),
      runBlockvault(['hsm', 'status', '--dir', dir, '--json']),
    ]);
    expectOk(withKey);
    expectFailure(withPassphrase, 'WRONG_PASSPHRASE');
  });

  it('two runs generate different keys', async () => {
    const [a, b] = [path.join(root, 'a.key'), path.join(root, 'b.key')];
    const results = await Promise.all([
      runBlockvault(['hsm', 'init', '--dir', path.join(root, 'a'), '--new-key-file', a, '--json'], noPassphrase),
      runBlockvault(['hsm', 'init', '--dir', path.join(root, 'b'), '--new-key-file', b, '--json'], noPassphrase),
    ]);
    for (const result of results) expectOk(result);
    expect(readFileSync(a).equals(readFileSync(b))).toBe(false);
  });

  it('refuses to overwrite an existing file, and leaves it and the directory alone', async () => {
    const dir = path.join(root, 'not-created');
    const existing = path.join(root, 'existing.key');
    writeFileSync(existing, 'precious');
    const result = await runBlockvault(['hsm', 'init', '--dir', dir, '--new-key-file', existing, '--json'], noPassphrase);
    expectFailure(result, 'ALREADY_EXISTS');
    expect(result.jsonError().error.message).toMatch(/never overwrites/);
    expect(readFileSync(existing, 'utf8')).toBe('precious');
    expect(existsSync(dir)).toBe(false);
  });

  it('refuses a directory that is already initialized, before writing any file', async () => {
    const dir = path.join(root, 'engine');
    const keyFile = path.join(root, 'second.key');
    const result = await runBlockvault(['hsm', 'init', '--dir', dir, '--new-key-file', keyFile, '--json'], noPassphrase);
    expectFailure(result, 'ALREADY_EXISTS');
    expect(result.jsonError().error.message).toMatch(/already an engine directory/);
    expect(existsSync(keyFile)).toBe(false);
  });

  it('names a missing parent directory (NOT_FOUND) and refuses --key-file with it (usage, exit 2)', async () => {
    const missing = await runInProcess(['hsm', 'init', '--dir', path.join(root, 'x'), '--new-key-file', path.join(root, 'no', 'such', 'k'), '--json']);
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stderr).error).toMatchObject({ code: 'NOT_FOUND', message: expect.stringContaining(path.join(root, 'no', 'such')) });
    const both = await runInProcess(['--key-file', 'k1', 'hsm', 'init', '--dir', path.join(root, 'x'), '--new-key-file', path.join(root, 'k2'), '--json']);
    expect(both.code).toBe(2);
    expect(JSON.parse(both.stderr).error.message).toMatch(/either --key-file .* or --new-key-file/);
    expect(existsSync(path.join(root, 'k2'))).toBe(false);
  });

  it('removes the key file again when the directory could not be initialized', async () => {
    const notADir = path.join(root, 'plain-file');
    writeFileSync(notADir, 'x');
    const keyFile = path.join(root, 'orphan.key');
    const result = await runBlockvault(['hsm', 'init', '--dir', notADir, '--new-key-file', keyFile, '--json'], noPassphrase);
    expect(result.code, result.stderr).toBe(1);
    expect(existsSync(keyFile)).toBe(false);
  });
});
