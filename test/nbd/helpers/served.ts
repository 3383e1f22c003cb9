/**
 * An engine in a temp dir with volumes on one root key, served over NBD on a Unix socket in that
 * dir; `stop()` closes the server and the engine (call it in afterEach/afterAll).
 */
import { join } from 'node:path';
import type { Engine } from '../../../src/engine.js';
import type { RootKeyInfo } from '../../../src/hsm/types.js';
import type { VolumeStoreOptions } from '../../../src/store/volume-store.js';
import type { NbdExportOptions, NbdServeOptions, NbdServerHandle } from '../../../src/nbd/serve.js';
import type { ConnectionEvent } from '../../../src/nbd/server.js';
import { openTestEngine, rootKey } from '../../helpers/engine.js';
import type { ProviderName } from '../../helpers/providers.js';

export interface Served {
  engine: Engine;
  /** The engine directory. */
  dir: string;
  key: RootKeyInfo;
  server: NbdServerHandle;
  socketPath: string;
  events: ConnectionEvent[];
  uri(name: string): string;
  stop(): Promise<void>;
}

export async function serveVolumes(
  dir: string,
  volumes: ReadonlyArray<{ name: string; sizeBytes: number; sectorSize?: 512 | 4096 }>,
  exports?: NbdExportOptions[],
  options: { provider?: ProviderName; serve?: Omit<NbdServeOptions, 'onConnectionEvent'>; store?: VolumeStoreOptions } = {},
): Promise<Served> {
  const engine = await openTestEngine(dir, { provider: options.provider ?? 'software', ...(options.store === undefined ? {} : { store: options.store }) });
  try {
    const key = await rootKey(engine);
    for (const v of volumes) {
      const vol = await engine.createVolume({ name: v.name, sizeBytes: v.sizeBytes, sectorSize: v.sectorSize ?? 4096, diskEncryptionKeyCrn: key.crn });
      await vol.close();
    }
    const socketPath = join(dir, 'nbd.sock');
    const events: ConnectionEvent[] = [];
    const server = await engine.serveNbd({ socketPath }, exports ?? volumes.map((v) => ({ volume: v.name })), { ...options.serve, onConnectionEvent: (e) => events.push(e) });
    return {
      engine,
      dir,
      key,
      server,
      socketPath,
      events,
      uri: (name) => server.exports.find((e) => e.name === name)!.uri,
      stop: async () => {
        await server.close();
        await engine.close();
      },
    };
  } catch (error) {
    await engine.close();
    throw error;
  }
}
