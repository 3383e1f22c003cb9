import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * Where a worker-thread entry point lives, and the Node flags it needs.
 *
 * From the built package (dist/) the worker is a plain .js file next to its caller. When blockvault
 * runs from TypeScript sources (vitest, tsx), only the .ts file exists. Before Node 22, tsx
 * registers its ESM hooks on the main thread only, so `--import tsx` leaves a worker unable to load
 * a .ts entry ("Unknown file extension .ts"). The worker therefore registers tsx itself through a
 * preloaded data: module: no extra file to ship, and tsx (a devDependency) is needed exactly when
 * running from sources.
 *
 * `callerUrl` is the caller's `import.meta.url`, `baseName` the file name without extension.
 */
export function workerScript(callerUrl: string, baseName: string): { filename: string; execArgv: string[] } {
  const js = fileURLToPath(new URL(`./${baseName}.js`, callerUrl));
  if (existsSync(js)) return { filename: js, execArgv: [] };
  const ts = fileURLToPath(new URL(`./${baseName}.ts`, callerUrl));
  if (existsSync(ts)) return { filename: ts, execArgv: ['--import', tsxRegisterPreload()] };
  throw new Error(`blockvault: worker script ${baseName} not found next to ${callerUrl}`);
}

let preload: string | undefined;

/** A data: module that registers tsx's ESM hooks in the thread that imports it. */
function tsxRegisterPreload(): string {
  preload ??= `data:text/javascript,${encodeURIComponent(`import { register } from ${JSON.stringify(tsxEsmApiUrl())}; register();`)}`;
  return preload;
}

/** tsx's ESM API module, found through tsx's package.json (vitest's module runner has no import.meta.resolve). */
function tsxEsmApiUrl(): string {
  const packageJsonPath = createRequire(import.meta.url).resolve('tsx/package.json');
  const exports = (JSON.parse(readFileSync(packageJsonPath, 'utf8')) as { exports: Record<string, { import: { default: string } }> }).exports;
  const api = exports['./esm/api'];
  if (api === undefined) throw new Error('blockvault: this tsx version has no ./esm/api export; cannot run .ts workers');
  return pathToFileURL(join(dirname(packageJsonPath), api.import.default)).href;
}
