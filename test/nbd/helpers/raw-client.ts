/**
 * A small NBD client written from proto.md for the protocol tests: it sends exactly the frames a
 * test asks for (also broken ones) and decodes the server's replies, so the tests check the
 * wire format independently of the server's own codecs.
 */
import { connect, type Socket } from 'node:net';

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_MAGIC = 0x67446698;
export const STRUCTURED_MAGIC = 0x668e33ef;

export const OPT = { EXPORT_NAME: 1, ABORT: 2, LIST: 3, STARTTLS: 5, INFO: 6, GO: 7, STRUCTURED_REPLY: 8, LIST_META_CONTEXT: 9, SET_META_CONTEXT: 10, EXTENDED_HEADERS: 11 } as const;
export const REP = { ACK: 1, SERVER: 2, INFO: 3, META_CONTEXT: 4, ERR_UNSUP: 2 ** 31 + 1, ERR_INVALID: 2 ** 31 + 3, ERR_TLS_REQD: 2 ** 31 + 5, ERR_UNKNOWN: 2 ** 31 + 6 } as const;
export const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, WRITE_ZEROES: 6, BLOCK_STATUS: 7 } as const;
export const ERR = { EPERM: 1, EIO: 5, EINVAL: 22, ENOSPC: 28 } as const;

export interface OptionReply {
  option: number;
  type: number;
  data: Buffer;
}

export interface Reply {
  error: number;
  cookie: bigint;
  /** READ data (simple or from OFFSET_DATA chunks); BLOCK_STATUS descriptors as [length, flags]. */
  data?: Buffer;
  extents?: Array<[number, number]>;
}

