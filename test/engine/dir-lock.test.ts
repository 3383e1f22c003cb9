/**
 * One engine per directory: the audit hash chain, the HSM keystore and the cached volume records
 * assume a single writer, so a second open of a directory that is open elsewhere is refused
 * with ENGINE_BUSY, in this process or another; a lock left by a killed process is taken over.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { ENGINE_LOCK_FILE } from '../../src/engine.js';
import { openTestEngine, testHsmOptions } from '../helpers/engine.js';
import { forEachProvider, type ProviderName } from '../helpers/providers.js';
import { useTempDirs } from '../helpers/temp-dir.js';

const tempDir = useTempDirs('blockvault-lock-');

/**
 * A child that opens the engine, says so, and waits to be killed. The HSM options (the test
 * passphrase, or the SoftHSM2 token's PIN) go through the environment, not argv; SOFTHSM2_CONF is
 * in process.env once the token exists (test/helpers/softhsm.ts).
 */
function holdInChild(dir: string, provider: ProviderName): Promise<{ kill: () => Promise<void> }> {
  const script = `
    import { Engine } from ${JSON.stringify(new URL('../../src/engine.ts', import.meta.url).href)};
    await Engine.open({ dir: ${JSON.stringify(dir)}, hsm: JSON.parse(process.env.BLOCKVAULT_TEST_HSM), purgeIntervalMs: 0 });
    process.stdout.write('open\\n');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BLOCKVAULT_TEST_HSM: JSON.stringify(testHsmOptions(provider)) },
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      if (!chunk.toString().includes('open')) return;
      resolve({
        kill: () =>
          new Promise<void>((done) => {
            child.on('exit', () => done());
            child.kill('SIGKILL');
          }),
      });
    });
    child.on('exit', (code) => reject(new Error(`child exited (${code}) before opening: ${stderr}`)));
  });
}

// On each key provider: a refused open must not disturb the first engine's token login either.
forEachProvider('engine directory lock', (provider) => {
  it('refuses a second engine on the same directory in this process, and frees the directory on close', async () => {
    const dir = tempDir();
    const first = await openTestEngine(dir, { provider });
    await expect(openTestEngine(dir, { provider })).rejects.toMatchObject({ code: 'ENGINE_BUSY', message: expect.stringContaining('another engine of this process') });
    // The refused open left the first engine untouched.
    expect(first.listVolumes()).toEqual([]);
    await first.close();
    expect(existsSync(join(dir, ENGINE_LOCK_FILE))).toBe(false);
    const again = await openTestEngine(dir, { provider });
    await again.close();
  });

  it('refuses while another live process has it open, and takes over once that process is killed', async () => {
    const dir = tempDir();
    await (await openTestEngine(dir, { provider })).close();
    const holder = await holdInChild(dir, provider);
    try {
      await expect(openTestEngine(dir, { provider })).rejects.toMatchObject({ code: 'ENGINE_BUSY', message: expect.stringMatching(/process \d+/) });
    } finally {
      await holder.kill();
    }
    const engine = await openTestEngine(dir, { provider }); // the dead holder's lock is taken over
    await engine.close();
  });
});
