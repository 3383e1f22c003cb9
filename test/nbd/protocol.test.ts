/**
 * The NBD server against proto.md, frame by frame, with a client written from the spec
 * (helpers/raw-client.ts): negotiation, simple and structured replies, pipelining, error
 * mapping, and hostile frames that must close only their own connection.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { openTestEngine } from '../helpers/engine.js';
import { useTempDirs } from '../helpers/temp-dir.js';
import { xorshiftBytes } from '../helpers/xorshift.js';
import { CMD, ERR, OPT, RawClient, REP, REQUEST_MAGIC } from './helpers/raw-client.js';
import { serveVolumes, type Served } from './helpers/served.js';

const tempDir = useTempDirs('blockvault-nbd-protocol-');
const SIZE = 8 * 1024 * 1024;
const MiB = 1024 * 1024;

let served: Served;
const clients: RawClient[] = [];
async function client(): Promise<RawClient> {
  const c = await RawClient.connect(served.socketPath);
  clients.push(c);
  return c;
}

beforeEach(async () => {
  served = await serveVolumes(tempDir(), [{ name: 'disk', sizeBytes: SIZE }, { name: 'small', sizeBytes: MiB, sectorSize: 512 }], [
    { volume: 'disk' },
    { volume: 'small' },
    { volume: 'disk', name: 'disk-ro', readOnly: true },
  ]);
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await served.stop();
});

describe('negotiation', () => {
  it('advertises fixed newstyle + NO_ZEROES, and GO gives size, flags and block sizes', async () => {
    const c = await client();
    const { sizeBytes, flags, blockSizes } = await c.go('disk', { structured: true });
    expect(sizeBytes).toBe(BigInt(SIZE));
    // HAS_FLAGS, SEND_FLUSH, SEND_FUA, SEND_TRIM, SEND_WRITE_ZEROES, SEND_DF, CAN_MULTI_CONN; not READ_ONLY.
    expect(flags).toBe(1 | 4 | 8 | 32 | 64 | 128 | 256);
    expect(blockSizes).toEqual([1, 4096, 32 * MiB]);
    const small = await client();
    const info = await small.go('small');
    // Without structured replies there is no DF (proto.md: MUST leave it clear).
    expect(info.flags & 128).toBe(0);
    expect(info.blockSizes).toEqual([1, 512, 32 * MiB]);
  });

  it('the handshake flags are FIXED_NEWSTYLE | NO_ZEROES', async () => {
    const c = await client();
    expect(await c.handshake()).toBe(3);
  });

  it('unknown options, STARTTLS and EXTENDED_HEADERS get ERR_UNSUP and the session goes on', async () => {
    const c = await client();
    await c.handshake();
    for (const option of [99, OPT.STARTTLS, OPT.EXTENDED_HEADERS, 0x7fffffff]) {
      c.sendOption(option);
      const reply = await c.optionReply();
      expect(reply).toMatchObject({ option, type: REP.ERR_UNSUP });
    }
    c.sendOption(OPT.LIST);
    const list = await c.optionReplies();
    expect(list.filter((r) => r.type === REP.SERVER).map((r) => r.data.subarray(4).toString())).toEqual(['disk', 'small', 'disk-ro']);
    expect(list.at(-1)!.type).toBe(REP.ACK);
    c.sendOption(OPT.INFO, RawClient.infoData('nope'));
    expect((await c.optionReply()).type).toBe(REP.ERR_UNKNOWN);
    c.sendOption(OPT.INFO, Buffer.from([0, 0, 0, 9, 1]));
    expect((await c.optionReply()).type).toBe(REP.ERR_INVALID);
    c.sendOption(OPT.GO, RawClient.infoData('disk'));
    expect((await c.optionReplies()).at(-1)!.type).toBe(REP.ACK);
    c.request(CMD.FLUSH, 1n, 0, 0);
    expect(await c.reply()).toEqual({ error: 0, cookie: 1n });
  });

  it('meta contexts: LIST offers base:allocation, SET needs structured replies first', async () => {
    const c = await client();
    await c.handshake();
    c.sendOption(OPT.SET_META_CONTEXT, RawClient.metaData('disk', ['base:allocation']));
    expect((await c.optionReply()).type).toBe(REP.ERR_INVALID);
    c.sendOption(OPT.STRUCTURED_REPLY);
    expect((await c.optionReply()).type).toBe(REP.ACK);
    for (const queries of [[], ['base:'], ['base:allocation', 'qemu:dirty-bitmap:x']]) {
      c.sendOption(OPT.LIST_META_CONTEXT, RawClient.metaData('disk', queries));
      const replies = await c.optionReplies();
      expect(replies.map((r) => [r.type, r.type === REP.META_CONTEXT ? r.data.subarray(4).toString() : ''])).toEqual([
        [REP.META_CONTEXT, 'base:allocation'],
        [REP.ACK, ''],
      ]);
    }
    c.sendOption(OPT.SET_META_CONTEXT, RawClient.metaData('disk', ['x-unknown:thing']));
    expect((await c.optionReplies()).map((r) => r.type)).toEqual([REP.ACK]);
  });

  it('NBD_OPT_ABORT is acknowledged and the server closes; NBD_OPT_EXPORT_NAME still works', async () => {
    const a = await client();
    await a.handshake();
    a.sendOption(OPT.ABORT);
    expect((await a.optionReply()).type).toBe(REP.ACK);
    expect(await a.waitClosed()).toBe(true);

    const b = await client();
    await b.handshake();
    b.sendOption(OPT.EXPORT_NAME, Buffer.from('small'));
    const reply = await b.read(10); // size + flags, no 124 zeroes (NO_ZEROES agreed)
    expect(reply.readBigUInt64BE(0)).toBe(BigInt(MiB));
    b.request(CMD.READ, 7n, 0, 512);
    expect(await b.reply()).toEqual({ error: 0, cookie: 7n, data: Buffer.alloc(512) });
  });
});

describe('transmission', () => {
  it('many requests in flight on one connection, each reply matched by its cookie (simple replies)', async () => {
    const c = await client();
    await c.go('disk');
    const writes = 64;
    for (let i = 0; i < writes; i++) c.request(CMD.WRITE, BigInt(1000 + i), i * 12_345, 7000, 0, xorshiftBytes(i + 1, 7000));
    const acked = new Set<bigint>();
    for (let i = 0; i < writes; i++) {
      const r = await c.reply();
      expect(r.error).toBe(0);
      acked.add(r.cookie);
    }
    expect(acked.size).toBe(writes);
    // Overlapping writes took effect in request order: the later ones win where they overlap.
    for (let i = 0; i < writes; i++) c.request(CMD.READ, BigInt(i), i * 12_345, 7000);
    const byCookie = new Map<bigint, Buffer>();
    for (let i = 0; i < writes; i++) {
      const r = await c.reply();
      byCookie.set(r.cookie, r.data!);
    }
    for (let i = 0; i < writes; i++) expect(byCookie.get(BigInt(i))!.equals(xorshiftBytes(i + 1, 7000))).toBe(true);
  });

  it('structured READ, WRITE with FUA, WRITE_ZEROES (hole and NO_HOLE), TRIM and BLOCK_STATUS', async () => {
    const c = await client();
    await c.go('disk', { structured: true, allocation: true });
    c.request(CMD.WRITE, 1n, MiB, 64 * 1024, 1 /* FUA */, Buffer.alloc(64 * 1024, 0x5a));
    expect((await c.reply()).error).toBe(0);
    c.request(CMD.READ, 2n, MiB - 100, 200);
    const read = await c.reply();
    expect(read.data).toEqual(Buffer.concat([Buffer.alloc(100), Buffer.alloc(100, 0x5a)]));
    c.request(CMD.BLOCK_STATUS, 3n, 0, 4 * MiB);
    expect((await c.reply()).extents).toEqual([
      [MiB, 3],
      [64 * 1024, 0],
      [3 * MiB - 64 * 1024, 3],
    ]);
    // NO_HOLE keeps the range allocated (zeros stored); a plain WRITE_ZEROES makes a hole.
    c.request(CMD.WRITE_ZEROES, 4n, MiB, 16 * 1024, 2 /* NO_HOLE */);
    c.request(CMD.WRITE_ZEROES, 5n, MiB + 16 * 1024, 16 * 1024);
    c.request(CMD.TRIM, 6n, MiB + 32 * 1024, 16 * 1024);
    for (let i = 0; i < 3; i++) expect((await c.reply()).error).toBe(0);
    c.request(CMD.BLOCK_STATUS, 7n, MiB, 64 * 1024);
    expect((await c.reply()).extents).toEqual([
      [16 * 1024, 0],
      [32 * 1024, 3],
      [16 * 1024, 0],
    ]);
    c.request(CMD.BLOCK_STATUS, 8n, 0, 4 * MiB, 8 /* REQ_ONE */);
    expect((await c.reply()).extents).toEqual([[MiB, 3]]);
    c.request(CMD.READ, 10n, MiB, 0); // zero length: the final NONE chunk only, no empty data chunk
    expect(await c.reply()).toEqual({ error: 0, cookie: 10n });
    c.request(CMD.READ, 9n, MiB, 64 * 1024, 4 /* DF */);
    const expected = Buffer.alloc(64 * 1024);
    expected.fill(0x5a, 48 * 1024);
    expect((await c.reply()).data).toEqual(expected);
  });

  it('out of range: EINVAL for read, trim and block status, ENOSPC for writes; nothing written; the connection goes on', async () => {
    const c = await client();
    await c.go('disk', { structured: true, allocation: true });
    c.request(CMD.WRITE, 1n, SIZE - 4096, 4096, 0, Buffer.alloc(4096, 1));
    expect((await c.reply()).error).toBe(0);
    c.request(CMD.WRITE, 2n, SIZE - 2048, 4096, 0, Buffer.alloc(4096, 2));
    c.request(CMD.READ, 3n, SIZE - 10, 11);
    c.request(CMD.TRIM, 4n, SIZE - 4096, 8192);
    c.request(CMD.WRITE_ZEROES, 5n, 2n ** 63n, 512);
    c.request(CMD.BLOCK_STATUS, 6n, SIZE, 1);
    c.request(CMD.READ, 7n, 0, 64 * MiB); // over the advertised maximum payload
    const errors = new Map<bigint, number>();
    for (let i = 0; i < 6; i++) {
      const r = await c.reply();
      errors.set(r.cookie, r.error);
    }
    expect(Object.fromEntries([...errors].map(([k, v]) => [String(k), v]))).toEqual({
      '2': ERR.ENOSPC,
      '3': ERR.EINVAL,
      '4': ERR.EINVAL,
      '5': ERR.ENOSPC,
      '6': ERR.EINVAL,
      '7': ERR.EINVAL,
    });
    c.request(CMD.READ, 8n, SIZE - 4096, 4096);
    expect((await c.reply()).data).toEqual(Buffer.alloc(4096, 1));
  });

  it('a read-only export refuses writes, trims and zeroing with EPERM and changes nothing', async () => {
    const rw = await client();
    await rw.go('disk');
    rw.request(CMD.WRITE, 1n, 0, 4096, 0, Buffer.alloc(4096, 9));
    expect((await rw.reply()).error).toBe(0);
    const ro = await client();
    const { flags } = await ro.go('disk-ro');
    expect(flags & 2).toBe(2);
    ro.request(CMD.WRITE, 1n, 0, 4096, 0, Buffer.alloc(4096, 1));
    ro.request(CMD.TRIM, 2n, 0, 4096);
    ro.request(CMD.WRITE_ZEROES, 3n, 0, 4096);
    for (let i = 0; i < 3; i++) expect((await ro.reply()).error).toBe(ERR.EPERM);
    ro.request(CMD.READ, 4n, 0, 4096);
    expect((await ro.reply()).data).toEqual(Buffer.alloc(4096, 9));
  });

  it('unknown commands and flags get EINVAL', async () => {
    const c = await client();
    await c.go('disk');
    c.request(42, 1n, 0, 0);
    c.request(CMD.READ, 2n, 0, 512, 1 << 9);
    c.request(CMD.WRITE_ZEROES, 3n, 0, 512, 16 /* FAST_ZERO, not advertised */);
    c.request(CMD.BLOCK_STATUS, 4n, 0, 512); // no meta context negotiated
    for (let i = 0; i < 4; i++) expect((await c.reply()).error).toBe(ERR.EINVAL);
  });

  it('DISC answers what is in flight, then closes', async () => {
    const c = await client();
    await c.go('disk');
    c.request(CMD.WRITE, 1n, 0, MiB, 0, Buffer.alloc(MiB, 3));
    c.request(CMD.DISC, 2n, 0, 0);
    expect((await c.reply()).error).toBe(0);
    expect(await c.waitClosed()).toBe(true);
  });
});

