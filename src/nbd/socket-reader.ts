/**
 * Pull-style reading of exact byte counts from a socket, for the NBD frame codecs: the handshake
 * and transmission loops `await read(n)` for each header and payload. Reading is the server's
 * backpressure: the socket is paused whenever more than READ_AHEAD_BYTES_MAX bytes are buffered
 * beyond what a pending read asks for, so a client that sends faster than the server answers is
 * held back by TCP flow control instead of filling memory.
 */
import type { Socket } from 'node:net';

/** Bytes received ahead of what the server asked for before the socket is paused. */
export const READ_AHEAD_BYTES_MAX = 1024 * 1024;

/** The peer closed the connection (or it failed) before the bytes a read needs arrived. */
export class ConnectionEnded extends Error {
  constructor(readonly bufferedBytes: number, cause?: unknown) {
    super(bufferedBytes === 0 ? 'the client closed the connection' : `the client closed the connection in the middle of a frame (${bufferedBytes} bytes of it received)`, { cause });
    this.name = 'ConnectionEnded';
  }
}

interface PendingRead {
  bytes: number;
  resolve(data: Buffer): void;
  reject(error: Error): void;
}

export class SocketReader {
  readonly #socket: Socket;
  readonly #chunks: Buffer[] = [];
  #bufferedBytes = 0;
  #pending: PendingRead | null = null;
  #ended: ConnectionEnded | null = null;
  #stopped = false;

  readonly #listeners: { data: (chunk: Buffer) => void; end: () => void; close: () => void; error: (error: Error) => void };

  constructor(socket: Socket) {
    this.#socket = socket;
    this.#listeners = {
      data: (chunk) => this.#onData(chunk),
      end: () => this.#onEnd(),
      close: () => this.#onEnd(),
      error: (error) => this.#onEnd(error),
    };
    for (const [event, listener] of Object.entries(this.#listeners)) socket.on(event, listener);
  }

  /**
   * Hand the socket over (NBD_OPT_STARTTLS: a TLS socket takes over its stream). Returns false,
   * and keeps the socket, when bytes beyond what was read are buffered: the client did not wait
   * for the server's answer, so they belong to no layer that can read them.
   */
  detach(): boolean {
    if (this.#bufferedBytes !== 0 || this.#pending !== null) return false;
    this.#socket.pause();
    for (const [event, listener] of Object.entries(this.#listeners)) this.#socket.off(event, listener);
    return true;
  }

  /** Exactly `bytes` bytes (a fresh buffer or a view the caller owns); rejects with ConnectionEnded. */
  read(bytes: number): Promise<Buffer> {
    if (this.#pending !== null) return Promise.reject(new Error('blockvault invariant violated: one read at a time'));
    if (this.#bufferedBytes >= bytes) return Promise.resolve(this.#take(bytes));
    if (this.#ended !== null) return Promise.reject(new ConnectionEnded(this.#bufferedBytes, this.#ended.cause));
    return new Promise<Buffer>((resolve, reject) => {
      this.#pending = { bytes, resolve, reject };
      if (!this.#stopped) this.#socket.resume();
    });
  }

  /** Stop taking data from the socket (the connection is closing). */
  stop(): void {
    this.#stopped = true;
    this.#socket.pause();
  }

  #onData(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#bufferedBytes += chunk.length;
    const pending = this.#pending;
    if (pending !== null && this.#bufferedBytes >= pending.bytes) {
      this.#pending = null;
      pending.resolve(this.#take(pending.bytes));
    }
    const wanted = this.#pending?.bytes ?? 0;
    if (this.#bufferedBytes > wanted + READ_AHEAD_BYTES_MAX) this.#socket.pause();
  }

  #onEnd(error?: unknown): void {
    if (this.#ended !== null) return;
    this.#ended = new ConnectionEnded(this.#bufferedBytes, error);
    const pending = this.#pending;
    if (pending !== null) {
      this.#pending = null;
      pending.reject(new ConnectionEnded(this.#bufferedBytes, error));
    }
  }

  #take(bytes: number): Buffer {
    let out: Buffer;
    const first = this.#chunks[0];
    if (bytes === 0) {
      out = Buffer.alloc(0);
    } else if (first!.length === bytes) {
      out = this.#chunks.shift()!;
    } else if (first!.length > bytes) {
      out = first!.subarray(0, bytes);
      this.#chunks[0] = first!.subarray(bytes);
    } else {
      out = Buffer.allocUnsafe(bytes);
      let at = 0;
      while (at < bytes) {
        const chunk = this.#chunks[0]!;
        const part = Math.min(chunk.length, bytes - at);
        chunk.copy(out, at, 0, part);
        at += part;
        if (part === chunk.length) this.#chunks.shift();
        else this.#chunks[0] = chunk.subarray(part);
      }
    }
    this.#bufferedBytes -= bytes;
    if (this.#ended === null && !this.#stopped && this.#bufferedBytes <= READ_AHEAD_BYTES_MAX) this.#socket.resume();
    return out;
  }
}
