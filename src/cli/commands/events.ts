/** `blockvault events list|verify`: the hash-chained audit log of key and volume operations. */
import type { Command } from 'commander';
import { BlockvaultError } from '../../errors.js';
import { globalAction, withEngine, type CliContext, type CommonOptions } from '../context.js';
import type { AuditEvent, AuditFilter, EngineApi } from '../engine-port.js';
import { isoTime, type Output } from '../output.js';
import { parsePositiveInteger, parseTimeMs } from '../size.js';
import { keyCrnArgument } from './shared.js';

export function registerEventsCommands(program: Command, ctx: CliContext): void {
  const events = program.command('events').description('the audit log (hash-chained): every key operation, e.g. hs-crypto.secrets.delete');

  events.command('list')
    .description('list audit events, oldest first')
    .option('--action <action>', 'only this action, e.g. hs-crypto.secrets.delete')
    .option('--key <crn>', 'only events about this key', keyCrnArgument)
    .option('--since <time>', 'only events at or after: ISO 8601 time, or a duration ago (2h, 7d)', (v) => parseTimeMs(v, '--since'))
    .option('--until <time>', 'only events before: ISO 8601 time, or a duration ago', (v) => parseTimeMs(v, '--until'))
    .option('--limit <count>', 'only the newest <count> events', (v) => parsePositiveInteger(v, '--limit'))
    .action(globalAction(async (options: CommonOptions & { action?: string; key?: string; since?: number; until?: number; limit?: number }) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const list = await listEvents(engine, {
          ...(options.action !== undefined ? { action: options.action } : {}),
          ...(options.key !== undefined ? { keyCrn: options.key } : {}),
          ...(options.since !== undefined ? { sinceMs: options.since } : {}),
          ...(options.until !== undefined ? { untilMs: options.until } : {}),
        }, options.limit);
        out.result(list, (o) => printEvents(o, list));
      });
    }));

  events.command('verify')
    .description('verify the audit hash chain; exits 1 with AUDIT_TAMPERED if any event was altered or removed')
    .action(globalAction(async (options: CommonOptions) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const result = await verifyAudit(engine);
        out.result(result, (o) => o.line(`Audit chain verified: ${describeVerify(result)}.`));
      });
    }));
}

const EVENTS_PAGE_SIZE = 1000;

/**
 * Events oldest first: the newest `limit` of them, or all of them, read in pages (the audit log
 * returns at most a page per call, and `afterSeq` continues after the last one).
 */
export async function listEvents(engine: EngineApi, filter: AuditFilter, limit?: number): Promise<AuditEvent[]> {
  if (limit !== undefined) return (await engine.events.list({ ...filter, limit, order: 'desc' })).reverse();
  const all: AuditEvent[] = [];
  for (;;) {
    const last = all.at(-1)?.seq;
    const page = await engine.events.list({ ...filter, limit: EVENTS_PAGE_SIZE, order: 'asc', ...(typeof last === 'number' ? { afterSeq: last } : {}) });
    all.push(...page);
    if (page.length < EVENTS_PAGE_SIZE || typeof page.at(-1)?.seq !== 'number') return all;
  }
}

/** Normalizes verify(): it may return a report ({ ok, count, ... }), a boolean, or throw. */
export async function verifyAudit(engine: EngineApi): Promise<Record<string, unknown>> {
  const raw = await engine.events.verify();
  const report: Record<string, unknown> =
    typeof raw === 'boolean' ? { ok: raw } : raw !== null && typeof raw === 'object' ? { ...(raw as Record<string, unknown>) } : { ok: true };
  if (report.ok === false || report.valid === false) {
    throw new BlockvaultError('AUDIT_TAMPERED', `the audit hash chain does not verify: ${JSON.stringify(report)}`, report);
  }
  if (report.ok === undefined) report.ok = true;
  return report;
}

export function describeVerify(report: Record<string, unknown>): string {
  const count = report.count ?? report.eventCount ?? report.events;
  return typeof count === 'number' ? `${count} events, chain intact` : 'chain intact';
}

/** `crn:v1:...:key:ac7f1a6d-...` as `key:ac7f1a6d`, for tables a person reads. */
export function shortCrn(text: string): string {
  const parts = text.split(':');
  return parts.length === 10 && parts[0] === 'crn' ? `${parts[8]}:${parts[9]!.slice(0, 8)}` : text;
}

export function printEvents(o: Output, list: readonly AuditEvent[], options: { short?: boolean } = {}): void {
  const target = (e: AuditEvent): string => {
    const value = e.resourceCrn ?? e.keyCrn ?? e.instanceId ?? '-';
    return options.short === true ? shortCrn(value) : value;
  };
  o.table(list, [
    { header: 'seq', value: (e) => e.seq ?? '-' },
    { header: 'time', value: (e) => isoTime(e.timeMs) },
    { header: 'action', value: (e) => e.action },
    { header: 'outcome', value: (e) => e.outcome ?? '-' },
    { header: 'target', value: target },
  ], '(no events)');
}
