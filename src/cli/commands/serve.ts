/**
 * `blockvault volume serve <volume> [--socket PATH | --port N] [--host H] [--name N] [--read-only] [--write-through]
 *   [--tls-cert PEM --tls-key PEM [--tls-ca PEM] [--tls-verify-client] [--tls-optional]]`:
 * exports a volume over NBD (src/nbd) until SIGINT or SIGTERM, printing the NBD URI to give to
 * clients (nbdinfo, qemu-img, nbdcopy, nbdfuse, nbd-client). Shutdown answers the requests in
 * flight, flushes and closes the volume and the engine, and removes the socket file.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { NbdTlsOptions } from '../../nbd/serve.js';
import { DEFAULT_NBD_HOST } from '../../nbd/server.js';
import { findVolume, globalAction, withEngine, type CliContext, type CommonOptions } from '../context.js';
import { UsageError } from '../usage-error.js';

/** The port IANA assigned to NBD (10809/tcp): clients use it when a URI names none. */
export const NBD_DEFAULT_PORT = 10809;

interface ServeOptions extends CommonOptions {
  socket?: string;
  port?: number;
  host?: string;
  name?: string;
  readOnly?: boolean;
  writeThrough?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  tlsVerifyClient?: boolean;
  tlsOptional?: boolean;
}

export function registerServeCommand(volume: Command, ctx: CliContext): void {
  volume.command('serve').argument('<volume>', 'volume id or name')
    .description(`export the volume over NBD until Ctrl-C / SIGTERM; prints the NBD URI (default: TCP ${DEFAULT_NBD_HOST}:${NBD_DEFAULT_PORT})`)
    .option('--socket <path>', 'listen on this Unix socket instead of TCP')
    .option('--port <port>', `TCP port (0 picks a free one; default ${NBD_DEFAULT_PORT})`, parsePort)
    .option('--host <address>', `TCP address to listen on (default ${DEFAULT_NBD_HOST}: NBD has no authentication, think before exposing it)`)
    .option('--name <name>', 'export name clients ask for (default: the volume name)')
    .option('--read-only', 'refuse writes, trims and zeroing (clients see a read-only disk)')
    .option('--tls-cert <file>', 'offer TLS (NBD_OPT_STARTTLS) with this PEM certificate chain; clients then connect to nbds:// URIs')
    .option('--tls-key <file>', 'the PEM private key of --tls-cert')
    .option('--tls-ca <file>', 'PEM CA certificates that client certificates must chain to (with --tls-verify-client)')
    .option('--tls-verify-client', 'refuse clients without a certificate signed by --tls-ca (mutual TLS)')
    .option('--tls-optional', 'also serve clients that do not start TLS (default with --tls-cert: TLS required)')
    .option('--write-through', 'answer each write only once committed to LMDB (default: once applied; FLUSH and FUA make writes durable)')
    .action(globalAction(async (idOrName: string, options: ServeOptions) => {
      if (options.socket !== undefined && (options.port !== undefined || options.host !== undefined)) {
        throw new UsageError('give either --socket or --port/--host, not both');
      }
      const tls = tlsOptions(options);
      await withEngine(ctx, options, async ({ engine, out }) => {
        const { id } = findVolume(engine, idOrName);
        const listen = options.socket !== undefined
          ? { socketPath: options.socket }
          : { host: options.host ?? DEFAULT_NBD_HOST, port: options.port ?? NBD_DEFAULT_PORT };
        const server = await engine.serveNbd(listen, [{ volume: id, ...(options.name !== undefined ? { name: options.name } : {}), readOnly: options.readOnly === true, writeThrough: options.writeThrough === true }], {
          onConnectionEvent: (event) => out.note(`nbd: connection closed: ${event.message}`),
          ...(tls === undefined ? {} : { tls }),
        });
        const signal = waitForSignal();
        const exp = server.exports[0]!;
        out.result({ uri: server.uri, address: server.address, export: exp }, (o) => {
          o.line(server.uri);
        });
        out.note(`serving volume ${exp.name}${exp.readOnly ? ' (read-only)' : ''} over NBD; stop with Ctrl-C or SIGTERM`);
        const received = await signal;
        out.note(`${received}: answering requests in flight, flushing, closing`);
        await server.close();
      });
    }));
}

/** The --tls-* options as serveNbd's tls, the files read now (a missing file is a usage error). */
function tlsOptions(options: ServeOptions): NbdTlsOptions | undefined {
  const { tlsCert, tlsKey, tlsCa } = options;
  if (tlsCert === undefined && tlsKey === undefined) {
    if (tlsCa !== undefined || options.tlsVerifyClient === true || options.tlsOptional === true) throw new UsageError('--tls-ca, --tls-verify-client and --tls-optional need --tls-cert and --tls-key');
    return undefined;
  }
  if (tlsCert === undefined || tlsKey === undefined) throw new UsageError('give both --tls-cert and --tls-key');
  if (options.tlsVerifyClient === true && tlsCa === undefined) throw new UsageError('--tls-verify-client needs --tls-ca (the CA that signs client certificates)');
  const read = (flag: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new UsageError(`${flag} ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`);
    }
  };
  return {
    cert: read('--tls-cert', tlsCert),
    key: read('--tls-key', tlsKey),
    ...(tlsCa === undefined ? {} : { ca: read('--tls-ca', tlsCa) }),
    requestClientCert: options.tlsVerifyClient === true,
    required: options.tlsOptional !== true,
  };
}

function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535) throw new UsageError(`--port: ${JSON.stringify(text)} is not a port number (0-65535)`);
  return port;
}

function waitForSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(signal);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}
