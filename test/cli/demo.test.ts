/**
 * `blockvault demo`, the README's main job, end to end in a fresh directory, parsed from --json;
 * then the directory it leaves is inspected with the ordinary commands.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { softHsmCheck, softHsmToken } from '../helpers/softhsm.js';
import { runBlockvault, tempDir } from './helpers.js';

const { dir: root, cleanup } = tempDir('bv-demo-');
afterAll(() => cleanup());

describe('blockvault demo', () => {
  it('runs the whole BYOK story and reports it as one JSON document', async () => {
    const dir = path.join(root, 'demo');
    // No passphrase in the environment: the demo makes its own key file beside the directory.
    const result = await runBlockvault(['demo', '--dir', dir, '--size', '4MiB', '--json'], { env: { BLOCKVAULT_PASSPHRASE: undefined }, timeoutMs: 110_000 });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe('');
    const summary = result.json();
    expect(summary).toMatchObject({ ok: true, dir, keyFile: `${dir}.hsm-key`, sizeBytes: 4 * 1024 * 1024 });
    expect(existsSync(summary.keyFile)).toBe(true);

    const byTitle = (fragment: string) => summary.steps.find((s: { title: string }) => s.title.includes(fragment));
    expect(byTitle('before authorizing').error.code).toBe('NOT_AUTHORIZED');
    expect(byTitle('Write the whole volume')).toMatchObject({ status: 'ok', verified: true });
    expect(byTitle('without --force').error.code).toBe('KEY_IN_USE');
    const statuses = summary.steps.map((s: { status: string }) => s.status);
    expect(statuses.every((s: string) => s === 'ok' || s === 'expected-error')).toBe(true);

    expect(summary.data).toMatchObject({ bytesWritten: 4 * 1024 * 1024, verified: true });
    expect(byTitle('Rotate the root key')).toMatchObject({ status: 'ok', verifiedAfterRotation: true });
    expect(summary.data.verifiedAfterRotation).toBe(true);
    expect(summary.rotation.keyVersion).toBe(2);
    expect(summary.rotation.tasks).toEqual([
      expect.objectContaining({ state: 'completed', volumeId: summary.volume.id, sectorsDone: 1024, sectorsTotal: 1024 }),
    ]);
    expect(summary.shred.affectedResources).toHaveLength(1);
    expect(['VOLUME_LOCKED', 'KEY_DESTROYED']).toContain(summary.shred.readError.code);
    expect(summary.volume.metadataAfterShred).toMatchObject({ name: 'demo-volume', state: 'locked', sizeBytes: 4 * 1024 * 1024 });
    expect(summary.key.after).toMatchObject({ stateName: 'Destroyed', state: 5 });

    const actions = summary.audit.events.map((e: { action: string }) => e.action);
    expect(actions).toContain('hs-crypto.secrets.delete');
    expect(summary.audit.verify.ok).toBe(true);

    // The directory it leaves behind: metadata readable, data not.
    const [list, exported] = await Promise.all([
      runBlockvault(['volume', 'list', '--dir', dir, '--key-file', summary.keyFile, '--json'], { env: { BLOCKVAULT_PASSPHRASE: undefined } }),
      runBlockvault(['volume', 'export', 'demo-volume', '--dir', dir, '--key-file', summary.keyFile, '--file', path.join(root, 'x'), '--json']),
    ]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.json()).toEqual([expect.objectContaining({ name: 'demo-volume', state: 'locked' })]);
    expect(exported.code).toBe(1);
    expect(['VOLUME_LOCKED', 'KEY_DESTROYED']).toContain(exported.jsonError().error.code);
  });

  it('tells its story step by step in human mode', async () => {
    const result = await runBlockvault(['demo', '--dir', path.join(root, 'human'), '--size', '1MiB'], { timeoutMs: 110_000 });
    expect(result.code, result.stderr).toBe(0);
    const text = result.stdout.toString();
    expect(text).toMatch(/Engine directory: /);
    expect(text).toMatch(/refused as it should be: NOT_AUTHORIZED/);
    expect(text).toMatch(/refused as it should be: KEY_IN_USE/);
    expect(text).toMatch(/data is gone for good: (VOLUME_LOCKED|KEY_DESTROYED)/);
    expect(text).toMatch(/hs-crypto\.secrets\.delete/);
    expect(text).toMatch(/Demo complete/);
  });

  it.skipIf(!softHsmCheck.ok)(`runs on the PKCS#11 provider with --pkcs11, the PIN from the environment${softHsmCheck.ok ? '' : ` (skipped: ${softHsmCheck.reason})`}`, async () => {
    const token = softHsmToken(); // sets SOFTHSM2_CONF, which the child inherits
    const dir = path.join(root, 'demo-pkcs11');
    const flags = ['--pkcs11', token.options.module, '--pkcs11-token', token.options.tokenLabel as string];
    const env = { BLOCKVAULT_PASSPHRASE: undefined, BLOCKVAULT_PKCS11_PIN: token.options.pin, SOFTHSM2_CONF: token.conf };
    const result = await runBlockvault(['demo', '--dir', dir, '--size', '1MiB', '--json', ...flags], { env, timeoutMs: 110_000 });
    expect(result.code, result.stderr).toBe(0);
    const summary = result.json();
    expect(summary).toMatchObject({ ok: true, dir, keyFile: null, sizeBytes: 1024 * 1024 });
    expect(existsSync(`${dir}.hsm-key`)).toBe(false);
    expect(existsSync(path.join(dir, 'hsm', 'pkcs11.json'))).toBe(true);
    expect(existsSync(path.join(dir, 'hsm', 'keystore.json'))).toBe(false);
    const statuses = summary.steps.map((s: { status: string }) => s.status);
    expect(statuses.every((s: string) => s === 'ok' || s === 'expected-error')).toBe(true);
    expect(summary.rotation.keyVersion).toBe(2);
    expect(summary.key.after).toMatchObject({ stateName: 'Destroyed', state: 5 });
    expect(summary.audit.verify.ok).toBe(true);

    const list = await runBlockvault(['volume', 'list', '--dir', dir, '--json', ...flags], { env });
    expect(list.code, list.stderr).toBe(0);
    expect(list.json()).toEqual([expect.objectContaining({ name: 'demo-volume', state: 'locked' })]);
    // The PIN never on argv; without one the command says where it comes from.
    const onArgv = await runBlockvault(['volume', 'list', '--dir', dir, '--json', ...flags, '--pkcs11-pin', token.options.pin], { env });
    expect(onArgv.code).toBe(2);
    expect(onArgv.stderr).toMatch(/--pkcs11-pin is refused/);
    const noPin = await runBlockvault(['volume', 'list', '--dir', dir, '--json', ...flags], { env: { ...env, BLOCKVAULT_PKCS11_PIN: undefined } });
    expect(noPin.code).toBe(2);
    expect(noPin.stderr).toMatch(/BLOCKVAULT_PKCS11_PIN/);
    const wrongPin = await runBlockvault(['volume', 'list', '--dir', dir, '--json', ...flags], { env: { ...env, BLOCKVAULT_PKCS11_PIN: 'wrong-pin' } });
    expect(wrongPin.code).toBe(1);
    expect(wrongPin.jsonError().error.code).toBe('WRONG_PASSPHRASE');
  });

  it('refuses a directory that is not fresh', async () => {
    const used = path.join(root, 'used');
    mkdirSync(used);
    writeFileSync(path.join(used, 'something'), 'x');
    const result = await runBlockvault(['demo', '--dir', used, '--json']);
    expect(result.code).toBe(1);
    expect(result.jsonError().error.code).toBe('ALREADY_EXISTS');
  });
});
