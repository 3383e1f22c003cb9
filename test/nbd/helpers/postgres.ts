/**
 * PostgreSQL for the tests and benchmarks that run it on a volume: find its programs, initdb a
 * cluster, start and stop it, run pgbench and read its figures. PostgreSQL refuses to run as
 * root, so everything runs as the OS user `postgres` (Debian's postgresql package creates it).
 * The server listens on no TCP address, only on a Unix socket in a directory of the caller's, so
 * clusters of different runs never collide on a port. No vitest import: the benchmarks use it.
 */
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { run, runOk, type RunResult } from './processes.js';

export const POSTGRES_PROGRAMS = ['initdb', 'pg_ctl', 'postgres', 'pgbench', 'psql'] as const;
export const POSTGRES_DEBIAN_PACKAGE = 'postgresql';

/**
 * The directory holding all of POSTGRES_PROGRAMS: the one `initdb` on PATH resolves to, else
 * Debian's /usr/lib/postgresql/<major>/bin, newest first. Not /usr/bin: on Debian that holds
 * pg_wrapper links (postgresql-client-common), which pick a version by their own rules.
 */
export function findPostgresBin(): string | null {
  const dirs: string[] = [];
  const onPath = spawnSync('sh', ['-c', 'command -v initdb']).stdout?.toString().trim() ?? '';
  if (onPath !== '') dirs.push(dirname(realpathSync(onPath)));
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const majors = readdirSync(debian).filter((v) => /^\d+(\.\d+)?$/.test(v)).sort((a, b) => Number(b) - Number(a));
    dirs.push(...majors.map((v) => join(debian, v, 'bin')));
  }
  return dirs.find((d) => POSTGRES_PROGRAMS.every((p) => existsSync(join(d, p)))) ?? null;
}

/** The uid and gid of the OS user `postgres`, or null. */
export function postgresUser(): { uid: number; gid: number } | null {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === 'postgres' && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return null;
}

export interface PgbenchResult {
  run: RunResult;
  /** "tps = N (without initial connection time)"; NaN when pgbench printed none. */
  tps: number;
  /** "number of transactions actually processed: N"; NaN when absent. */
  transactions: number;
  /** "number of failed transactions: N" (PostgreSQL 15+); 0 when absent. */
  failed: number;
}

export function parsePgbench(run: RunResult): PgbenchResult {
  const out = run.stdout;
  const tps = /^tps = ([\d.]+) \(without initial connection time\)/m.exec(out);
  const transactions = /^number of transactions actually processed: (\d+)/m.exec(out);
  const failed = /^number of failed transactions: (\d+)/m.exec(out);
  return { run, tps: tps ? Number(tps[1]) : NaN, transactions: transactions ? Number(transactions[1]) : NaN, failed: failed ? Number(failed[1]) : 0 };
}

export interface Cluster {
  readonly dataDir: string;
  readonly socketDir: string;
  readonly logFile: string;
  readonly port: number;
  /** The postmaster's pid once started (read from postmaster.pid right after start). */
  postmasterPid: number | null;
  initdb(): Promise<void>;
  start(): Promise<void>;
  /** pg_ctl stop in `mode`; 'fast' checkpoints first. */
  stop(mode?: 'fast' | 'immediate'): Promise<RunResult>;
  /** For cleanup: pg_ctl stop -m immediate, then SIGKILL the postmaster and its children by pid. */
  kill(): Promise<void>;
  pgbench(args: readonly string[], timeoutMs?: number): Promise<PgbenchResult>;
  /** psql -At -c `sql`: the output lines. Rejects when psql fails. */
  sql(sql: string): Promise<string>;
  log(): string;
}

/**
 * A cluster in `dataDir` (created, owned by postgres), listening only on a socket in `socketDir`
 * (created, owned by postgres), logging to `logFile` (which should not be on the volume, so the
 * log stays readable after a cryptoshred).
 */
