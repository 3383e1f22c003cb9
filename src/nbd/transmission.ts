/**
 * The transmission phase (proto.md "Transmission", "Request types"): requests are read one after
 * another and each is handed to the volume at once, so many are in flight; replies go out as
 * their volume calls settle, matched by cookie. The volume runs calls in call order (its queue),
 * which gives proto.md's ordering: a FLUSH covers every write answered before it.
 *
 * Bounds: IN_FLIGHT_BYTES_MAX bytes of write payloads and read replies, IN_FLIGHT_REQUESTS_MAX
 * requests per connection; at either bound the loop stops reading (backpressure through TCP).
 * A request's share is released once its reply has been handed to the kernel.
 *
 * Every request is one volume call (a FUA write is one write with `durable`), so a read or write
 * is one cipher batch however many sectors it spans.
 *
 * Writes, trims and zeroing are answered once the volume has applied them (`writeBack`): later
 * reads on any connection see them, and the FLUSH that follows waits for their commits and the
 * fsync. That is a disk with a volatile write cache, which NBD_FLAG_SEND_FLUSH tells the client to
 * flush (the Linux client and qemu do). Answering at the commit instead would make each write wait
 * for an LMDB transaction; an export with `writeThrough` does just that. A commit that fails after
 * its write was answered fails every later FLUSH (WRITE_LOST, EIO), so the loss is not hidden; a
 * volume locked after a write was answered fails every later request, as before.
 */
import type { Socket } from 'node:net';
import { isBlockvaultError } from '../errors.js';
import type { Session } from './handshake.js';
import { ProtocolViolation } from './handshake.js';
import {
  BASE_ALLOCATION_ID,
  BLOCK_STATUS_EXTENTS_MAX,
  IN_FLIGHT_BYTES_MAX,
  IN_FLIGHT_REQUESTS_MAX,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_ESHUTDOWN,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  PAYLOAD_BYTES_MAX,
  REQUEST_HEADER_BYTES,
  decodeRequest,
  encodeBlockStatusChunk,
  encodeErrorChunk,
  encodeNoneChunk,
  encodeOffsetDataHeader,
  encodeSimpleReply,
  type Request,
} from './protocol.js';
import type { SocketReader } from './socket-reader.js';

/** A request the server refuses with an NBD error (the connection goes on). */
class RequestError extends Error {
  constructor(readonly errno: number, message: string) {
    super(message);
  }
}

/** The flags each command may carry; FUA is accepted on every command (proto.md). */
const ALLOWED_FLAGS: Record<number, number> = {
  [NBD_CMD_READ]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF,
  [NBD_CMD_WRITE]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_FLUSH]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_TRIM]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_CACHE]: NBD_CMD_FLAG_FUA,
  // FAST_ZERO is not allowed: NBD_FLAG_SEND_FAST_ZERO is not advertised, so EINVAL (proto.md).
  [NBD_CMD_WRITE_ZEROES]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE,
  [NBD_CMD_BLOCK_STATUS]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE,
};

/** What a finished request sends back. */
type Outcome = { kind: 'ok' } | { kind: 'data'; data: Uint8Array } | { kind: 'status'; chunk: Buffer } | { kind: 'error'; errno: number; message: string };

const OK: Outcome = { kind: 'ok' };

/** The NBD error for a failed volume call: range -> EINVAL, closing -> ESHUTDOWN, anything else (a locked, deleted or corrupt volume, a key refused) -> EIO. */
export function nbdErrnoOf(error: unknown): number {
  if (error instanceof RequestError) return error.errno;
  if (isBlockvaultError(error, 'OUT_OF_RANGE') || isBlockvaultError(error, 'INVALID_ARGUMENT')) return NBD_EINVAL;
  if (isBlockvaultError(error, 'ENGINE_CLOSED') || isBlockvaultError(error, 'VOLUME_CLOSED')) return NBD_ESHUTDOWN;
  return NBD_EIO;
}

