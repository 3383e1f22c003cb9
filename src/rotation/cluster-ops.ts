import { pathToFileURL } from 'node:url';
import { workerScript } from '../util/worker-script.js';
import type { ReencryptClusterFn } from '../volume/reencrypt-contract.js';

/** The cipher a ReencryptClusterFn receives (src/cipher's XtsCipher). */
export type RotationCipher = Parameters<ReencryptClusterFn>[0];

/**
 * What a rotation worker needs to re-encrypt clusters: the cluster format's pure function and a
 * cipher. It is a module rather than a value because worker threads import it themselves; the
 * runner only passes its URL. Production uses `volume-cluster-ops` (the real cluster format and
 * src/cipher); tests pass their own module with their own format through the same signature,
 * which keeps the runner independent of the format.
 */
export interface ClusterOps {
  reencryptCluster: ReencryptClusterFn;
  /** Called once per thread. `backend` comes from the pool options ('native', 'ts', or default). */
  createCipher(backend: string | undefined): RotationCipher | Promise<RotationCipher>;
  /** Optional, for tests: report worker-side state (for example that keys were zeroized). */
  probe?(): unknown;
}

/** The URL of the production ops module (the .js next to this file, or the .ts under tsx). */
export function defaultClusterOpsUrl(): string {
  return pathToFileURL(workerScript(import.meta.url, 'volume-cluster-ops').filename).href;
}

/** Accepts a file URL or an absolute path. */
export function toModuleUrl(moduleUrlOrPath: string): string {
  return moduleUrlOrPath.startsWith('file:') ? moduleUrlOrPath : pathToFileURL(moduleUrlOrPath).href;
}

export async function loadClusterOps(moduleUrl: string): Promise<ClusterOps> {
  const mod = (await import(moduleUrl)) as Partial<ClusterOps>;
  if (typeof mod.reencryptCluster !== 'function' || typeof mod.createCipher !== 'function') {
    throw new Error(`blockvault: ${moduleUrl} does not export reencryptCluster and createCipher`);
  }
  return mod as ClusterOps;
}
