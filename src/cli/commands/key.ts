/**
 * `blockvault key ...` (root keys, import tokens) and `blockvault policy set-rotation`.
 * Keys are addressed by their full CRN, as in the programmatic API: a bare id is refused.
 */
import { constants, publicEncrypt } from 'node:crypto';
import { userInfo } from 'node:os';
import type { Command } from 'commander';
import { BlockvaultError, isBlockvaultError } from '../../errors.js';
import type { ImportTokenInfo, RootKeyInfo } from '../../hsm/types.js';
import { globalAction, withEngine, type CliContext, type CommonOptions } from '../context.js';
import type { EngineApi } from '../engine-port.js';
import { isoTime, type Output } from '../output.js';
import { formatDurationMs, parseDurationMs, parsePositiveInteger } from '../size.js';
import { UsageError } from '../usage-error.js';
import { readKeyMaterial, keyCrnArgument, type MaterialOptions } from './shared.js';
import { waitForTasks } from './tasks.js';

export function registerKeyCommands(program: Command, ctx: CliContext): void {
  const key = program.command('key').description('root keys: create, import (BYOK), rotate, enable/disable, delete (cryptoshred)');

  key.command('create')
    .description('create a root key inside the HSM (its material never leaves it)')
    .requiredOption('--instance <id>', 'HSM instance id')
    .requiredOption('--name <name>', 'key name')
    .option('--dual-auth-delete', 'require a second caller to set the key for deletion before it can be deleted')
    .option('--rotation-interval <duration>', 'rotate automatically every <duration> (e.g. 90d, 12h; at least 1h)', (v) =>
      parseDurationMs(v, '--rotation-interval'),
    )
    .action(globalAction(async (options: CommonOptions & { instance: string; name: string; dualAuthDelete?: boolean; rotationInterval?: number }) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const created = await engine.hsm.createRootKey(options.instance, {
          name: options.name,
          ...(options.dualAuthDelete === true ? { dualAuthDelete: true } : {}),
          ...(options.rotationInterval !== undefined ? { rotationPolicy: { intervalMs: options.rotationInterval } } : {}),
        });
        out.result(created, (o) => printKey(o, created));
      });
    }));

  key.command('import')
    .description(
      'import 256-bit key material you own (BYOK): 32 raw bytes, 64 hex digits or base64, from a file or stdin, never argv. ' +
        'With --token the material is encrypted locally to the instance import token (RSA-OAEP-SHA256) before it is sent',
    )
    .requiredOption('--instance <id>', 'HSM instance id')
    .requiredOption('--name <name>', 'key name')
    .option('--material-file <path>', 'read the key material from this file')
    .option('--material-stdin', 'read the key material from stdin')
    .option('--token', 'use the instance import token (created if the instance has none)')
    .action(globalAction(async (options: CommonOptions & MaterialOptions & { instance: string; name: string; token?: boolean }) => {
      const material = (await readKeyMaterial(options, ctx.stdin, true))!;
      try {
        await withEngine(ctx, options, async ({ engine, out }) => {
          let imported: RootKeyInfo;
          if (options.token === true) {
            const token = await fetchImportToken(engine, options.instance);
            const encryptedMaterial = encryptToImportToken(token, material);
            imported = await engine.hsm.importRootKeyWithToken(options.instance, { name: options.name, encryptedMaterial });
          } else {
            imported = await engine.hsm.importRootKey(options.instance, { name: options.name, material });
          }
          out.result(imported, (o) => printKey(o, imported));
        });
      } finally {
        material.fill(0);
      }
    }));

  const token = key.command('token').description('import tokens: a one-time RSA public key to encrypt key material to');
  token.command('create')
    .description('create an import token for an instance (replaces an existing one)')
    .requiredOption('--instance <id>', 'HSM instance id')
    .option('--expires-in <duration>', 'validity, e.g. 10m, 1h', (v) => parseDurationMs(v, '--expires-in'))
    .option('--max-retrievals <count>', 'how many times the token may be fetched', (v) => parsePositiveInteger(v, '--max-retrievals'))
    .action(globalAction(async (options: CommonOptions & { instance: string; expiresIn?: number; maxRetrievals?: number }) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const created = await engine.hsm.createImportToken(options.instance, {
          ...(options.expiresIn !== undefined ? { expiresInMs: options.expiresIn } : {}),
          ...(options.maxRetrievals !== undefined ? { maxRetrievals: options.maxRetrievals } : {}),
        });
        out.result(tokenSummary(created), (o) => o.fields(tokenSummary(created)));
      });
    }));
  token.command('show')
    .description('fetch the import token (counts as a retrieval) and print its public key (SPKI PEM)')
    .requiredOption('--instance <id>', 'HSM instance id')
    .action(globalAction(async (options: CommonOptions & { instance: string }) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const fetched = await engine.hsm.getImportToken(options.instance);
        out.result(fetched, (o) => {
          o.fields(tokenSummary(fetched));
          o.line();
          o.line(fetched.publicKeyPem.trimEnd());
        });
      });
    }));

  key.command('list')
    .description('list root keys')
    .option('--instance <id>', 'only the keys of this instance')
    .action(globalAction(async (options: CommonOptions & { instance?: string }) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const keys = await engine.hsm.listKeys(options.instance === undefined ? {} : { instanceId: options.instance });
        out.result(keys, (o) =>
          o.table(keys, [
            { header: 'name', value: (k) => k.name },
            { header: 'state', value: (k) => `${k.stateName} (${k.state})` },
            { header: 'version', value: (k) => k.version },
            { header: 'origin', value: (k) => (k.platformManaged ? 'platform' : k.imported ? 'imported' : 'hsm') },
            { header: 'crn', value: (k) => k.crn },
          ]),
        );
      });
    }));

  key.command('show').argument('<crn>', 'the key CRN', keyCrnArgument)
    .description('show a root key (metadata only; material is never shown)')
    .action(globalAction(async (crn: string, options: CommonOptions) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const found = await engine.hsm.getKey(crn);
        out.result(found, (o) => printKey(o, found));
      });
    }));

  key.command('rotate').argument('<crn>', 'the key CRN', keyCrnArgument)
    .description(
      'create a new key version and start one "Syncing KMS state" task per registered volume (rewrap and re-encrypt); ' +
        'waits with a progress bar unless --no-wait',
    )
    .option('--rewrap-only', 'only rewrap the data keys under the new version; do not re-encrypt sectors')
    .option('--material-file <path>', 'new material for an imported key (32 bytes, hex or base64)')
    .option('--material-stdin', 'read new material for an imported key from stdin')
    .option('--no-wait', 'return once the tasks are started (they resume whenever an engine is opened on the directory)')
    .action(globalAction(async (crn: string, options: CommonOptions & MaterialOptions & { rewrapOnly?: boolean; wait: boolean }) => {
      const material = await readKeyMaterial(options, ctx.stdin, false);
      try {
        await withEngine(ctx, options, async ({ engine, out }) => {
          const started = await engine.hsm.rotateKey(crn, {
            ...(material !== undefined ? { material } : {}),
            ...(options.rewrapOnly === true ? { rewrapOnly: true } : {}),
          });
          const tasks = options.wait && started.length > 0 ? await waitForTasks(engine, started, out) : started;
          const rotated = await engine.hsm.getKey(crn);
          const registered = (await engine.hsm.listRegistrations({ keyCrn: crn })).length;
          out.result({ key: rotated, tasks }, (o) => {
            o.line(`Rotated ${rotated.name} to version ${rotated.version}.`);
            if (tasks.length === 0 && registered === 0) o.line('No volumes are registered against the key: nothing to re-encrypt.');
            if (tasks.length === 0 && registered > 0) {
              o.line(`${registered} volume(s) use the key, but none is live (soft-deleted and locked volumes get no re-encryption task); their data keys stay wrapped under the previous version, which still unwraps.`);
            }
            for (const t of tasks) o.line(`task ${t.id}: ${t.state}${t.volumeId ? ` (volume ${t.volumeId})` : ''}`);
            if (!options.wait && tasks.length > 0) o.line(`Follow with: blockvault tasks wait ${tasks.map((t) => t.id).join(' ')}`);
          });
        });
      } finally {
        material?.fill(0);
      }
    }));

  for (const [verb, description] of [
    ['enable', 'set a Suspended key back to Active'],
    ['disable', 'suspend a key: wrap and unwrap fail until it is enabled again'],
  ] as const) {
    key.command(verb).argument('<crn>', 'the key CRN', keyCrnArgument)
      .description(description)
      .action(globalAction(async (crn: string, options: CommonOptions) => {
        await withEngine(ctx, options, async ({ engine, out }) => {
          const changed = verb === 'enable' ? await engine.hsm.enableKey(crn) : await engine.hsm.disableKey(crn);
          out.result(changed, (o) => printKey(o, changed));
        });
      }));
  }

  key.command('delete').argument('<crn>', 'the key CRN', keyCrnArgument)
    .description(
      'delete a root key. Refused (KEY_IN_USE) while volumes are registered against it, unless --force: ' +
        'that cryptoshreds every such volume, which stays readable as metadata only. Irreversible',
    )
    .option('--force', 'destroy the key even though volumes use it (cryptoshredding)')
    .option('--initiator <name>', `who deletes it, for the audit log and dual authorization (default: $${INITIATOR_ENV} or your user name)`, defaultInitiator(ctx))
    .action(globalAction(async (crn: string, options: CommonOptions & { force?: boolean; initiator: string }) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const result = await engine.hsm
          .deleteKey(crn, { initiator: options.initiator, ...(options.force === true ? { force: true } : {}) })
          .catch((error: unknown) => {
            throw inCliTerms(error, crn);
          });
        out.result(result, (o) => {
          o.line(`Key ${result.key.name} is ${result.key.stateName}: its material is destroyed.`);
          if (result.affectedResources.length > 0) {
            o.line(`Cryptoshredded ${result.affectedResources.length} resource(s); their data can never be read again:`);
            for (const r of result.affectedResources) o.line(`  ${r}`);
          }
        });
      });
    }));

  for (const [verb, description] of [
    ['set-for-deletion', 'dual authorization, first step: authorize the deletion of a key (a different initiator then deletes it within 7 days)'],
    ['unset-for-deletion', 'withdraw a pending deletion authorization'],
  ] as const) {
    key.command(verb).argument('<crn>', 'the key CRN', keyCrnArgument)
      .description(description)
      .option('--initiator <name>', `who authorizes (default: $${INITIATOR_ENV} or your user name)`, defaultInitiator(ctx))
      .action(globalAction(async (crn: string, options: CommonOptions & { initiator: string }) => {
        await withEngine(ctx, options, async ({ engine, out }) => {
          const hsm = engine.hsm;
          const changed =
            verb === 'set-for-deletion'
              ? await hsm.setKeyForDeletion(crn, { initiator: options.initiator })
              : await hsm.unsetKeyForDeletion(crn, { initiator: options.initiator });
          out.result(changed, (o) => printKey(o, changed));
        });
      }));
  }

  const policy = program.command('policy').description('key policies');

  policy.command('set-dual-auth-delete').argument('<crn>', 'the key CRN', keyCrnArgument)
    .description('require (on) or stop requiring (off) two different initiators to delete the key')
    .argument('<on|off>', 'on or off', (v) => {
      if (v !== 'on' && v !== 'off') throw new UsageError(`expected on or off, got ${JSON.stringify(v)}`);
      return v;
    })
    .action(globalAction(async (crn: string, onOff: 'on' | 'off', options: CommonOptions) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const updated = await engine.hsm.setDualAuthDelete(crn, { enabled: onOff === 'on' });
        out.result(updated, (o) => o.line(`${updated.name}: dual-authorization delete ${updated.dualAuthDelete ? 'on' : 'off'}.`));
      });
    }));
  policy.command('set-rotation').argument('<crn>', 'the key CRN', keyCrnArgument)
    .description('rotate the key automatically every --interval (at least 1h; KMS convention 1 to 12 months)')
    .requiredOption('--interval <duration>', 'rotation interval, e.g. 90d, 30d, 12h', (v) => parseDurationMs(v, '--interval'))
    .action(globalAction(async (crn: string, options: CommonOptions & { interval: number }) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const updated = await engine.hsm.setRotationPolicy(crn, { intervalMs: options.interval });
        out.result(updated, (o) => o.line(`${updated.name} now rotates every ${formatDurationMs(options.interval)}.`));
      });
    }));
}

