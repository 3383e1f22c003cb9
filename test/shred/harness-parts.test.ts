/**
 * The stress harness's own parts, so that its zeros mean something: the ledger classifies
 * operations against the lock timeline (and does count a violation), the at-rest scan finds a
 * needle anywhere in a file (also across its read-chunk boundary), the markers check reads, and
 * the PRNG replays.
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BlockvaultError } from '../../src/errors.js';
import { OpLedger } from '../../src/shred/ledger.js';
import { firstForeignChunk, markerPattern, runNeedle } from '../../src/shred/markers.js';
import { Prng } from '../../src/shred/prng.js';
import { scanForNeedles } from '../../src/shred/scan.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

afterAll(() => removeTempDirs());

const locked = new BlockvaultError('VOLUME_LOCKED', 'locked');
const timeline = { deleteCalledAt: 100, lockEffectiveAt: 110, lockSettledAt: 111, lockDoneAt: 150, deleteReturnedAt: 151 };

describe('OpLedger', () => {
  it('classifies operations against the lock timeline', () => {
    const ledger = new OpLedger();
    ledger.succeeded('write', 1, 50, 16);
    ledger.succeeded('read', 2, 60, 32);
    ledger.markDeleteCalled(100);
    ledger.succeeded('write', 90, 105, 16); // before the lock, in the delete's window
    ledger.succeeded('read', 109, 110.5, 16); // decided before the lock, seen a microtask after it: allowed
    ledger.failed('write', locked, 120);
    ledger.failed('read', locked, 121);
    ledger.failed('read', new BlockvaultError('KEY_DESTROYED', 'gone'), 122);
    const s = ledger.summarize(timeline);
    expect(s).toMatchObject({
      writesAcknowledgedBeforeLock: 2,
      readsReturnedDataBeforeLock: 2,
      writesAcknowledgedAfterLock: 0,
      readsReturningDataAfterLock: 0,
      readsStartedAfterLockReturningData: 0,
      opsResolvedInLockWindow: 1,
      writesRejectedAfterLock: { VOLUME_LOCKED: 1 },
      readsRejectedAfterLock: { VOLUME_LOCKED: 1, KEY_DESTROYED: 1 },
      unexpectedErrors: 0,
    });
  });

  it('counts data after the lock, successes started after it, and errors that are not the shred codes', () => {
    const ledger = new OpLedger();
    ledger.failed('read', locked, 50); // locked before any delete: unexpected
    ledger.markDeleteCalled(100);
    ledger.succeeded('read', 105, 112, 16); // resolved after the lock settled
    ledger.succeeded('read', 110, 110.5, 16); // started after the lock took effect
    ledger.succeeded('write', 140, 200, 16);
    ledger.failed('write', new BlockvaultError('OUT_OF_RANGE', 'bad'), 130);
    ledger.failed('open', locked, 130); // opening works in every state: a refusal is unexpected
    ledger.hung();
    const s = ledger.summarize(timeline);
    expect(s.readsReturningDataAfterLock).toBe(1);
    expect(s.readsStartedAfterLockReturningData).toBe(1);
    expect(s.writesAcknowledgedAfterLock).toBe(1);
    expect(s.writesStartedAfterLockAcknowledged).toBe(1);
    expect(s.unexpectedErrors).toBe(3);
    expect(s.unexpectedErrorExamples.map((e) => e.code)).toEqual(['VOLUME_LOCKED', 'OUT_OF_RANGE', 'VOLUME_LOCKED']);
    expect(s.hangs).toBe(1);
  });
});

describe('at-rest scan and markers', () => {
  it('finds every needle, also across the scan chunk boundary and in nested directories', () => {
    const dir = makeTempDir('bv-scan-');
    mkdirSync(join(dir, 'nested'));
    const needle = runNeedle(7);
    const big = Buffer.alloc(4 * 1024 * 1024 + 64);
    needle.copy(big, 4 * 1024 * 1024 - 5); // straddles the 4 MiB read boundary
    needle.copy(big, 10);
    writeFileSync(join(dir, 'big.bin'), big);
    writeFileSync(join(dir, 'nested', 'small.bin'), Buffer.concat([Buffer.from('xx'), markerPattern(7, 3, 32)]));
    writeFileSync(join(dir, 'clean.bin'), markerPattern(8, 3, 64)); // another seed's markers
    const result = scanForNeedles(dir, [needle]);
    expect(result.files).toBe(3);
    expect(result.hits).toBe(4);
    expect(result.examples.map((e) => [e.file, e.offset])).toEqual([
      ['big.bin', 10],
      ['big.bin', 4 * 1024 * 1024 - 5],
      [join('nested', 'small.bin'), 2],
      [join('nested', 'small.bin'), 18],
    ]);
  });

  it('markers: reads are zeros or this run markers, 16-byte aligned', () => {
    const needle = runNeedle(5);
    const data = Buffer.concat([markerPattern(5, 1, 32), Buffer.alloc(16), markerPattern(5, 9, 16)]);
    expect(firstForeignChunk(data, needle)).toBe(-1);
    expect(firstForeignChunk(Buffer.concat([data, markerPattern(6, 1, 16)]), needle)).toBe(64);
    const torn = Buffer.from(data);
    torn[40] = 1;
    expect(firstForeignChunk(torn, needle)).toBe(32);
    expect(() => markerPattern(5, 1, 20)).toThrow(RangeError);
  });

  it('the PRNG replays per seed and stream', () => {
    const a = Prng.derive(42, 3);
    const b = Prng.derive(42, 3);
    const c = Prng.derive(42, 4);
    const seqA = Array.from({ length: 5 }, () => a.int(0, 1_000_000));
    expect(Array.from({ length: 5 }, () => b.int(0, 1_000_000))).toEqual(seqA);
    expect(Array.from({ length: 5 }, () => c.int(0, 1_000_000))).not.toEqual(seqA);
  });
});