export class Transmission {
  readonly #socket: Socket;
  readonly #reader: SocketReader;
  readonly #session: Session;
  #inFlightBytes = 0;
  #inFlightRequests = 0;
  /** Resolved when a request's share is released (the loop waits on it at a bound). */
  #released: (() => void) | null = null;
  /** Resolved when nothing is in flight any more. */
  #drained: (() => void) | null = null;
  #corked = false;
  readonly #uncork = (): void => {
    this.#corked = false;
    this.#socket.uncork();
  };

  constructor(socket: Socket, reader: SocketReader, session: Session) {
    this.#socket = socket;
    this.#reader = reader;
    this.#session = session;
  }

  /**
   * Reads and dispatches requests until NBD_CMD_DISC or until `stopping()` is true between
   * requests; then waits for the replies in flight. Rejects with ProtocolViolation (the caller
   * closes the connection) or the reader's ConnectionEnded.
   */
  async run(stopping: () => boolean): Promise<void> {
    const size = BigInt(this.#session.export.sizeBytes);
    while (!stopping()) {
      await this.#room(0);
      const header = await this.#reader.read(REQUEST_HEADER_BYTES);
      const request = decodeRequest(header);
      if (request === null) throw new ProtocolViolation('a request without the NBD_REQUEST_MAGIC magic');
      if (request.type === NBD_CMD_DISC) break;
      let payload: Buffer | null = null;
      let shareBytes = 0;
      if (request.type === NBD_CMD_WRITE) {
        // The payload follows the header whatever we think of the request; one too large to hold
        // cannot be skipped safely, so it ends the connection (proto.md allows a hard
        // disconnect for a payload deemed a denial of service).
        if (request.length > PAYLOAD_BYTES_MAX) throw new ProtocolViolation(`a write of ${request.length} bytes, more than the ${PAYLOAD_BYTES_MAX} advertised`);
        shareBytes = request.length;
        await this.#room(shareBytes);
        payload = await this.#reader.read(request.length);
      } else if (request.type === NBD_CMD_READ && request.length <= PAYLOAD_BYTES_MAX) {
        shareBytes = request.length;
        await this.#room(shareBytes);
      }
      this.#inFlightBytes += shareBytes;
      this.#inFlightRequests++;
      let outcome: Promise<Outcome>;
      try {
        outcome = this.#dispatch(request, payload, size);
      } catch (error) {
        outcome = Promise.resolve(errorOutcome(error));
      }
      void outcome.catch(errorOutcome).then((result) => {
        // The write has resolved (or failed): nothing reads its payload any more.
        if (payload !== null) this.#reader.recycle(payload);
        this.#reply(request, result, shareBytes);
      });
    }
    await this.drain();
  }

  /** Resolves once every request read so far has been answered. */
  drain(): Promise<void> {
    if (this.#inFlightRequests === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.#drained;
      this.#drained = () => {
        previous?.();
        resolve();
      };
    });
  }

  /** Waits until `bytes` more fit within the connection's bounds. */
  async #room(bytes: number): Promise<void> {
    while (this.#inFlightRequests >= IN_FLIGHT_REQUESTS_MAX || (this.#inFlightBytes > 0 && this.#inFlightBytes + bytes > IN_FLIGHT_BYTES_MAX)) {
      await new Promise<void>((resolve) => (this.#released = resolve));
    }
  }

  #release(shareBytes: number): void {
    this.#inFlightBytes -= shareBytes;
    this.#inFlightRequests--;
    const released = this.#released;
    this.#released = null;
    released?.();
    if (this.#inFlightRequests === 0) {
      const drained = this.#drained;
      this.#drained = null;
      drained?.();
    }
  }

  /** Validates the request and starts its one volume call (synchronously, so calls keep request order). */
  #dispatch(request: Request, payload: Buffer | null, size: bigint): Promise<Outcome> {
    const { volume, readOnly } = this.#session.export;
    const allowed = ALLOWED_FLAGS[request.type];
    if (allowed === undefined) throw new RequestError(NBD_EINVAL, `unknown command ${request.type}`);
    if ((request.flags & ~allowed) !== 0) throw new RequestError(NBD_EINVAL, `flags 0x${request.flags.toString(16)} are not valid for command ${request.type}`);
    if ((request.flags & NBD_CMD_FLAG_DF) !== 0 && !this.#session.structuredReplies) throw new RequestError(NBD_EINVAL, 'NBD_CMD_FLAG_DF needs structured replies');
    const writes = request.type === NBD_CMD_WRITE || request.type === NBD_CMD_WRITE_ZEROES || request.type === NBD_CMD_TRIM;
    if (writes && readOnly) throw new RequestError(NBD_EPERM, 'the export is read-only');
    if (request.type !== NBD_CMD_FLUSH && request.offset + BigInt(request.length) > size) {
      // proto.md: ENOSPC for writes past the end, EINVAL for reads, trims and status queries.
      const errno = request.type === NBD_CMD_WRITE || request.type === NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL;
      throw new RequestError(errno, `offset ${request.offset} + length ${request.length} is past the end of the export (${size} bytes)`);
    }
    const offset = Number(request.offset);
    const durable = (request.flags & NBD_CMD_FLAG_FUA) !== 0;
    const writeBack = !this.#session.export.writeThrough;
    switch (request.type) {
      case NBD_CMD_READ:
        if (request.length > PAYLOAD_BYTES_MAX) throw new RequestError(NBD_EINVAL, `a read of ${request.length} bytes, more than the ${PAYLOAD_BYTES_MAX} advertised`);
        return volume.read(offset, request.length).then((data) => ({ kind: 'data', data }));
      case NBD_CMD_WRITE:
        return volume.write(offset, payload!, { durable, writeBack }).then(() => OK);
      case NBD_CMD_FLUSH: {
        // Volume.flush waits for the commits of what was written, which is still possible once
        // the key is gone; a client must hear that its disk is gone on every request, flushes too.
        const state = volume.info().state;
        if (state === 'locked' || state === 'deleted') throw new RequestError(NBD_EIO, `volume ${volume.info().name} is ${state}`);
        return volume.flush().then(() => OK);
      }
      case NBD_CMD_TRIM:
        return volume.trim(offset, request.length, { durable, writeBack }).then(() => OK);
      case NBD_CMD_WRITE_ZEROES:
        return volume.writeZeroes(offset, request.length, { durable, writeBack, allocate: (request.flags & NBD_CMD_FLAG_NO_HOLE) !== 0 }).then(() => OK);
      case NBD_CMD_CACHE:
        // Not advertised; some clients send it anyway. There is no cache to warm: a no-op.
        return Promise.resolve(OK);
      case NBD_CMD_BLOCK_STATUS:
        return this.#blockStatus(request, offset);
      default:
        throw new RequestError(NBD_EINVAL, `unknown command ${request.type}`);
    }
  }

  async #blockStatus(request: Request, offset: number): Promise<Outcome> {
    if (!this.#session.allocationContext) throw new RequestError(NBD_EINVAL, 'NBD_CMD_BLOCK_STATUS without a metadata context selected (NBD_OPT_SET_META_CONTEXT base:allocation)');
    if (request.length === 0) throw new RequestError(NBD_EINVAL, 'NBD_CMD_BLOCK_STATUS of length 0');
    const map = await this.#session.export.volume.allocationMap(offset, request.length);
    const extentsMax = (request.flags & NBD_CMD_FLAG_REQ_ONE) !== 0 ? 1 : BLOCK_STATUS_EXTENTS_MAX;
    // Holes are unwritten or trimmed sectors: not stored, and they read as zeros.
    const extents = map.slice(0, extentsMax).map((e) => ({ length: e.length, flags: e.allocated ? 0 : NBD_STATE_HOLE | NBD_STATE_ZERO }));
    if (extents.length === 0) throw new RequestError(NBD_EIO, 'no allocation information for the range');
    return { kind: 'status', chunk: encodeBlockStatusChunk(request.cookie, BASE_ALLOCATION_ID, extents) };
  }

  #reply(request: Request, outcome: Outcome, shareBytes: number): void {
    const socket = this.#socket;
    if (socket.destroyed || !socket.writable) {
      this.#release(shareBytes);
      return;
    }
    const done = (): void => this.#release(shareBytes);
    const structured = this.#session.structuredReplies;
    // Writes that commit together (one LMDB transaction) settle in the same tick: their replies
    // leave in one writev instead of one syscall each.
    if (!this.#corked) {
      this.#corked = true;
      socket.cork();
      process.nextTick(this.#uncork);
    }
    switch (outcome.kind) {
      case 'ok':
        socket.write(encodeSimpleReply(0, request.cookie), done);
        return;
      case 'data': {
        // An OFFSET_DATA chunk must carry at least one byte (proto.md): a zero-length read (which
        // clients SHOULD NOT send) succeeds with just the final NONE chunk.
        if (structured && outcome.data.length === 0) {
          socket.write(encodeNoneChunk(request.cookie), done);
          return;
        }
        // One write of header and data (writev), so nothing else lands between them.
        const header = structured ? encodeOffsetDataHeader(request.cookie, request.offset, outcome.data.length) : encodeSimpleReply(0, request.cookie);
        socket.cork();
        socket.write(header);
        socket.write(outcome.data, done);
        socket.uncork();
        return;
      }
      case 'status':
        socket.write(outcome.chunk, done);
        return;
      case 'error':
        // Structured clients get the message too; a READ must not get a simple reply then.
        socket.write(structured ? encodeErrorChunk(request.cookie, outcome.errno, outcome.message) : encodeSimpleReply(outcome.errno, request.cookie), done);
        return;
    }
  }
}

function errorOutcome(error: unknown): Outcome {
  return { kind: 'error', errno: nbdErrnoOf(error), message: error instanceof Error ? error.message : String(error) };
}
