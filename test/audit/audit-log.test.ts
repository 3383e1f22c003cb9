import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, AUDIT_DB_NAME, canonicalJson, hashAuditRecord, type AuditRecord } from '../../src/audit/index.js';
import { ManualClock } from '../../src/clock.js';
import { isBlockvaultError } from '../../src/errors.js';

let dir: string;
let root: RootDatabase;
let clock: ManualClock;

const KEY_A = 'crn:v1:local:private:blockvault-hsm:local:a/default:i1:key:a';
const KEY_B = 'crn:v1:local:private:blockvault-hsm:local:a/default:i1:key:b';

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'bv-audit-'));
  root = open({ path: join(dir, 'engine.lmdb') });
  clock = new ManualClock(Date.UTC(2026, 0, 1));
});

afterEach(async () => {
  await root.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Direct access to the stored records, as an attacker with the file would have. */
function rawDb() {
  return root.openDB<AuditRecord | { seq: number; hash: string }, number | string>(AUDIT_DB_NAME, { encoding: 'json' });
}

async function fill(log: AuditLog, count: number): Promise<void> {
  for (let i = 0; i < count; i += 1) {
    clock.advanceMs(1000);
    await log.append({ action: i % 2 === 0 ? 'hs-crypto.secrets.wrap' : 'hs-crypto.secrets.unwrap', initiator: `user-${i}`, keyCrn: i % 3 === 0 ? KEY_A : KEY_B, details: { i } });
  }
}

describe('canonical JSON', () => {
  it('sorts keys at every depth and drops undefined members', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: undefined } })).toBe('{"a":{"d":[1,{"y":2,"z":1}]},"b":1}');
    expect(() => canonicalJson({ x: Number.NaN })).toThrow(TypeError);
  });
});

