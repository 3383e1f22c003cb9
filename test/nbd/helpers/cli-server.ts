/**
 * `blockvault volume serve` in a child process, as a user runs it: resolves once it printed its
 * first stdout line (the NBD URI, or the JSON document with --json). stop() sends SIGTERM and
 * resolves with the exit code; kill() is for cleanup after a failure.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { PASSPHRASE, REPO_ROOT } from '../../cli/helpers.js';

export interface CliServer {
  child: ChildProcess;
  firstLine: string;
  stderr(): string;
  /** SIGTERM (or SIGINT), then the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** SIGKILL if still running (afterEach). */
  kill(): void;
}

export async function startCliServer(args: readonly string[]): Promise<CliServer> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, BLOCKVAULT_PASSPHRASE: PASSPHRASE })) {
    if (v !== undefined && !k.startsWith('VITEST') && k !== 'NODE_OPTIONS') env[k] = v;
  }
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'volume', 'serve', ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  try {
    const firstLine = await new Promise<string>((resolve, reject) => {
      child.stdout!.on('data', (b: Buffer) => {
        stdout += b.toString();
        const newline = stdout.indexOf('\n');
        if (newline >= 0) resolve(stdout.slice(0, newline));
      });
      child.on('exit', (code) => reject(new Error(`volume serve exited with ${code} before printing its URI: ${stderr}`)));
      setTimeout(() => reject(new Error(`volume serve printed nothing in 30 s: ${stderr}`)), 30_000);
    });
    return {
      child,
      firstLine,
      stderr: () => stderr,
      stop: async (signal = 'SIGTERM') => {
        child.kill(signal);
        return exit;
      },
      kill,
    };
  } catch (error) {
    kill();
    throw error;
  }
}
