/** A qemu LUKS image for the benchmarks' qemu-nbd baseline. */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';

function run(command: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

/**
 * qemu-img create -f luks (aes-256-xts-plain64). qemu times its PBKDF2 iteration count against
 * the CPU time getrusage reports, and on a loaded shared machine that measurement sometimes fails
 * ("Unable to get accurate CPU usage"); only that failure is retried.
 */
export async function createLuksImage(path: string, secret: string, sizeBytes: number): Promise<void> {
  const args = ['create', '-q', '--object', secret, '-f', 'luks', '-o', 'key-secret=sec0,cipher-alg=aes-256,cipher-mode=xts,ivgen-alg=plain64,hash-alg=sha256,iter-time=200', path, String(sizeBytes)];
  for (let attempt = 1; ; attempt++) {
    const r = await run('qemu-img', args);
    if (r.code === 0) return;
    if (attempt >= 5 || !r.stderr.includes('Unable to get accurate CPU usage')) throw new Error(`qemu-img ${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    rmSync(path, { force: true });
  }
}

