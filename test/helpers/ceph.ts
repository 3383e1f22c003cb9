/**
 * A throwaway Ceph cluster for the RADOS store's tests: one monitor and three OSDs on 127.0.0.1,
 * in a fresh temporary directory, with the memstore object store (data in RAM, nothing on disk
 * but logs and the monitor's small database), `auth none`, CRUSH choosing leaves of type 0 (so
 * three OSDs on one host hold the three replicas), pools of size 3 and min_size 2.
 *
 * Every daemon runs in the foreground (`-f`) as a child of the test process, so it is stopped by
 * its pid (SIGKILL: memstore has nothing worth flushing) in `stop()`, from the vitest hook that
 * `useCephCluster` registers (which runs when a test failed too), and as a last resort from a
 * process `exit` handler if the test process goes away without its hooks. Then the directory is
 * removed.
 *
 * Failure detection is tuned for tests: an OSD that dies is reported by its peers at once
 * (connection refused), the monitor accepts one reporter, and clients re-request the OSD map after
 * 2 s of a stuck op (objecter_timeout, default 10 s) instead of waiting 10 s.
 *
 * Without the Ceph packages the cases skip with the reason; with BLOCKVAULT_REQUIRE_TOOLS=1 (CI)
 * findTools fails instead. The packages are listed in .ci/apt.d/ceph.txt.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, openSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findTools, type ToolCheck } from './external-tool.js';

export const LIBRADOS_PATH = '/usr/lib/x86_64-linux-gnu/librados.so.2';

export const cephCheck: ToolCheck = findTools([
  { name: 'ceph-mon', debianPackage: 'ceph-mon' },
  { name: 'ceph-osd', debianPackage: 'ceph-osd' },
  { name: 'monmaptool', debianPackage: 'ceph-base' },
  { name: 'ceph', debianPackage: 'ceph-common' },
  { name: 'rados', debianPackage: 'ceph-common' },
  { name: LIBRADOS_PATH, debianPackage: 'librados2' },
]);

export interface CephClusterOptions {
  /** OSDs to start (default 3). */
  osdCount?: number;
  /** Pools to create (size 3, min_size 2, 8 PGs) and wait for (default one, `bv-test`). */
  pools?: string[];
  /** The capacity each memstore OSD reports, bytes (default 128 MiB). */
  memstoreBytes?: number;
  /** Give up on bring-up after this long (default 60 s). */
  startTimeoutMs?: number;
}

export interface CephCluster {
  /** The temporary directory with ceph.conf, the daemons' logs and the monitor's store. */
  readonly dir: string;
  /** A ceph.conf that clients (librados, the `ceph` and `rados` CLIs) can use as is. */
  readonly confPath: string;
  /** The monitor's address, as `mon_host` takes it: `v2:127.0.0.1:<port>`. */
  readonly monHost: string;
  readonly pools: readonly string[];
  /** How long `startCephCluster` took, from the empty directory to every pool taking writes. */
  readonly startMs: number;
  /** The pid of each OSD still running, by OSD id. */
  runningOsds(): Map<number, number>;
  /** SIGKILLs OSD `id` and waits until the process is gone (not until the monitor notices). */
  killOsd(id: number): Promise<void>;
  /** Waits until the monitor's OSD map counts `count` OSDs up. */
  waitOsdsUp(count: number, timeoutMs?: number): Promise<void>;
  /** Creates another pool (size 3, min_size 2) and waits until it takes writes. */
  createPool(name: string): Promise<void>;
  /** Runs the `ceph` CLI against this cluster; returns stdout, throws on a non-zero exit. */
  ceph(args: string[], timeoutMs?: number): Promise<string>;
  /** Stops every daemon by pid and removes the directory; safe to call twice. */
  stop(): Promise<void>;
}

interface Daemon {
  name: string;
  child: ChildProcess;
  exited: Promise<void>;
}

const running = new Set<Daemon>();
let exitHookInstalled = false;

