/**
 * Process-level failures during a stress run: an 'unhandledRejection' or 'uncaughtException' is
 * a promise or callback somewhere (engine, workers' plumbing, the harness) that nobody handled,
 * which the harness counts as a failure of the run (it must be zero). The listeners are removed
 * when the run ends, so the host's own handling resumes.
 */
export interface ProcessErrorTracker {
  /** Descriptions of what was caught so far. */
  list(): string[];
  stop(): void;
}

const KEPT_MAX = 100;

export function trackProcessErrors(): ProcessErrorTracker {
  const seen: string[] = [];
  let count = 0;
  const record = (kind: string, error: unknown): void => {
    count++;
    if (seen.length < KEPT_MAX) {
      const code = (error as { code?: unknown } | null)?.code;
      seen.push(`${kind}: ${typeof code === 'string' ? `${code}: ` : ''}${error instanceof Error ? error.message : String(error)}`);
    }
  };
  const onRejection = (reason: unknown): void => record('unhandledRejection', reason);
  const onException = (error: unknown): void => record('uncaughtException', error);
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return {
    list: () => (count > seen.length ? [...seen, `... and ${count - seen.length} more`] : [...seen]),
    stop: () => {
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
    },
  };
}
