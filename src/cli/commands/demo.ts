/**
 * `blockvault demo`: the README's main job. In a fresh engine directory (the embedded default:
 * LMDB volumes, the software HSM, worker-thread rotation) it walks through the whole BYOK story:
 * instance and root key, authorization, a volume under the customer's key, data written and
 * verified, rotation with re-encryption, soft delete, cryptoshredding by a forced key delete,
 * metadata still readable but data gone (also after a restart), and the verified audit trail.
 *
 * A step that contradicts the design (data readable after the shred, no audit event for it)
 * fails the demo with DEMO_FAILED.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, existsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { BlockvaultError } from '../../errors.js';
import type { RootKeyInfo } from '../../hsm/types.js';
import { globalAction, outputFor, type CliContext } from '../context.js';
import { lockDir } from '../dir-lock.js';
import { openEngine, type EngineApi, type TaskInfo, type VolumeHandle, type VolumeInfo } from '../engine-port.js';
import { isoTime, type Output } from '../output.js';
import { PASSPHRASE_ENV, resolveHsmSecret, type HsmSecret } from '../passphrase.js';
import { PKCS11_PIN_ENV, type Pkcs11CliOptions } from '../pkcs11-secret.js';
import { progressGroup } from '../progress.js';
import { formatBytes, parseSize } from '../size.js';
import { CliFailure } from '../usage-error.js';
import { STORAGE_SERVICE } from './auth.js';
import { describeVerify, listEvents, printEvents, verifyAudit } from './events.js';
import { taskBytesPerSecond, waitForTasks } from './tasks.js';
import { TRANSFER_CHUNK_BYTES } from './volume.js';

const DEFAULT_DEMO_SIZE = '64MiB';
const SECTOR_SIZE = 4096;
/** Codes a read of a cryptoshredded volume may fail with (DESIGN.md, "Deletion and cryptoshredding"). */
const SHREDDED_READ_CODES = ['VOLUME_LOCKED', 'KEY_DESTROYED', 'VOLUME_DELETED'];

type StepStatus = 'ok' | 'expected-error';

interface StepRecord {
  index: number;
  title: string;
  status: StepStatus;
  [detail: string]: unknown;
}

interface DemoOptions extends Pkcs11CliOptions {
  dir?: string;
  json?: boolean;
  keyFile?: string;
  size: number;
}

export function registerDemoCommand(program: Command, ctx: CliContext): void {
  program
    .command('demo')
    .description(
      'run the end-to-end BYOK demo in a fresh directory: key, authorization, encrypted volume, write/verify, ' +
        'rotation with re-encryption, soft delete, cryptoshred, metadata-only afterwards, verified audit trail',
    )
    .option('--size <size>', `volume size, fully written and re-encrypted (units: 4MiB, 1GiB; default ${DEFAULT_DEMO_SIZE})`, (v) => parseSize(v, '--size'), parseSize(DEFAULT_DEMO_SIZE))
    .addHelpText(
      'after',
      `
--dir: a fresh (new or empty) directory; default a new temporary one (printed), never $BLOCKVAULT_DIR.
--key-file: default $${PASSPHRASE_ENV} if set, else a new random key file beside the directory.
--pkcs11 <module> with --pkcs11-token <label> (or --pkcs11-slot <id>): root keys on that PKCS#11
  token instead; the PIN from $${PKCS11_PIN_ENV} or --pkcs11-pin-file <path>.
--json: a structured summary as one JSON document.`,
    )
    .action(globalAction(async (options: DemoOptions) => {
      const out = outputFor(ctx, options);
      if (options.size < SECTOR_SIZE || options.size % SECTOR_SIZE !== 0) {
        throw new BlockvaultError('INVALID_ARGUMENT', `--size must be a positive multiple of ${SECTOR_SIZE} bytes, got ${options.size}`);
      }
      const dir = freshDir(options.dir);
      const { secret, generatedKeyFile } = await demoSecret(ctx, options, dir);
      const lock = await lockDir(dir);
      let summary: Awaited<ReturnType<typeof runDemo>>;
      try {
        summary = await runDemo(out, dir, secret, options.size);
      } finally {
        lock.release();
      }
      out.result({ ok: true, dir, keyFile: generatedKeyFile ?? options.keyFile ?? null, ...summary }, () => undefined);
      if (generatedKeyFile !== null) {
        out.line();
        out.line(`Inspect it yourself: blockvault volume list --dir ${dir} --key-file ${generatedKeyFile}`);
      }
    }));
}

