#!/usr/bin/env node
// Builds the Rust addon (native/) in the release profile with @napi-rs/cli.
//
// Called from the package's own `install` script, so a fresh `npm install` builds it. When cargo
// is missing or the build fails, the install still succeeds: blockvault then runs on the pure-TS
// cipher and says so once at load time. `--strict` (CI, `npm run build:native`) turns a failed
// build into a failed command instead.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const strict = process.argv.includes('--strict') || process.env.BLOCKVAULT_NATIVE_STRICT === '1';

function fail(message) {
  if (strict) {
    console.error(`blockvault: native addon build failed: ${message}`);
    process.exit(1);
  }
  console.warn(`blockvault: native addon not built (${message}); the pure-TS cipher will be used.`);
  process.exit(0);
}

if (process.env.BLOCKVAULT_SKIP_NATIVE === '1') fail('BLOCKVAULT_SKIP_NATIVE=1');
const cargo = spawnSync('cargo', ['--version'], { stdio: 'ignore' });
if (cargo.status !== 0) fail('cargo was not found on PATH');

const cli = join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js');
if (!existsSync(cli)) fail('@napi-rs/cli is not installed (devDependencies skipped?)');

const result = spawnSync(
  process.execPath,
  [cli, 'build', '--release', '--manifest-path', 'native/Cargo.toml', '--output-dir', 'native', '--no-js', '--dts', 'index.d.ts'],
  { cwd: root, stdio: 'inherit' },
);
if (result.status !== 0) fail(`napi build exited with ${result.status ?? result.signal}`);
