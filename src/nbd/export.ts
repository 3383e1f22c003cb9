/**
 * What the NBD server exports: an open volume under a name, writable or not. Every connection to
 * an export shares its one Volume handle (and so the volume's one core), which is what makes
 * NBD_FLAG_CAN_MULTI_CONN true: a FLUSH or FUA write on any connection covers the writes every
 * connection had answered before it.
 */
import type { Volume } from '../volume/volume.js';
import {
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
} from './protocol.js';

/** The slice of Volume the server uses (so tests can stand in a model). */
export type NbdVolume = Pick<Volume, 'read' | 'write' | 'trim' | 'flush' | 'writeZeroes' | 'allocationMap' | 'info'>;

export interface NbdExport {
  /** The export name clients ask for (proto.md: at most 4096 bytes of UTF-8). */
  readonly name: string;
  readonly volume: NbdVolume;
  readonly readOnly: boolean;
  /** Answer writes at their commit, not once applied (the write-back default; see serve.ts). */
  readonly writeThrough: boolean;
  readonly sizeBytes: number;
  /** Advertised as the preferred block size: I/O aligned to it needs no read-modify-write. */
  readonly sectorSize: number;
  /** Shown by NBD_INFO_DESCRIPTION and NBD_OPT_LIST clients (nbdinfo prints it). */
  readonly description: string;
}

/** The export's transmission flags; DF only once structured replies were negotiated (proto.md). */
export function transmissionFlags(exp: NbdExport, structuredReplies: boolean): number {
  let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_CAN_MULTI_CONN;
  if (structuredReplies) flags |= NBD_FLAG_SEND_DF;
  if (exp.readOnly) flags |= NBD_FLAG_READ_ONLY;
  return flags;
}

/** Exports by name; the empty name (proto.md's default export) picks the only export, if there is one. */
export class ExportTable {
  readonly #byName = new Map<string, NbdExport>();

  constructor(exports: readonly NbdExport[]) {
    for (const exp of exports) this.#byName.set(exp.name, exp);
  }

  find(name: string): NbdExport | undefined {
    if (name === '' && this.#byName.size === 1) return this.#byName.values().next().value;
    return this.#byName.get(name);
  }

  list(): NbdExport[] {
    return [...this.#byName.values()];
  }
}
