/** A Buffer over the same memory as `bytes` (no copy): `bytes` itself when it is a Buffer already. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