function freshDir(requested: string | undefined): string {
  if (requested === undefined) return mkdtempSync(path.join(os.tmpdir(), 'blockvault-demo-'));
  const dir = path.resolve(requested);
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    throw new BlockvaultError('ALREADY_EXISTS', `${dir} is not empty: the demo needs a fresh directory (omit --dir for a temporary one)`, { dir });
  }
  return dir;
}

/**
 * The demo must run with no setup, so without a passphrase in the environment (or a key file)
 * it generates a random key file beside the directory instead of prompting.
 */
async function demoSecret(ctx: CliContext, options: DemoOptions, dir: string): Promise<{ secret: HsmSecret; generatedKeyFile: string | null }> {
  if (options.pkcs11 !== undefined || options.keyFile !== undefined || ctx.env[PASSPHRASE_ENV] !== undefined) {
    return { secret: await resolveHsmSecret({ keyFile: options.keyFile, pkcs11: options, env: ctx.env, stdin: ctx.stdin, stderr: ctx.stderr }), generatedKeyFile: null };
  }
  const keyFile = `${dir}.hsm-key`;
  writeFileSync(keyFile, randomBytes(32), { mode: 0o600, flag: 'wx' });
  return { secret: { keyFile }, generatedKeyFile: keyFile };
}

function describeSecret(secret: HsmSecret): string {
  if ('pkcs11' in secret) {
    const token = secret.pkcs11.tokenLabel !== undefined ? `token ${JSON.stringify(secret.pkcs11.tokenLabel)}` : `slot ${secret.pkcs11.slot}`;
    return `none: root keys on the PKCS#11 ${token} of ${secret.pkcs11.module}`;
  }
  return 'keyFile' in secret ? `key file ${secret.keyFile}` : `passphrase from $${PASSPHRASE_ENV}`;
}

class Steps {
  readonly records: StepRecord[] = [];
  constructor(private readonly out: Output) {}

  begin(title: string): StepRecord {
    const record: StepRecord = { index: this.records.length + 1, title, status: 'ok' };
    this.records.push(record);
    this.out.line();
    this.out.line(`${String(record.index).padStart(2)}. ${title}`);
    return record;
  }

  say(text: string): void {
    this.out.line(`    ${text}`);
  }

}

