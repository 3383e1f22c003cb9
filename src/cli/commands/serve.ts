/**
 * `blockvault volume serve <volume> [--socket PATH | --port N] [--host H] [--name N] [--read-only] [--write-through]`:
 * exports a volume over NBD (src/nbd) until SIGINT or SIGTERM, printing the NBD URI to give to
 * clients (nbdinfo, qemu-img, nbdcopy, nbdfuse, nbd-client). Shutdown answers the requests in
 * flight, flushes and closes the volume and the engine, and removes the socket file.
 */
import type { Command } from 'commander';
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
}

export function registerServeCommand(volume: Command, ctx: CliContext): void {
  volume.command('serve').argument('<volume>', 'volume id or name')
    .description(`export the volume over NBD until Ctrl-C / SIGTERM; prints the NBD URI (default: TCP ${DEFAULT_NBD_HOST}:${NBD_DEFAULT_PORT})`)
    .option('--socket <path>', 'listen on this Unix socket instead of TCP')
    .option('--port <port>', `TCP port (0 picks a free one; default ${NBD_DEFAULT_PORT})`, parsePort)
    .option('--host <address>', `TCP address to listen on (default ${DEFAULT_NBD_HOST}: NBD has no authentication, think before exposing it)`)
    .option('--name <name>', 'export name clients ask for (default: the volume name)')
    .option('--read-only', 'refuse writes, trims and zeroing (clients see a read-only disk)')
    .option('--write-through', 'answer each write only once committed to LMDB (default: once applied; FLUSH and FUA make writes durable)')
    .action(globalAction(async (idOrName: string, options: ServeOptions) => {
      if (options.socket !== undefined && (options.port !== undefined || options.host !== undefined)) {
        throw new UsageError('give either --socket or --port/--host, not both');
      }
      await withEngine(ctx, options, async ({ engine, out }) => {
        const { id } = findVolume(engine, idOrName);
        const listen = options.socket !== undefined
          ? { socketPath: options.socket }
          : { host: options.host ?? DEFAULT_NBD_HOST, port: options.port ?? NBD_DEFAULT_PORT };
        const server = await engine.serveNbd(listen, [{ volume: id, ...(options.name !== undefined ? { name: options.name } : {}), readOnly: options.readOnly === true, writeThrough: options.writeThrough === true }], {
          onConnectionEvent: (event) => out.note(`nbd: connection closed: ${event.message}`),
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
