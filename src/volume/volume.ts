/**
 * The public handle of an open volume. Validates every argument at the boundary (DESIGN.md:
 * "validate at the boundary, once, with typed errors") and hands the work to the shared
 * VolumeCore. Several handles on one volume share one core; the data keys are wiped when the last
 * handle closes.
 */
import { BlockvaultError } from '../errors.js';
import type { VolumeInfo } from './record.js';
import type { AllocationExtent, VolumeCore } from './volume-core.js';

export type { AllocationExtent };

/** Options of the calls that change data. */
export interface WriteOptions {
  /**
   * Resolve only once the change is durable against power loss, as if flush() had been awaited
   * after it (a disk's forced unit access, NBD's FUA flag).
   */
  durable?: boolean;
  /**
   * Resolve once the change is applied (every later read of this volume sees it) instead of once
   * it has committed: a write-back cache in front of LMDB, for servers that offer one with a
   * flush (the NBD server). A flush() called afterwards makes it durable. Should its commit fail,
   * the change is lost and that flush and every later one reject with WRITE_LOST. Ignored with
   * `durable`.
   */
  writeBack?: boolean;
}

/** Whether a change resolves once applied: write-back asked for, and not durable (which waits anyway). */
function writesBack(options: WriteOptions | undefined): boolean {
  return options?.writeBack === true && options.durable !== true;
}

export interface WriteZeroesOptions extends WriteOptions {
  /**
   * Keep the range stored (written as encrypted zeros) instead of making whole sectors holes:
   * NBD's NO_HOLE flag. Default false: the range is trimmed, which reads as zeros too.
   */
  allocate?: boolean;
}

/** Stored clusters allocationMap visits per call; a larger range gets a shorter answer (see there). */
export const ALLOCATION_CLUSTERS_MAX = 65_536;
/**
 * writeZeroes with allocate writes this many zero bytes per call, all from one shared buffer of
 * zeros (the cipher never changes its input), so zeroing a large range allocates no more.
 */
const ZERO_CHUNK_BYTES = 4 * 1024 * 1024;
let zeroChunk: Buffer | null = null;

/** What a handle needs from its engine. */
export interface VolumeHost {
  /** Current metadata (also after a purge: the last record known). */
  infoOf(volumeId: string): VolumeInfo;
  /** Refusal if the engine is closed, else null. */
  engineError(): BlockvaultError | null;
  release(core: VolumeCore): Promise<void>;
}

export class Volume {
  readonly #core: VolumeCore;
  readonly #host: VolumeHost;
  readonly #sizeBytes: number;
  #closed = false;

  /** @internal Created by Engine.createVolume / Engine.openVolume. */
  constructor(core: VolumeCore, host: VolumeHost) {
    this.#core = core;
    this.#host = host;
    this.#sizeBytes = core.record.sizeBytes;
  }

  get id(): string {
    return this.#core.id;
  }

  /** Metadata, in every state (also after close). */
  info(): VolumeInfo {
    return this.#host.infoOf(this.#core.id);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes [offset, offset + length); unwritten and trimmed ranges read as zeros. */
  read(offset: number, length: number): Promise<Uint8Array> {
    // Fast path for valid calls (no closures: reads are small and many). Anything else takes the
    // checked path below, which gives the typed error.
    if (this.#usableFor(offset, length)) return this.#core.read(offset, length).catch(this.#nameVolume);
    return this.#guard(() => {
      this.#checkRange('read', offset, length);
      return this.#core.read(offset, length);
    });
  }

