#!/usr/bin/env node
/**
 * The `blockvault` bin. All behaviour lives in program.ts; this file only binds the real
 * process (argv, streams, environment) and exits with the status runCli chose.
 */
import { runCli } from './program.js';

// `blockvault volume export | head -c 100` closes the pipe early; that is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

const exitCode = await runCli(process.argv.slice(2), {
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
});
// Exit explicitly: worker pools or timers an engine leaves behind must not keep a finished
// command alive. Writes to files, pipes and terminals are synchronous on POSIX, so nothing is lost.
await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
process.exit(exitCode);
