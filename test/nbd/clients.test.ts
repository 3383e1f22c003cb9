/**
 * Real NBD clients against a blockvault volume, and the same matrix against nbdkit's memory
 * plugin (a reference server), so a failure here can be told apart from a client's quirk: a
 * case failing on both targets is the client or the test, one failing on blockvault alone is ours.
 *
 * Clients: nbdinfo (size, flags, block sizes, --map), qemu-io (pattern write/read, zero, discard,
 * FUA write, flush), qemu-img convert in and out (byte-exact) and map, nbdcopy with 4
 * connections both ways, fio's nbd ioengine with verify=crc32c on random 4 KiB writes.
 *
 * The blockvault matrix runs twice: with the sectors in LMDB, and in RADOS on a throwaway Ceph
 * cluster (test/helpers/ceph.ts), where reads, maps and trims take the remote store's paths.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { findTools } from '../helpers/external-tool.js';
import { useTempDirs } from '../helpers/temp-dir.js';
import { xorshiftBytes } from '../helpers/xorshift.js';
import { killAll, killServers, run, runOk, startNbdkitMemory } from './helpers/processes.js';
import { serveVolumes, type Served } from './helpers/served.js';
import type { CephCluster } from '../helpers/ceph.js';
import { radosSkipReason, radosStoreOf } from '../helpers/rados-store.js';
import { useCephCluster } from '../helpers/use-ceph-cluster.js';

const check = findTools([
  { name: 'nbdinfo', debianPackage: 'libnbd-bin' },
  { name: 'nbdcopy', debianPackage: 'libnbd-bin' },
  { name: 'qemu-io', debianPackage: 'qemu-utils' },
  { name: 'qemu-img', debianPackage: 'qemu-utils' },
  { name: 'fio', debianPackage: 'fio' },
  { name: 'nbdkit', debianPackage: 'nbdkit' },
]);
const fioHasNbd = check.ok && /^\s*nbd\s*$/m.test((await run('fio', ['--enghelp'])).stdout);
// Debian's fio has the nbd engine; in CI a build without it must fail, not skip (as findTools does).
if (check.ok && !fioHasNbd && process.env['BLOCKVAULT_REQUIRE_TOOLS'] === '1') throw new Error('BLOCKVAULT_REQUIRE_TOOLS=1 and fio --enghelp lists no nbd engine');

const tempDir = useTempDirs('blockvault-nbd-clients-');
const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

interface Target {
  uri: string;
  stop(): Promise<void>;
}

const radosReason = radosSkipReason();

/** Each target: how to start it, and whether it needs a Ceph cluster (started for its describe). */
const targets: Record<string, { start(dir: string, ceph: CephCluster | null): Promise<Target>; ceph?: boolean }> = {
  blockvault: {
    start: async (dir) => {
      const served: Served = await serveVolumes(dir, [{ name: 'disk', sizeBytes: SIZE }]);
      return { uri: served.uri('disk'), stop: () => served.stop() };
    },
  },
  [`blockvault, sectors in RADOS${radosReason === '' ? '' : ` (skipped: ${radosReason})`}`]: {
    ceph: true,
    start: async (dir, ceph) => {
      const served: Served = await serveVolumes(dir, [{ name: 'disk', sizeBytes: SIZE }], undefined, { store: radosStoreOf(ceph!) });
      return { uri: served.uri('disk'), stop: () => served.stop() };
    },
  },
  'nbdkit memory (reference)': { start: (dir) => startNbdkitMemory(join(dir, 'nbdkit.sock'), SIZE) },
};

/** A test image: random data with a 1 MiB zero run in the middle and zeros at the end. */
function testImage(seed: number, sizeBytes: number): Buffer {
  const image = xorshiftBytes(seed, sizeBytes);
  image.fill(0, 2 * MiB, 3 * MiB);
  image.fill(0, sizeBytes - MiB);
  return image;
}