  /**
   * Write `data` at `offset`. Resolves when the write has committed (with `writeBack`, once it is
   * applied); call flush() to make it durable against power loss. Writes that overlap take effect
   * in call order.
   */
  write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    if (options?.durable === true) return this.write(offset, data).then(() => this.flush());
    const writeBack = writesBack(options);
    // Fast path for valid calls, as in read(); anything else gets its typed error below.
    if (data instanceof Uint8Array && !(data.buffer instanceof SharedArrayBuffer) && this.#usableFor(offset, data.length)) {
      return this.#core.write(offset, data, writeBack).catch(this.#nameVolume);
    }
    return this.#guard(() => {
      if (!(data instanceof Uint8Array)) {
        throw new BlockvaultError('INVALID_ARGUMENT', 'write(offset, data): data must be a Uint8Array or Buffer');
      }
      // Another thread could change shared memory while it is encrypted (the cipher refuses it
      // too, but only for whole sectors and with an untyped TypeError).
      if (data.buffer instanceof SharedArrayBuffer) {
        throw new BlockvaultError('INVALID_ARGUMENT', 'write(offset, data): data must not be a view of a SharedArrayBuffer (another thread could change it during the write); copy it into a Buffer first');
      }
      this.#checkRange('write', offset, data.length);
      return this.#core.write(offset, data, writeBack);
    });
  }

  /** Discard [offset, offset + length): it reads as zeros and whole sectors take no space. */
  trim(offset: number, length: number, options?: WriteOptions): Promise<void> {
    const done = this.#guard(() => {
      this.#checkRange('trim', offset, length);
      return this.#core.trim(offset, length, writesBack(options));
    });
    return options?.durable === true ? done.then(() => this.flush()) : done;
  }

  /**
   * Make [offset, offset + length) read as zeros. By default whole sectors become holes (as
   * trim); with `{ allocate: true }` they stay stored, as encrypted zeros.
   */
  writeZeroes(offset: number, length: number, options?: WriteZeroesOptions): Promise<void> {
    if (options?.allocate !== true) return this.trim(offset, length, options);
    const done = this.#guard(async () => {
      this.#checkRange('writeZeroes', offset, length);
      zeroChunk ??= Buffer.alloc(ZERO_CHUNK_BYTES);
      // Chunks are issued together (the volume's queue keeps their order and its write budget
      // bounds what is buffered); each is one cipher batch.
      const writeBack = writesBack(options);
      const writes: Promise<void>[] = [];
      for (let at = offset; at < offset + length; at += ZERO_CHUNK_BYTES) {
        writes.push(this.#core.write(at, zeroChunk.subarray(0, Math.min(ZERO_CHUNK_BYTES, offset + length - at)), writeBack));
      }
      if (writes.length === 0) writes.push(this.#core.write(offset, new Uint8Array(0)));
      await Promise.all(writes);
    });
    return options.durable === true ? done.then(() => this.flush()) : done;
  }

  /**
   * Which parts of [offset, offset + length) are stored and which are holes (unwritten or
   * trimmed: they read as zeros), as consecutive extents from `offset`. A range with more than
   * ALLOCATION_CLUSTERS_MAX stored clusters gets extents that end early; ask again from there.
   */
  allocationMap(offset: number, length: number): Promise<AllocationExtent[]> {
    return this.#guard(() => {
      this.#checkRange('allocationMap', offset, length);
      return this.#core.allocation(offset, length, ALLOCATION_CLUSTERS_MAX);
    });
  }

  /** Everything acknowledged before this call is durable when it resolves. */
  flush(): Promise<void> {
    return this.#guard(() => this.#core.flush());
  }

  /** Release the handle; the data keys are zeroized when the volume's last handle closes. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#host.release(this.#core);
  }

  #guard<T>(run: () => Promise<T>): Promise<T> {
    try {
      if (this.#closed) {
        throw new BlockvaultError('VOLUME_CLOSED', `this handle on volume ${this.#core.id} is closed; open it again with engine.openVolume`);
      }
      const engineError = this.#host.engineError();
      if (engineError !== null) throw engineError;
      return run().catch(this.#nameVolume);
    } catch (error) {
      return Promise.reject(this.#named(error));
    }
  }

  /**
   * The stores report corruption by place only (they do not know volumes); the handle adds which
   * volume, so the caller's error says what to restore.
   */
  readonly #nameVolume = (error: unknown): never => {
    throw this.#named(error);
  };

  #named(error: unknown): unknown {
    if (!(error instanceof BlockvaultError) || error.code !== 'VOLUME_CORRUPT' || error.details?.volumeId !== undefined) return error;
    const { id, name } = this.#core.record;
    return new BlockvaultError('VOLUME_CORRUPT', `volume ${name} (${id}): ${error.message}`, { ...error.details, volumeId: id, volumeName: name }, { cause: error });
  }

  /**
   * True when the handle and engine are open and [offset, offset + length) is a valid range: the
   * fast paths' test, without closures. False sends the call to the checked path for its error.
   */
  #usableFor(offset: unknown, length: unknown): boolean {
    return (
      !this.#closed &&
      typeof offset === 'number' &&
      typeof length === 'number' &&
      Number.isSafeInteger(offset) &&
      Number.isSafeInteger(length) &&
      offset >= 0 &&
      length >= 0 &&
      offset <= this.#sizeBytes &&
      length <= this.#sizeBytes - offset &&
      this.#host.engineError() === null
    );
  }

  #checkRange(operation: string, offset: number, length: number): void {
    const size = this.#sizeBytes;
    const fail = (why: string): never => {
      throw new BlockvaultError('OUT_OF_RANGE', `${operation}(${String(offset)}, ${String(length)}): ${why}; the volume has ${size} bytes`, {
        offset,
        length,
        sizeBytes: size,
      });
    };
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset)) fail('the offset must be an integer');
    if (typeof length !== 'number' || !Number.isSafeInteger(length)) fail('the length must be an integer');
    if (offset < 0) fail('the offset is negative');
    if (length < 0) fail('the length is negative');
    if (offset > size || length > size - offset) fail('the range ends past the end of the volume');
  }
}
