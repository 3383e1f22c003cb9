/**
 * `blockvault volume create|list|show|delete|restore|import|export|serve` (serve: ./serve.ts). Volumes are addressed by
 * id or by name. import/export stream a file, or stdin/stdout, into or out of a volume in
 * bounded chunks, with a progress bar on stderr.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import type { Command } from 'commander';
import { BlockvaultError } from '../../errors.js';
import { findVolume, globalAction, withEngine, type CliContext, type CommonOptions } from '../context.js';
import type { VolumeHandle, VolumeInfo } from '../engine-port.js';
import { isoTime, type Output } from '../output.js';
import { progressGroup } from '../progress.js';
import { formatBytes, parseSize } from '../size.js';
import { UsageError } from '../usage-error.js';
import { registerServeCommand } from './serve.js';
import { keyCrnArgument } from './shared.js';

/** Bytes per write/read call: large enough to amortize a batch, small enough to bound memory. */
export const TRANSFER_CHUNK_BYTES = 1024 * 1024;

export function registerVolumeCommands(program: Command, ctx: CliContext): void {
  const volume = program.command('volume').description('encrypted volumes: provision, inspect, soft-delete/restore, import/export data');

  volume.command('create')
    .description('provision a volume; with --key it is encrypted under your root key (BYOK), otherwise under a platform key')
    .requiredOption('--name <name>', 'volume name')
    .requiredOption('--size <size>', 'capacity in bytes, units allowed: 64MiB, 10GiB, 1GB', (v) => parseSize(v, '--size'))
    .option('--sector-size <bytes>', 'sector size in bytes: 512 or 4096', parseSectorSize, 4096)
    .option('--key <crn>', 'root key CRN for BYOK (the storage service needs Reader on its instance: auth grant)', keyCrnArgument)
    .action(globalAction(async (options: CommonOptions & { name: string; size: number; sectorSize: number; key?: string }) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const vol = await engine.createVolume({
          name: options.name,
          sizeBytes: options.size,
          sectorSize: options.sectorSize,
          ...(options.key !== undefined ? { diskEncryptionKeyCrn: options.key } : {}),
        });
        const info = vol.info();
        await vol.close();
        out.result(info, (o) => printVolume(o, info));
      });
    }));

  volume.command('list')
    .description('list volumes in every state (active, syncing, locked, deleted)')
    .action(globalAction(async (options: CommonOptions) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const all = engine.listVolumes();
        out.result(all, (o) =>
          o.table(all, [
            { header: 'id', value: (v) => v.id },
            { header: 'name', value: (v) => v.name },
            { header: 'size', value: (v) => formatBytes(v.sizeBytes) },
            { header: 'sector', value: (v) => v.sectorSize },
            { header: 'state', value: (v) => v.state },
            { header: 'key', value: (v) => v.diskEncryptionKeyCrn ?? '-' },
          ]),
        );
      });
    }));

  volume.command('show').argument('<volume>', 'volume id or name')
    .description('show a volume: metadata stays readable in every state, also after its key is destroyed')
    .action(globalAction(async (idOrName: string, options: CommonOptions) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const info = findVolume(engine, idOrName);
        out.result(info, (o) => printVolume(o, info));
      });
    }));

  volume.command('delete').argument('<volume>', 'volume id or name')
    .description('soft-delete a volume: metadata only until restored or purged after the retention period (default 9 days)')
    .action(globalAction(async (idOrName: string, options: CommonOptions) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const { id } = findVolume(engine, idOrName);
        await engine.deleteVolume(id);
        const info = findVolume(engine, id);
        out.result(info, (o) => {
          o.line(`Volume ${info.name} is ${info.state}.`);
          const purge = (info as { purgeAtMs?: number }).purgeAtMs;
          if (typeof purge === 'number') o.line(`It will be purged at ${isoTime(purge)} unless restored (blockvault volume restore ${info.id}).`);
        });
      });
    }));

  volume.command('restore').argument('<volume>', 'volume id or name')
    .description('restore a soft-deleted volume within its retention period')
    .action(globalAction(async (idOrName: string, options: CommonOptions) => {
      await withEngine(ctx, options, async ({ engine, out }) => {
        const { id } = findVolume(engine, idOrName);
        await engine.restoreVolume(id);
        const info = findVolume(engine, id);
        out.result(info, (o) => o.line(`Volume ${info.name} is ${info.state}.`));
      });
    }));

  volume.command('import').argument('<volume>', 'volume id or name')
    .description('copy a file (or stdin) into a volume, starting at --offset; flushed (durable) at the end')
    .option('--file <path>', 'read from this file; without it, or with -, read stdin')
    .option('--offset <size>', 'byte offset in the volume to start at (units allowed: 1MiB)', (v) => parseSize(v, '--offset'), 0)
    .action(globalAction(async (idOrName: string, options: CommonOptions & { file?: string; offset: number }) => {
      const fromStdin = options.file === undefined || options.file === '-';
      if (fromStdin && ctx.stdin.isTTY === true) throw new UsageError('stdin is a terminal: pipe the data in, or pass --file <path>');
      const inputBytes = fromStdin ? undefined : (await stat(options.file!)).size;
      await withEngine(ctx, options, async ({ engine, out }) => {
        const vol = await engine.openVolume(findVolume(engine, idOrName).id);
        try {
          const info = vol.info();
          const capacity = info.sizeBytes - options.offset;
          if (capacity < 0) throw outOfRange(`--offset ${options.offset} is past the end of the ${info.sizeBytes}-byte volume ${info.name}`);
          if (inputBytes !== undefined && inputBytes > capacity) {
            throw outOfRange(`${options.file} is ${inputBytes} bytes but only ${capacity} fit in ${info.name} after offset ${options.offset}`);
          }
          const source: Readable = fromStdin ? ctx.stdin : createReadStream(options.file!, { highWaterMark: TRANSFER_CHUNK_BYTES });
          const bytesWritten = await importStream(vol, source, options.offset, capacity, inputBytes, out);
          out.result({ volume: info.id, name: info.name, offset: options.offset, bytesWritten }, (o) =>
            o.line(`Imported ${formatBytes(bytesWritten)} into ${info.name} at offset ${options.offset}.`),
          );
        } finally {
          await vol.close();
        }
      });
    }));

  volume.command('export').argument('<volume>', 'volume id or name')
    .description('copy a volume (or --offset/--length of it) to a file or stdout; unwritten sectors read as zeros')
    .option('--file <path>', 'write to this file; without it, or with -, write stdout')
    .option('--offset <size>', 'byte offset to start at (units allowed: 1MiB)', (v) => parseSize(v, '--offset'), 0)
    .option('--length <size>', 'bytes to copy (default: to the end of the volume; units allowed: 4MiB)', (v) => parseSize(v, '--length'))
    .action(globalAction(async (idOrName: string, options: CommonOptions & { file?: string; offset: number; length?: number }) => {
      const toStdout = options.file === undefined || options.file === '-';
      if (toStdout && options.json === true) throw new UsageError('--json needs --file with export: stdout carries the volume data');
      if (toStdout && ctx.stdout.isTTY === true) throw new UsageError('stdout is a terminal: redirect it (> disk.img) or pass --file <path>');
      await withEngine(ctx, options, async ({ engine, out }) => {
        const vol = await engine.openVolume(findVolume(engine, idOrName).id);
        try {
          const info = vol.info();
          const length = options.length ?? Math.max(0, info.sizeBytes - options.offset);
          if (options.offset + length > info.sizeBytes) {
            throw outOfRange(`--offset ${options.offset} + --length ${length} is past the end of the ${info.sizeBytes}-byte volume ${info.name}`);
          }
          const sink: Writable = toStdout ? ctx.stdout : createWriteStream(options.file!);
          await exportStream(vol, sink, options.offset, length, out);
          if (!toStdout) await new Promise<void>((resolve, reject) => sink.end((error?: Error | null) => (error ? reject(error) : resolve())));
          out.result({ volume: info.id, name: info.name, offset: options.offset, bytesRead: length, file: options.file ?? null }, (o) => {
            if (!toStdout) o.line(`Exported ${formatBytes(length)} of ${info.name} to ${options.file}.`);
          });
        } finally {
          await vol.close();
        }
      });
    }));

  registerServeCommand(volume, ctx);
}

