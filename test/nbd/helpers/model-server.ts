/**
 * An NBD server exporting one stand-in volume (export name "m") on a Unix socket, with a raw
 * client through the handshake, for tests that drive the server's transmission loop directly.
 * `useModelServer` registers the cleanup: the client and the server close after each test.
 */
import { join } from 'node:path';
import { afterEach } from 'vitest';
import type { NbdVolume } from '../../../src/nbd/export.js';
import { NbdServer } from '../../../src/nbd/server.js';
import { useTempDirs } from '../../helpers/temp-dir.js';
import { RawClient } from './raw-client.js';

export interface ModelExport {
  volume: NbdVolume;
  sizeBytes: number;
  sectorSize: number;
  description: string;
  /** Negotiate structured replies in the handshake. */
  structured?: boolean;
}

export function useModelServer(tempPrefix: string): (exported: ModelExport) => Promise<RawClient> {
  const tempDir = useTempDirs(tempPrefix);
  let server: NbdServer | null = null;
  let raw: RawClient | null = null;
  afterEach(async () => {
    raw?.close();
    await server?.close();
    server = raw = null;
  });
  return async ({ volume, sizeBytes, sectorSize, description, structured }) => {
    server = new NbdServer([{ name: 'm', volume, readOnly: false, writeThrough: false, sizeBytes, sectorSize, description }]);
    const socketPath = join(tempDir(), 'model.sock');
    await server.listen({ socketPath });
    raw = await RawClient.connect(socketPath);
    await raw.go('m', { structured: structured === true });
    return raw;
  };
}