describe('AuditLog', () => {
  it('appends with dense sequence numbers, clock time, defaults, and a hash chain', async () => {
    const log = await AuditLog.open({ root, clock });
    const first = await log.append({ action: 'hs-crypto.secrets.create', keyCrn: KEY_A, initiator: 'alice' });
    clock.advanceMs(5);
    const second = await log.append({ action: 'blockvault.rotation.start', outcome: 'failure', code: 'KEY_STATE', reason: 'Suspended' });
    expect(first).toMatchObject({ seq: 1, timeMs: Date.UTC(2026, 0, 1), action: 'hs-crypto.secrets.create', initiator: 'alice', outcome: 'success', reason: null, keyCrn: KEY_A });
    expect(first.prevHash).toBe('0'.repeat(64));
    expect(second).toMatchObject({ seq: 2, initiator: 'system', outcome: 'failure', code: 'KEY_STATE', reason: 'Suspended' });
    expect(second.prevHash).toBe(first.hash);
    expect(hashAuditRecord(second)).toBe(second.hash);
    expect(log.verify()).toEqual({ ok: true, count: 2, headHash: second.hash });
  });

  it('numbers concurrent appends in call order', async () => {
    const log = await AuditLog.open({ root, clock });
    const records = await Promise.all(Array.from({ length: 50 }, (_, i) => log.append({ action: 'x.y', details: { i } })));
    expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(log.verify().ok).toBe(true);
  });

  it('refuses malformed events with INVALID_ARGUMENT and accepts any well-formed action', async () => {
    const log = await AuditLog.open({ root, clock });
    for (const bad of [{ action: '' }, { action: 'has space' }, { action: 'x', outcome: 'maybe' }, { action: 'x', details: [1] }, { action: 'x', initiator: 5 }]) {
      await expect(async () => log.append(bad as never)).rejects.toSatisfy((e) => isBlockvaultError(e, 'INVALID_ARGUMENT'));
    }
    await log.append({ action: 'blockvault.volume.create' });
    expect(log.verify()).toMatchObject({ ok: true, count: 1 });
  });

  it('lists by action, key, time range, outcome, with limit, order and paging', async () => {
    const log = await AuditLog.open({ root, clock });
    const t0 = clock.nowMs();
    await fill(log, 12);
    expect(log.list().length).toBe(12);
    expect(log.list({ action: 'hs-crypto.secrets.wrap' }).map((r) => r.details.i)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(log.list({ keyCrn: KEY_A }).map((r) => r.details.i)).toEqual([0, 3, 6, 9]);
    expect(log.list({ sinceMs: t0 + 3000, untilMs: t0 + 6000 }).map((r) => r.details.i)).toEqual([2, 3, 4]);
    expect(log.list({ limit: 2, order: 'desc' }).map((r) => r.seq)).toEqual([12, 11]);
    expect(log.list({ afterSeq: 10 }).map((r) => r.seq)).toEqual([11, 12]);
    expect(log.list({ action: 'hs-crypto.secrets.wrap', keyCrn: KEY_A }).map((r) => r.details.i)).toEqual([0, 6]);
    expect(log.list({ outcome: 'failure' })).toEqual([]);
    expect(() => log.list({ limit: 0 })).toThrow(/limit/);
    expect(() => log.list({ order: 'up' as never })).toThrow(/order/);
  });

  it('persists across reopen and continues the chain', async () => {
    let log = await AuditLog.open({ root, clock });
    await fill(log, 3);
    await root.close();
    root = open({ path: join(dir, 'engine.lmdb') });
    log = await AuditLog.open({ root, clock });
    expect(log.headInfo().seq).toBe(3);
    const next = await log.append({ action: 'after.reopen' });
    expect(next.seq).toBe(4);
    expect(log.verify()).toMatchObject({ ok: true, count: 4 });
  });

  describe('tamper detection', () => {
    it('an edited field breaks verify at that record', async () => {
      const log = await AuditLog.open({ root, clock });
      await fill(log, 8);
      const db = rawDb();
      const record = db.get(5) as AuditRecord;
      await db.put(5, { ...record, initiator: 'mallory' });
      expect(log.verify()).toMatchObject({ ok: false, firstBadSeq: 5, count: 4 });
      expect(log.verify().reason).toMatch(/record 5 was edited/);
    });

    it('an edit with a recomputed hash breaks the link to the next record', async () => {
      const log = await AuditLog.open({ root, clock });
      await fill(log, 8);
      const db = rawDb();
      const record = db.get(5) as AuditRecord;
      const forged = { ...record, outcome: 'failure' as const, reason: 'forged' };
      await db.put(5, { ...forged, hash: hashAuditRecord(forged) });
      const result = log.verify();
      expect(result).toMatchObject({ ok: false, firstBadSeq: 6 });
      expect(result.reason).toMatch(/does not link to record 5/);
    });

    it('a dropped record is named', async () => {
      const log = await AuditLog.open({ root, clock });
      await fill(log, 8);
      await rawDb().remove(4);
      expect(log.verify()).toMatchObject({ ok: false, firstBadSeq: 4, count: 3 });
      expect(log.verify().reason).toMatch(/record 4 is missing/);
    });

    it('two swapped records are caught at the first of them, renumbered or not', async () => {
      const log = await AuditLog.open({ root, clock });
      await fill(log, 8);
      const db = rawDb();
      const three = db.get(3) as AuditRecord;
      const six = db.get(6) as AuditRecord;
      await db.put(3, six);
      await db.put(6, three);
      expect(log.verify()).toMatchObject({ ok: false, firstBadSeq: 3 });
      await db.put(3, { ...six, seq: 3 });
      await db.put(6, { ...three, seq: 6 });
      expect(log.verify()).toMatchObject({ ok: false, firstBadSeq: 3 });
    });

    it('dropping the newest records is caught through the stored head', async () => {
      const log = await AuditLog.open({ root, clock });
      await fill(log, 8);
      const db = rawDb();
      await db.remove(8);
      await db.remove(7);
      expect(log.verify()).toMatchObject({ ok: false, firstBadSeq: 7, count: 6 });
      // Appending after the truncation keeps the gap visible instead of papering over it.
      await log.append({ action: 'after.truncation' });
      expect(log.verify()).toMatchObject({ ok: false, firstBadSeq: 7 });
    });
  });

  it('refuses use after close with ENGINE_CLOSED', async () => {
    const log = await AuditLog.open({ root, clock });
    log.close();
    expect(() => log.list()).toThrow(expect.objectContaining({ code: 'ENGINE_CLOSED' }));
    expect(() => log.append({ action: 'x' })).toThrow(expect.objectContaining({ code: 'ENGINE_CLOSED' }));
  });
});
