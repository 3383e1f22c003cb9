/**
 * RadosCluster: one connection to a Ceph cluster (librados' `rados_t`), from which pools are
 * opened. Connecting blocks a libuv thread for at most timeoutMs (client_mount_timeout); the
 * same timeoutMs bounds every monitor and OSD operation made through this connection.
 */
import { BlockvaultError } from '../../errors.js';
import { radosBinding, type NativeRadosClient } from './binding.js';
import { ERRNO, errnoName } from './errors.js';
import { checkConfig, checkPath, checkUser, checkWholeNumber, invalid, TIMEOUT_MS_MAX, TIMEOUT_MS_MIN } from './limits.js';
import { RadosPool, resolvePoolOptions, type RadosPoolOptions } from './pool.js';

export interface RadosConnectOptions {
  /** A ceph.conf to read (mon_host, keyring, ...). At least one of conf and monHost. */
  conf?: string;
  /** The monitors, as mon_host takes them (e.g. `v2:10.0.0.1:3300,v2:10.0.0.2:3300`); overrides conf's. */
  monHost?: string;
  /** The Ceph user id, e.g. `admin` for the entity `client.admin`. */
  user: string;
  /** A keyring file with the user's key (not needed with `auth none`). */
  keyring?: string;
  /**
   * Bounds connecting, every monitor and OSD operation, and the wait of an operation queued for
   * an in-flight slot: 1000 to 600000, rounded up to whole seconds (librados' unit).
   */
  timeoutMs: number;
  /** More librados options by name (e.g. `{ ms_mon_client_mode: 'secure' }`); at most 64. */
  config?: Record<string, string>;
}

const CONNECT_KEYS = new Set(['conf', 'monHost', 'user', 'keyring', 'timeoutMs', 'config']);

export class RadosCluster {
  readonly #client: NativeRadosClient;
  readonly #pools = new Set<RadosPool>();
  #closed = false;
  /** Where the monitors were looked for, for messages: the monHost, or the conf file. */
  readonly where: string;
  readonly user: string;
  readonly timeoutMs: number;

  private constructor(client: NativeRadosClient, where: string, user: string, timeoutMs: number) {
    this.#client = client;
    this.where = where;
    this.user = user;
    this.timeoutMs = timeoutMs;
  }

  static async connect(options: RadosConnectOptions): Promise<RadosCluster> {
    if (options === null || typeof options !== 'object') invalid('RadosCluster.connect takes { conf?, monHost?, user, keyring?, timeoutMs, config? }');
    for (const key of Object.keys(options)) if (!CONNECT_KEYS.has(key)) invalid(`RadosCluster.connect: unknown option ${JSON.stringify(key)}`);
    const user = checkUser(options.user);
    const timeoutMs = checkWholeNumber('timeoutMs', options.timeoutMs, TIMEOUT_MS_MIN, TIMEOUT_MS_MAX);
    const conf = options.conf === undefined ? undefined : checkPath('conf', options.conf);
    const keyring = options.keyring === undefined ? undefined : checkPath('keyring', options.keyring);
    const monHost = options.monHost;
    if (monHost !== undefined && (typeof monHost !== 'string' || monHost.length === 0 || monHost.length > 1024 || !/^[\x21-\x7e]+$/.test(monHost))) {
      invalid(`monHost must be 1 to 1024 printable ASCII characters without spaces (mon_host), got ${JSON.stringify(monHost)}`);
    }
    if (conf === undefined && monHost === undefined) invalid('give conf (a ceph.conf path) or monHost (the monitors\' addresses), or both');
    const config = checkConfig(options.config);
    if ('keyring' in config && keyring !== undefined) invalid('keyring is given twice: as keyring and as config.keyring');
    if (keyring !== undefined) config['keyring'] = keyring;
    for (const key of ['mon_host', 'mon host']) if (key in config) invalid(`config.${key}: use monHost`);

    const binding = radosBinding();
    const client = new binding.RadosClient();
    const where = monHost !== undefined ? `mon_host ${monHost}` : `the monitors of ${conf}`;
    const reply = await client.connect({
      ...(conf !== undefined ? { confPath: conf } : {}),
      ...(monHost !== undefined ? { monHost } : {}),
      clientName: `client.${user}`,
      timeoutMs,
      config,
    });
    if (reply.rc < 0) {
      await client.close();
      throw connectError(reply.rc, reply.step ?? 'rados_connect', { where, user, timeoutMs, conf });
    }
    return new RadosCluster(client, where, user, timeoutMs);
  }

  /** Opens an I/O context on pool `name`; STORE_POOL_MISSING when the cluster has no such pool. */
  async openPool(name: string, options: RadosPoolOptions = {}): Promise<RadosPool> {
    if (this.#closed) throw new BlockvaultError('STORE_CLOSED', `the RADOS connection to ${this.where} is closed`);
    const resolved = resolvePoolOptions(name, options);
    const pool = await RadosPool.open(this.#client, resolved, { timeoutMs: this.timeoutMs, where: this.where, onClose: (p) => this.#pools.delete(p) });
    if (this.#closed) {
      await pool.close();
      throw new BlockvaultError('STORE_CLOSED', `the RADOS connection to ${this.where} was closed while pool ${JSON.stringify(name)} opened`);
    }
    this.#pools.add(pool);
    return pool;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Closes every pool opened from it (each waits for its operations) and then the connection. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#pools].map((pool) => pool.close()));
    await this.#client.close();
  }
}

function connectError(rc: number, step: string, ctx: { where: string; user: string; timeoutMs: number; conf: string | undefined }): BlockvaultError {
  const errno = errnoName(rc);
  const details = { step, errno, rc, where: ctx.where, user: ctx.user };
  if (step === 'rados_conf_read_file') {
    return new BlockvaultError('INVALID_ARGUMENT', `cannot read the Ceph config file ${ctx.conf ?? ''}: ${errno} (${rc})`, details);
  }
  if (step.startsWith('rados_conf_set')) {
    return new BlockvaultError('INVALID_ARGUMENT', `librados refused the option ${step.slice('rados_conf_set '.length)}: ${errno} (${rc}); check its name and value`, details);
  }
  const what = `cannot connect to the Ceph cluster (${ctx.where}) as client.${ctx.user}`;
  if (-rc === ERRNO.ETIMEDOUT) {
    return new BlockvaultError('STORE_UNREACHABLE', `${what}: no monitor answered within ${ctx.timeoutMs} ms (${errno}); check the address and that the monitors run`, details);
  }
  if (-rc === ERRNO.EACCES || -rc === ERRNO.EPERM) {
    return new BlockvaultError('STORE_UNREACHABLE', `${what}: the monitors refused authentication (${errno}); check user and keyring`, details);
  }
  if (-rc === ERRNO.ENOENT) {
    return new BlockvaultError('STORE_UNREACHABLE', `${what}: ${step} found no monitor address or no key (${errno}); check mon_host and the keyring`, details);
  }
  return new BlockvaultError('STORE_UNREACHABLE', `${what}: ${step} failed with ${errno} (${rc})`, details);
}
