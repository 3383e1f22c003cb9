import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * Where a worker-thread entry point lives, and the Node flags it needs.
 *
 * From the built package (dist/) the worker is a plain .js file next to its caller. When blockvault
 * runs from TypeScript sources (vitest, tsx), only the .ts file exists; the worker then loads it
 * through tsx's loader, which is a devDependency and so present exactly in that case.
 *
 * `callerUrl` is the caller's `import.meta.url`, `baseName` the file name without extension.
 */
export function workerScript(callerUrl: string, baseName: string): { filename: string; execArgv: string[] } {
  const js = fileURLToPath(new URL(`./${baseName}.js`, callerUrl));
  if (existsSync(js)) return { filename: js, execArgv: [] };
  const ts = fileURLToPath(new URL(`./${baseName}.ts`, callerUrl));
  if (existsSync(ts)) return { filename: ts, execArgv: ['--import', 'tsx'] };
  throw new Error(`blockvault: worker script ${baseName} not found next to ${callerUrl}`);
}
