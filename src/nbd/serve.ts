/**
 * engine.serveNbd: validates the caller's listen address and exports, opens each exported volume
 * once (all connections to it share that handle), starts the NbdServer, and gives back a handle
 * with the address, the URIs to give to clients (the NBD URI standard of the NetworkBlockDevice
 * project's doc/uri.md: nbd://host:port/name, nbd+unix:///name?socket=path), and close().
 */
import { createSecureContext } from 'node:tls';
import { BlockvaultError } from '../errors.js';
import type { Volume } from '../volume/volume.js';
import type { NbdExport } from './export.js';
import { STRING_BYTES_MAX } from './protocol.js';
import { NbdServer, type ConnectionEvent, type NbdAddress, type NbdListenOptions, type NbdServerTls } from './server.js';

export interface NbdExportOptions {
  /** The volume's id or name. */
  volume: string;
  /** The export name clients ask for; default the volume's name. */
  name?: string;
  /** Refuse writes, trims and zeroing with EPERM (and advertise NBD_FLAG_READ_ONLY). */
  readOnly?: boolean;
  /**
   * Answer a write only once it has committed to LMDB. By default the server is a write-back
   * cache, as a disk with a volatile cache (and qemu-nbd's default): a write is answered once the
   * volume has applied it (every read sees it), and a FLUSH or FUA write makes it durable.
   */
  writeThrough?: boolean;
}

export interface NbdTlsOptions {
  /** The server's private key and certificate chain, PEM. */
  key: string | Buffer;
  cert: string | Buffer;
  /** CA certificates (PEM) that client certificates must chain to; needed with requestClientCert. */
  ca?: string | Buffer;
  /** Refuse clients without a certificate signed by `ca` (mutual TLS). Default false. */
  requestClientCert?: boolean;
  /**
   * TLS-only mode (default true): before NBD_OPT_STARTTLS every option but ABORT is refused with
   * NBD_REP_ERR_TLS_REQD, so no export is reachable in clear. false lets clients choose.
   */
  required?: boolean;
}

export interface NbdServeOptions {
  /** Called with what went wrong on a connection (protocol violations, clients gone mid-frame). */
  onConnectionEvent?: (event: ConnectionEvent) => void;
  /** Offer TLS (NBD_OPT_STARTTLS, node:tls, TLS 1.2 or later); URIs become nbds:// and nbds+unix://. */
  tls?: NbdTlsOptions;
}

export interface NbdExportInfo {
  name: string;
  volumeId: string;
  readOnly: boolean;
  sizeBytes: number;
  /** The NBD URI of this export (give it to nbdinfo, qemu-img, nbdcopy, nbdfuse). */
  uri: string;
}

export interface NbdServerHandle {
  readonly address: NbdAddress;
  /** The URI of the first export. */
  readonly uri: string;
  readonly exports: readonly NbdExportInfo[];
  /** Connections open now. */
  readonly connectionCount: number;
  /**
   * Stop listening, answer the requests in flight, close the connections, then flush and close
   * the volume handles the server opened. Idempotent.
   */
  close(): Promise<void>;
}

/** An NBD URI for an export at an address (doc/uri.md); `tls` gives the nbds schemes. */
export function nbdUri(address: NbdAddress, exportName: string, tls = false): string {
  const name = encodeURIComponent(exportName);
  const scheme = tls ? 'nbds' : 'nbd';
  if ('socketPath' in address) return `${scheme}+unix:///${name}?socket=${encodeURIComponent(address.socketPath).replace(/%2F/g, '/')}`;
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return `${scheme}://${host}:${address.port}/${name}`;
}

export async function startNbdServer(
  openVolume: (idOrName: string) => Promise<Volume>,
  listen: NbdListenOptions,
  exports: readonly NbdExportOptions[],
  options: NbdServeOptions = {},
): Promise<NbdServerHandle> {
  checkListen(listen);
  checkExports(exports);
  const tls = options.tls === undefined ? undefined : serverTls(options.tls);
  const opened: Volume[] = [];
  const closeVolumes = async (): Promise<void> => {
    for (const vol of opened) {
      // A locked volume cannot be flushed usefully; closing it is what matters.
      await vol.flush().catch(() => undefined);
      await vol.close();
    }
  };
  let server: NbdServer;
  const table: NbdExport[] = [];
  try {
    for (const spec of exports) {
      const volume = await openVolume(spec.volume);
      opened.push(volume);
      const info = volume.info();
      const name = spec.name ?? info.name;
      if (table.some((e) => e.name === name)) {
        throw new BlockvaultError('INVALID_ARGUMENT', `two exports are named ${JSON.stringify(name)}: give each a distinct name`, { name });
      }
      table.push({
        name,
        volume,
        readOnly: spec.readOnly === true,
        writeThrough: spec.writeThrough === true,
        sizeBytes: info.sizeBytes,
        sectorSize: info.sectorSize,
        description: `blockvault volume ${info.name} (${info.id})`,
      });
    }
    server = new NbdServer(table, {
      ...(options.onConnectionEvent === undefined ? {} : { onConnectionEvent: options.onConnectionEvent }),
      ...(tls === undefined ? {} : { tls }),
    });
    await server.listen(listen);
  } catch (error) {
    await closeVolumes();
    throw error;
  }
  const address = server.address;
  const infos = table.map((e) => ({ name: e.name, volumeId: e.volume.info().id, readOnly: e.readOnly, sizeBytes: e.sizeBytes, uri: nbdUri(address, e.name, tls !== undefined) }));
  let closing: Promise<void> | null = null;
  return {
    address,
    uri: infos[0]!.uri,
    exports: infos,
    get connectionCount() {
      return server.connectionCount;
    },
    close() {
      closing ??= server.close().then(closeVolumes);
      return closing;
    },
  };
}

