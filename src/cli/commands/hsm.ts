/** `blockvault hsm init [--new-key-file]|status` and `blockvault instance create|list`. */
import path from 'node:path';
import type { Command } from 'commander';
import { BlockvaultError } from '../../errors.js';
import { shredFileSync } from '../../hsm/secure-files.js';
import { engineDir, isEngineDir, globalAction, withEngine, type CliContext, type CommonOptions } from '../context.js';
import type { EngineApi } from '../engine-port.js';
import { createKeyFile } from '../key-file.js';
import { isoTime } from '../output.js';
import { UsageError } from '../usage-error.js';
import { countBy } from './shared.js';

export function registerHsmCommands(program: Command, ctx: CliContext): void {
  const hsm = program.command('hsm').description('the HSM keystore of an engine directory');

  hsm.command('init')
    .description('create a new engine directory and seal its HSM keystore with the passphrase (or key file)')
    .option('--new-key-file <path>', 'generate a new random key file (mode 0600, never over an existing file) and seal the keystore with it: no passphrase needed')
    .action(globalAction(async (options: CommonOptions & { newKeyFile?: string }) => {
      const dir = path.resolve(engineDir(options, ctx.env));
      const existed = isEngineDir(dir);
      if (options.newKeyFile !== undefined) {
        if (options.keyFile !== undefined) throw new UsageError('give either --key-file (an existing key) or --new-key-file (generate one), not both');
        if (existed) {
          throw new BlockvaultError(
            'ALREADY_EXISTS',
            `${dir} is already an engine directory, sealed with its own passphrase or key file: a new key file cannot unseal it. ` +
              'Open it with --key-file <its key file> (or the passphrase), or pick a new --dir',
            { dir },
          );
        }
      }
      const keyFile = options.newKeyFile !== undefined ? createKeyFile(options.newKeyFile) : options.keyFile;
      try {
        await withEngine(
          ctx,
          { ...options, ...(keyFile !== undefined ? { keyFile } : {}) },
          async ({ engine, out, dir, secret }) => {
            const status = await collectStatus(engine, dir);
            const sealedWith = 'pkcs11' in secret ? 'pkcs11' : 'keyFile' in secret ? 'keyFile' : 'passphrase';
            out.result(
              { created: !existed, sealedWith, ...('keyFile' in secret ? { keyFile: secret.keyFile } : {}), keyFileCreated: options.newKeyFile !== undefined, ...status },
              (o) => {
                const opener = sealedWith === 'pkcs11' ? 'PKCS#11 token' : sealedWith === 'keyFile' ? 'key file' : 'passphrase';
                o.line(existed ? `Engine directory ${dir} already exists; the ${opener} unseals it.` : `Initialized ${dir}.`);
                if ('pkcs11' in secret) o.line(`Root keys live on the PKCS#11 token of ${secret.pkcs11.module}; the directory keeps no keystore.`);
                else o.line(`HSM keystore sealed with ${'keyFile' in secret ? `the key file ${secret.keyFile}` : 'the passphrase'}.`);
                if (options.newKeyFile !== undefined) o.line('Keep the key file safe and apart from the data: without it nothing in the directory can be unsealed.');
                const again = 'keyFile' in secret ? ` --key-file ${secret.keyFile}` : 'pkcs11' in secret ? ` --pkcs11 ${secret.pkcs11.module} ${secret.pkcs11.tokenLabel !== undefined ? `--pkcs11-token ${JSON.stringify(secret.pkcs11.tokenLabel)}` : `--pkcs11-slot ${secret.pkcs11.slot}`}` : '';
                o.line(`Next: blockvault instance create --name <name>${again}`);
              },
            );
          },
          { create: true },
        );
      } catch (error) {
        // A key file that sealed nothing is useless: do not leave it behind to block a retry.
        if (options.newKeyFile !== undefined && keyFile !== undefined && !isEngineDir(dir)) shredFileSync(keyFile);
        throw error;
      }
    }));

  hsm.command('status')
    .description('unseal the keystore and summarize instances, keys (by state), volumes (by state) and tasks')
    .action(globalAction(async (options: CommonOptions) => {
      await withEngine(ctx, options, async ({ engine, out, dir }) => {
        const status = await collectStatus(engine, dir);
        out.result(status, (o) => {
          o.line(`dir:           ${status.dir}`);
          o.line(`instances:     ${status.instances}`);
          o.line(`keys:          ${status.keys.total} ${formatCounts(status.keys.byState)}`);
          o.line(`volumes:       ${status.volumes.total} ${formatCounts(status.volumes.byState)}`);
          o.line(`tasks:         ${status.tasks.total} ${formatCounts(status.tasks.byState)}`);
          o.line(`authorizations: ${status.authorizations}`);
        });
      });
    }));

  const instance = program.command('instance').description('HSM instances (a container of root keys; authorizations target one)');

  instance.command('create')
    .description('create an HSM instance')
    .requiredOption('--name <name>', 'instance name')
    .action(globalAction(async (options: CommonOptions & { name: string }) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const created = await engine.hsm.createInstance({ name: options.name });
        out.result(created, (o) => {
          o.fields(created);
          o.line();
          o.line(`Next: blockvault key create --instance ${created.id} --name <name>`);
        });
      });
    }));

  instance.command('list')
    .description('list HSM instances')
    .action(globalAction(async (options: CommonOptions) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const instances = await engine.hsm.listInstances();
        out.result(instances, (o) =>
          o.table(instances, [
            { header: 'id', value: (i) => i.id },
            { header: 'name', value: (i) => i.name },
            { header: 'created', value: (i) => isoTime(i.createdAtMs) },
            { header: 'crn', value: (i) => i.crn },
          ]),
        );
      });
    }));
}

async function collectStatus(engine: EngineApi, dir: string) {
  const instances = await engine.hsm.listInstances();
  const keys = await engine.hsm.listKeys();
  const volumes = engine.listVolumes();
  const tasks = await engine.tasks.list();
  const authorizations = await engine.hsm.listAuthorizations();
  return {
    dir,
    instances: instances.length,
    keys: { total: keys.length, byState: countBy(keys, (k) => k.stateName) },
    volumes: { total: volumes.length, byState: countBy(volumes, (v) => v.state) },
    tasks: { total: tasks.length, byState: countBy(tasks, (t) => t.state) },
    authorizations: authorizations.length,
  };
}

function formatCounts(counts: Record<string, number>): string {
  const parts = Object.entries(counts).map(([k, n]) => `${n} ${k}`);
  return parts.length === 0 ? '' : `(${parts.join(', ')})`;
}
