/**
 * A mistake in how the command was called (a missing option, a size that does not parse, a
 * passphrase on argv). It exits with status 2, like commander's own parse errors, so scripts can
 * tell "you called it wrong" (2) from "the operation failed" (1).
 */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/**
 * A failure the CLI itself detects (a timeout, a failed stress run, benchmark or demo step, a
 * busy directory), reported as `error CODE: message` with exit status 1 like a BlockvaultError.
 */
export class CliFailure extends Error {
  constructor(
    readonly code: 'TIMEOUT' | 'STRESS_FAILED' | 'BENCH_FAILED' | 'DEMO_FAILED' | 'DIR_BUSY',
    message: string,
  ) {
    super(message);
    this.name = 'CliFailure';
  }
}
