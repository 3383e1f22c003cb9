#!/usr/bin/env node
// Builds pkcs11js's native binding (node-gyp), for the PKCS#11 key provider (src/hsm/pkcs11).
//
// npm 11 no longer runs dependencies' install scripts unless allowed, so `npm install` / `npm ci`
// leave pkcs11js without build/Release/pkcs11.node. The package's own `install` script calls this,
// which runs `npm rebuild pkcs11js` explicitly. When the build fails (no C++ toolchain), the
// install still succeeds: only the PKCS#11 provider is then unavailable, and it says so
// (HSM_UNAVAILABLE). BLOCKVAULT_NATIVE_STRICT=1 (CI) turns a failed build into a failed install.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const strict = process.env.BLOCKVAULT_NATIVE_STRICT === '1';
const built = join(root, 'node_modules', 'pkcs11js', 'build', 'Release', 'pkcs11.node');

function done(message) {
  if (strict) {
    console.error(`blockvault: pkcs11js build failed: ${message}`);
    process.exit(1);
  }
  console.warn(`blockvault: pkcs11js not built (${message}); the PKCS#11 key provider is unavailable.`);
  process.exit(0);
}

if (!existsSync(join(root, 'node_modules', 'pkcs11js', 'package.json'))) done('pkcs11js is not installed');
// npm sets npm_execpath to its own CLI when it runs this script; fall back to npm on PATH.
const npmCli = process.env.npm_execpath;
const [command, args] = npmCli && npmCli.endsWith('.js') ? [process.execPath, [npmCli]] : ['npm', []];
const result = spawnSync(command, [...args, 'rebuild', 'pkcs11js', '--foreground-scripts'], { cwd: root, stdio: 'inherit' });
if (result.status !== 0) done(`npm rebuild pkcs11js exited with ${result.status ?? result.signal}`);
if (!existsSync(built)) done(`${built} is missing after npm rebuild`);