/** The TLS options checked and made into a secure context (bad PEM is the caller's error). */
function serverTls(options: NbdTlsOptions): NbdServerTls {
  const bad = (why: string, cause?: unknown): never => {
    throw new BlockvaultError('INVALID_ARGUMENT', `serveNbd(..., { tls }): ${why}`, undefined, cause === undefined ? undefined : { cause });
  };
  if (typeof options !== 'object' || options === null) bad('tls must be an object { key, cert, ca?, requestClientCert?, required? }');
  const pem = (name: 'key' | 'cert' | 'ca', value: unknown, needed: boolean): void => {
    if (value === undefined && !needed) return;
    if (!(typeof value === 'string' || Buffer.isBuffer(value)) || value.length === 0) bad(`${name} must be PEM text (a string or Buffer)`);
  };
  const requestCert = options.requestClientCert ?? false;
  if (typeof requestCert !== 'boolean') bad('requestClientCert must be a boolean');
  const required = options.required ?? true;
  if (typeof required !== 'boolean') bad('required must be a boolean');
  pem('key', options.key, true);
  pem('cert', options.cert, true);
  pem('ca', options.ca, requestCert);
  let context: NbdServerTls['context'];
  try {
    context = createSecureContext({ key: options.key, cert: options.cert, ...(options.ca === undefined ? {} : { ca: options.ca }), minVersion: 'TLSv1.2' });
  } catch (error) {
    return bad(`the key, certificate or CA is not usable: ${error instanceof Error ? error.message : String(error)}`, error);
  }
  return { context, requestCert, required };
}

function checkListen(listen: unknown): asserts listen is NbdListenOptions {
  const bad = (why: string): never => {
    throw new BlockvaultError('INVALID_ARGUMENT', `serveNbd(listen, ...): ${why}; give { socketPath } or { host?, port }`);
  };
  if (typeof listen !== 'object' || listen === null) bad('listen must be an object');
  const l = listen as Record<string, unknown>;
  if ('socketPath' in l) {
    if (typeof l.socketPath !== 'string' || l.socketPath.length === 0) bad('socketPath must be a non-empty string');
    if ('port' in l || 'host' in l) bad('give either socketPath or host/port, not both');
    return;
  }
  if (typeof l.port !== 'number' || !Number.isInteger(l.port) || l.port < 0 || l.port > 65535) bad('port must be an integer from 0 to 65535 (0 picks a free port)');
  if (l.host !== undefined && (typeof l.host !== 'string' || l.host.length === 0)) bad('host must be a non-empty string');
}

function checkExports(exports: unknown): asserts exports is NbdExportOptions[] {
  if (!Array.isArray(exports) || exports.length === 0) {
    throw new BlockvaultError('INVALID_ARGUMENT', 'serveNbd(listen, exports): exports must be a non-empty array of { volume, name?, readOnly? }');
  }
  for (const [i, spec] of exports.entries()) {
    const bad = (why: string): never => {
      throw new BlockvaultError('INVALID_ARGUMENT', `serveNbd(listen, exports): exports[${i}]: ${why}`);
    };
    if (typeof spec !== 'object' || spec === null) bad('must be an object { volume, name?, readOnly? }');
    const s = spec as Record<string, unknown>;
    if (typeof s.volume !== 'string' || s.volume.length === 0) bad('volume must be a volume id or name');
    if (s.name !== undefined && (typeof s.name !== 'string' || Buffer.byteLength(s.name) > STRING_BYTES_MAX)) bad(`name must be a string of at most ${STRING_BYTES_MAX} bytes`);
    if (s.readOnly !== undefined && typeof s.readOnly !== 'boolean') bad('readOnly must be a boolean');
    if (s.writeThrough !== undefined && typeof s.writeThrough !== 'boolean') bad('writeThrough must be a boolean');
  }
}
