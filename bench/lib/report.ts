/** Small helpers to print and save benchmark results (bench/results/<name>.json and .md). */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'results');

/** MB/s (10^6 bytes per second) from operations per second and bytes per operation. */
export function megabytesPerSecond(opsPerSecond: number, bytesPerOp: number): number {
  return (opsPerSecond * bytesPerOp) / 1e6;
}

export function formatNumber(value: number | undefined, digits = 1): string {
  return value === undefined || !Number.isFinite(value) ? 'n/a' : value.toFixed(digits);
}

export function formatRatio(numerator: number | undefined, denominator: number | undefined, digits = 2): string {
  if (numerator === undefined || denominator === undefined || !(denominator > 0)) return 'n/a';
  return `${(numerator / denominator).toFixed(digits)}x`;
}

/** A GitHub-flavoured markdown table. */
export function markdownTable(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---:')), ...rows.map(line)].join('\n');
}

/** Writes `<name>.json` and `<name>.md` in bench/results, each atomically (tmp file + rename). */
export function saveResults(name: string, json: unknown, markdown: string): { json: string; md: string } {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const paths = { json: join(RESULTS_DIR, `${name}.json`), md: join(RESULTS_DIR, `${name}.md`) };
  writeAtomic(paths.json, `${JSON.stringify(json, null, 2)}\n`);
  writeAtomic(paths.md, markdown.endsWith('\n') ? markdown : `${markdown}\n`);
  return paths;
}

function writeAtomic(path: string, content: string): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, content);
  renameSync(tmp, path);
}
