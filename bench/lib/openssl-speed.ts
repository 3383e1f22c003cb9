/**
 * `openssl speed -evp <cipher>` as an in-run baseline: OpenSSL's hand-written assembly on one
 * core is the practical ceiling for a cipher on this machine. Measured in the same run as the
 * code under test, because absolute speeds on shared machines drift between runs.
 */
import { spawnSync } from 'node:child_process';

export interface OpensslSpeed {
  cipher: string;
  bufferBytes: number;
  /** Bytes per second on one core, as OpenSSL reports it. */
  bytesPerSecond: number;
  version: string;
}

/** The `openssl version` line, or undefined when there is no openssl CLI. */
export function opensslVersion(): string | undefined {
  const run = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  if (run.error !== undefined || run.status !== 0) return undefined;
  return run.stdout.trim();
}

/**
 * Runs `openssl speed -mr -seconds <seconds> -bytes <bufferBytes> -evp <cipher>` and parses its
 * machine-readable `+F:<n>:<cipher>:<bytes per second>` line. Undefined when openssl is missing
 * or the output has no such line (the caller reports the baseline as unavailable). `env` is added
 * to the child's environment (OPENSSL_ia32cap masks CPU features from OpenSSL's code choice).
 */
export function opensslSpeed(cipher: string, bufferBytes: number, seconds = 2, env: Record<string, string> = {}): OpensslSpeed | undefined {
  const version = opensslVersion();
  if (version === undefined) return undefined;
  const run = spawnSync('openssl', ['speed', '-mr', '-seconds', String(seconds), '-bytes', String(bufferBytes), '-evp', cipher], {
    encoding: 'utf8',
    timeout: (seconds + 10) * 1000,
    env: { ...process.env, ...env },
  });
  if (run.status !== 0) return undefined;
  const line = run.stdout.split('\n').find((l) => l.startsWith('+F:'));
  const bytesPerSecond = line === undefined ? NaN : Number(line.split(':').at(-1));
  if (!Number.isFinite(bytesPerSecond) || bytesPerSecond <= 0) return undefined;
  return { cipher, bufferBytes, bytesPerSecond, version };
}
