/**
 * `blockvault auth grant|revoke|list` (service-to-service authorizations: the storage service
 * needs Reader on an HSM instance to wrap data keys with its root keys) and
 * `blockvault registrations list` (which resources use which key).
 */
import type { Command } from 'commander';
import { globalAction, withEngine, type CliContext, type CommonOptions } from '../context.js';
import { isoTime } from '../output.js';
import { UsageError } from '../usage-error.js';
import { keyCrnArgument } from './shared.js';

export const STORAGE_SERVICE = 'blockvault';

export function registerAuthCommands(program: Command, ctx: CliContext): void {
  const auth = program.command('auth').description('authorizations: which service may use the keys of which HSM instance');

  auth.command('grant')
    .description(`let a service use an instance's root keys (the storage service is "${STORAGE_SERVICE}")`)
    .requiredOption('--target-instance <id>', 'HSM instance id whose keys may be used')
    .option('--source-service <name>', 'the service being authorized', STORAGE_SERVICE)
    .option('--source-instance <id>', 'one instance of the source service (default: all of them, "*")')
    .option('--role <role>', 'the role granted (only Reader exists)', 'Reader')
    .action(globalAction(async (options: CommonOptions & { targetInstance: string; sourceService: string; sourceInstance?: string; role: string }) => {
      if (options.role !== 'Reader') throw new UsageError(`--role ${JSON.stringify(options.role)}: the only role is Reader`);
      await withEngine(ctx, options, async ({ engine, out }) => {
        const granted = await engine.hsm.authorize({
          sourceService: options.sourceService,
          ...(options.sourceInstance !== undefined ? { sourceInstance: options.sourceInstance } : {}),
          targetInstance: options.targetInstance,
          role: 'Reader',
        });
        out.result(granted, (o) =>
          o.line(`Granted ${granted.role}: ${granted.sourceService} (${granted.sourceInstance}) -> instance ${granted.targetInstance} [id ${granted.id}]`),
        );
      });
    }));

  auth.command('revoke').argument('<id>', 'authorization id (see auth list)')
    .description('revoke an authorization; volumes already open keep their unwrapped data keys until closed')
    .action(globalAction(async (id: string, options: CommonOptions) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        await engine.hsm.revoke(id);
        out.result({ revoked: id }, (o) => o.line(`Revoked authorization ${id}.`));
      });
    }));

  auth.command('list')
    .description('list authorizations')
    .action(globalAction(async (options: CommonOptions) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const all = await engine.hsm.listAuthorizations();
        out.result(all, (o) =>
          o.table(all, [
            { header: 'id', value: (a) => a.id },
            { header: 'source service', value: (a) => a.sourceService },
            { header: 'source instance', value: (a) => a.sourceInstance },
            { header: 'target instance', value: (a) => a.targetInstance },
            { header: 'role', value: (a) => a.role },
            { header: 'created', value: (a) => isoTime(a.createdAtMs) },
          ]),
        );
      });
    }));

  const registrations = program.command('registrations').description('which resources (volumes) are registered against which root keys');
  registrations.command('list')
    .description('list registrations (a key with registrations cannot be deleted without --force)')
    .option('--key <crn>', 'only registrations against this key', keyCrnArgument)
    .option('--resource <crn>', 'only registrations of this resource')
    .action(globalAction(async (options: CommonOptions & { key?: string; resource?: string }) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const all = await engine.hsm.listRegistrations({
          ...(options.key !== undefined ? { keyCrn: options.key } : {}),
          ...(options.resource !== undefined ? { resourceCrn: options.resource } : {}),
        });
        out.result(all, (o) =>
          o.table(all, [
            { header: 'resource', value: (r) => r.resourceCrn },
            { header: 'key', value: (r) => r.keyCrn },
            { header: 'version', value: (r) => r.keyVersion },
            { header: 'prevents deletion', value: (r) => r.preventKeyDeletion },
            { header: 'created', value: (r) => isoTime(r.createdAtMs) },
          ]),
        );
      });
    }));
}
