/**
 * `blockvault tasks list|show|wait|cancel`: the "Syncing KMS state" tasks a rotation starts.
 * Tasks run inside whichever process has the engine open; they are persisted, so `tasks wait`
 * (which opens the engine) resumes an interrupted task and follows it to the end.
 */
import type { Command } from 'commander';
import { globalAction, withEngine, type CliContext, type CommonOptions } from '../context.js';
import type { EngineApi, TaskInfo, TaskProgressEvent } from '../engine-port.js';
import { isoTime, type Output } from '../output.js';
import { progressGroup } from '../progress.js';
import { formatBytes, formatDurationMs, parseDurationMs } from '../size.js';

const POLL_INTERVAL_MS = 250;

export function registerTasksCommands(program: Command, ctx: CliContext): void {
  const tasks = program.command('tasks').description('rotation ("Syncing KMS state") tasks: progress, wait, cancel');

  tasks.command('list')
    .description('list tasks, newest last')
    .action(globalAction(async (options: CommonOptions) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const all = await engine.tasks.list();
        out.result(all, (o) =>
          o.table(all, [
            { header: 'id', value: (t) => t.id },
            { header: 'state', value: (t) => t.state },
            { header: 'volume', value: (t) => t.volumeId ?? '-' },
            { header: 'progress', value: (t) => progressText(t) },
            { header: 'started', value: (t) => isoTime(t.startedAtMs) },
            { header: 'ended', value: (t) => isoTime(t.endedAtMs) },
          ]),
        );
      });
    }));

  tasks.command('show').argument('<id>', 'task id')
    .description('show one task: state, sectors done/total, MB/s, start and end')
    .action(globalAction(async (id: string, options: CommonOptions) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const task = await engine.tasks.get(id);
        out.result(task, (o) => printTask(o, task));
      });
    }));

  tasks.command('wait').argument('<ids...>', 'task ids')
    .description('resume (if interrupted) and wait for tasks to end, with a live progress bar (percent, MB/s, ETA)')
    .option('--timeout <duration>', 'give up after this long, e.g. 10m (the tasks keep their checkpoint)', (v) => parseDurationMs(v, '--timeout'))
    .action(globalAction(async (ids: string[], options: CommonOptions & { timeout?: number }) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const api = engine.tasks;
        const initial = await Promise.all(ids.map(async (id) => api.get(id)));
        const ended = await waitForTasks(engine, initial, out, options.timeout);
        out.result(ended.length === 1 ? ended[0] : ended, (o) => {
          for (const t of ended) o.line(`task ${t.id}: ${t.state} ${progressText(t)}${durationText(t)}`);
        });
      });
    }));

  tasks.command('cancel').argument('<id>', 'task id')
    .description('cancel a task safely (every sector stays readable; the volume keeps both data-key generations)')
    .action(globalAction(async (id: string, options: CommonOptions) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const api = engine.tasks;
        await api.cancel(id);
        const task = await api.get(id);
        out.result(task, (o) => printTask(o, task));
      });
    }));
}

/**
 * Waits until every task has ended, drawing one progress bar per task from the engine's progress
 * events (and from polling, so a bar also moves if events are sparse). A failed or cancelled task
 * rejects with TASK_FAILED / TASK_CANCELLED after all bars are final.
 */