/** If the test process ends without its hooks (a crash, process.exit), the daemons still die. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const daemon of running) {
      if (daemon.child.pid !== undefined && daemon.child.exitCode === null && daemon.child.signalCode === null) {
        try {
          process.kill(daemon.child.pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
  });
}

/** A TCP port on 127.0.0.1 that nothing listened on a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function run(command: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new Error(`${command} ${args.join(' ')} exited with ${code ?? signal}${signal === 'SIGKILL' ? ` (timeout ${timeoutMs} ms)` : ''}: ${stderr.trim()}`));
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function confText(dir: string, fsid: string, monHost: string, memstoreBytes: number): string {
  return `[global]
fsid = ${fsid}
mon host = [${monHost}]
mon initial members = a
public addr = 127.0.0.1
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
keyring = /dev/null
auth allow insecure global id reclaim = false
run dir = ${dir}
admin socket = ${dir}/$name.asok
log file = ${dir}/$name.log
pid file = ${dir}/$name.pid
mon data = ${dir}/$name
osd data = ${dir}/$name
osd objectstore = memstore
memstore device bytes = ${memstoreBytes}
osd crush chooseleaf type = 0
osd pool default size = 3
osd pool default min size = 2
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool delete = true
mon warn on pool no redundancy = false
# The temp dir's file system may be fuller than 30 %; that is not what the tests are about.
mon data avail warn = 1
mon data avail crit = 0
# A killed OSD is refused by its peers at once; one report is enough on a 3-OSD cluster, and a
# down OSD is never marked out (there is no fourth OSD to move its data to).
mon osd min down reporters = 1
mon osd down out interval = 0
mon warn on osd down out interval zero = false
osd heartbeat interval = 1
osd heartbeat grace = 4
[client]
# A client whose op went to an OSD that died asks for a new OSD map after 2 s, not 10 s.
objecter timeout = 2
objecter tick interval = 1
`;
}

export async function startCephCluster(options: CephClusterOptions = {}): Promise<CephCluster> {
  if (!cephCheck.ok) throw new Error(`Ceph is not usable: ${cephCheck.reason}`);
  installExitHook();
  const osdCount = options.osdCount ?? 3;
  const pools = [...(options.pools ?? ['bv-test'])];
  const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
  const started = performance.now();
  const dir = mkdtempSync(join(tmpdir(), 'bv-ceph-'));
  const confPath = join(dir, 'ceph.conf');
  const daemons: Daemon[] = [];
  const osds = new Map<number, Daemon>();
  let stopped = false;

  const remaining = () => Math.max(1000, deadline - Date.now());
  const ceph = (args: string[], timeoutMs = 20_000) => run('ceph', ['-c', confPath, '--connect-timeout', String(Math.ceil(timeoutMs / 1000)), ...args], timeoutMs + 2000);

  const startDaemon = (name: string, command: string, args: string[]): Daemon => {
    const out = openSync(join(dir, `${name}.out`), 'a');
    const child = spawn(command, args, { stdio: ['ignore', out, out] });
    closeSync(out);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const daemon: Daemon = { name, child, exited };
    running.add(daemon);
    void exited.then(() => running.delete(daemon));
    daemons.push(daemon);
    return daemon;
  };

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    for (const daemon of daemons) {
      if (daemon.child.exitCode === null && daemon.child.signalCode === null) daemon.child.kill('SIGKILL');
    }
    await Promise.all(daemons.map((d) => d.exited));
    rmSync(dir, { recursive: true, force: true });
  };

  const waitOsdsUp = async (count: number, timeoutMs = 30_000): Promise<void> => {
    const until = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < until) {
      last = await ceph(['osd', 'stat', '-f', 'json'], 10_000);
      const stat = JSON.parse(last) as { num_up_osds: number };
      if (stat.num_up_osds === count) return;
      await sleep(200);
    }
    throw new Error(`ceph: ${count} OSDs not up within ${timeoutMs} ms (last osd stat: ${last.trim()})`);
  };

  const probe = join(dir, 'probe');
  writeFileSync(probe, 'blockvault probe\n');
  /** A put succeeds only once every PG the object maps to is active on min_size OSDs. */
  const waitPoolWritable = async (pool: string, timeoutMs: number): Promise<void> => {
    await run('rados', ['-c', confPath, '-p', pool, '--rados-osd-op-timeout', String(Math.ceil(timeoutMs / 1000)), 'put', 'blockvault-probe', probe], timeoutMs + 2000);
    await run('rados', ['-c', confPath, '-p', pool, 'rm', 'blockvault-probe'], 10_000);
  };

  const createPool = async (name: string): Promise<void> => {
    await ceph(['osd', 'pool', 'create', name, '8', '8', 'replicated', '--size', '3']);
    await ceph(['osd', 'pool', 'set', name, 'min_size', '2']);
    await ceph(['osd', 'pool', 'application', 'enable', name, 'blockvault']);
    await waitPoolWritable(name, remaining());
  };

  try {
    const port = await freePort();
    const monHost = `v2:127.0.0.1:${port}`;
    const fsid = randomUUID();
    writeFileSync(confPath, confText(dir, fsid, monHost, options.memstoreBytes ?? 128 * 1024 * 1024));
    const monmap = join(dir, 'monmap');
    await run('monmaptool', ['--create', '--addv', 'a', `[${monHost}]`, '--fsid', fsid, monmap], 10_000);
    await run('ceph-mon', ['-c', confPath, '--mkfs', '-i', 'a', '--monmap', monmap], 20_000);
    startDaemon('mon.a', 'ceph-mon', ['-f', '-c', confPath, '-i', 'a']);

    // Register the OSDs with the monitor (ids 0..n-1 in order), then mkfs and start them.
    const uuids = Array.from({ length: osdCount }, () => randomUUID());
    for (const [id, uuid] of uuids.entries()) {
      const given = (await ceph(['osd', 'new', uuid], remaining())).trim();
      if (given !== String(id)) throw new Error(`ceph osd new gave id ${given}, expected ${id}`);
    }
    await Promise.all(
      uuids.map(async (uuid, id) => {
        mkdirSync(join(dir, `osd.${id}`));
        await run('ceph-osd', ['-c', confPath, '-i', String(id), '--mkfs', '--osd-uuid', uuid], 20_000);
        osds.set(id, startDaemon(`osd.${id}`, 'ceph-osd', ['-f', '-c', confPath, '-i', String(id)]));
      }),
    );
    await waitOsdsUp(osdCount, remaining());
    for (const pool of pools) await createPool(pool);
    const health = (await ceph(['health'])).trim();
    if (health !== 'HEALTH_OK') throw new Error(`ceph health after bring-up: ${health} (${(await ceph(['health', 'detail'])).trim()})`);
    const startMs = performance.now() - started;

    return {
      dir,
      confPath,
      monHost,
      pools,
      startMs,
      runningOsds: () =>
        new Map([...osds].sort(([a], [b]) => a - b).filter(([, d]) => d.child.exitCode === null && d.child.signalCode === null).map(([id, d]) => [id, d.child.pid!])),
      killOsd: async (id: number) => {
        const daemon = osds.get(id);
        if (daemon === undefined) throw new Error(`no osd.${id}`);
        daemon.child.kill('SIGKILL');
        await daemon.exited;
      },
      waitOsdsUp,
      createPool: async (name: string) => {
        await createPool(name);
        pools.push(name);
      },
      ceph,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** For the README and reports: the packages' version, e.g. `16.2.15`. */
export function cephVersion(): string {
  const out = spawnSync('ceph', ['--version'], { encoding: 'utf8' });
  return /ceph version (\S+)/.exec(out.stdout)?.[1] ?? 'unknown';
}
