/**
 * Real crashes for the crash tests: run a TypeScript script in a child Node process, hand each
 * line it prints to `onLine`, which decides when to SIGKILL it. Resolves once the child died of
 * that SIGKILL; rejects (with the child's stderr) if it exited any other way first, because then
 * the trial did not test a crash at all.
 */
import { spawn } from 'node:child_process';

export interface KillControl {
  /** SIGKILL the child now (0) or after `delayMs`. */
  kill(delayMs?: number): void;
}

export function runChildUntilKilled(
  script: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; name?: string; onLine: (line: string, control: KillControl) => void },
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
      ...(options.env === undefined ? {} : { env: options.env }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const control: KillControl = {
      kill: (delayMs = 0) => {
        if (delayMs === 0) child.kill('SIGKILL');
        else setTimeout(() => child.kill('SIGKILL'), delayMs);
      },
    };
    let buffered = '';
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        options.onLine(line, control);
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve();
      else reject(new Error(`${options.name ?? 'child'} exited with ${code}/${signal} before the kill: ${stderr}`));
    });
  });
}