describe('hostile frames close only their own connection', () => {
  async function expectServerHealthy(): Promise<void> {
    const probe = await client();
    await probe.go('disk');
    probe.request(CMD.READ, 99n, 0, 4096);
    expect((await probe.reply()).data).toEqual(Buffer.alloc(4096, 0x77));
  }

  it('bad request magic, oversized write, bad option magic, huge option length, unknown client flags, truncated payload', async () => {
    const keeper = await client();
    await keeper.go('disk');
    keeper.request(CMD.WRITE, 1n, 0, 4096, 0, Buffer.alloc(4096, 0x77));
    expect((await keeper.reply()).error).toBe(0);

    const attacks: Array<(c: RawClient) => Promise<void>> = [
      async (c) => {
        await c.go('disk');
        c.send(RawClient.requestHeader(CMD.READ, 1n, 0n, 512, 0, REQUEST_MAGIC ^ 1));
      },
      async (c) => {
        await c.go('disk');
        c.send(RawClient.requestHeader(CMD.WRITE, 1n, 0n, 0xffffffff));
      },
      async (c) => {
        await c.handshake();
        c.sendOption(OPT.GO, RawClient.infoData('disk'), 0x1234n);
      },
      async (c) => {
        await c.handshake();
        const header = Buffer.alloc(16);
        header.writeBigUInt64BE(0x49484156454f5054n, 0);
        header.writeUInt32BE(OPT.GO, 8);
        header.writeUInt32BE(0xfffffff0, 12);
        c.send(header);
      },
      async (c) => {
        await c.handshake(0xff);
      },
    ];
    for (const attack of attacks) {
      const c = await client();
      await attack(c);
      expect(await c.waitClosed()).toBe(true);
    }
    // A write whose payload never fully arrives: the client leaves mid-frame.
    const truncated = await client();
    await truncated.go('disk');
    truncated.send(Buffer.concat([RawClient.requestHeader(CMD.WRITE, 1n, 0n, 4096), Buffer.alloc(100, 0xee)]));
    truncated.socket.end();
    expect(await truncated.waitClosed()).toBe(true);

    await expectServerHealthy();
    // The first connection is still there and its data intact.
    keeper.request(CMD.READ, 2n, 0, 4096);
    expect((await keeper.reply()).data).toEqual(Buffer.alloc(4096, 0x77));
    expect(served.events.filter((e) => e.kind === 'protocol').length).toBe(5);
    expect(served.events.filter((e) => e.kind === 'internal')).toEqual([]);
  });

  it('random bytes after the greeting or after GO never take the server down', async () => {
    const keeper = await client();
    await keeper.go('disk');
    keeper.request(CMD.WRITE, 1n, 0, 4096, 0, Buffer.alloc(4096, 0x77));
    expect((await keeper.reply()).error).toBe(0);
    for (let seed = 1; seed <= 40; seed++) {
      const c = await client();
      if (seed % 2 === 0) await c.go('disk');
      else await c.handshake();
      const noise = xorshiftBytes(seed, 16 + ((seed * 977) % 3000));
      // Half of them start with a valid magic, so the length and type fields are random.
      if (seed % 4 === 0) noise.writeUInt32BE(REQUEST_MAGIC, 0);
      c.send(noise);
      c.socket.end();
      await c.waitClosed();
    }
    await expectServerHealthy();
    keeper.request(CMD.READ, 2n, 0, 4096);
    expect((await keeper.reply()).data).toEqual(Buffer.alloc(4096, 0x77));
    expect(served.events.filter((e) => e.kind === 'internal')).toEqual([]);
    expect(served.server.connectionCount).toBe(2);
  });
});

