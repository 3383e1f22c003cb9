/** The NBD server (NetworkBlockDevice doc/proto.md): blockvault volumes as network block devices. */
export { NbdServer, DEFAULT_NBD_HOST, CONNECTIONS_MAX } from './server.js';
export type { NbdListenOptions, NbdAddress, ConnectionEvent } from './server.js';
export { startNbdServer, nbdUri } from './serve.js';
export type { NbdExportOptions, NbdServeOptions, NbdServerHandle, NbdExportInfo } from './serve.js';
export type { NbdExport, NbdVolume } from './export.js';
export { PAYLOAD_BYTES_MAX, IN_FLIGHT_BYTES_MAX } from './protocol.js';