export function cluster(bin: string, user: { uid: number; gid: number }, options: { dataDir: string; socketDir: string; logFile: string; port?: number }): Cluster {
  const port = options.port ?? 5432;
  const as = { uid: user.uid, gid: user.gid, cwd: options.socketDir, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C', PGHOST: options.socketDir, PGPORT: String(port), PGUSER: 'postgres', PGDATABASE: 'postgres' } };
  for (const dir of [options.dataDir, options.socketDir]) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chownSync(dir, user.uid, user.gid);
  }
  mkdirSync(dirname(options.logFile), { recursive: true });
  writeFileSync(options.logFile, '');
  chownSync(options.logFile, user.uid, user.gid);
  const c: Cluster = {
    dataDir: options.dataDir,
    socketDir: options.socketDir,
    logFile: options.logFile,
    port,
    postmasterPid: null,
    async initdb() {
      await runOk(join(bin, 'initdb'), ['-D', options.dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C'], { ...as, timeoutMs: 60_000 });
      // No TCP listener: the socket directory alone names the server. Small buffers keep the
      // working set small, so the file system (and the volume) sees real reads and writes.
      writeFileSync(join(options.dataDir, 'postgresql.auto.conf'), [`listen_addresses = ''`, `unix_socket_directories = '${options.socketDir}'`, `port = ${port}`, `shared_buffers = '32MB'`, ''].join('\n'));
      chownSync(join(options.dataDir, 'postgresql.auto.conf'), user.uid, user.gid);
    },
    async start() {
      await runOk(join(bin, 'pg_ctl'), ['start', '-D', options.dataDir, '-l', options.logFile, '-w', '-t', '60'], { ...as, timeoutMs: 70_000 });
      c.postmasterPid = Number(readFileSync(join(options.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    },
    async stop(mode = 'fast') {
      const r = await run(join(bin, 'pg_ctl'), ['stop', '-D', options.dataDir, '-m', mode, '-w', '-t', '30'], { ...as, timeoutMs: 40_000 });
      if (r.code === 0) c.postmasterPid = null;
      return r;
    },
    async kill() {
      // A start that failed half-way may have left a postmaster whose pid we never read.
      c.postmasterPid ??= readPid(options.dataDir);
      const pid = c.postmasterPid;
      if (pid === null || !alive(pid)) return;
      await run(join(bin, 'pg_ctl'), ['stop', '-D', options.dataDir, '-m', 'immediate', '-w', '-t', '10'], { ...as, timeoutMs: 15_000 });
      if (alive(pid)) {
        const children = (await run('pgrep', ['-P', String(pid)])).stdout.split('\n').filter((l) => l.trim() !== '').map(Number);
        for (const p of [pid, ...children]) if (alive(p)) process.kill(p, 'SIGKILL');
        const deadline = Date.now() + 5000;
        while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      }
      if (alive(pid)) throw new Error(`postmaster ${pid} is still running`);
      c.postmasterPid = null;
    },
    async pgbench(args, timeoutMs = 120_000) {
      return parsePgbench(await run(join(bin, 'pgbench'), args, { ...as, timeoutMs }));
    },
    async sql(sql) {
      return (await runOk(join(bin, 'psql'), ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-c', sql], { ...as, timeoutMs: 30_000 })).stdout.trim();
    },
    log() {
      return readFileSync(options.logFile, 'utf8');
    },
  };
  return c;
}

function readPid(dataDir: string): number | null {
  try {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** True while a process with this pid exists (and is not a zombie we could reap). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // A zombie (exited, not yet reaped by its parent) counts as gone.
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * TPC-B's consistency condition for pgbench's tables: every transaction adds the same delta to
 * one account, teller and branch and logs it in history, so the four sums must be equal.
 */
export const TPCB_SUMS_SQL =
  'select (select sum(abalance) from pgbench_accounts), (select sum(tbalance) from pgbench_tellers), (select sum(bbalance) from pgbench_branches), (select coalesce(sum(delta), 0) from pgbench_history), (select count(*) from pgbench_history)';