export async function waitForTasks(engine: EngineApi, tasks: readonly TaskInfo[], out: Output, timeoutMs?: number): Promise<TaskInfo[]> {
  const api = engine.tasks;
  const group = progressGroup(out);
  const names = new Map(engine.listVolumes().map((v) => [v.id, v.name]));
  const bars = new Map(tasks.map((t) => [t.id, group.add((names.get(t.volumeId) ?? t.volumeId).slice(0, 12), 'sectors')]));
  const draw = (taskId: string, p: { sectorsDone: number; sectorsTotal: number; state: string; bytesPerSecond?: number | null; etaMs?: number | null }): void => {
    bars.get(taskId)?.update(p.sectorsDone, p.sectorsTotal, {
      ...(typeof p.bytesPerSecond === 'number' ? { bytesPerSecond: p.bytesPerSecond } : {}),
      ...(typeof p.etaMs === 'number' ? { etaMs: p.etaMs } : {}),
      state: p.state,
    });
  };
  const drawTask = (t: TaskInfo): void => draw(t.id, { ...t, bytesPerSecond: taskBytesPerSecond(t), etaMs: t.etaMs });
  const onProgress = (event: TaskProgressEvent): void => draw(event.taskId, event);
  api.on('progress', onProgress);
  const poll = group.visible
    ? setInterval(() => {
        for (const t of tasks) void Promise.resolve()
          .then(() => api.get(t.id))
          .then(drawTask, () => undefined);
      }, POLL_INTERVAL_MS)
    : undefined;
  try {
    const settled = await Promise.allSettled(tasks.map(async (t) => api.wait(t.id, timeoutMs === undefined ? {} : { timeoutMs })));
    const ended = await Promise.all(tasks.map(async (t) => api.get(t.id)));
    for (const t of ended) drawTask(t);
    const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failure !== undefined) throw failure.reason;
    return ended;
  } finally {
    if (poll !== undefined) clearInterval(poll);
    api.off('progress', onProgress);
    group.stop();
  }
}

/**
 * A task's re-encryption rate: the one the task records at each checkpoint, or else bytes done
 * over its running time (to now while it runs).
 */
export function taskBytesPerSecond(t: TaskInfo, nowMs: number = Date.now()): number | null {
  if (typeof t.bytesPerSecond === 'number' && t.bytesPerSecond > 0) return t.bytesPerSecond;
  if (typeof t.startedAtMs !== 'number' || typeof t.bytesDone !== 'number') return null;
  const elapsedMs = (t.endedAtMs ?? nowMs) - t.startedAtMs;
  return elapsedMs > 0 ? (t.bytesDone * 1000) / elapsedMs : null;
}

function progressText(t: TaskInfo): string {
  if (t.sectorsTotal === undefined) return '-';
  const percent = t.sectorsTotal === 0 ? 100 : Math.floor(((t.sectorsDone ?? 0) * 100) / t.sectorsTotal);
  return `${t.sectorsDone ?? 0}/${t.sectorsTotal} sectors (${percent}%)`;
}

function durationText(t: TaskInfo): string {
  if (typeof t.startedAtMs !== 'number' || typeof t.endedAtMs !== 'number') return '';
  return ` in ${formatDurationMs(t.endedAtMs - t.startedAtMs)}`;
}

export function printTask(o: Output, t: TaskInfo): void {
  o.line(`id:        ${t.id}`);
  o.line(`state:     ${t.state}`);
  if (t.volumeId !== undefined) o.line(`volume:    ${t.volumeId}`);
  if (t.keyCrn !== undefined) o.line(`key:       ${t.keyCrn}`);
  o.line(`progress:  ${progressText(t)}`);
  const bytesPerSecond = taskBytesPerSecond(t);
  if (bytesPerSecond !== null) o.line(`speed:     ${(bytesPerSecond / 1e6).toFixed(1)} MB/s (${formatBytes(t.bytesDone)} re-encrypted)`);
  if (typeof t.etaMs === 'number' && (t.state === 'running' || t.state === 'queued')) o.line(`eta:       ${formatDurationMs(t.etaMs)}`);
  o.line(`started:   ${isoTime(t.startedAtMs)}`);
  o.line(`ended:     ${isoTime(t.endedAtMs)}`);
  const error = (t as { error?: { code?: string; message?: string } | string | null }).error;
  if (typeof error === 'string') o.line(`error:     ${error}`);
  else if (error !== undefined && error !== null) o.line(`error:     ${error.code ?? ''}: ${error.message ?? ''}`);
}
