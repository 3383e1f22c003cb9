import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  KeyUnwrapError,
  RFC3394_DEFAULT_IV,
  kwpNativeAvailable,
  kwpUnwrap,
  kwpUnwrapPortable,
  kwpWrap,
  kwpWrapPortable,
  rfc3394Wrap,
} from '../../src/hsm/kwp.js';

const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');

// RFC 5649 section 6: the two published vectors, 192-bit KEK.
const RFC5649_KEK = hex('5840df6e29b02af1 ab493b705bf16ea1 ae8338f4dcc176a8');
const RFC5649_VECTORS = [
  {
    name: '20 octets of key data',
    key: hex('c37b7e6492584340 bed1220780894115 5068f738'),
    wrapped: hex('138bdeaa9b8fa7fc 61f97742e72248ee 5ae6ae5360d1ae6a 5f54f373fa543b6a'),
  },
  { name: '7 octets of key data', key: hex('466f7250617369'), wrapped: hex('afbeb0f07dfbf541 9200f2ccb50bb24f') },
];

const implementations = [
  { name: 'portable', wrap: kwpWrapPortable, unwrap: kwpUnwrapPortable },
  { name: 'default (OpenSSL when present)', wrap: kwpWrap, unwrap: kwpUnwrap },
];

describe('AES-KWP (RFC 5649)', () => {
  it('node:crypto exposes id-aes256-wrap-pad here (the default path is OpenSSL)', () => {
    expect(kwpNativeAvailable(32)).toBe(true);
  });

  for (const impl of implementations) {
    describe(impl.name, () => {
      for (const vector of RFC5649_VECTORS) {
        it(`RFC 5649 section 6 vector: ${vector.name}`, () => {
          expect(impl.wrap(RFC5649_KEK, vector.key).toString('hex')).toBe(vector.wrapped.toString('hex'));
          expect(impl.unwrap(RFC5649_KEK, vector.wrapped).toString('hex')).toBe(vector.key.toString('hex'));
        });
      }

      it('rejects an altered byte, a wrong KEK and bad lengths with KeyUnwrapError', () => {
        const kek = randomBytes(32);
        const wrapped = impl.wrap(kek, randomBytes(64));
        for (const index of [0, 7, 8, wrapped.length - 1]) {
          const altered = Buffer.from(wrapped);
          altered[index]! ^= 1;
          expect(() => impl.unwrap(kek, altered)).toThrow(KeyUnwrapError);
        }
        expect(() => impl.unwrap(randomBytes(32), wrapped)).toThrow(KeyUnwrapError);
        expect(() => impl.unwrap(kek, wrapped.subarray(0, 8))).toThrow(KeyUnwrapError);
        expect(() => impl.unwrap(kek, wrapped.subarray(0, wrapped.length - 3))).toThrow(KeyUnwrapError);
        expect(() => impl.wrap(kek, new Uint8Array(0))).toThrow(RangeError);
        expect(() => impl.wrap(randomBytes(20), randomBytes(32))).toThrow(RangeError);
      });
    });
  }

  // The 256-bit AES path of the portable code is its W function; RFC 3394 section 4.6 checks it.
  it('RFC 3394 section 4.6 vector (256-bit KEK) through the shared W function', () => {
    const kek = hex('000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F');
    const data = hex('00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F');
    const expected = '28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21';
    expect(rfc3394Wrap(kek, RFC3394_DEFAULT_IV, data).toString('hex')).toBe(expected);
  });

  it('portable and OpenSSL agree byte for byte and round-trip (256-bit KEK, any length)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 1, maxLength: 200 }), (kek, data) => {
        const a = kwpWrapPortable(kek, data);
        const b = kwpWrap(kek, data);
        expect(a.toString('hex')).toBe(b.toString('hex'));
        expect(a.length).toBe(Math.ceil(data.length / 8) * 8 + 8);
        expect(Buffer.from(kwpUnwrap(kek, a)).equals(Buffer.from(data))).toBe(true);
        expect(Buffer.from(kwpUnwrapPortable(kek, b)).equals(Buffer.from(data))).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});
