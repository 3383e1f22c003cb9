/**
 * `blockvault bench [name]`: runs the package's `bench:<name>` npm script (in a source checkout),
 * or lists the benchmarks and where their figures are written (the README).
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { globalAction, outputFor, type CliContext, type CommonOptions } from '../context.js';
import { CliFailure, UsageError } from '../usage-error.js';

export function registerBenchCommand(program: Command, ctx: CliContext): void {
  program
    .command('bench')
    .argument('[name]', 'benchmark to run (e.g. cipher, rotation); without it, list them')
    .description('run a benchmark (npm run bench:<name>) or list them; figures are written in README.md')
    .addHelpText('after', '\n--dir and --key-file are ignored: benchmarks use their own temporary directories. --json: the list as one JSON document.')
    .action(globalAction(async (name: string | undefined, options: CommonOptions) => {
      const out = outputFor(ctx, options);
      const root = packageRoot();
      const scripts = root === null ? {} : readScripts(root);
      const benches = Object.keys(scripts)
        .filter((s) => s.startsWith('bench:'))
        .map((s) => ({ name: s.slice('bench:'.length), script: s, command: scripts[s] }));
      const readme = root === null ? null : path.join(root, 'README.md');
      if (name === undefined) {
        out.result({ benches, figures: readme }, (o) => {
          if (benches.length === 0) o.line('No benchmarks in this installation (they live in a source checkout: npm run bench:<name>).');
          for (const b of benches) o.line(`${b.name.padEnd(12)} npm run ${b.script}`);
          if (readme !== null) o.line(`Figures: ${readme} (section "Performance").`);
        });
        return;
      }
      const bench = benches.find((b) => b.name === name);
      if (bench === undefined || root === null) {
        throw new UsageError(`no benchmark "${name}"; available: ${benches.map((b) => b.name).join(', ') || '(none)'}`);
      }
      if (options.json === true) throw new UsageError('--json lists benchmarks; a benchmark run prints its own report');
      const code = await new Promise<number>((resolve, reject) => {
        const child = spawn('npm', ['run', bench.script], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
        child.on('error', reject);
        child.on('exit', (status, signal) => resolve(status ?? (signal ? 1 : 0)));
      });
      if (code !== 0) throw new CliFailure('BENCH_FAILED', `npm run ${bench.script} exited with status ${code}`);
    }));
}

function packageRoot(): string | null {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, 'package.json');
    if (existsSync(candidate)) {
      try {
        if ((JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string }).name === 'blockvault') return dir;
      } catch {
        // Not ours; keep walking up.
      }
    }
    dir = path.dirname(dir);
  }
  return null;
}

function readScripts(root: string): Record<string, string> {
  return (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts?: Record<string, string> }).scripts ?? {};
}
