/**
 * Real client and server processes for the NBD tests: run a command to completion (with a
 * timeout), or start a long-running one (nbdkit) and stop it by pid. Every process started here
 * is killed by `killAll()` (register it in afterEach/afterAll), also when a test failed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Commands run to completion (killAll in afterEach). */
const running = new Set<ChildProcess>();
/** Long-running servers (killServers in afterAll; their stop() normally ends them first). */
const servers = new Set<ChildProcess>();

export interface RunOptions {
  timeoutMs?: number;
  input?: Buffer;
  /** Run as this user and group (PostgreSQL refuses to run as root). */
  uid?: number;
  gid?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(options.uid === undefined ? {} : { uid: options.uid }),
      ...(options.gid === undefined ? {} : { gid: options.gid }),
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      ...(options.env === undefined ? {} : { env: options.env }),
    });
    running.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', (error) => {
      clearTimeout(timer);
      running.delete(child);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.end(options.input);
  });
}

/** Runs and expects exit 0; the error names the command and its stderr. */
export async function runOk(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const result = await run(command, args, options);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.code ?? result.signal}:\n${result.stderr}\n${result.stdout}`);
  return result;
}

/** nbdkit's memory plugin on a Unix socket, in the foreground so its pid is ours to kill. */
export async function startNbdkitMemory(socketPath: string, sizeBytes: number): Promise<{ uri: string; stop(): Promise<void> }> {
  const child = spawn('nbdkit', ['--foreground', '--unix', socketPath, '--exportname', 'mem', 'memory', String(sizeBytes)], { stdio: ['ignore', 'ignore', 'pipe'] });
  servers.add(child);
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<void>((resolve) => child.on('close', () => {
    servers.delete(child);
    resolve();
  }));
  const deadline = Date.now() + 10_000;
  while (!existsSync(socketPath)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`nbdkit did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    uri: `nbd+unix:///mem?socket=${socketPath}`,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Kill every command started by run() that is still running. */
export function killAll(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}

/** Kill every server (nbdkit) still running. */
export function killServers(): void {
  for (const child of servers) child.kill('SIGKILL');
  servers.clear();
}

/** Start a command without waiting, for load that runs beside a test's other steps. */
export function start(command: string, args: readonly string[], timeoutMs = 60_000): Promise<RunResult> {
  return run(command, args, { timeoutMs });
}
