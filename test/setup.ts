/**
 * Runs before every test file (vitest.config.ts, setupFiles), in the file's own module graph.
 */
import { afterAll } from 'vitest';
import { removeFileEndDirs } from './helpers/file-end-cleanup.js';

afterAll(removeFileEndDirs);
