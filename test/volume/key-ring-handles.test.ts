/**
 * KeyRing with a keyed factory: each data key gets a prepared cipher handle, wiped wherever the
 * key itself is zeroized (replace, delete, wipe, shred); a shredded ring makes no handle.
 */
import { describe, expect, it } from 'vitest';
import { XtsCipher } from '../../src/cipher/index.js';
import { BlockvaultError } from '../../src/errors.js';
import { KeyRing, generateDataKey } from '../../src/volume/data-key.js';

describe.each(['native', 'ts'] as const)('KeyRing handles (%s cipher)', (backend) => {
  const cipher = XtsCipher.create({ backend });
  const ring = () => new KeyRing((key) => cipher.keyed(key));

  it('a handle per generation, giving the plain cipher bytes', () => {
    const keys = ring();
    const key = generateDataKey();
    const copy = Buffer.from(key);
    keys.set(3, key);
    const data = Buffer.alloc(4096, 9);
    const a = Buffer.alloc(4096);
    const b = Buffer.alloc(4096);
    keys.handle(3)!.encryptSectorsInto(77, 4096, data, a);
    cipher.encryptSectorsInto(copy, 77, 4096, data, b);
    expect(a.equals(b)).toBe(true);
    expect(keys.handle(4)).toBeUndefined();
  });

  it('wipes the handle with its key: replace, delete, wipe, shred', () => {
    const keys = ring();
    keys.set(1, generateDataKey());
    const first = keys.handle(1) as ReturnType<XtsCipher['keyed']>;
    keys.set(1, generateDataKey());
    expect(first.wiped).toBe(true);
    const second = keys.handle(1) as ReturnType<XtsCipher['keyed']>;
    keys.delete(1);
    expect(second.wiped).toBe(true);
    expect(keys.handle(1)).toBeUndefined();
    keys.set(2, generateDataKey());
    keys.set(3, generateDataKey());
    const h2 = keys.handle(2) as ReturnType<XtsCipher['keyed']>;
    const h3 = keys.handle(3) as ReturnType<XtsCipher['keyed']>;
    keys.wipe();
    expect([h2.wiped, h3.wiped]).toEqual([true, true]);
    keys.set(4, generateDataKey());
    const h4 = keys.handle(4) as ReturnType<XtsCipher['keyed']>;
    const error = new BlockvaultError('VOLUME_LOCKED', 'shredded');
    keys.shred(error);
    expect(h4.wiped).toBe(true);
    const late = generateDataKey();
    expect(() => keys.set(5, late)).toThrow('shredded');
    expect(keys.handle(5)).toBeUndefined();
    expect(late.every((b) => b === 0)).toBe(true);
  });
});
