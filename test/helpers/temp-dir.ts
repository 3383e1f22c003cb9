/**
 * Temporary directories for tests that use real files (LMDB environments, key files). Each test
 * file gets its own directories under the OS temp dir; `removeTempDirs()` in afterAll (or
 * `useTempDirs()` which registers it) deletes them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

const created: string[] = [];

export function makeTempDir(prefix = 'blockvault-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  created.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  while (created.length > 0) rmSync(created.pop()!, { recursive: true, force: true });
}

/** Registers the cleanup with vitest and returns the factory. */
export function useTempDirs(prefix?: string): () => string {
  afterAll(() => removeTempDirs());
  return () => makeTempDir(prefix);
}
