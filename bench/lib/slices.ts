/**
 * Alternating slices, shared by the benchmarks that compare blockvault with a raw store on the same
 * data in the same run (bench/volume.bench.ts, bench/lib/volume-rados.ts): the two sides run in
 * short slices whose order flips each slice, so both see the same background load.
 */

export interface Pair {
  api: number;
  raw: number;
  /** raw/api time of each slice: the per-slice ratios, sorted. */
  sliceRatios: number[];
}

/** The q-quantile of sorted values (linear interpolation). */
export function quantile(sorted: number[], q: number): number {
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}

/** Run `count` operations with at most `inFlight` outstanding. */
export async function pump(count: number, inFlight: number, op: (i: number) => Promise<unknown>): Promise<void> {
  const pending = new Set<Promise<unknown>>();
  for (let i = 0; i < count; i++) {
    const p: Promise<unknown> = op(i).then(() => pending.delete(p));
    pending.add(p);
    if (pending.size >= inFlight) await Promise.race(pending);
  }
  await Promise.all(pending);
}

export async function timed(run: () => Promise<void>): Promise<number> {
  const start = performance.now();
  await run();
  return performance.now() - start;
}

/**
 * Alternate raw and api for `slices` slices (the order flips each slice); summed milliseconds of
 * each. `beforeApi` runs before each api slice, untimed.
 */
export async function alternate(
  slices: number,
  raw: (slice: number) => Promise<void>,
  api: (slice: number) => Promise<void>,
  beforeApi?: (slice: number) => Promise<void>,
): Promise<Pair> {
  const total: Pair = { api: 0, raw: 0, sliceRatios: [] };
  for (let slice = 0; slice < slices; slice++) {
    let rawMs: number;
    let apiMs: number;
    await beforeApi?.(slice);
    if (slice % 2 === 0) {
      rawMs = await timed(() => raw(slice));
      apiMs = await timed(() => api(slice));
    } else {
      apiMs = await timed(() => api(slice));
      rawMs = await timed(() => raw(slice));
    }
    total.raw += rawMs;
    total.api += apiMs;
    total.sliceRatios.push(rawMs / apiMs);
  }
  total.sliceRatios.sort((a, b) => a - b);
  return total;
}

/**
 * The api/raw throughput ratio: the median over slices of raw time / api time. A load spike from
 * another process hits one slice of one side; the median of pairs shrugs it off, a ratio of sums
 * does not.
 */
export function ratioOf(pair: Pair): { ratio: number; p25: number; p75: number } {
  return { ratio: quantile(pair.sliceRatios, 0.5), p25: quantile(pair.sliceRatios, 0.25), p75: quantile(pair.sliceRatios, 0.75) };
}
