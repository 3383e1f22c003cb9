/**
 * The NBD protocol's numbers and frames (NetworkBlockDevice doc/proto.md, "Values" and the
 * message layouts of "Fixed newstyle negotiation" and "Transmission"). Everything on the wire is
 * big-endian. Only what this server speaks is here: fixed newstyle negotiation, simple and
 * structured replies, the base:allocation metadata context. Extended headers (an experimental
 * extension) are refused during negotiation, so 32-bit lengths are the only ones that occur.
 *
 * The limits at the end bound what one connection can make the server hold in memory.
 */

// ---------------------------------------------------------------------------------------------
// Magics.

/** 'NBDMAGIC': the first 8 bytes the server sends. */
export const NBD_MAGIC = 0x4e42444d41474943n;
/** 'IHAVEOPT': follows NBD_MAGIC in newstyle negotiation, and starts every client option. */
export const NBD_OPTS_MAGIC = 0x49484156454f5054n;
/** Starts every option reply of fixed newstyle negotiation. */
export const NBD_REP_MAGIC = 0x3e889045565a9n;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// ---------------------------------------------------------------------------------------------
// Handshake.

/** Handshake flags (16 bits, server). */
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
/** Client flags (32 bits); any other bit makes the server drop the connection (proto.md). */
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

/** Option types. */
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;
export const NBD_OPT_EXTENDED_HEADERS = 11;

/** Option reply types; errors have bit 31 set. */
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
const NBD_REP_FLAG_ERROR = 2 ** 31;
export const NBD_REP_ERR_UNSUP = NBD_REP_FLAG_ERROR + 1;
export const NBD_REP_ERR_POLICY = NBD_REP_FLAG_ERROR + 2;
export const NBD_REP_ERR_INVALID = NBD_REP_FLAG_ERROR + 3;
export const NBD_REP_ERR_TLS_REQD = NBD_REP_FLAG_ERROR + 5;
export const NBD_REP_ERR_UNKNOWN = NBD_REP_FLAG_ERROR + 6;
export const NBD_REP_ERR_SHUTDOWN = NBD_REP_FLAG_ERROR + 7;
export const NBD_REP_ERR_TOO_BIG = NBD_REP_FLAG_ERROR + 9;

/** Information types of NBD_REP_INFO. */
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

/** Transmission flags (16 bits). */
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;

/** The one metadata context this server offers, and the id it is selected under. */
export const BASE_ALLOCATION = 'base:allocation';
export const BASE_ALLOCATION_ID = 1;
/** base:allocation status flags. */
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;

// ---------------------------------------------------------------------------------------------
// Transmission.

/** Command types. */
export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;

/** Command flags. */
export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

/** Structured reply flags and types. */
export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_ERROR = 2 ** 15 + 1;

/** Error values (proto.md "Error values"; the common errno numbers, fixed by the protocol). */
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

// ---------------------------------------------------------------------------------------------
// Sizes and limits.

/** Bytes: the server's greeting (NBDMAGIC, IHAVEOPT, handshake flags). */
export const GREETING_BYTES = 8 + 8 + 2;
/** Bytes: an option header (IHAVEOPT, option, length). */
export const OPTION_HEADER_BYTES = 8 + 4 + 4;
/** Bytes: a request header (magic, flags, type, cookie, offset, length). */
export const REQUEST_HEADER_BYTES = 4 + 2 + 2 + 8 + 8 + 4;
/** Bytes: the zero padding after an NBD_OPT_EXPORT_NAME reply unless NO_ZEROES was agreed. */
export const EXPORT_NAME_ZEROES_BYTES = 124;

/**
 * Bytes of option data the server reads during negotiation. proto.md limits strings (export
 * names, metadata context queries) to 4096 bytes; a few of them plus their lengths fit in 64 KiB,
 * and a client that sends more is not negotiating but filling our memory: the connection closes.
 */
export const OPTION_DATA_BYTES_MAX = 64 * 1024;
/** Bytes: proto.md's limit on any string (names, queries, error messages). */
export const STRING_BYTES_MAX = 4096;
/** Options one connection may send before choosing an export: bounds a client that never ends negotiation. */
export const OPTIONS_PER_CONNECTION_MAX = 1024;
/** Metadata context queries in one SET/LIST_META_CONTEXT; more is NBD_REP_ERR_TOO_BIG. */
export const META_CONTEXT_QUERIES_MAX = 16;

