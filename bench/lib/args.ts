/** Command-line values shared by the benchmarks and the stress harness. */

/** Bytes from "16MiB", "1GiB", "512KiB", "4096" or "4096B"; `flag` names the option in the error. */
export function parseByteSize(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB)?$/i.exec(text.trim());
  if (match === null) throw new Error(`${flag}: expected e.g. 16MiB, got ${JSON.stringify(text)}`);
  const unit = { b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 }[(match[2] ?? 'B').toLowerCase() as 'b' | 'kib' | 'mib' | 'gib'];
  return Math.round(Number(match[1]) * unit);
}
