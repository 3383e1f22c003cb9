/**
 * The production ClusterOps (see cluster-ops.ts): the volume's cluster format and the XTS cipher.
 * Importing this module loads the native addon, which the pool does on the main thread before any
 * worker starts, so that the addon is never loaded first (and unloaded) by a worker thread.
 */
import { XtsCipher } from '../cipher/index.js';
import type { RotationCipher } from './cluster-ops.js';

export { reencryptCluster } from '../volume/cluster-format.js';

export function createCipher(backend: string | undefined): RotationCipher {
  return backend === 'native' || backend === 'ts' ? XtsCipher.create({ backend }) : XtsCipher.create();
}