function parseSectorSize(text: string): number {
  if (text !== '512' && text !== '4096') throw new UsageError(`--sector-size ${JSON.stringify(text)}: a volume's sector size is 512 or 4096 bytes`);
  return Number(text);
}

function outOfRange(message: string): BlockvaultError {
  return new BlockvaultError('OUT_OF_RANGE', message);
}

/**
 * Writes `source` into the volume in TRANSFER_CHUNK_BYTES pieces. Memory stays bounded: one
 * chunk is filled while the stream is paused by for-await between writes.
 */
async function importStream(vol: VolumeHandle, source: Readable, offset: number, capacity: number, totalBytes: number | undefined, out: Output): Promise<number> {
  const group = progressGroup(out);
  const bar = group.add('import', 'bytes');
  const chunk = Buffer.allocUnsafe(TRANSFER_CHUNK_BYTES);
  let filled = 0;
  let written = 0;
  const flushChunk = async (): Promise<void> => {
    if (filled === 0) return;
    if (written + filled > capacity) throw outOfRange(`the input is larger than the ${capacity} bytes that fit in the volume after offset ${offset}`);
    await vol.write(offset + written, new Uint8Array(chunk.subarray(0, filled)));
    written += filled;
    filled = 0;
    bar.update(written, totalBytes ?? Math.max(written, capacity));
  };
  try {
    for await (const data of source) {
      let piece = typeof data === 'string' ? Buffer.from(data) : (data as Buffer);
      while (piece.length > 0) {
        const take = Math.min(piece.length, TRANSFER_CHUNK_BYTES - filled);
        piece.copy(chunk, filled, 0, take);
        filled += take;
        piece = piece.subarray(take);
        if (filled === TRANSFER_CHUNK_BYTES) await flushChunk();
      }
    }
    await flushChunk();
    await vol.flush();
    bar.update(written, totalBytes ?? written);
    return written;
  } finally {
    chunk.fill(0);
    group.stop();
  }
}