/**
 * Bytes: the largest READ or WRITE payload, advertised as the maximum block size. proto.md says a
 * payload up to 2^25 (32 MiB) SHOULD NOT be treated as an attack, and qemu and libnbd clients
 * split larger I/O to this size. A WRITE header announcing more closes the connection: its
 * payload cannot be skipped without reading it.
 */
export const PAYLOAD_BYTES_MAX = 32 * 1024 * 1024;
/**
 * Bytes: the smallest addressable unit advertised. A volume reads and writes any byte range (the
 * volume does the read-modify-write of partial sectors), so 1, as proto.md allows for exports
 * backed by a file; the preferred block size is the volume's sector size.
 */
export const MINIMUM_BLOCK_BYTES = 1;
/**
 * Bytes of request payloads and read replies one connection may have in flight (received and
 * not yet answered, or answered and not yet handed to the kernel). Beyond it the server stops
 * reading the socket, so TCP flow control holds the client back. Two maximal payloads fit, so a
 * maximal write and read can overlap.
 */
export const IN_FLIGHT_BYTES_MAX = 2 * PAYLOAD_BYTES_MAX;
/** Requests one connection may have in flight: bounds the per-request bookkeeping of tiny requests. */
export const IN_FLIGHT_REQUESTS_MAX = 512;
/**
 * Extents in one base:allocation reply chunk. proto.md asks for at most 2^20; a volume's map is
 * built in memory per request, so a smaller bound keeps one reply under 64 KiB (8 bytes each).
 */
export const BLOCK_STATUS_EXTENTS_MAX = 8192;

// ---------------------------------------------------------------------------------------------
// Frames.

export interface Request {
  flags: number;
  type: number;
  /** Opaque to the server; echoed in every reply (proto.md's "cookie", once "handle"). */
  cookie: bigint;
  offset: bigint;
  length: number;
}

/** A request header, or null when its magic is wrong (the caller closes the connection). */
export function decodeRequest(header: Buffer): Request | null {
  if (header.readUInt32BE(0) !== NBD_REQUEST_MAGIC) return null;
  return {
    flags: header.readUInt16BE(4),
    type: header.readUInt16BE(6),
    cookie: header.readBigUInt64BE(8),
    offset: header.readBigUInt64BE(16),
    length: header.readUInt32BE(24),
  };
}

export function encodeGreeting(): Buffer {
  const out = Buffer.alloc(GREETING_BYTES);
  out.writeBigUInt64BE(NBD_MAGIC, 0);
  out.writeBigUInt64BE(NBD_OPTS_MAGIC, 8);
  out.writeUInt16BE(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, 16);
  return out;
}

export function encodeOptionReply(option: number, replyType: number, data: Buffer = EMPTY): Buffer {
  const out = Buffer.alloc(8 + 4 + 4 + 4 + data.length);
  out.writeBigUInt64BE(NBD_REP_MAGIC, 0);
  out.writeUInt32BE(option, 8);
  out.writeUInt32BE(replyType, 12);
  out.writeUInt32BE(data.length, 16);
  data.copy(out, 20);
  return out;
}

/** NBD_REP_INFO with NBD_INFO_EXPORT: size and transmission flags. */
export function encodeInfoExport(sizeBytes: number, transmissionFlags: number): Buffer {
  const out = Buffer.alloc(2 + 8 + 2);
  out.writeUInt16BE(NBD_INFO_EXPORT, 0);
  out.writeBigUInt64BE(BigInt(sizeBytes), 2);
  out.writeUInt16BE(transmissionFlags, 10);
  return out;
}

export function encodeInfoBlockSize(minimumBytes: number, preferredBytes: number, maximumBytes: number): Buffer {
  const out = Buffer.alloc(2 + 4 + 4 + 4);
  out.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0);
  out.writeUInt32BE(minimumBytes, 2);
  out.writeUInt32BE(preferredBytes, 6);
  out.writeUInt32BE(maximumBytes, 10);
  return out;
}

export function encodeInfoString(infoType: number, text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const out = Buffer.alloc(2 + bytes.length);
  out.writeUInt16BE(infoType, 0);
  bytes.copy(out, 2);
  return out;
}

