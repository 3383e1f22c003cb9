/**
 * Progress bars for long work (volume import/export, rotation tasks). They are drawn on stderr
 * and only when stderr is a terminal and --json is off: a pipe or a log file gets no control
 * characters, and stdout stays clean for data (`volume export > disk.img`) and for JSON.
 */
import cliProgress from 'cli-progress';
import type { Output } from './output.js';
import { formatBytes, formatDurationMs } from './size.js';

export interface ProgressUpdate {
  /** When the producer measures its own rate (a rotation task does); otherwise computed here. */
  bytesPerSecond?: number;
  etaMs?: number;
  state?: string;
}

export interface ProgressHandle {
  update(done: number, total: number, info?: ProgressUpdate): void;
}

export interface ProgressGroup {
  readonly visible: boolean;
  /** unit 'bytes' shows amounts as KiB/MiB; 'sectors' shows counts. */
  add(label: string, unit: 'bytes' | 'sectors'): ProgressHandle;
  stop(): void;
}

const NOOP_HANDLE: ProgressHandle = { update: () => undefined };

export function progressGroup(out: Output): ProgressGroup {
  const visible = !out.json && out.streams.stderr.isTTY === true;
  if (!visible) return { visible, add: () => NOOP_HANDLE, stop: () => undefined };

  const multi = new cliProgress.MultiBar(
    {
      stream: out.streams.stderr as unknown as NodeJS.WritableStream,
      format: '{label} {bar} {percentage}% | {speed} | ETA {etaText} | {amount}',
      barsize: 30,
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      fps: 10,
      autopadding: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const labelWidth = 12;
  return {
    visible,
    add(label, unit) {
      const startMs = Date.now();
      const bar = multi.create(1, 0, { label: label.padEnd(labelWidth), speed: '-', etaText: '-', amount: '' });
      return {
        update(done, total, info = {}) {
          const elapsedMs = Math.max(1, Date.now() - startMs);
          const bytesPerSecond = info.bytesPerSecond ?? (unit === 'bytes' ? (done * 1000) / elapsedMs : undefined);
          const rate = bytesPerSecond === undefined ? (done * 1000) / elapsedMs : undefined; // sectors per second
          const etaMs =
            info.etaMs ??
            (total > done && (bytesPerSecond ?? rate ?? 0) > 0 && done > 0 ? ((total - done) * elapsedMs) / done : done >= total ? 0 : NaN);
          const amount =
            unit === 'bytes' ? `${formatBytes(done)} / ${formatBytes(total)}` : `${done}/${total} sectors${info.state ? ` ${info.state}` : ''}`;
          // A total of 0 is "not counted yet" until the work says it is done (a rotation task
          // reports 0/0 before its first scan); only then is an empty job 100%.
          const finished = info.state === undefined ? done >= total : info.state === 'completed';
          bar.setTotal(Math.max(1, total));
          bar.update(total === 0 ? (finished ? 1 : 0) : done, {
            label: label.padEnd(labelWidth),
            speed: bytesPerSecond === undefined ? '- MB/s' : `${(bytesPerSecond / 1e6).toFixed(1)} MB/s`,
            etaText: formatDurationMs(etaMs),
            amount,
          });
        },
      };
    },
    stop() {
      multi.stop();
    },
  };
}