async function exportStream(vol: VolumeHandle, sink: Writable, offset: number, length: number, out: Output): Promise<void> {
  const group = progressGroup(out);
  const bar = group.add('export', 'bytes');
  let done = 0;
  try {
    while (done < length) {
      const take = Math.min(TRANSFER_CHUNK_BYTES, length - done);
      const bytes = await vol.read(offset + done, take);
      if (!sink.write(bytes)) {
        await new Promise<void>((resolve, reject) => {
          const onError = (error: Error): void => reject(error);
          sink.once('error', onError);
          sink.once('drain', () => {
            sink.off('error', onError);
            resolve();
          });
        });
      }
      done += take;
      bar.update(done, length);
    }
  } finally {
    group.stop();
  }
}

export function printVolume(o: Output, info: VolumeInfo): void {
  const known = new Set(['id', 'name', 'sizeBytes', 'sectorSize', 'state', 'diskEncryptionKeyCrn']);
  o.line(`id:          ${info.id}`);
  o.line(`name:        ${info.name}`);
  o.line(`size:        ${formatBytes(info.sizeBytes)} (${info.sizeBytes} bytes)`);
  o.line(`sector size: ${info.sectorSize} bytes`);
  o.line(`state:       ${info.state}`);
  o.line(`key:         ${info.diskEncryptionKeyCrn ?? '-'}`);
  const rest = Object.fromEntries(Object.entries(info).filter(([k]) => !known.has(k)));
  if (Object.keys(rest).length > 0) o.fields(rest, '');
}
