/**
 * Write payloads that span socket chunks come from a per-connection pool (src/nbd/socket-reader.ts):
 * a buffer is handed out again only after the transmission loop gave it back, which it does once
 * the write that got it has resolved. SocketReader on a stand-in socket for the pool's rules; the
 * real server with a volume that holds its calls for the guarantee that matters: a payload a
 * volume call may still read is never overwritten by a later request.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { NbdVolume } from '../../src/nbd/export.js';
import { ASSEMBLED_POOL_MIN_BYTES, FREE_PAYLOAD_BYTES_MAX, SocketReader } from '../../src/nbd/socket-reader.js';
import { waitFor } from '../helpers/wait-for.js';
import { useModelServer } from './helpers/model-server.js';
import { CMD } from './helpers/raw-client.js';

const MiB = 1024 * 1024;
const CHUNK = 64 * 1024;

/** Enough of a net.Socket for SocketReader: events, pause and resume. */
function standInSocket(): Socket & { feed(bytes: Buffer): void } {
  const socket = new EventEmitter() as Socket & { feed(bytes: Buffer): void };
  socket.pause = () => socket;
  socket.resume = () => socket;
  socket.feed = (bytes) => {
    for (let at = 0; at < bytes.length; at += CHUNK) socket.emit('data', bytes.subarray(at, at + CHUNK));
  };
  return socket;
}

describe('SocketReader payload pool', () => {
  it('hands an assembled payload out again only after recycle; chunk views and second returns are ignored', async () => {
    const socket = standInSocket();
    const reader = new SocketReader(socket);
    socket.feed(Buffer.alloc(MiB, 1));
    socket.feed(Buffer.alloc(MiB, 2));
    const a = await reader.read(MiB);
    const b = await reader.read(MiB);
    expect(a.every((x) => x === 1) && b.every((x) => x === 2)).toBe(true);
    expect(b.buffer).not.toBe(a.buffer); // a was not handed back: never reused
    reader.recycle(a);
    reader.recycle(a); // twice: ignored
    socket.feed(Buffer.alloc(MiB, 3));
    socket.feed(Buffer.alloc(MiB, 4));
    const c = await reader.read(MiB);
    const d = await reader.read(MiB);
    expect(c.buffer).toBe(a.buffer);
    expect(d.buffer).not.toBe(a.buffer);
    expect(c.every((x) => x === 3) && d.every((x) => x === 4) && b.every((x) => x === 2)).toBe(true);
    // A payload inside one chunk is a view of it, not pooled; handing it back does nothing.
    socket.feed(Buffer.alloc(4096, 5));
    const small = await reader.read(4096);
    reader.recycle(small);
    socket.feed(Buffer.alloc(MiB, 6));
    expect((await reader.read(MiB)).buffer).not.toBe(small.buffer);
  });

  it('sizes share a power-of-two capacity; below ASSEMBLED_POOL_MIN_BYTES nothing is pooled; at most FREE_PAYLOAD_BYTES_MAX is kept', async () => {
    const socket = standInSocket();
    const reader = new SocketReader(socket);
    const odd = 3 * CHUNK + 5; // rounds up to 256 KiB
    socket.feed(Buffer.alloc(odd, 7));
    const first = await reader.read(odd);
    expect(first.buffer.byteLength).toBe(4 * CHUNK);
    reader.recycle(first);
    socket.feed(Buffer.alloc(4 * CHUNK, 8));
    expect((await reader.read(4 * CHUNK)).buffer).toBe(first.buffer);
    // Two chunks of half the minimum: assembled, but not pooled.
    const half = ASSEMBLED_POOL_MIN_BYTES / 2;
    socket.emit('data', Buffer.alloc(half / 2, 9));
    socket.emit('data', Buffer.alloc(half / 2, 9));
    const tiny = await reader.read(half);
    reader.recycle(tiny);
    socket.emit('data', Buffer.alloc(half / 2, 9));
    socket.emit('data', Buffer.alloc(half / 2, 9));
    expect((await reader.read(half)).buffer).not.toBe(tiny.buffer);
    // Hand back more than the bound: only FREE_PAYLOAD_BYTES_MAX worth come back out.
    const count = FREE_PAYLOAD_BYTES_MAX / MiB + 2;
    const held: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      socket.feed(Buffer.alloc(MiB, i));
      held.push(await reader.read(MiB));
    }
    for (const buffer of held) reader.recycle(buffer);
    const memories = new Set(held.map((b) => b.buffer));
    let reused = 0;
    for (let i = 0; i < count; i++) {
      socket.feed(Buffer.alloc(MiB, i));
      if (memories.has((await reader.read(MiB)).buffer)) reused++;
    }
    expect(reused).toBe(FREE_PAYLOAD_BYTES_MAX / MiB);
  });
});

const startServer = useModelServer('blockvault-nbd-payload-');

describe('payload buffers through the server', () => {
  it('a write payload is never reused while its volume call is unresolved, and is reused after', async () => {
    const size = 64 * MiB;
    const calls: Array<{ data: Uint8Array; settle: () => void }> = [];
    const volume = {
      // Keeps the very buffer it was given, as a volume may until its promise resolves.
      write: (_offset: number, data: Uint8Array) => new Promise<void>((resolve) => calls.push({ data, settle: resolve })),
      info: () => ({ sizeBytes: size }) as ReturnType<NbdVolume['info']>,
    } as unknown as NbdVolume;
    const raw = await startServer({ volume, sizeBytes: size, sectorSize: 4096, description: 'held writes' });
    const pattern = (n: number) => Buffer.alloc(MiB, n);
    raw.request(CMD.WRITE, 1n, 0, MiB, 0, pattern(0xa1));
    raw.request(CMD.WRITE, 2n, MiB, MiB, 0, pattern(0xb2));
    await waitFor(() => calls.length === 2, 'the volume calls held');
    // Settle the first; the second stays in flight.
    calls[0]!.settle();
    expect((await raw.reply()).cookie).toBe(1n);
    for (let i = 0; i < 4; i++) raw.request(CMD.WRITE, BigInt(3 + i), (2 + i) * MiB, MiB, 0, pattern(0xc3 + i));
    await waitFor(() => calls.length === 6, 'the volume calls held');
    // The held payload is intact, and no later request got its memory.
    expect(Buffer.from(calls[1]!.data).equals(pattern(0xb2))).toBe(true);
    for (const later of calls.slice(2)) expect(later.data.buffer).not.toBe(calls[1]!.data.buffer);
    // The settled one's memory was handed out again (the pool works), with the new bytes.
    const reusedFirst = calls.slice(2).find((later) => later.data.buffer === calls[0]!.data.buffer);
    expect(reusedFirst).toBeDefined();
    expect(Buffer.from(reusedFirst!.data).equals(pattern(0xc3))).toBe(true);
    for (const call of calls.slice(1)) call.settle();
    for (let i = 0; i < 5; i++) expect((await raw.reply()).error).toBe(0);
  });
});