describe.skipIf(!check.ok)(`real NBD clients${check.ok ? '' : ` (skipped: ${check.reason})`}`, () => {
  afterEach(() => killAll());

  for (const [targetName, { start, ceph: needsCeph = false }] of Object.entries(targets)) {
    describe.skipIf(needsCeph && radosReason !== '')(targetName, () => {
      // Every replica of a 64 MiB volume on each of the three memstore OSDs, with room to spare.
      const ceph = needsCeph ? useCephCluster({ memstoreBytes: 512 * MiB }) : null;
      let target: Target;
      let dir: string;
      beforeAll(async () => {
        dir = tempDir();
        target = await start(dir, ceph?.() ?? null);
      });
      afterAll(async () => {
        killAll();
        await target?.stop();
        killServers();
      });

      it('nbdinfo: size, flags, and --map after a write', async () => {
        const info = JSON.parse((await runOk('nbdinfo', ['--json', target.uri])).stdout) as { exports: Array<Record<string, unknown>> };
        const exp = info.exports[0]!;
        expect(exp['export-size']).toBe(SIZE);
        for (const flag of ['can_flush', 'can_fua', 'can_trim', 'can_zero', 'can_multi_conn', 'can_df']) expect(exp[flag], flag).toBe(true);
        expect(exp['is_read_only']).toBe(false);
        expect(exp['contexts']).toContain('base:allocation');
        if (targetName === 'blockvault') {
          expect(exp).toMatchObject({ block_size_minimum: 1, block_size_preferred: 4096, block_size_maximum: 32 * MiB });
        }
        await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x42 ${8 * MiB} 64k`, target.uri]);
        const map = (await runOk('nbdinfo', ['--map', '--json', target.uri])).stdout;
        const extents = JSON.parse(map) as Array<{ offset: number; length: number; type: number }>;
        const at = (offset: number) => extents.find((e) => e.offset <= offset && offset < e.offset + e.length)!;
        expect(at(8 * MiB).type & 1).toBe(0); // data
        expect(at(0).type).toBe(3); // hole, zero
        expect(at(SIZE - 1).type).toBe(3);
      });

      it('qemu-io: write -P / read -P, write -z, discard, write -f (FUA), flush', async () => {
        const ops = [
          'write -P 0xab 1M 256k',
          'read -P 0xab 1M 256k',
          'write -P 0xcd 1200k 8k', // unaligned to 64k, aligned to 4k
          'read -P 0xcd 1200k 8k',
          'read -P 0xab 1M 176k',
          'write -z 1M 64k',
          'read -P 0 1M 64k',
          'write -z -u 1088k 64k',
          'read -P 0 1088k 64k',
          'discard 1152k 64k',
          'write -f -P 0x11 4M 4k',
          'flush',
          'read -P 0x11 4M 4k',
          'write -P 0x22 5M 333',
          'read -P 0x22 5M 333',
          'read -P 0 5243213 3763',
        ];
        const result = await runOk('qemu-io', ['-f', 'raw', ...ops.flatMap((op) => ['-c', op]), target.uri]);
        expect(result.stdout).not.toMatch(/failed|error/i);
        // The checks above can fail: a wrong pattern is reported (exit 1).
        const wrong = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0xac 1100k 4k', target.uri]);
        expect(wrong.code).toBe(1);
        expect(wrong.stdout).toContain('Pattern verification failed');
      });

      it('qemu-img convert into and out of the export is byte-exact; qemu-img map sees the zero runs', async () => {
        const image = testImage(7, 16 * MiB);
        const source = join(dir, 'in.raw');
        const back = join(dir, 'out.raw');
        writeFileSync(source, image);
        await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', source, target.uri], { timeoutMs: 60_000 });
        await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', target.uri, back], { timeoutMs: 60_000 });
        const out = readFileSync(back);
        expect(out.length).toBe(SIZE);
        expect(out.subarray(0, image.length).equals(image)).toBe(true);
        expect(out.subarray(image.length).equals(Buffer.alloc(SIZE - image.length))).toBe(true);
        const map = JSON.parse((await runOk('qemu-img', ['map', '--output=json', '-f', 'raw', target.uri])).stdout) as Array<{ start: number; length: number; zero: boolean; data: boolean }>;
        const at = (offset: number) => map.find((e) => e.start <= offset && offset < e.start + e.length)!;
        expect(at(0)).toMatchObject({ data: true });
        expect(at(2 * MiB + 4096)).toMatchObject({ zero: true });
        expect(at(SIZE - 4096)).toMatchObject({ zero: true });
      });

      it('nbdcopy with 4 connections both ways is byte-exact', async () => {
        const image = testImage(11, SIZE);
        const source = join(dir, 'copy-in.raw');
        const back = join(dir, 'copy-out.raw');
        writeFileSync(source, image);
        await runOk('nbdcopy', ['--connections=4', '--requests=16', source, target.uri], { timeoutMs: 60_000 });
        await runOk('nbdcopy', ['--connections=4', '--requests=16', target.uri, back], { timeoutMs: 60_000 });
        expect(readFileSync(back).equals(image)).toBe(true);
      });

      it.skipIf(!fioHasNbd)(`fio nbd ioengine: random 4 KiB writes, iodepth 16, verify=crc32c${fioHasNbd ? '' : ' (skipped: fio --enghelp lists no nbd engine)'}`, async () => {
        const result = await runOk(
          'fio',
          ['--name=verify', '--ioengine=nbd', `--uri=${target.uri}`, '--rw=randwrite', '--bs=4k', '--size=16M', '--iodepth=16', '--verify=crc32c', '--verify_state_save=0', '--do_verify=1', '--verify_fatal=1', '--randseed=12', '--output-format=json'],
          { timeoutMs: 60_000 },
        );
        const job = (JSON.parse(result.stdout.slice(result.stdout.indexOf('{'))) as { jobs: Array<{ error: number; write: { io_bytes: number }; read: { io_bytes: number } }> }).jobs[0]!;
        expect(job.error).toBe(0);
        expect(job.write.io_bytes).toBe(16 * MiB);
        // The verify pass read everything back and checked each block's crc32c.
        expect(job.read.io_bytes).toBe(16 * MiB);
      });
    });
  }
});
