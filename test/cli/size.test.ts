import { describe, expect, it } from 'vitest';
import { formatBytes, formatDurationMs, parseDurationMs, parseSize, parseTimeMs } from '../../src/cli/size.js';
import { UsageError } from '../../src/cli/usage-error.js';

describe('parseSize', () => {
  it.each([
    ['4096', 4096],
    ['0', 0],
    ['512B', 512],
    ['64MiB', 64 * 1024 * 1024],
    ['64mib', 64 * 1024 * 1024],
    ['1.5GiB', 1.5 * 1024 ** 3],
    ['4 KiB', 4096],
    ['64MB', 64_000_000],
    ['1kB', 1000],
    ['2TiB', 2 * 1024 ** 4],
    ['0.5KiB', 512],
  ])('%s is %d bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each([
    ['', /is not a size/],
    ['-1MiB', /is not a size/],
    ['MiB', /is not a size/],
    ['1,5MiB', /is not a size/],
    ['64XB', /unknown unit "XB"/],
    ['64M', /did you mean MiB or MB/],
    ['1.1B', /not a whole number of bytes/],
    ['0.3KiB', /not a whole number of bytes/],
    ['9000TiB', /too large/],
  ])('%j is refused: %s', (text, message) => {
    expect(() => parseSize(text, '--size')).toThrow(UsageError);
    expect(() => parseSize(text, '--size')).toThrow(message);
  });

  it('names the option in its message', () => {
    expect(() => parseSize('lots', '--length')).toThrow(/^--length "lots"/);
  });
});

describe('durations and times', () => {
  it('parses units and refuses a bare number', () => {
    expect(parseDurationMs('90d')).toBe(90 * 86_400_000);
    expect(parseDurationMs('12h')).toBe(12 * 3_600_000);
    expect(parseDurationMs('1.5s')).toBe(1500);
    expect(parseDurationMs('250ms')).toBe(250);
    expect(() => parseDurationMs('90')).toThrow(/needs|not a duration/);
    expect(() => parseDurationMs('0.5ms')).toThrow(/whole number of milliseconds/);
  });

  it('reads ISO times and durations ago', () => {
    expect(parseTimeMs('2026-01-31T12:00:00Z', '--since')).toBe(Date.UTC(2026, 0, 31, 12));
    expect(parseTimeMs('2h', '--since', 10_000_000)).toBe(10_000_000 - 7_200_000);
    expect(() => parseTimeMs('yesterday', '--since')).toThrow(/ISO 8601/);
  });

  it('formats for people', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(64 * 1024 * 1024)).toBe('64 MiB');
    expect(formatBytes(1536)).toBe('1.50 KiB');
    expect(formatDurationMs(65_000)).toBe('1m05s');
    expect(formatDurationMs(NaN)).toBe('-');
  });
});