export const INITIATOR_ENV = 'BLOCKVAULT_INITIATOR';

function defaultInitiator(ctx: CliContext): string {
  const fromEnv = ctx.env[INITIATOR_ENV];
  if (fromEnv !== undefined && fromEnv.length > 0) return fromEnv;
  try {
    return userInfo().username;
  } catch {
    return 'operator';
  }
}

/** Fetches the instance's import token; creates a fresh one when it has none or it is used up. */
async function fetchImportToken(engine: EngineApi, instanceId: string): Promise<ImportTokenInfo> {
  try {
    return await engine.hsm.getImportToken(instanceId);
  } catch (error) {
    if (!isBlockvaultError(error, 'NOT_FOUND') && !isBlockvaultError(error, 'IMPORT_TOKEN_EXPIRED')) throw error;
    await engine.hsm.createImportToken(instanceId, {});
    return engine.hsm.getImportToken(instanceId);
  }
}

/** RSA-OAEP with SHA-256 (RFC 8017), as the import token's public key requires. */
export function encryptToImportToken(token: ImportTokenInfo, material: Uint8Array): Uint8Array {
  return new Uint8Array(
    publicEncrypt({ key: token.publicKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, material),
  );
}

function tokenSummary(token: Omit<ImportTokenInfo, 'publicKeyPem'>) {
  return {
    instanceId: token.instanceId,
    createdAtMs: token.createdAtMs,
    expiresAtMs: token.expiresAtMs,
    retrievals: token.retrievals,
    maxRetrievals: token.maxRetrievals,
  };
}

export function printKey(o: Output, key: RootKeyInfo): void {
  o.line(`name:          ${key.name}`);
  o.line(`crn:           ${key.crn}`);
  o.line(`state:         ${key.stateName} (${key.state})`);
  o.line(`version:       ${key.version} (${key.versions.length} stored)`);
  o.line(`origin:        ${key.platformManaged ? 'platform-managed' : key.imported ? 'imported (BYOK)' : 'created in the HSM'}`);
  o.line(`created:       ${isoTime(key.createdAtMs)}`);
  o.line(`rotated:       ${isoTime(key.rotatedAtMs)}`);
  o.line(`rotation:      ${key.rotationPolicy === null ? 'manual' : `every ${formatDurationMs(key.rotationPolicy.intervalMs)}`}`);
  o.line(`dual-auth del: ${key.dualAuthDelete ? `on${key.deletionAuthorizedBy ? ` (set for deletion by ${key.deletionAuthorizedBy})` : ''}` : 'off'}`);
  if (key.destroyedAtMs !== null) o.line(`destroyed:     ${isoTime(key.destroyedAtMs)}`);
}

/**
 * deleteKey's refusals advise API calls (`{ force: true }`, `setKeyForDeletion`); through the CLI
 * the same advice is a command line. Same code and details, the message in this CLI's terms.
 */
function inCliTerms(error: unknown, crn: string): unknown {
  if (!isBlockvaultError(error)) return error;
  if (error.code === 'KEY_IN_USE') {
    const resources = (error.details?.resources as string[] | undefined) ?? [];
    const listed = `${resources.slice(0, 3).join(', ')}${resources.length > 3 ? ', ...' : ''}`;
    return new BlockvaultError(
      'KEY_IN_USE',
      `root key ${crn} protects ${resources.length} volume(s) (${listed}). Delete them and let their retention run out, ` +
        `or run \`blockvault key delete ${crn} --force\` to cryptoshred them now: their data can then never be read again`,
      error.details,
    );
  }
  // Not yet set for deletion (the other refusals, such as the same initiator twice, give no API advice).
  if (error.code === 'KEY_DELETION_NOT_AUTHORIZED' && error.details?.missing === 'authorization') {
    return new BlockvaultError(
      'KEY_DELETION_NOT_AUTHORIZED',
      `root key ${crn} needs dual authorization to delete: one initiator runs \`blockvault key set-for-deletion ${crn} --initiator <name>\`, ` +
        'then a different initiator runs `blockvault key delete` (with its own --initiator) within 7 days',
      error.details,
    );
  }
  return error;
}
