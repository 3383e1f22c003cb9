/**
 * Pull-style reading of exact byte counts from a socket, for the NBD frame codecs: the handshake
 * and transmission loops `await read(n)` for each header and payload. Reading is the server's
 * backpressure: the socket is paused whenever more than READ_AHEAD_BYTES_MAX bytes are buffered
 * beyond what a pending read asks for, so a client that sends faster than the server answers is
 * held back by TCP flow control instead of filling memory.
 */
import type { Socket } from 'node:net';
import { FreeByCapacity, powerOfTwoCapacity } from '../util/free-by-capacity.js';

/** Bytes received ahead of what the server asked for before the socket is paused. */
export const READ_AHEAD_BYTES_MAX = 1024 * 1024;
/** Payloads at least this large that span chunks come from the reader's pool (smaller ones gain little). */
export const ASSEMBLED_POOL_MIN_BYTES = 64 * 1024;
/** Capacity of the free payload buffers a reader (one connection) keeps. */
export const FREE_PAYLOAD_BYTES_MAX = 4 * 1024 * 1024;

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
  /** Free payload buffers, by (power-of-two) capacity. */
  readonly #free = new FreeByCapacity<Buffer>(FREE_PAYLOAD_BYTES_MAX, (b) => b.length);
  /** The memory of assembled payloads handed out and not handed back yet. */
  readonly #assembled = new Set<ArrayBufferLike>();

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

  /**
   * Exactly `bytes` bytes (a fresh or recycled buffer, or a view, that the caller owns until it
   * hands it back with `recycle`); rejects with ConnectionEnded.
   */
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

  /**
   * Hand back a buffer `read` returned, once nothing reads it any more (the transmission loop
   * calls this after the write that got it has resolved: the volume has encrypted it by then).
   * Only payloads this reader assembled from several chunks are kept, up to
   * FREE_PAYLOAD_BYTES_MAX; anything else, or a buffer handed back twice, is ignored.
   */
  recycle(buffer: Buffer): void {
    if (buffer.byteOffset !== 0 || !this.#assembled.delete(buffer.buffer)) return;
    this.#free.keep(Buffer.from(buffer.buffer, 0, buffer.buffer.byteLength));
  }

  /**
   * A buffer for a payload that spans chunks. Why a pool: a fresh 1 MiB buffer per 1 MiB write is
   * new memory each time (page faults, and external memory that V8 answers with collections);
   * reusing them took about 6% off the server's CPU per MB of sequential writes (bench:nbd's CPU
   * table, three alternating pairs). A buffer is zeroed once when made, so the part beyond a
   * payload only ever holds this connection's earlier payloads, and the part handed out is
   * overwritten by the copy.
   */
  #payloadBuffer(bytes: number): Buffer {
    if (bytes < ASSEMBLED_POOL_MIN_BYTES) return Buffer.allocUnsafe(bytes);
    const capacity = powerOfTwoCapacity(bytes);
    const buffer = this.#free.take(capacity) ?? Buffer.alloc(capacity);
    this.#assembled.add(buffer.buffer);
    return buffer.subarray(0, bytes);
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
      out = this.#payloadBuffer(bytes);
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