async function runDemo(out: Output, dir: string, secret: HsmSecret, sizeBytes: number) {
  const steps = new Steps(out);
  out.line('blockvault demo: bring your own key, rotate it online, then cryptoshred');
  out.line(`Engine directory: ${dir}`);
  out.line(`HSM master key:   ${describeSecret(secret)}`);

  let engine: EngineApi = await openEngine({ dir, hsm: secret });
  try {
    let step = steps.begin('Create an HSM instance');
    const instance = await engine.hsm.createInstance({ name: 'demo-hsm' });
    steps.say(`instance ${instance.name}, id ${instance.id}`);
    Object.assign(step, { instanceId: instance.id });

    step = steps.begin('Create a root key inside the HSM (its material never leaves it)');
    const key = await engine.hsm.createRootKey(instance.id, { name: 'demo-root-key' });
    steps.say(`${key.crn}`);
    steps.say(`state ${key.stateName} (${key.state}), version ${key.version}`);
    Object.assign(step, { keyCrn: key.crn, version: key.version });

    step = steps.begin('Provision a volume under that key before authorizing the storage service');
    const refused = await expectError(() => engine.createVolume({ name: 'demo-unauthorized', sizeBytes, sectorSize: SECTOR_SIZE, diskEncryptionKeyCrn: key.crn }));
    if (refused === null) {
      throw new CliFailure('DEMO_FAILED', 'a volume was provisioned under a customer key without any authorization; expected NOT_AUTHORIZED');
    }
    step.status = 'expected-error';
    step.error = refused;
    steps.say(`refused as it should be: ${refused.code}: ${refused.message}`);

    step = steps.begin(`Authorize the storage service ("${STORAGE_SERVICE}") as Reader on the instance`);
    const grant = await engine.hsm.authorize({ sourceService: STORAGE_SERVICE, targetInstance: instance.id, role: 'Reader' });
    steps.say(`authorization ${grant.id}: ${grant.sourceService} -> ${grant.targetInstance} (${grant.role})`);
    Object.assign(step, { authorizationId: grant.id });

    step = steps.begin(`Provision a ${formatBytes(sizeBytes)} BYOK volume (AES-256-XTS, ${SECTOR_SIZE}-byte sectors)`);
    let vol = await engine.createVolume({ name: 'demo-volume', sizeBytes, sectorSize: SECTOR_SIZE, diskEncryptionKeyCrn: key.crn });
    const volumeId = vol.info().id;
    steps.say(`volume ${vol.info().name}, id ${volumeId}, state ${vol.info().state}`);
    steps.say('its data key is wrapped by the root key (AES-KWP) and registered against it');
    Object.assign(step, { volumeId, state: vol.info().state });

    step = steps.begin('Write the whole volume and read it back');
    const written = await writePattern(vol, sizeBytes, out);
    const readBack = await readDigest(vol, sizeBytes, out, 'read back');
    if (readBack !== written) throw new CliFailure('DEMO_FAILED', `read-back digest ${readBack} differs from the written ${written}`);
    steps.say(`wrote and read back ${formatBytes(sizeBytes)}: sha256 ${written.slice(0, 16)}... matches`);
    Object.assign(step, { bytesWritten: sizeBytes, sha256: written, verified: true });

    step = steps.begin('Rotate the root key with re-encryption ("Syncing KMS state")');
    const started = await engine.hsm.rotateKey(key.crn);
    steps.say(`started ${started.length} task(s): ${started.map((t) => t.id).join(', ')}`);
    const ended = started.length > 0 ? await waitForTasks(engine, started, out) : [];
    for (const t of ended) steps.say(`task ${t.id}: ${t.state}, ${t.sectorsDone ?? '?'}/${t.sectorsTotal ?? '?'} sectors${rate(t)}`);
    const rotated = await engine.hsm.getKey(key.crn);
    const afterRotation = await readDigest(vol, sizeBytes, out, 'verify');
    if (afterRotation !== written) throw new CliFailure('DEMO_FAILED', 'the data read after rotation differs from what was written');
    steps.say(`key is now at version ${rotated.version}; all data re-encrypted under a fresh data key and still verifies`);
    const rotation = { tasks: ended, keyVersion: rotated.version, verifiedAfterRotation: true };
    Object.assign(step, rotation);

    await vol.close();
    step = steps.begin('Soft-delete the volume');
    await engine.deleteVolume(volumeId);
    const deleted = volumeInfo(engine, volumeId);
    steps.say(`state ${deleted.state}${typeof deleted.purgeAtMs === 'number' ? `, purged at ${isoTime(deleted.purgeAtMs)} unless restored` : ''}`);
    steps.say('it stays registered against the key for the retention period');
    Object.assign(step, { state: deleted.state, purgeAtMs: deleted.purgeAtMs ?? null });

    step = steps.begin('Delete the key without --force');
    const inUse = await expectError(() => engine.hsm.deleteKey(key.crn));
    if (inUse === null) throw new CliFailure('DEMO_FAILED', 'a key with a registered (soft-deleted) volume was deleted without force; expected KEY_IN_USE');
    step.status = 'expected-error';
    step.error = inUse;
    steps.say(`refused as it should be: ${inUse.code}: ${inUse.message}`);

    step = steps.begin('Force-delete the key: cryptoshred');
    const shred = await engine.hsm.deleteKey(key.crn, { force: true });
    steps.say(`key ${shred.key.stateName} (${shred.key.state}); material destroyed in every version`);
    for (const r of shred.affectedResources) steps.say(`locked: ${r}`);
    Object.assign(step, { keyState: shred.key.stateName, affectedResources: shred.affectedResources });

    step = steps.begin('Restart the engine, then read metadata and data');
    await engine.close();
    engine = await openEngine({ dir, hsm: secret });
    const after = volumeInfo(engine, volumeId);
    const keyAfter: RootKeyInfo = await engine.hsm.getKey(key.crn);
    steps.say(`metadata readable: ${after.name}, ${formatBytes(after.sizeBytes)}, state ${after.state}, key ${after.diskEncryptionKeyCrn ?? '-'}`);
    steps.say(`key metadata readable: ${keyAfter.name}, ${keyAfter.stateName}`);
    const restore = await expectError(() => engine.restoreVolume(volumeId));
    if (restore !== null) steps.say(`restore refused: ${restore.code}`);
    const readError = await expectError(async () => {
      vol = await engine.openVolume(volumeId);
      return vol.read(0, SECTOR_SIZE);
    });
    if (readError === null) throw new CliFailure('DEMO_FAILED', 'data was readable after the key was destroyed');
    if (!SHREDDED_READ_CODES.includes(readError.code)) {
      throw new CliFailure('DEMO_FAILED', `reading the shredded volume failed with ${readError.code}, expected one of ${SHREDDED_READ_CODES.join(', ')}`);
    }
    step.status = 'expected-error';
    steps.say(`data is gone for good: ${readError.code}: ${readError.message}`);
    Object.assign(step, { metadata: after, key: keyAfter, restoreError: restore, readError });

    step = steps.begin('The audit trail, and its hash-chain verification');
    const events = await listEvents(engine, {});
    printEvents(out.indented('    '), events, { short: true });
    const verify = await verifyAudit(engine);
    steps.say(`verified: ${describeVerify(verify)}`);
    const shredEvents = events.filter((e) => e.action === 'hs-crypto.secrets.delete');
    Object.assign(step, { eventCount: events.length, verify });
    if (shredEvents.length === 0) throw new CliFailure('DEMO_FAILED', 'the audit log has no hs-crypto.secrets.delete event for the forced delete');

    out.line();
    out.line('Demo complete.');
    return {
      sizeBytes,
      instance,
      key: { crn: key.crn, versionAfterRotation: rotation.keyVersion, after: keyAfter },
      volume: { id: volumeId, metadataAfterShred: after },
      data: { bytesWritten: sizeBytes, sha256: written, verified: true, verifiedAfterRotation: rotation.verifiedAfterRotation },
      rotation,
      shred: { affectedResources: shred.affectedResources, readError, restoreError: restore },
      audit: { events, verify },
      steps: steps.records,
    };
  } finally {
    await engine.close();
  }
}

