/**
 * The parent side of engine-server.child.ts: starts the child (an Engine serving one volume over
 * NBD on a Unix socket), sends it commands and waits for the answers. No vitest import, so the
 * benchmarks use it too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = join(HERE, '../../..');

/** The HSM passphrase of the child's engine (for a CLI that opens its directory afterwards). */
export const ENGINE_SERVER_PASSPHRASE = 'engine-server child passphrase';

export interface EngineServer {
  readonly child: ChildProcess;
  readonly uri: string;
  readonly socketPath: string;
  readonly keyCrn: string;
  readonly volumeId: string;
  /** Sends a command (see engine-server.child.ts) and resolves with its result; rejects with its error. */
  command<T = any>(cmd: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  stderr(): string;
  /** `stop`, then SIGKILL if it has not exited within timeoutMs. Resolves with the exit code. */
  stop(timeoutMs?: number): Promise<number | null>;
  /** SIGKILL if still running. */
  kill(): void;
}

export async function startEngineServer(options: { engineDir: string; socketPath: string; sizeBytes: number; importKey?: boolean }): Promise<EngineServer> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('VITEST') && k !== 'NODE_OPTIONS') env[k] = v;
  }
  const args = ['--import', 'tsx', join(HERE, 'engine-server.child.ts'), options.engineDir, options.socketPath, String(options.sizeBytes)];
  if (options.importKey === true) args.push('--import-key');
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let exitCode: number | null | undefined;
  void exited.then((code) => (exitCode = code));
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };

  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  let nextId = 1;
  let buffered = '';
  let onReady: ((line: string) => void) | null = null;
  child.stdout!.on('data', (b: Buffer) => {
    buffered += b.toString();
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      if (onReady !== null) {
        onReady(line);
        continue;
      }
      const reply = JSON.parse(line) as { id: number; ok: boolean; result?: unknown; error?: string };
      const waiter = pending.get(reply.id);
      pending.delete(reply.id);
      if (reply.ok) waiter?.resolve(reply.result);
      else waiter?.reject(new Error(reply.error));
    }
  });
  void exited.then((code) => {
    for (const waiter of pending.values()) waiter.reject(new Error(`engine server exited ${code}: ${stderr}`));
    pending.clear();
  });

  try {
    const ready = await new Promise<{ uri: string; keyCrn: string; volumeId: string }>((resolve, reject) => {
      onReady = (line) => {
        onReady = null;
        try {
          resolve((JSON.parse(line) as { ready: { uri: string; keyCrn: string; volumeId: string } }).ready);
        } catch {
          reject(new Error(`engine server printed ${JSON.stringify(line)} instead of its ready line: ${stderr}`));
        }
      };
      void exited.then((code) => reject(new Error(`engine server exited ${code} before it was ready: ${stderr}`)));
      setTimeout(() => reject(new Error(`engine server not ready in 30 s: ${stderr}`)), 30_000).unref();
    });
    return {
      child,
      ...ready,
      socketPath: options.socketPath,
      command<T>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 90_000): Promise<T> {
        if (exitCode !== undefined) return Promise.reject(new Error(`engine server already exited ${exitCode}: ${stderr}`));
        const id = nextId++;
        return new Promise<T>((resolve, reject) => {
          const timer = setTimeout(() => {
            pending.delete(id);
            reject(new Error(`engine server: no answer to ${cmd} in ${timeoutMs} ms`));
          }, timeoutMs);
          pending.set(id, {
            resolve: (v) => {
              clearTimeout(timer);
              resolve(v as T);
            },
            reject: (e) => {
              clearTimeout(timer);
              reject(e);
            },
          });
          child.stdin!.write(`${JSON.stringify({ id, cmd, ...args })}\n`);
        });
      },
      stderr: () => stderr,
      async stop(timeoutMs = 15_000) {
        if (exitCode !== undefined) return exitCode;
        child.stdin!.end(`${JSON.stringify({ id: 0, cmd: 'stop' })}\n`);
        const timer = setTimeout(kill, timeoutMs);
        const code = await exited;
        clearTimeout(timer);
        return code;
      },
      kill,
    };
  } catch (error) {
    kill();
    throw error;
  }
}