export class RawClient {
  readonly socket: Socket;
  #chunks: Buffer[] = [];
  #total = 0;
  #waiter: (() => void) | null = null;
  #closed = false;
  structured = false;
  /** Read lengths by cookie, for simple replies (which do not say whether data follows). */
  readonly #readLengths = new Map<bigint, number>();

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#total += chunk.length;
      this.#waiter?.();
    });
    const end = (): void => {
      this.#closed = true;
      this.#waiter?.();
    };
    socket.on('close', end);
    socket.on('error', end);
  }

  /** A Unix socket path, or a TCP port on 127.0.0.1. */
  static connect(where: string | number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = typeof where === 'number' ? connect(where, '127.0.0.1', () => resolve(new RawClient(socket))) : connect(where, () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Resolves true once the server closed the connection (within timeoutMs), else false. */
  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.#waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return this.#closed;
  }

  async read(bytes: number): Promise<Buffer> {
    while (this.#total < bytes) {
      if (this.#closed) throw new Error(`connection closed with ${this.#total} of ${bytes} bytes`);
      await new Promise<void>((resolve) => (this.#waiter = resolve));
      this.#waiter = null;
    }
    // Joined only once enough has arrived (joining every chunk as it comes is quadratic).
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    const out = Buffer.from(all.subarray(0, bytes));
    const rest = all.subarray(bytes);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#total = rest.length;
    return out;
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Greeting and client flags (fixed newstyle + no zeroes). Returns the handshake flags. */
  async handshake(clientFlags = 3): Promise<number> {
    const greeting = await this.read(18);
    if (greeting.readBigUInt64BE(0) !== NBDMAGIC || greeting.readBigUInt64BE(8) !== IHAVEOPT) throw new Error('bad greeting');
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(clientFlags);
    this.send(flags);
    return greeting.readUInt16BE(16);
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0), magic = IHAVEOPT): void {
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(magic, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(data.length, 12);
    this.send(Buffer.concat([header, data]));
  }

  async optionReply(): Promise<OptionReply> {
    const header = await this.read(20);
    if (header.readBigUInt64BE(0) !== REPLY_MAGIC) throw new Error('bad option reply magic');
    const data = await this.read(header.readUInt32BE(16));
    return { option: header.readUInt32BE(8), type: header.readUInt32BE(12), data };
  }

  /** Replies up to and including the first that is not REP_INFO / REP_SERVER / REP_META_CONTEXT. */
  async optionReplies(): Promise<OptionReply[]> {
    const replies: OptionReply[] = [];
    for (;;) {
      const reply = await this.optionReply();
      replies.push(reply);
      if (reply.type !== REP.INFO && reply.type !== REP.SERVER && reply.type !== REP.META_CONTEXT) return replies;
    }
  }

  static infoData(name: string, infos: number[] = []): Buffer {
    const n = Buffer.from(name);
    const out = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
    out.writeUInt32BE(n.length, 0);
    n.copy(out, 4);
    out.writeUInt16BE(infos.length, 4 + n.length);
    infos.forEach((info, i) => out.writeUInt16BE(info, 4 + n.length + 2 + 2 * i));
    return out;
  }

  static metaData(name: string, queries: string[]): Buffer {
    const parts = [Buffer.alloc(4), Buffer.from(name), Buffer.alloc(4)];
    parts[0]!.writeUInt32BE(Buffer.byteLength(name));
    parts[2]!.writeUInt32BE(queries.length);
    for (const q of queries) {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(Buffer.byteLength(q));
      parts.push(len, Buffer.from(q));
    }
    return Buffer.concat(parts);
  }

  /** Handshake, optionally structured replies and base:allocation, then NBD_OPT_GO. Returns size and flags. */
  async go(name: string, options: { structured?: boolean; allocation?: boolean } = {}): Promise<{ sizeBytes: bigint; flags: number; blockSizes?: number[] }> {
    await this.handshake();
    if (options.structured === true) {
      this.sendOption(OPT.STRUCTURED_REPLY);
      const ack = await this.optionReply();
      if (ack.type !== REP.ACK) throw new Error(`structured reply refused: ${ack.type}`);
      this.structured = true;
    }
    if (options.allocation === true) {
      this.sendOption(OPT.SET_META_CONTEXT, RawClient.metaData(name, ['base:allocation']));
      await this.optionReplies();
    }
    this.sendOption(OPT.GO, RawClient.infoData(name, [3]));
    const replies = await this.optionReplies();
    const last = replies[replies.length - 1]!;
    if (last.type !== REP.ACK) throw new Error(`GO failed: ${last.type.toString(16)} ${last.data.toString()}`);
    const exp = replies.find((r) => r.type === REP.INFO && r.data.readUInt16BE(0) === 0)!;
    const bs = replies.find((r) => r.type === REP.INFO && r.data.readUInt16BE(0) === 3);
    return {
      sizeBytes: exp.data.readBigUInt64BE(2),
      flags: exp.data.readUInt16BE(10),
      ...(bs === undefined ? {} : { blockSizes: [bs.data.readUInt32BE(2), bs.data.readUInt32BE(6), bs.data.readUInt32BE(10)] }),
    };
  }

  static requestHeader(type: number, cookie: bigint, offset: bigint, length: number, flags = 0, magic = REQUEST_MAGIC): Buffer {
    const out = Buffer.alloc(28);
    out.writeUInt32BE(magic, 0);
    out.writeUInt16BE(flags, 4);
    out.writeUInt16BE(type, 6);
    out.writeBigUInt64BE(cookie, 8);
    out.writeBigUInt64BE(offset, 16);
    out.writeUInt32BE(length, 24);
    return out;
  }

  request(type: number, cookie: bigint, offset: number | bigint, length: number, flags = 0, payload?: Buffer): void {
    if (type === CMD.READ) this.#readLengths.set(cookie, length);
    const header = RawClient.requestHeader(type, cookie, BigInt(offset), length, flags);
    this.send(payload === undefined ? header : Buffer.concat([header, payload]));
  }

  /** The next complete reply (all chunks of a structured one, until DONE). */
  async reply(): Promise<Reply> {
    const magic = (await this.read(4)).readUInt32BE(0);
    if (magic === SIMPLE_MAGIC) {
      const rest = await this.read(12);
      const error = rest.readUInt32BE(0);
      const cookie = rest.readBigUInt64BE(4);
      const readLength = this.#readLengths.get(cookie);
      this.#readLengths.delete(cookie);
      if (readLength !== undefined && error === 0) return { error, cookie, data: await this.read(readLength) };
      return { error, cookie };
    }
    if (magic !== STRUCTURED_MAGIC) throw new Error(`bad reply magic 0x${magic.toString(16)}`);
    const reply: Reply = { error: 0, cookie: 0n };
    let header = await this.read(16);
    for (;;) {
      const flags = header.readUInt16BE(0);
      const type = header.readUInt16BE(2);
      reply.cookie = header.readBigUInt64BE(4);
      const payload = await this.read(header.readUInt32BE(12));
      if (type === 1) reply.data = Buffer.concat([reply.data ?? Buffer.alloc(0), payload.subarray(8)]);
      else if (type === 5) {
        reply.extents = [];
        for (let at = 4; at < payload.length; at += 8) reply.extents.push([payload.readUInt32BE(at), payload.readUInt32BE(at + 4)]);
      } else if ((type & 0x8000) !== 0) reply.error = payload.readUInt32BE(0);
      if ((flags & 1) !== 0) break;
      const magic2 = (await this.read(4)).readUInt32BE(0);
      if (magic2 !== STRUCTURED_MAGIC) throw new Error('bad chunk magic');
      header = await this.read(16);
    }
    this.#readLengths.delete(reply.cookie);
    return reply;
  }

  close(): void {
    this.socket.destroy();
  }
}
