/**
 * The NBD server on node:net: listens on a Unix socket or a TCP address (127.0.0.1 unless told
 * otherwise: an NBD export has no authentication), runs the handshake and then the transmission
 * phase on each connection. A connection that breaks the protocol is closed alone; the server
 * and the other connections go on.
 *
 * close(): no new connections; connections still negotiating get NBD_REP_ERR_SHUTDOWN and are
 * closed; connections in transmission stop reading, answer what they have in flight, and close.
 *
 * TLS: with `tls`, a client's NBD_OPT_STARTTLS turns the connection into a node:tls server socket
 * (handshake.ts says what is refused before); the TLS socket and a new reader carry the rest.
 */
import { rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import { BlockvaultError } from '../errors.js';
import { ExportTable, type NbdExport } from './export.js';
import { negotiate, ProtocolViolation, type TlsUpgrade } from './handshake.js';
import { ConnectionEnded, SocketReader } from './socket-reader.js';
import { Transmission } from './transmission.js';

/** Where to listen: a Unix socket path, or a TCP host and port (port 0 picks a free one). */
export type NbdListenOptions = { socketPath: string } | { host?: string; port: number };

/** Where the server listens, once it does. */
export type NbdAddress = { socketPath: string } | { host: string; port: number };

export const DEFAULT_NBD_HOST = '127.0.0.1';
/** Connections served at once; beyond it new ones are closed at once (bounds memory: each may hold IN_FLIGHT_BYTES_MAX). */
export const CONNECTIONS_MAX = 64;
/** How long close() lets connections answer their in-flight requests before it cuts them. */
export const CLOSE_GRACE_MS = 10_000;
/** How long a client may take over its TLS handshake after NBD_OPT_STARTTLS. */
export const TLS_HANDSHAKE_MS_MAX = 10_000;

/** The server's TLS setup (serve.ts builds it from the caller's PEM key and certificates). */
export interface NbdServerTls {
  context: SecureContext;
  /** Ask for a client certificate and refuse clients without one the CA signed. */
  requestCert: boolean;
  /** TLS-only mode: nothing but STARTTLS and ABORT before TLS. */
  required: boolean;
}

/** Something the server saw go wrong on one connection (for logs; the server goes on). */
export interface ConnectionEvent {
  /** 'protocol': the client broke the protocol; 'ended': it left mid-frame; 'internal': a bug. */
  kind: 'protocol' | 'ended' | 'internal';
  message: string;
}

interface Connection {
  socket: Socket;
  reader: SocketReader;
  transmission: Transmission | null;
  done: Promise<void>;
}

export class NbdServer {
  readonly #exports: ExportTable;
  readonly #server: Server;
  readonly #connections = new Set<Connection>();
  readonly #onEvent: (event: ConnectionEvent) => void;
  #address: NbdAddress | null = null;
  #closing = false;

  readonly #tls: NbdServerTls | null;

  constructor(exports: readonly NbdExport[], options: { onConnectionEvent?: (event: ConnectionEvent) => void; tls?: NbdServerTls } = {}) {
    this.#exports = new ExportTable(exports);
    this.#onEvent = options.onConnectionEvent ?? (() => undefined);
    this.#tls = options.tls ?? null;
    this.#server = createServer({ noDelay: true }, (socket) => this.#accept(socket));
  }

  get address(): NbdAddress {
    if (this.#address === null) throw new BlockvaultError('INVALID_ARGUMENT', 'the NBD server is not listening');
    return this.#address;
  }

  /** Connections open now (negotiating or transmitting). */
  get connectionCount(): number {
    return this.#connections.size;
  }

  listen(options: NbdListenOptions): Promise<NbdAddress> {
    return new Promise((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException): void => {
        const where = 'socketPath' in options ? options.socketPath : `${options.host ?? DEFAULT_NBD_HOST}:${options.port}`;
        reject(new BlockvaultError('LISTEN_FAILED', `the NBD server cannot listen on ${where}: ${error.message}`, { code: error.code, address: where }, { cause: error }));
      };
      this.#server.once('error', onError);
      const ready = (): void => {
        this.#server.off('error', onError);
        if ('socketPath' in options) {
          this.#address = { socketPath: options.socketPath };
        } else {
          const info = this.#server.address() as AddressInfo;
          this.#address = { host: info.address, port: info.port };
        }
        resolve(this.#address);
      };
      if ('socketPath' in options) this.#server.listen(options.socketPath, ready);
      else this.#server.listen(options.port, options.host ?? DEFAULT_NBD_HOST, ready);
    });
  }

  /** Stop listening, let connections answer what they have in flight, close them. Idempotent. */
  async close(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      const stopped = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      for (const connection of this.#connections) this.#stopConnection(connection);
      const connections = [...this.#connections].map((c) => c.done);
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          for (const c of this.#connections) c.socket.destroy();
          resolve();
        }, CLOSE_GRACE_MS);
      });
      await Promise.race([Promise.all(connections), grace]);
      clearTimeout(timer);
      await stopped;
      const address = this.#address;
      if (address !== null && 'socketPath' in address) rmSync(address.socketPath, { force: true });
    }
  }

  #stopConnection(connection: Connection): void {
    connection.reader.stop();
    // Not yet in transmission: nothing in flight, so the connection can go now.
    if (connection.transmission === null) connection.socket.destroy();
    // In transmission: requests already read are answered, then the connection closes (the
    // socket is paused, so the client's own FIN would never be seen: destroy once flushed).
    else void connection.transmission.drain().then(() => connection.socket.end(() => connection.socket.destroy()));
  }

  #accept(socket: Socket): void {
    if (this.#closing || this.#connections.size >= CONNECTIONS_MAX) {
      socket.destroy();
      return;
    }
    const reader = new SocketReader(socket);
    const connection: Connection = { socket, reader, transmission: null, done: Promise.resolve() };
    // A write to a peer that went away fails here; the reader sees the close too.
    socket.on('error', () => undefined);
    connection.done = this.#serve(connection).finally(() => {
      this.#connections.delete(connection);
    });
    this.#connections.add(connection);
  }

  async #serve(connection: Connection): Promise<void> {
    const raw = connection.socket;
    const closed = new Promise<void>((resolve) => raw.once('close', () => resolve()));
    try {
      const session = await negotiate(raw, connection.reader, this.#exports, () => this.#closing, this.#tlsUpgrade(connection));
      // After STARTTLS the connection's socket and reader are the TLS ones.
      const { socket, reader } = connection;
      if (session !== null) {
        connection.transmission = new Transmission(socket, reader, session);
        await connection.transmission.run(() => this.#closing);
      }
      socket.end();
    } catch (error) {
      const { socket, reader } = connection;
      if (error instanceof ProtocolViolation) this.#onEvent({ kind: 'protocol', message: error.message });
      else if (error instanceof ConnectionEnded) {
        if (error.bufferedBytes > 0) this.#onEvent({ kind: 'ended', message: error.message });
      } else this.#onEvent({ kind: 'internal', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
      reader.stop();
      socket.destroy();
      // Requests already handed to the volume still settle (their replies are dropped), so no
      // volume call is left running on its own after the connection is gone.
      await connection.transmission?.drain();
    }
    await closed;
  }

  /** STARTTLS for this connection: the TLS handshake on its socket, then a reader on the TLS socket. */
  #tlsUpgrade(connection: Connection): TlsUpgrade | null {
    const tls = this.#tls;
    if (tls === null) return null;
    return {
      required: tls.required,
      upgrade: async () => {
        if (!connection.reader.detach()) throw new ProtocolViolation('the client sent data after NBD_OPT_STARTTLS before the server answered it');
        const secure = new TLSSocket(connection.socket, { isServer: true, secureContext: tls.context, requestCert: tls.requestCert, rejectUnauthorized: tls.requestCert });
        secure.on('error', () => undefined);
        // Cut by close() from here on too (it destroys connection.socket).
        connection.socket = secure;
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => fail(new Error(`no TLS handshake within ${TLS_HANDSHAKE_MS_MAX} ms`)), TLS_HANDSHAKE_MS_MAX);
          const closed = (): void => fail(new Error('the client closed the connection'));
          const settle = (): void => {
            clearTimeout(timer);
            secure.off('error', fail);
            secure.off('close', closed);
          };
          const fail = (error: Error): void => {
            settle();
            reject(new ProtocolViolation(`TLS handshake failed: ${error.message}`));
          };
          secure.once('secure', () => {
            settle();
            resolve();
          });
          secure.once('error', fail);
          secure.once('close', closed);
        });
        connection.reader = new SocketReader(secure);
        return { socket: secure, reader: connection.reader };
      },
    };
  }
}
