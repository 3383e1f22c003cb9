/**
 * Raw librados puts and gets from Node: the baseline the RADOS volume benchmark (issue 16,
 * `bench:volume -- --store rados`) is to compare against, and the yardstick for the object
 * layer's own cost (src/store/rados) in bench/rados.bench.ts.
 *
 * "Raw" is the addon's librados binding called directly (native/src/rados: one aio
 * write_full or read per object, completions on librados' threads), with no validation, no
 * queue and no error mapping; the object layer runs the same operations through RadosPool.
 * Both are driven the same way: `inFlight` loops, each awaiting one operation before issuing its
 * next, over `objectCount` objects of `objectBytes` (a put slice writes every object once, a get
 * slice reads every object once, in the same shuffled order).
 */
import { radosBinding, type NativeRadosClient, type NativeRadosPool } from '../../src/store/rados/binding.js';
import type { RadosPool } from '../../src/store/rados/index.js';

/** What a slice drives: put and get of whole objects. */
export interface ObjectTarget {
  readonly name: string;
  put(oid: string, data: Buffer): Promise<void>;
  get(oid: string, length: number): Promise<Buffer>;
}

export interface RawRados {
  target: ObjectTarget;
  close(): Promise<void>;
}

/** A connection of its own through the binding, as no layer of blockvault would make it. */
export async function openRawRados(options: { confPath: string; pool: string; user?: string; timeoutMs?: number; opsInFlightMax: number }): Promise<RawRados> {
  const binding = radosBinding();
  const client: NativeRadosClient = new binding.RadosClient();
  const connected = await client.connect({ confPath: options.confPath, clientName: `client.${options.user ?? 'admin'}`, timeoutMs: options.timeoutMs ?? 30_000 });
  if (connected.rc < 0) throw new Error(`raw librados connect: ${connected.step ?? ''} rc ${connected.rc}`);
  const pool: NativeRadosPool = new binding.RadosPool(client, options.pool, options.opsInFlightMax);
  const opened = await pool.open();
  if (opened < 0) throw new Error(`raw librados open pool ${options.pool}: rc ${opened}`);
  return {
    target: {
      name: 'raw librados',
      put: async (oid, data) => {
        const { rc } = await pool.writeFull(oid, data);
        if (rc < 0) throw new Error(`raw write_full ${oid}: rc ${rc}`);
      },
      get: async (oid, length) => {
        const reply = await pool.read(oid, 0, length);
        if (reply.rc < 0 || reply.data == null) throw new Error(`raw read ${oid}: rc ${reply.rc}`);
        return reply.data;
      },
    },
    close: async () => {
      await pool.close();
      await client.close();
    },
  };
}

/** The object layer as a target: RadosPool.writeFull and read with a length. */
export function objectLayerTarget(pool: RadosPool): ObjectTarget {
  return {
    name: 'object layer',
    put: (oid, data) => pool.writeFull(oid, data),
    get: async (oid, length) => {
      const data = await pool.read(oid, 0, length);
      if (data === null) throw new Error(`object layer read ${oid}: missing`);
      return data;
    },
  };
}

export interface ObjectCase {
  /** e.g. `4 KiB`. */
  label: string;
  objectBytes: number;
  objectCount: number;
  inFlight: number;
}

export interface SliceTiming {
  bytes: number;
  ms: number;
}

function oidOf(c: ObjectCase, index: number): string {
  return `bench-${c.objectBytes}-${index}`;
}

/** Runs `count` operations from `inFlight` loops. */
async function drive(count: number, inFlight: number, op: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(inFlight, count) }, async () => {
      while (next < count) await op(next++);
    }),
  );
}

/** A deterministic shuffle (xorshift32), so both targets visit the objects in the same order. */
export function shuffledIndexes(count: number, seed: number): number[] {
  const order = Array.from({ length: count }, (_, i) => i);
  let x = seed >>> 0 || 1;
  for (let i = count - 1; i > 0; i--) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const j = (x >>> 0) % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/** One put slice: every object of the case written once (the data is `objectBytes` of `fill`). */
export async function putSlice(target: ObjectTarget, c: ObjectCase, order: readonly number[], fill: number): Promise<SliceTiming> {
  const data = Buffer.alloc(c.objectBytes, fill);
  const started = performance.now();
  await drive(order.length, c.inFlight, (i) => target.put(oidOf(c, order[i]!), data));
  return { bytes: order.length * c.objectBytes, ms: performance.now() - started };
}

/** One get slice: every object read once; checks each is whole and holds `fill`. */
export async function getSlice(target: ObjectTarget, c: ObjectCase, order: readonly number[], fill: number): Promise<SliceTiming> {
  const started = performance.now();
  await drive(order.length, c.inFlight, async (i) => {
    const data = await target.get(oidOf(c, order[i]!), c.objectBytes);
    if (data.length !== c.objectBytes || data[0] !== fill || data[data.length - 1] !== fill) throw new Error(`${target.name}: object ${oidOf(c, order[i]!)} read back wrong`);
  });
  return { bytes: order.length * c.objectBytes, ms: performance.now() - started };
}

export function megabytesPerSecondOf(timings: readonly SliceTiming[]): number {
  const bytes = timings.reduce((sum, t) => sum + t.bytes, 0);
  const ms = timings.reduce((sum, t) => sum + t.ms, 0);
  return bytes / 1e6 / (ms / 1000);
}
