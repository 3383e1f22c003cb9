/**
 * Volume I/O through the engine: range checks (OUT_OF_RANGE writes nothing), concurrent callers
 * and call order, persistence across reopen, closed handles and engines.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, expect, it } from 'vitest';
import { cipherBackends } from '../helpers/cipher-backends.js';
import { forEachProvider } from '../helpers/providers.js';
import { openTestEngine } from '../helpers/engine.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

afterAll(() => removeTempDirs());

const KIB = 1024;
const SIZE = 256 * KIB;

async function codeOf(promise: Promise<unknown>): Promise<string | null> {
  return promise.then(
    () => null,
    (e: unknown) => (e as { code?: string }).code ?? String(e),
  );
}

for (const { backend, skipReason } of cipherBackends()) {
  forEachProvider(`volume I/O [${backend}]`, (provider) => {
    for (const sectorSize of [4096, 512] as const) {
      it(`refuses bad ranges with OUT_OF_RANGE and writes nothing (${sectorSize})`, async () => {
        const engine = await openTestEngine(makeTempDir('bv-io-'), { provider, cipher: backend });
        try {
          const vol = await engine.createVolume({ name: 'v', sizeBytes: SIZE, sectorSize });
          const bad: [number, number][] = [
            [-1, 10],
            [0, -1],
            [1.5, 10],
            [0, 2.5],
            [Number.NaN, 1],
            [0, Number.POSITIVE_INFINITY],
            [SIZE, 1],
            [SIZE - 1, 2],
            [SIZE + sectorSize, 0],
            [2 ** 53, 1],
          ];
          for (const [offset, length] of bad) {
            expect(await codeOf(vol.read(offset, length)), `read(${offset}, ${length})`).toBe('OUT_OF_RANGE');
            expect(await codeOf(vol.trim(offset, length)), `trim(${offset}, ${length})`).toBe('OUT_OF_RANGE');
            if (Number.isFinite(length) && length >= 0 && Number.isInteger(length)) {
              expect(await codeOf(vol.write(offset, Buffer.alloc(length, 1))), `write(${offset}, ${length})`).toBe('OUT_OF_RANGE');
            }
          }
          expect(await codeOf(vol.read('0' as unknown as number, 1))).toBe('OUT_OF_RANGE');
          expect(await codeOf(vol.write(0, 'abc' as unknown as Uint8Array))).toBe('INVALID_ARGUMENT');
          // A write that starts inside but ends past the end wrote nothing at all.
          expect(await codeOf(vol.write(SIZE - sectorSize, Buffer.alloc(sectorSize + 1, 7)))).toBe('OUT_OF_RANGE');
          expect(Buffer.from(await vol.read(0, SIZE)).equals(Buffer.alloc(SIZE))).toBe(true);
          // The edges themselves are fine.
          await vol.write(SIZE - 3, Buffer.from([1, 2, 3]));
          expect([...(await vol.read(SIZE - 3, 3))]).toEqual([1, 2, 3]);
          expect((await vol.read(SIZE, 0)).length).toBe(0);
          await vol.write(0, new Uint8Array(0));
        } finally {
          await engine.close();
        }
      });
    }

    it('applies overlapping writes from concurrent callers in call order; reads see earlier calls', async () => {
      const engine = await openTestEngine(makeTempDir('bv-io-'), { provider, cipher: backend });
      try {
        const vol = await engine.createVolume({ name: 'v', sizeBytes: SIZE });
        const model = Buffer.alloc(SIZE);
        const pending: Promise<unknown>[] = [];
        for (let i = 0; i < 200; i++) {
          const offset = Math.floor(Math.random() * (SIZE - 9000));
          const data = randomBytes(1 + Math.floor(Math.random() * 9000));
          data.copy(model, offset);
          pending.push(vol.write(offset, data));
          if (i % 7 === 0) {
            const expected = Buffer.from(model);
            pending.push(vol.read(0, SIZE).then((got) => expect(Buffer.from(got).equals(expected)).toBe(true)));
          }
          if (i % 13 === 0) {
            const at = Math.floor(Math.random() * (SIZE - 5000));
            model.fill(0, at, at + 5000);
            pending.push(vol.trim(at, 5000));
          }
        }
        await Promise.all(pending);
        expect(Buffer.from(await vol.read(0, SIZE)).equals(model)).toBe(true);
      } finally {
        await engine.close();
      }
    });

    it('keeps data across close and reopen; handles share a volume; closed handles and engines refuse', async () => {
      const dir = makeTempDir('bv-io-');
      let engine = await openTestEngine(dir, { provider, cipher: backend });
      const vol = await engine.createVolume({ name: 'keep', sizeBytes: SIZE, sectorSize: 512 });
      const data = randomBytes(100_000);
      await vol.write(777, data);
      await vol.flush();
      const second = await engine.openVolume('keep');
      expect(Buffer.from(await second.read(777, data.length)).equals(data)).toBe(true);
      await vol.close();
      expect(await codeOf(vol.read(0, 1))).toBe('VOLUME_CLOSED');
      expect(vol.info().name).toBe('keep'); // metadata survives close
      expect(Buffer.from(await second.read(777, 10)).equals(data.subarray(0, 10))).toBe(true);
      await engine.close();
      expect(await codeOf(second.read(0, 1))).toBe('ENGINE_CLOSED');
      await expect(engine.openVolume('keep')).rejects.toMatchObject({ code: 'ENGINE_CLOSED' });

      engine = await openTestEngine(dir, { provider, cipher: backend });
      try {
        const again = await engine.openVolume(vol.info().id);
        expect(Buffer.from(await again.read(777, data.length)).equals(data)).toBe(true);
        expect(again.info()).toEqual(vol.info());
        await expect(engine.openVolume('nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
      } finally {
        await engine.close();
      }
    });

    it('handles large writes in bounded steps under a small write buffer', async () => {
      const engine = await openTestEngine(makeTempDir('bv-io-'), { provider, cipher: backend, writeBufferBytesMax: 1024 * 1024 });
      try {
        const size = 24 * 1024 * 1024;
        const vol = await engine.createVolume({ name: 'big', sizeBytes: size });
        const data = randomBytes(size - 4096);
        const writes = [vol.write(4096, data), vol.write(0, Buffer.alloc(8192, 9))];
        await Promise.all(writes);
        const got = Buffer.from(await vol.read(0, size));
        expect(got.subarray(0, 8192).equals(Buffer.alloc(8192, 9))).toBe(true);
        expect(got.subarray(8192).equals(data.subarray(4096))).toBe(true);
      } finally {
        await engine.close();
      }
    });
  }, skipReason);
}
