/** `blockvault hsm init|status` and `blockvault instance create|list`. */
import path from 'node:path';
import type { Command } from 'commander';
import { isEngineDir, withCommonOptions, withEngine, type CliContext, type CommonOptions } from '../context.js';
import type { EngineApi } from '../engine-port.js';
import { isoTime } from '../output.js';
import { countBy } from './shared.js';

export function registerHsmCommands(program: Command, ctx: CliContext): void {
  const hsm = program.command('hsm').description('the HSM keystore of an engine directory');

  withCommonOptions(hsm.command('init'), ctx)
    .description('create a new engine directory and seal its HSM keystore with the passphrase (or key file)')
    .action(async (options: CommonOptions) => {
      const existed = isEngineDir(path.resolve(options.dir));
      await withEngine(
        ctx,
        options,
        async ({ engine, out, dir, secret }) => {
          const status = await collectStatus(engine, dir);
          out.result(
            { created: !existed, sealedWith: 'keyFile' in secret ? 'keyFile' : 'passphrase', ...status },
            (o) => {
              o.line(existed ? `Engine directory ${dir} already exists; the passphrase unseals it.` : `Initialized ${dir}.`);
              o.line(`HSM keystore sealed with ${'keyFile' in secret ? `the key file ${secret.keyFile}` : 'the passphrase'}.`);
              o.line('Next: blockvault instance create --name <name>');
            },
          );
        },
        { create: true },
      );
    });

  withCommonOptions(hsm.command('status'), ctx)
    .description('unseal the keystore and summarize instances, keys (by state), volumes (by state) and tasks')
    .action(async (options: CommonOptions) => {
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
    });

  const instance = program.command('instance').description('HSM instances (a container of root keys; authorizations target one)');

  withCommonOptions(instance.command('create'), ctx)
    .description('create an HSM instance')
    .requiredOption('--name <name>', 'instance name')
    .action(async (options: CommonOptions & { name: string }) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const created = await engine.hsm.createInstance({ name: options.name });
        out.result(created, (o) => {
          o.fields(created);
          o.line();
          o.line(`Next: blockvault key create --instance ${created.id} --name <name>`);
        });
      });
    });

  withCommonOptions(instance.command('list'), ctx)
    .description('list HSM instances')
    .action(async (options: CommonOptions) => {
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
    });
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
