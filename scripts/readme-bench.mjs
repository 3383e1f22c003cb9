#!/usr/bin/env node
// Copies the latest benchmark tables (bench/results/<name>.md, written by `npm run bench:<name>`)
// into README.md between `<!-- bench:<name> -->` and `<!-- /bench:<name> -->`, so the README
// quotes exactly what was measured. Headings are demoted to sit under the README's section.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const readmePath = join(root, 'README.md');
let readme = readFileSync(readmePath, 'utf8');
const markers = [...readme.matchAll(/<!-- bench:([a-z-]+) -->/g)].map((m) => m[1]);
for (const name of markers) {
  const source = join(root, 'bench', 'results', `${name}.md`);
  if (!existsSync(source)) {
    console.warn(`readme-bench: ${source} is missing; run its benchmark first (see the README)`);
    continue;
  }
  const body = readFileSync(source, 'utf8').trim().replace(/^(#+) /gm, '$1### ');
  const pattern = new RegExp(`(<!-- bench:${name} -->)[\\s\\S]*?(<!-- /bench:${name} -->)`);
  readme = readme.replace(pattern, `$1\n${body}\n$2`);
}
writeFileSync(readmePath, readme);
console.log(`readme-bench: updated ${markers.join(', ')}`);
