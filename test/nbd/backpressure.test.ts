/**
 * The per-connection bound on bytes in flight: with a volume whose calls do not settle, the
 * server starts no more than IN_FLIGHT_BYTES_MAX of writes and then stops reading the socket;
 * once calls settle it reads on and answers everything. Also: one volume call per request,
 * whatever its size (no per-sector loop).
 */
import { describe, expect, it } from 'vitest';
import type { NbdVolume } from '../../src/nbd/export.js';
import { IN_FLIGHT_BYTES_MAX, PAYLOAD_BYTES_MAX } from '../../src/nbd/protocol.js';
import { waitFor } from '../helpers/wait-for.js';
import { useModelServer } from './helpers/model-server.js';
import { CMD } from './helpers/raw-client.js';

const startServer = useModelServer('blockvault-nbd-bp-');
const MiB = 1024 * 1024;

/** A volume that records calls and settles them only when told. */
function heldVolume(sizeBytes: number) {
  const pending: Array<() => void> = [];
  const calls: Array<{ op: string; offset: number; length: number }> = [];
  const hold = <T>(op: string, offset: number, length: number, value: T): Promise<T> => {
    calls.push({ op, offset, length });
    return new Promise<T>((resolve) => pending.push(() => resolve(value)));
  };
  const volume = {
    read: (offset: number, length: number) => hold('read', offset, length, new Uint8Array(length)),
    write: (offset: number, data: Uint8Array) => hold('write', offset, data.length, undefined),
    trim: (offset: number, length: number) => hold('trim', offset, length, undefined),
    writeZeroes: (offset: number, length: number) => hold('writeZeroes', offset, length, undefined),
    flush: () => hold('flush', 0, 0, undefined),
    allocationMap: (offset: number, length: number) => hold('allocationMap', offset, length, [{ offset, length, allocated: true }]),
    info: () => ({ sizeBytes }) as ReturnType<NbdVolume['info']>,
  } as unknown as NbdVolume;
  return {
    volume,
    calls,
    releaseAll: () => pending.splice(0).forEach((settle) => settle()),
  };
}

describe('bytes in flight per connection', () => {
  it('stops reading at IN_FLIGHT_BYTES_MAX and resumes when calls settle', async () => {
    const size = 1024 * MiB;
    const held = heldVolume(size);
    const raw = await startServer({ volume: held.volume, sizeBytes: size, sectorSize: 4096, description: 'model' });
    const writeBytes = 4 * MiB;
    const writes = 40; // 160 MiB, far over the bound
    expect(writes * writeBytes).toBeGreaterThan(IN_FLIGHT_BYTES_MAX * 2);
    const payload = Buffer.alloc(writeBytes, 1);
    for (let i = 0; i < writes; i++) raw.request(CMD.WRITE, BigInt(i), i * writeBytes, writeBytes, 0, payload);
    await waitFor(() => held.calls.length === IN_FLIGHT_BYTES_MAX / writeBytes, 'the volume calls held', 10_000, 20);
    // Give the server time to (wrongly) read on; it must not start more.
    await new Promise((r) => setTimeout(r, 300));
    expect(held.calls.length).toBe(IN_FLIGHT_BYTES_MAX / writeBytes);
    let answered = 0;
    const replies = (async () => {
      for (; answered < writes; answered++) expect((await raw.reply()).error).toBe(0);
    })();
    while (answered < writes) {
      held.releaseAll();
      await new Promise((r) => setTimeout(r, 10));
    }
    await replies;
    // One volume call per request, each with the request's whole range.
    expect(held.calls).toHaveLength(writes);
    expect(held.calls.every((c, i) => c.op === 'write' && c.offset === i * writeBytes && c.length === writeBytes)).toBe(true);
  });

  it('a maximal read is one volume call', async () => {
    const size = 64 * MiB;
    const held = heldVolume(size);
    const raw = await startServer({ volume: held.volume, sizeBytes: size, sectorSize: 512, description: 'model', structured: true });
    raw.request(CMD.READ, 1n, 0, PAYLOAD_BYTES_MAX);
    await waitFor(() => held.calls.length === 1, 'the volume calls held', 10_000, 20);
    held.releaseAll();
    const reply = await raw.reply();
    expect(reply.data!.length).toBe(PAYLOAD_BYTES_MAX);
    expect(held.calls).toEqual([{ op: 'read', offset: 0, length: PAYLOAD_BYTES_MAX }]);
  });
});
