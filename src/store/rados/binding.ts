/**
 * The addon's librados binding (native/src/rados), typed by hand like the cipher's
 * (src/cipher/native-binding.ts): native/index.d.ts is generated at build time and not in git.
 *
 * The binding resolves every operation with librados' own return value (`rc`: >= 0 success,
 * < 0 a negated Linux errno) and throws only for misuse of itself; errors.ts turns rcs into
 * BlockvaultErrors.
 */
import { BlockvaultError } from '../../errors.js';
import { nativeAddon } from '../../cipher/native-binding.js';

export interface NativeRadosReply {
  rc: number;
  data?: Buffer | null;
  size?: number | null;
  mtimeMs?: number | null;
  mismatchOffset?: number | null;
}

export interface NativeRadosConnectOptions {
  confPath?: string;
  monHost?: string;
  clientName: string;
  timeoutMs: number;
  config?: Record<string, string>;
}

export interface NativeRadosClient {
  connect(options: NativeRadosConnectOptions): Promise<{ rc: number; step?: string | null }>;
  readonly connected: boolean;
  close(): Promise<void>;
}

export interface NativeRadosPool {
  open(): Promise<number>;
  writeFull(oid: string, data: Buffer): Promise<NativeRadosReply>;
  read(oid: string, offset: number, length: number): Promise<NativeRadosReply>;
  remove(oid: string): Promise<NativeRadosReply>;
  stat(oid: string): Promise<NativeRadosReply>;
  compareAndWriteFull(oid: string, offset: number, expected: Buffer, data: Buffer): Promise<NativeRadosReply>;
  createExclusive(oid: string, data: Buffer): Promise<NativeRadosReply>;
  listObjects(prefix: string, limit: number): Promise<{ rc: number; names: string[] }>;
  readonly opsInFlight: number;
  close(): Promise<void>;
}

export interface NativeRados {
  radosLibraryStatus(): { available: boolean; path: string; version?: string | null; error?: string | null };
  RadosClient: new () => NativeRadosClient;
  RadosPool: new (client: NativeRadosClient, name: string, opsInFlightMax: number) => NativeRadosPool;
}

/** librados reports a cmpext mismatch at index i of the compared bytes as -MAX_ERRNO - i. */
export const MAX_ERRNO = 4095;

/** The binding, with librados loaded; STORE_UNREACHABLE (saying what to install) when either is missing. */
export function radosBinding(): NativeRados {
  const probe = nativeAddon();
  const addon = probe.addon as unknown as Partial<NativeRados> | undefined;
  if (addon === undefined) {
    throw new BlockvaultError('STORE_UNREACHABLE', `the RADOS store needs blockvault's native addon, which is unavailable: ${probe.status.error ?? 'unknown reason'}; build it (npm run build:native)`);
  }
  if (typeof addon.RadosClient !== 'function' || typeof addon.RadosPool !== 'function' || typeof addon.radosLibraryStatus !== 'function') {
    throw new BlockvaultError('STORE_UNREACHABLE', `the native addon ${probe.status.path ?? ''} predates the RADOS binding; rebuild it (npm run build:native)`);
  }
  const status = addon.radosLibraryStatus();
  if (!status.available) {
    throw new BlockvaultError('STORE_UNREACHABLE', `librados cannot be loaded (${status.error ?? status.path}); install it (Debian: apt-get install librados2)`, { library: status.path });
  }
  return addon as NativeRados;
}
