/**
 * The handshake phase (proto.md "Fixed newstyle negotiation", "Option types"): the greeting, the
 * client's flags, then options until the client picks an export (NBD_OPT_GO or
 * NBD_OPT_EXPORT_NAME) or leaves (NBD_OPT_ABORT). Unknown options get NBD_REP_ERR_UNSUP and the
 * negotiation goes on; a frame that breaks the protocol (bad magic, option data over the limit,
 * unknown client flags) ends the connection, as proto.md allows.
 *
 * TLS (proto.md "TLS support"): with a TLS setup, NBD_OPT_STARTTLS is answered with ACK and the
 * connection goes on inside TLS from the next byte; in TLS-only mode (the default once TLS is
 * set up) every option but STARTTLS and ABORT is refused with NBD_REP_ERR_TLS_REQD until then, and
 * NBD_OPT_EXPORT_NAME, which cannot be refused, ends the connection.
 */
import type { Socket } from 'node:net';
import { ExportTable, transmissionFlags, type NbdExport } from './export.js';
import {
  BASE_ALLOCATION,
  BASE_ALLOCATION_ID,
  META_CONTEXT_QUERIES_MAX,
  MINIMUM_BLOCK_BYTES,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_NAME,
  NBD_OPTS_MAGIC,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_SHUTDOWN,
  NBD_REP_ERR_TLS_REQD,
  NBD_REP_ERR_TOO_BIG,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  OPTIONS_PER_CONNECTION_MAX,
  OPTION_DATA_BYTES_MAX,
  OPTION_HEADER_BYTES,
  PAYLOAD_BYTES_MAX,
  STRING_BYTES_MAX,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoString,
  encodeMetaContext,
  encodeOptionReply,
  encodeServerEntry,
} from './protocol.js';
import type { SocketReader } from './socket-reader.js';

/** What negotiation agreed on, for the transmission phase. */
export interface Session {
  readonly export: NbdExport;
  readonly structuredReplies: boolean;
  /** base:allocation was selected for this export: BLOCK_STATUS may be used. */
  readonly allocationContext: boolean;
}

/** A violation of the protocol by the client: the connection is closed (hard disconnect). */
export class ProtocolViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolViolation';
  }
}

const KNOWN_CLIENT_FLAGS = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

/** What negotiation needs for NBD_OPT_STARTTLS (null: the server has no TLS set up). */
export interface TlsUpgrade {
  /** Refuse everything but STARTTLS and ABORT before TLS (proto.md's TLS-only mode). */
  readonly required: boolean;
  /**
   * Called once the ACK has been written: runs the TLS handshake on the connection and returns the
   * TLS socket and its reader, which carry the rest of the session. Rejects with ProtocolViolation.
   */
  upgrade(): Promise<{ socket: Socket; reader: SocketReader }>;
}

/**
 * Runs the handshake; resolves with the session, or null when the client aborted. Rejects with
 * ProtocolViolation or the reader's ConnectionEnded.
 */
