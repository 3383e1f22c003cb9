/**
 * Time comes from an injectable clock so that retention (9-day soft delete), rotation policies
 * and import-token expiry can be tested without waiting. Milliseconds since the Unix epoch.
 */
export interface Clock {
  nowMs(): number;
}

export const systemClock: Clock = { nowMs: () => Date.now() };

/** A clock for tests: starts at `startMs` and moves only when told to. */
export class ManualClock implements Clock {
  private currentMs: number;

  constructor(startMs: number = Date.UTC(2026, 0, 1)) {
    this.currentMs = startMs;
  }

  nowMs(): number {
    return this.currentMs;
  }

  advanceMs(deltaMs: number): void {
    if (!Number.isFinite(deltaMs) || deltaMs < 0) throw new RangeError(`deltaMs must be a finite number >= 0, got ${deltaMs}`);
    this.currentMs += deltaMs;
  }

  setMs(nowMs: number): void {
    this.currentMs = nowMs;
  }
}

export const MS_PER_HOUR = 3_600_000;
export const MS_PER_DAY = 24 * MS_PER_HOUR;