/** NBD_REP_SERVER data: the name's length, then the name. */
export function encodeServerEntry(name: string): Buffer {
  const bytes = Buffer.from(name, 'utf8');
  const out = Buffer.alloc(4 + bytes.length);
  out.writeUInt32BE(bytes.length, 0);
  bytes.copy(out, 4);
  return out;
}

/** NBD_REP_META_CONTEXT data: the context id, then its name. */
export function encodeMetaContext(id: number, name: string): Buffer {
  const bytes = Buffer.from(name, 'utf8');
  const out = Buffer.alloc(4 + bytes.length);
  out.writeUInt32BE(id, 0);
  bytes.copy(out, 4);
  return out;
}

/** The reply to NBD_OPT_EXPORT_NAME: size, flags, and the 124 zero bytes unless NO_ZEROES. */
export function encodeExportNameReply(sizeBytes: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const out = Buffer.alloc(8 + 2 + (noZeroes ? 0 : EXPORT_NAME_ZEROES_BYTES));
  out.writeBigUInt64BE(BigInt(sizeBytes), 0);
  out.writeUInt16BE(transmissionFlags, 8);
  return out;
}

export const SIMPLE_REPLY_BYTES = 4 + 4 + 8;

/** A simple reply header (a successful READ's data follows it). */
export function encodeSimpleReply(error: number, cookie: bigint): Buffer {
  const out = Buffer.alloc(SIMPLE_REPLY_BYTES);
  out.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
  out.writeUInt32BE(error, 4);
  out.writeBigUInt64BE(cookie, 8);
  return out;
}

export const STRUCTURED_HEADER_BYTES = 4 + 2 + 2 + 8 + 4;

/** A structured reply chunk header; `payloadBytes` of payload follow. */
export function encodeChunkHeader(flags: number, replyType: number, cookie: bigint, payloadBytes: number, extraBytes = 0): Buffer {
  const out = Buffer.alloc(STRUCTURED_HEADER_BYTES + extraBytes);
  out.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0);
  out.writeUInt16BE(flags, 4);
  out.writeUInt16BE(replyType, 6);
  out.writeBigUInt64BE(cookie, 8);
  out.writeUInt32BE(payloadBytes, 16);
  return out;
}

/** The header of a one-chunk READ reply (NBD_REPLY_TYPE_OFFSET_DATA, done), up to the data. */
export function encodeOffsetDataHeader(cookie: bigint, offset: bigint, dataBytes: number): Buffer {
  const out = encodeChunkHeader(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, cookie, 8 + dataBytes, 8);
  out.writeBigUInt64BE(offset, STRUCTURED_HEADER_BYTES);
  return out;
}

/** NBD_REPLY_TYPE_ERROR, final, with a message for a human (cut to the string limit). */
export function encodeErrorChunk(cookie: bigint, error: number, message: string): Buffer {
  let text = Buffer.from(message, 'utf8');
  if (text.length > STRING_BYTES_MAX) text = text.subarray(0, STRING_BYTES_MAX);
  const out = encodeChunkHeader(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, cookie, 4 + 2 + text.length, 4 + 2 + text.length);
  out.writeUInt32BE(error, STRUCTURED_HEADER_BYTES);
  out.writeUInt16BE(text.length, STRUCTURED_HEADER_BYTES + 4);
  text.copy(out, STRUCTURED_HEADER_BYTES + 6);
  return out;
}

/** The final NBD_REPLY_TYPE_NONE chunk: success without payload. */
export function encodeNoneChunk(cookie: bigint): Buffer {
  return encodeChunkHeader(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, cookie, 0);
}

/** One NBD_REPLY_TYPE_BLOCK_STATUS chunk, final: (length, flags) descriptors for one context. */
export function encodeBlockStatusChunk(cookie: bigint, contextId: number, extents: ReadonlyArray<{ length: number; flags: number }>): Buffer {
  const payloadBytes = 4 + 8 * extents.length;
  const out = encodeChunkHeader(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, cookie, payloadBytes, payloadBytes);
  let at = STRUCTURED_HEADER_BYTES;
  out.writeUInt32BE(contextId, at);
  at += 4;
  for (const { length, flags } of extents) {
    out.writeUInt32BE(length, at);
    out.writeUInt32BE(flags, at + 4);
    at += 8;
  }
  return out;
}

const EMPTY = Buffer.alloc(0);
