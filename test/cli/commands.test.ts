/**
 * Every command group, run as a real child process against one engine directory, in the order
 * an operator would use them. Each spawn pays the passphrase derivation, so independent checks
 * share a process where they can and run side by side where they cannot.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBlockvault, tempDir, type CliResult } from './helpers.js';

const { dir: root, cleanup } = tempDir();
const dir = path.join(root, 'engine');
const bv = (args: string[], options: Parameters<typeof runBlockvault>[1] = {}): Promise<CliResult> =>
  runBlockvault([...args, '--dir', dir], options);

function expectFailure(result: CliResult, code: string, exitCode = 1): void {
  expect({ exit: result.code, stdout: result.stdout.toString() }).toEqual({ exit: exitCode, stdout: '' });
  expect(result.jsonError().error.code, result.stderr).toBe(code);
}

function expectOk(result: CliResult): void {
  expect(result.code, result.stderr).toBe(0);
}

afterAll(() => cleanup());

describe('blockvault CLI, end to end on one engine directory', () => {
  let instanceId = '';
  let keyCrn = '';
  let volumeId = '';
  let importedCrn = '';

  beforeAll(async () => {
    const init = await bv(['hsm', 'init', '--json']);
    expectOk(init);
    expect(init.json()).toMatchObject({ created: true, dir, instances: 0, sealedWith: 'passphrase' });
  });

  it('refuses a wrong passphrase (WRONG_PASSPHRASE) and an unknown directory (NOT_FOUND)', async () => {
    const [wrong, human, missing] = await Promise.all([
      bv(['hsm', 'status', '--json'], { env: { BLOCKVAULT_PASSPHRASE: 'not the passphrase' } }),
      bv(['volume', 'list'], { env: { BLOCKVAULT_PASSPHRASE: 'not the passphrase' } }),
      runBlockvault(['volume', 'list', '--json', '--dir', path.join(root, 'nowhere')]),
    ]);
    expectFailure(wrong, 'WRONG_PASSPHRASE');
    expect(human.code).toBe(1);
    expect(human.stderr).toMatch(/^error WRONG_PASSPHRASE: /m);
    expectFailure(missing, 'NOT_FOUND');
    expect(missing.jsonError().error.message).toMatch(/hsm init/);
  });

  it('creates an instance and a root key, and lists and shows them', async () => {
    const instance = await bv(['instance', 'create', '--name', 'crypto-1', '--json']);
    expectOk(instance);
    instanceId = instance.json().id;
    expect(instance.json()).toMatchObject({ name: 'crypto-1', crn: expect.stringMatching(/^crn:v1:/) });

    const key = await bv(['key', 'create', '--instance', instanceId, '--name', 'db-root', '--json']);
    expectOk(key);
    keyCrn = key.json().crn;
    expect(key.json()).toMatchObject({ name: 'db-root', state: 1, stateName: 'Active', version: 1, imported: false });

    const [instances, keys, shown, human, badCrn, unknownInstance] = await Promise.all([
      bv(['instance', 'list', '--json']),
      bv(['key', 'list', '--instance', instanceId, '--json']),
      bv(['key', 'show', keyCrn, '--json']),
      bv(['key', 'show', keyCrn]),
      bv(['key', 'show', keyCrn.split(':').at(-1)!, '--json']),
      bv(['key', 'create', '--instance', 'no-such-instance', '--name', 'x', '--json']),
    ]);
    expect(instances.json().map((i: { id: string }) => i.id)).toEqual([instanceId]);
    expect(keys.json().map((k: { crn: string }) => k.crn)).toEqual([keyCrn]);
    expect(shown.json().crn).toBe(keyCrn);
    expect(human.stdout.toString()).toMatch(/state:\s+Active \(1\)/);
    expectFailure(badCrn, 'INVALID_CRN');
    expectFailure(unknownInstance, 'NOT_FOUND');
  });

  it('imports root keys: plain from a file, and through an import token from stdin', async () => {
    const materialFile = path.join(root, 'material.bin');
    writeFileSync(materialFile, randomBytes(32));
    // One writer at a time: each process holds its own view of the keystore.
    const plain = await bv(['key', 'import', '--instance', instanceId, '--name', 'byok-plain', '--material-file', materialFile, '--json']);
    const token = await bv(['key', 'import', '--instance', instanceId, '--name', 'byok-token', '--material-stdin', '--token', '--json'], {
      input: randomBytes(32).toString('hex') + '\n',
    });
    const noMaterial = await bv(['key', 'import', '--instance', instanceId, '--name', 'x', '--json']);
    expectOk(plain);
    expect(plain.json()).toMatchObject({ name: 'byok-plain', imported: true, stateName: 'Active' });
    importedCrn = plain.json().crn;
    expectOk(token);
    expect(token.json()).toMatchObject({ name: 'byok-token', imported: true });
    expectFailure(noMaterial, 'USAGE', 2);
  });

  it('refuses a BYOK volume until the storage service is authorized', async () => {
    const refused = await bv(['volume', 'create', '--name', 'pg-data', '--size', '4MiB', '--key', keyCrn, '--json']);
    expectFailure(refused, 'NOT_AUTHORIZED');

    const grant = await bv(['auth', 'grant', '--target-instance', instanceId, '--json']);
    expectOk(grant);
    expect(grant.json()).toMatchObject({ sourceService: 'blockvault', targetInstance: instanceId, role: 'Reader' });

    const created = await bv(['volume', 'create', '--name', 'pg-data', '--size', '4MiB', '--key', keyCrn, '--json']);
    expectOk(created);
    volumeId = created.json().id;
    expect(created.json()).toMatchObject({ name: 'pg-data', sizeBytes: 4 * 1024 * 1024, sectorSize: 4096, state: 'active', diskEncryptionKeyCrn: keyCrn });

    const [auths, regs, list, show, unknown, platform] = await Promise.all([
      bv(['auth', 'list', '--json']),
      bv(['registrations', 'list', '--key', keyCrn, '--json']),
      bv(['volume', 'list', '--json']),
      bv(['volume', 'show', 'pg-data', '--json']),
      bv(['volume', 'show', 'no-such-volume', '--json']),
      bv(['volume', 'create', '--name', 'scratch', '--size', '1MiB', '--sector-size', '512', '--json']),
    ]);
    // The platform volume (created alongside) brings the platform instance's own authorization.
    expect(auths.json().filter((a: { targetInstance: string }) => a.targetInstance === instanceId)).toHaveLength(1);
    expect(regs.json()).toEqual([expect.objectContaining({ keyCrn, resourceCrn: show.json().crn })]);
    expect(list.json().map((v: { name: string }) => v.name)).toContain('pg-data');
    expect(show.json().id).toBe(volumeId);
    expectFailure(unknown, 'NOT_FOUND');
    expectOk(platform);
    expect(platform.json()).toMatchObject({ sectorSize: 512, platformManaged: true });
  });

  it('imports from stdin and exports to stdout, byte for byte, and refuses too much data', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 1234); // not a whole number of sectors
    const imported = await bv(['volume', 'import', 'pg-data', '--offset', '64KiB', '--json'], { input: data });
    expectOk(imported);
    expect(imported.json()).toMatchObject({ volume: volumeId, offset: 65536, bytesWritten: data.length });

    const outFile = path.join(root, 'export.bin');
    const inFile = path.join(root, 'import.bin');
    writeFileSync(inFile, data);
    const [exported, toFile, tooBig, pastEnd] = await Promise.all([
      bv(['volume', 'export', volumeId, '--offset', '64KiB', '--length', String(data.length)]),
      bv(['volume', 'export', 'pg-data', '--file', outFile, '--json']),
      bv(['volume', 'import', 'pg-data', '--offset', '2MiB', '--file', inFile, '--json']),
      bv(['volume', 'export', 'pg-data', '--offset', '4MiB', '--length', '1', '--json', '--file', outFile + '.2']),
    ]);
    expectOk(exported);
    expect(exported.stdout.equals(data)).toBe(true);
    expectOk(toFile);
    const whole = readFileSync(outFile);
    expect(whole.length).toBe(4 * 1024 * 1024);
    expect(whole.subarray(0, 65536).every((b) => b === 0)).toBe(true);
    expect(whole.subarray(65536, 65536 + data.length).equals(data)).toBe(true);
    expectFailure(tooBig, 'OUT_OF_RANGE');
    expectFailure(pastEnd, 'OUT_OF_RANGE');
  });

  it('disables and enables a key, sets a rotation policy, and refuses to delete a key in use', async () => {
    const disabled = await bv(['key', 'disable', keyCrn, '--json']);
    expectOk(disabled);
    expect(disabled.json()).toMatchObject({ stateName: 'Suspended', state: 2 });
    const enabled = await bv(['key', 'enable', keyCrn, '--json']);
    expectOk(enabled);
    expect(enabled.json().stateName).toBe('Active');

    const [policy, badInterval, inUse] = await Promise.all([
      bv(['policy', 'set-rotation', keyCrn, '--interval', '90d', '--json']),
      bv(['policy', 'set-rotation', keyCrn, '--interval', '90', '--json']),
      bv(['key', 'delete', keyCrn, '--json']),
    ]);
    expectOk(policy);
    expect(policy.json().rotationPolicy).toEqual({ intervalMs: 90 * 86_400_000 });
    expectFailure(badInterval, 'USAGE', 2);
    expectFailure(inUse, 'KEY_IN_USE');
    // The advice is a command line, not the API's option object.
    expect(inUse.jsonError().error.message).toContain(`blockvault key delete ${keyCrn} --force`);
    expect(inUse.jsonError().error.message).not.toContain('{ force: true }');
  });

  it('rotates a key: a new version, and one re-encryption task per registered volume, followed to the end', async () => {
    const rotated = await bv(['key', 'rotate', keyCrn, '--json']);
    expectOk(rotated);
    const { key, tasks } = rotated.json();
    expect(key).toMatchObject({ crn: keyCrn, version: 2 });
    const tasksList = await bv(['tasks', 'list', '--json']);
    expectOk(tasksList);
    expect(tasks).toEqual([expect.objectContaining({ volumeId, keyCrn, state: 'completed', mode: 'reencrypt' })]);
    const taskId = tasks[0].id as string;
    const [list, show, wait, unknown, humanWait] = await Promise.all([
      Promise.resolve(tasksList),
      bv(['tasks', 'show', taskId, '--json']),
      bv(['tasks', 'wait', taskId, '--timeout', '30s', '--json']),
      bv(['tasks', 'show', 'no-such-task', '--json']),
      bv(['tasks', 'wait', taskId]),
    ]);
    expect(list.json().map((t: { id: string }) => t.id)).toContain(taskId);
    expect(show.json()).toMatchObject({ id: taskId, state: 'completed', sectorsDone: show.json().sectorsTotal });
    expect(wait.json()).toMatchObject({ id: taskId, state: 'completed' });
    expectFailure(unknown, 'NOT_FOUND');
    expect(humanWait.stdout.toString()).toMatch(/completed/);

    const rewrapOnly = await bv(['key', 'rotate', keyCrn, '--rewrap-only', '--json']);
    expectOk(rewrapOnly);
    expect(rewrapOnly.json().key.version).toBe(3);
    expect(rewrapOnly.json().tasks).toEqual([expect.objectContaining({ mode: 'rewrap', state: 'completed' })]);

    // The data survived both rotations.
    const data = await bv(['volume', 'export', volumeId, '--offset', '64KiB', '--length', '1MiB']);
    expect(data.stdout.equals(readFileSync(path.join(root, 'import.bin')).subarray(0, 1024 * 1024))).toBe(true);
  });

  it('deletes a key under dual authorization: set for deletion by one initiator, deleted by another', async () => {
    const on = await bv(['policy', 'set-dual-auth-delete', importedCrn, 'on', '--json']);
    expectOk(on);
    expect(on.json().dualAuthDelete).toBe(true);
    const unauthorized = await bv(['key', 'delete', importedCrn, '--initiator', 'bob', '--json']);
    expectFailure(unauthorized, 'KEY_DELETION_NOT_AUTHORIZED');
    expect(unauthorized.jsonError().error.message).toContain(`blockvault key set-for-deletion ${importedCrn} --initiator <name>`);
    expect(unauthorized.jsonError().error.message).not.toContain('setKeyForDeletion');
    const set = await bv(['key', 'set-for-deletion', importedCrn, '--initiator', 'alice', '--json']);
    expectOk(set);
    expect(set.json().deletionAuthorizedBy).toBe('alice');
    const sameInitiator = await bv(['key', 'delete', importedCrn, '--initiator', 'alice', '--json']);
    expectFailure(sameInitiator, 'KEY_DELETION_NOT_AUTHORIZED');
    expect(sameInitiator.jsonError().error.message).toMatch(/set for deletion by 'alice'; a different initiator must delete it/);
    const deleted = await bv(['key', 'delete', importedCrn, '--json'], { env: { BLOCKVAULT_INITIATOR: 'bob' } });
    expectOk(deleted);
    expect(deleted.json()).toMatchObject({ key: { crn: importedCrn, stateName: 'Destroyed' }, affectedResources: [] });
  });

  it('soft-deletes and restores a volume', async () => {
    const deleted = await bv(['volume', 'delete', 'pg-data', '--json']);
    expectOk(deleted);
    expect(deleted.json()).toMatchObject({ id: volumeId, state: 'deleted', purgeAtMs: expect.any(Number) });
    const exportDeleted = await bv(['volume', 'export', volumeId, '--file', path.join(root, 'x.bin'), '--json']);
    expectFailure(exportDeleted, 'VOLUME_DELETED');
    const restored = await bv(['volume', 'restore', volumeId, '--json']);
    expectOk(restored);
    expect(restored.json()).toMatchObject({ id: volumeId, state: 'active' });
  });

  it('lists and verifies the audit trail, filtered by action and key', async () => {
    const [all, byKey, verify, human] = await Promise.all([
      bv(['events', 'list', '--json']),
      bv(['events', 'list', '--key', keyCrn, '--limit', '3', '--json']),
      bv(['events', 'verify', '--json']),
      bv(['events', 'list', '--since', '1h']),
    ]);
    expectOk(all);
    const actions = all.json().map((e: { action: string }) => e.action);
    expect(actions.length).toBeGreaterThan(5);
    expect(byKey.json().length).toBeLessThanOrEqual(3);
    expectOk(verify);
    expect(verify.json().ok).toBe(true);
    expect(human.stdout.toString()).toMatch(/ACTION/);
  });

  it('revokes an authorization: the key can no longer be used for a new volume', async () => {
    const auths = (await bv(['auth', 'list', '--json'])).json() as { id: string; targetInstance: string }[];
    const ours = auths.find((a) => a.targetInstance === instanceId)!;
    const revoked = await bv(['auth', 'revoke', ours.id, '--json']);
    expectOk(revoked);
    const refused = await bv(['volume', 'create', '--name', 'after-revoke', '--size', '1MiB', '--key', keyCrn, '--json']);
    expectFailure(refused, 'NOT_AUTHORIZED');
    const grant = await bv(['auth', 'grant', '--target-instance', instanceId, '--json']);
    expectOk(grant);
  });

  it('prints a human status summary', async () => {
    const status = await bv(['hsm', 'status']);
    expectOk(status);
    // The platform instance (for volumes without a customer key) counts too.
    expect(status.stdout.toString()).toMatch(/instances:\s+2/);
    expect(status.stdout.toString()).toMatch(/keys:\s+4 \(3 Active, 1 Destroyed\)/);
    expect(status.stdout.toString()).toMatch(/volumes:\s+2 \(2 active\)/);
  });
});
