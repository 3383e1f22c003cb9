/**
 * Directories to remove once the current test file has run, for helpers that make them outside
 * any hook (test/helpers/softhsm.ts makes its token on first use). Deliberately free of imports
 * from vitest: child processes that tests spawn load the same helpers, and importing vitest
 * outside its runner throws. test/setup.ts (vitest's setupFiles) removes them in an afterAll.
 */
import { rmSync } from 'node:fs';

const dirs = new Set<string>();

export function removeAtFileEnd(dir: string): void {
  dirs.add(dir);
}

export function removeFileEndDirs(): void {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}