function volumeInfo(engine: EngineApi, id: string): VolumeInfo & { purgeAtMs?: number } {
  const found = engine.listVolumes().find((v) => v.id === id);
  if (found === undefined) throw new CliFailure('DEMO_FAILED', `volume ${id} is missing from listVolumes()`);
  return found as VolumeInfo & { purgeAtMs?: number };
}

/** Runs `fn`, which should fail with a typed error; null when it did not fail. */
async function expectError(fn: () => Promise<unknown>): Promise<{ code: string; message: string } | null> {
  try {
    await fn();
    return null;
  } catch (error) {
    if (!(error instanceof BlockvaultError)) throw error;
    return { code: error.code, message: error.message };
  }
}

function rate(t: TaskInfo): string {
  const bytesPerSecond = taskBytesPerSecond(t);
  return bytesPerSecond !== null && bytesPerSecond > 0 ? `, ${(bytesPerSecond / 1e6).toFixed(1)} MB/s` : '';
}

/**
 * Fills the volume with a pseudo-random pattern (an AES-CTR keystream: fast and incompressible)
 * and returns its sha256, so the read-back can be compared without keeping the data in memory.
 */
async function writePattern(vol: VolumeHandle, sizeBytes: number, out: Output): Promise<string> {
  const keystream = createCipheriv('aes-128-ctr', randomBytes(16), Buffer.alloc(16));
  const zeros = Buffer.alloc(TRANSFER_CHUNK_BYTES);
  const hash = createHash('sha256');
  const group = progressGroup(out);
  const bar = group.add('write', 'bytes');
  try {
    for (let offset = 0; offset < sizeBytes; offset += TRANSFER_CHUNK_BYTES) {
      const length = Math.min(TRANSFER_CHUNK_BYTES, sizeBytes - offset);
      const chunk = keystream.update(zeros.subarray(0, length));
      hash.update(chunk);
      await vol.write(offset, new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      bar.update(offset + length, sizeBytes);
    }
    await vol.flush();
  } finally {
    group.stop();
  }
  return hash.digest('hex');
}

async function readDigest(vol: VolumeHandle, sizeBytes: number, out: Output, label: string): Promise<string> {
  const hash = createHash('sha256');
  const group = progressGroup(out);
  const bar = group.add(label, 'bytes');
  try {
    for (let offset = 0; offset < sizeBytes; offset += TRANSFER_CHUNK_BYTES) {
      const length = Math.min(TRANSFER_CHUNK_BYTES, sizeBytes - offset);
      hash.update(await vol.read(offset, length));
      bar.update(offset + length, sizeBytes);
    }
  } finally {
    group.stop();
  }
  return hash.digest('hex');
}
