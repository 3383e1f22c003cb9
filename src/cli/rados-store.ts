/**
 * The CLI's RADOS options (global, like --dir): `--rados-pool <name>` keeps the volumes' sectors
 * in that Ceph pool (Engine.open's `store.rados`, src/store/volume-store.ts), reached through
 * --rados-conf and/or --rados-mon-host as user --rados-user. The directory records its store when
 * it is created, so every later command on it must name the same pool.
 */
import type { VolumeStoreOptions } from '../store/volume-store.js';
import { UsageError } from './usage-error.js';

/** What a RADOS operation may take by default from the CLI (connecting, monitor and OSD answers). */
export const RADOS_TIMEOUT_MS_DEFAULT = 30_000;

export interface RadosCliOptions {
  radosPool?: string;
  radosConf?: string;
  radosMonHost?: string;
  radosUser?: string;
  radosKeyring?: string;
  radosTimeoutMs?: string;
  radosLeaseMs?: string;
}

/** The flags, for the root program (src/cli/context.ts addGlobalOptions). */
export const RADOS_FLAGS: ReadonlyArray<[flags: string, description: string]> = [
  ['--rados-pool <name>', "keep the volumes' sectors in this Ceph RADOS pool (chosen when the directory is created; metadata stays in --dir)"],
  ['--rados-conf <path>', 'the ceph.conf to read (mon_host, keyring, ...), with --rados-pool'],
  ['--rados-mon-host <addrs>', "the monitors' addresses as mon_host takes them (overrides the conf's), with --rados-pool"],
  ['--rados-user <id>', 'the Ceph user id (default admin, the entity client.admin), with --rados-pool'],
  ['--rados-keyring <path>', "a keyring with the user's key (not needed with auth none), with --rados-pool"],
  ['--rados-timeout-ms <ms>', `bound of connecting and of each RADOS operation (default ${RADOS_TIMEOUT_MS_DEFAULT})`],
  ['--rados-lease-ms <ms>', "how long the engine's lease on its objects holds unrenewed (default 60000; README, Volumes on RADOS)"],
];

/** Engine.open's `store` from the flags, or undefined without --rados-pool (the volumes stay in LMDB). */
export function radosStoreOf(options: RadosCliOptions): VolumeStoreOptions | undefined {
  const { radosPool, radosConf, radosMonHost, radosUser, radosKeyring, radosTimeoutMs, radosLeaseMs } = options;
  if (radosPool === undefined) {
    const stray = Object.entries({ radosConf, radosMonHost, radosUser, radosKeyring, radosTimeoutMs, radosLeaseMs }).find(([, v]) => v !== undefined);
    if (stray !== undefined) throw new UsageError(`--${stray[0].replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} needs --rados-pool`);
    return undefined;
  }
  if (radosConf === undefined && radosMonHost === undefined) throw new UsageError('--rados-pool needs --rados-conf or --rados-mon-host to find the cluster');
  const milliseconds = (flag: string, value: string): number => {
    if (!/^[0-9]+$/.test(value)) throw new UsageError(`${flag} must be a whole number of milliseconds, got ${JSON.stringify(value)}`);
    return Number(value);
  };
  const timeoutMs = radosTimeoutMs === undefined ? RADOS_TIMEOUT_MS_DEFAULT : milliseconds('--rados-timeout-ms', radosTimeoutMs);
  return {
    rados: {
      pool: radosPool,
      user: radosUser ?? 'admin',
      timeoutMs,
      ...(radosConf !== undefined ? { conf: radosConf } : {}),
      ...(radosMonHost !== undefined ? { monHost: radosMonHost } : {}),
      ...(radosKeyring !== undefined ? { keyring: radosKeyring } : {}),
      ...(radosLeaseMs !== undefined ? { leaseMs: milliseconds('--rados-lease-ms', radosLeaseMs) } : {}),
    },
  };
}