export async function negotiate(socket: Socket, reader: SocketReader, exports: ExportTable, shuttingDown: () => boolean, tls: TlsUpgrade | null = null): Promise<Session | null> {
  socket.write(encodeGreeting());
  let inTls = false;
  const clientFlags = (await reader.read(4)).readUInt32BE(0);
  if ((clientFlags & ~KNOWN_CLIENT_FLAGS) !== 0) throw new ProtocolViolation(`unknown client flags 0x${clientFlags.toString(16)}`);
  const noZeroes = (clientFlags & NBD_FLAG_C_NO_ZEROES) !== 0;
  let structuredReplies = false;
  // The selection of SET_META_CONTEXT and the export it named (it only counts for that export).
  let allocationFor: string | null = null;

  for (let count = 0; count < OPTIONS_PER_CONNECTION_MAX; count++) {
    const header = await reader.read(OPTION_HEADER_BYTES);
    if (header.readBigUInt64BE(0) !== NBD_OPTS_MAGIC) throw new ProtocolViolation('an option without the IHAVEOPT magic');
    const option = header.readUInt32BE(8);
    const dataBytes = header.readUInt32BE(12);
    if (dataBytes > OPTION_DATA_BYTES_MAX) throw new ProtocolViolation(`option ${option} carries ${dataBytes} bytes, more than the ${OPTION_DATA_BYTES_MAX} this server reads`);
    const data = await reader.read(dataBytes);
    const reply = (type: number, payload?: Buffer): void => void socket.write(encodeOptionReply(option, type, payload));
    const fail = (type: number, message: string): void => reply(type, Buffer.from(message.slice(0, STRING_BYTES_MAX), 'utf8'));

    if (shuttingDown() && option !== NBD_OPT_ABORT) {
      if (option === NBD_OPT_EXPORT_NAME) throw new ProtocolViolation('the server is shutting down');
      fail(NBD_REP_ERR_SHUTDOWN, 'the server is shutting down');
      continue;
    }
    if (tls !== null && tls.required && !inTls && option !== NBD_OPT_STARTTLS && option !== NBD_OPT_ABORT) {
      if (option === NBD_OPT_EXPORT_NAME) throw new ProtocolViolation('NBD_OPT_EXPORT_NAME before NBD_OPT_STARTTLS on a server that requires TLS');
      fail(NBD_REP_ERR_TLS_REQD, 'this server requires TLS: send NBD_OPT_STARTTLS first');
      continue;
    }

    switch (option) {
      case NBD_OPT_EXPORT_NAME: {
        // No way to report an error here (proto.md): an unknown export ends the session.
        const exp = exports.find(data.toString('utf8'));
        if (exp === undefined) throw new ProtocolViolation(`NBD_OPT_EXPORT_NAME for the unknown export ${JSON.stringify(data.toString('utf8'))}`);
        socket.write(encodeExportNameReply(exp.sizeBytes, transmissionFlags(exp, structuredReplies), noZeroes));
        return { export: exp, structuredReplies, allocationContext: allocationFor === exp.name };
      }
      case NBD_OPT_ABORT:
        reply(NBD_REP_ACK);
        return null;
      case NBD_OPT_LIST:
        if (dataBytes !== 0) {
          fail(NBD_REP_ERR_INVALID, 'NBD_OPT_LIST carries no data');
          break;
        }
        for (const exp of exports.list()) reply(NBD_REP_SERVER, encodeServerEntry(exp.name));
        reply(NBD_REP_ACK);
        break;
      case NBD_OPT_INFO:
      case NBD_OPT_GO: {
        const request = parseInfoRequest(data);
        if (request === null) {
          fail(NBD_REP_ERR_INVALID, 'malformed NBD_OPT_INFO/GO data');
          break;
        }
        const exp = exports.find(request.name);
        if (exp === undefined) {
          fail(NBD_REP_ERR_UNKNOWN, `no export named ${JSON.stringify(request.name)}; NBD_OPT_LIST shows the exports`);
          break;
        }
        reply(NBD_REP_INFO, encodeInfoExport(exp.sizeBytes, transmissionFlags(exp, structuredReplies)));
        // Sent whether asked or not (proto.md allows it): the values are within the defaults
        // every client may assume, and tell clients the preferred (sector) size.
        reply(NBD_REP_INFO, encodeInfoBlockSize(MINIMUM_BLOCK_BYTES, exp.sectorSize, PAYLOAD_BYTES_MAX));
        if (request.infos.includes(NBD_INFO_NAME)) reply(NBD_REP_INFO, encodeInfoString(NBD_INFO_NAME, exp.name));
        if (request.infos.includes(NBD_INFO_DESCRIPTION)) reply(NBD_REP_INFO, encodeInfoString(NBD_INFO_DESCRIPTION, exp.description));
        reply(NBD_REP_ACK);
        if (option === NBD_OPT_GO) {
          return { export: exp, structuredReplies, allocationContext: allocationFor !== null && exports.find(allocationFor) === exp };
        }
        break;
      }
      case NBD_OPT_STARTTLS: {
        if (tls === null) {
          fail(NBD_REP_ERR_UNSUP, 'this server has no TLS set up (serveNbd option tls)');
          break;
        }
        if (inTls) {
          fail(NBD_REP_ERR_INVALID, 'TLS is already in use on this connection');
          break;
        }
        if (dataBytes !== 0) {
          fail(NBD_REP_ERR_INVALID, 'NBD_OPT_STARTTLS carries no data');
          break;
        }
        // Written before the handover, so it goes out in clear, as the client expects.
        await new Promise<void>((resolve) => socket.write(encodeOptionReply(option, NBD_REP_ACK), () => resolve()));
        ({ socket, reader } = await tls.upgrade());
        inTls = true;
        // Nothing negotiated in clear counts inside TLS (proto.md): start over.
        structuredReplies = false;
        allocationFor = null;
        break;
      }
      case NBD_OPT_STRUCTURED_REPLY:
        if (dataBytes !== 0) fail(NBD_REP_ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY carries no data');
        else if (structuredReplies) fail(NBD_REP_ERR_INVALID, 'structured replies are already negotiated');
        else {
          structuredReplies = true;
          reply(NBD_REP_ACK);
        }
        break;
      case NBD_OPT_LIST_META_CONTEXT:
      case NBD_OPT_SET_META_CONTEXT: {
        const setting = option === NBD_OPT_SET_META_CONTEXT;
        // SET replaces the selection even when it fails (proto.md).
        if (setting) allocationFor = null;
        const request = parseMetaContextRequest(data);
        if (request === null) {
          fail(NBD_REP_ERR_INVALID, 'malformed meta context request');
          break;
        }
        if (!structuredReplies) {
          fail(NBD_REP_ERR_INVALID, 'negotiate NBD_OPT_STRUCTURED_REPLY before metadata contexts');
          break;
        }
        if (request.queries.length > META_CONTEXT_QUERIES_MAX) {
          fail(NBD_REP_ERR_TOO_BIG, `at most ${META_CONTEXT_QUERIES_MAX} queries`);
          break;
        }
        const exp = exports.find(request.name);
        if (exp === undefined) {
          fail(NBD_REP_ERR_UNKNOWN, `no export named ${JSON.stringify(request.name)}`);
          break;
        }
        // base:allocation is the only context: LIST matches it with no query, `base:` (the
        // namespace wildcard) or its own name; SET only with its own name. Other queries, of
        // unknown namespaces or leaves, are ignored, as proto.md requires.
        const matches = setting
          ? request.queries.includes(BASE_ALLOCATION)
          : request.queries.length === 0 || request.queries.some((q) => q === 'base:' || q === BASE_ALLOCATION);
        if (matches) reply(NBD_REP_META_CONTEXT, encodeMetaContext(setting ? BASE_ALLOCATION_ID : 0, BASE_ALLOCATION));
        if (setting && matches) allocationFor = request.name;
        reply(NBD_REP_ACK);
        break;
      }
      default:
        // Also NBD_OPT_EXTENDED_HEADERS (not supported): the client goes on without it.
        fail(NBD_REP_ERR_UNSUP, `option ${option} is not supported by this server`);
    }
  }
  throw new ProtocolViolation(`more than ${OPTIONS_PER_CONNECTION_MAX} options without choosing an export`);
}

/** NBD_OPT_INFO / NBD_OPT_GO data: name length, name, count of info requests, the requests. */
function parseInfoRequest(data: Buffer): { name: string; infos: number[] } | null {
  if (data.length < 6) return null;
  const nameBytes = data.readUInt32BE(0);
  if (nameBytes > data.length - 6 || nameBytes > STRING_BYTES_MAX) return null;
  const name = data.toString('utf8', 4, 4 + nameBytes);
  const count = data.readUInt16BE(4 + nameBytes);
  if (data.length !== 4 + nameBytes + 2 + 2 * count) return null;
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(data.readUInt16BE(4 + nameBytes + 2 + 2 * i));
  return { name, infos };
}

/** LIST/SET_META_CONTEXT data: name length, name, count of queries, each (length, query). */
function parseMetaContextRequest(data: Buffer): { name: string; queries: string[] } | null {
  if (data.length < 8) return null;
  const nameBytes = data.readUInt32BE(0);
  if (nameBytes > data.length - 8 || nameBytes > STRING_BYTES_MAX) return null;
  const name = data.toString('utf8', 4, 4 + nameBytes);
  let at = 4 + nameBytes;
  const count = data.readUInt32BE(at);
  at += 4;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    if (at + 4 > data.length) return null;
    const queryBytes = data.readUInt32BE(at);
    at += 4;
    if (queryBytes > data.length - at || queryBytes > STRING_BYTES_MAX) return null;
    queries.push(data.toString('utf8', at, at + queryBytes));
    at += queryBytes;
  }
  if (at !== data.length) return null;
  return { name, queries };
}
