/**
 * A token bucket in bytes for the rotation bandwidth cap, so that re-encryption leaves the disk to
 * foreground I/O. A batch reserves its bytes up front and waits off any debt; the bucket holds at
 * most `burstBytes`, so an idle spell does not turn into a burst later.
 */
export class TokenBucket {
  private tokens: number;
  private lastMs: number;

  constructor(
    private readonly bytesPerSecond: number,
    private readonly burstBytes: number,
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    if (!(bytesPerSecond > 0) || !Number.isFinite(bytesPerSecond)) throw new RangeError(`bytesPerSecond must be > 0, got ${bytesPerSecond}`);
    if (!(burstBytes > 0)) throw new RangeError(`burstBytes must be > 0, got ${burstBytes}`);
    this.tokens = burstBytes;
    this.lastMs = nowMs();
  }

  /** Take `bytes`; returns how long to wait before using them (0 when they were available). */
  reserve(bytes: number): number {
    const now = this.nowMs();
    this.tokens = Math.min(this.burstBytes, this.tokens + ((now - this.lastMs) * this.bytesPerSecond) / 1000);
    this.lastMs = now;
    this.tokens -= bytes;
    return this.tokens >= 0 ? 0 : (-this.tokens * 1000) / this.bytesPerSecond;
  }
}