describe('shutdown', () => {
  it('engine.close() answers the requests it read, closes its NBD connections at once and removes the socket', async () => {
    const c = await client();
    await c.go('disk');
    c.request(CMD.WRITE, 1n, 0, MiB, 0, Buffer.alloc(MiB, 4));
    expect((await c.reply()).error).toBe(0);
    // Whether the server read this one before closing is a race: if it did, it must answer it
    // (success) and keep the data; if not, the connection closes without a reply.
    c.request(CMD.WRITE, 2n, MiB, MiB, 0, Buffer.alloc(MiB, 5));
    const started = Date.now();
    const closing = served.engine.close();
    const second = await c.reply().catch(() => null);
    if (second !== null) expect(second).toEqual({ error: 0, cookie: 2n });
    expect(await c.waitClosed()).toBe(true);
    await closing;
    // Not the CLOSE_GRACE_MS cut-off: the connection closed as soon as its replies were out.
    expect(Date.now() - started).toBeLessThan(5000);
    expect(existsSync(served.socketPath)).toBe(false);
    // Acknowledged writes were flushed before the volume closed.
    const engine = await openTestEngine(served.dir);
    try {
      const vol = await engine.openVolume('disk');
      expect(Buffer.from(await vol.read(MiB - 1, 2))).toEqual(Buffer.from([4, second === null ? 0 : 5]));
    } finally {
      await engine.close();
    }
  });
});

describe('serveNbd arguments', () => {
  it('refuses bad listen options and exports with INVALID_ARGUMENT, an unknown volume with NOT_FOUND, a busy address with LISTEN_FAILED', async () => {
    const { engine } = served;
    const socketPath = join(tempDir(), 's.sock');
    await expect(engine.serveNbd({ port: -1 }, [{ volume: 'disk' }])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(engine.serveNbd({ socketPath }, [])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(engine.serveNbd({ socketPath }, [{ volume: 'disk' }, { volume: 'disk' }])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(engine.serveNbd({ socketPath }, [{ volume: 'missing' }])).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(engine.serveNbd({ socketPath: served.socketPath }, [{ volume: 'disk' }])).rejects.toMatchObject({ code: 'LISTEN_FAILED' });
    const tcp = await engine.serveNbd({ port: 0 }, [{ volume: 'small', name: 'a b' }]);
    expect(tcp.address).toMatchObject({ host: '127.0.0.1' });
    expect(tcp.uri).toBe(`nbd://127.0.0.1:${(tcp.address as { port: number }).port}/a%20b`);
    await tcp.close();
  });
});
