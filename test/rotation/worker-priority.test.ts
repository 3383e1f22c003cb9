/**
 * Rotation threads run below the process's priority (RotationPool's niceIncrement): on Linux a
 * nice value belongs to one thread, so after the pool's threads start, exactly the workers carry
 * the increment and the main thread keeps its own. Read from /proc, the kernel's own record.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { validateRotationOptions } from '../../src/rotation/task-manager.js';
import { ROTATION_NICE_INCREMENT, RotationPool } from '../../src/rotation/worker-pool.js';

/** The nice value of every thread of this process, by thread id (field 19 of /proc/<tid>/stat). */
function threadNices(): Map<number, number> {
  const nices = new Map<number, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    // Fields after the command name (in parentheses, which may hold spaces): state is field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    nices.set(Number(tid), Number(fields[19 - 3]));
  }
  return nices;
}

let pool: RotationPool | null = null;
afterEach(async () => {
  await pool?.destroy();
  pool = null;
});

describe.runIf(process.platform === 'linux')('rotation worker priority', () => {
  it(`lowers only the worker threads, by ${ROTATION_NICE_INCREMENT} by default`, async () => {
    const before = threadNices();
    const own = before.get(process.pid)!;
    pool = await RotationPool.create({ workers: 2 });
    await pool.warmUp();
    const after = threadNices();
    const lowered = [...after].filter(([tid, nice]) => !before.has(tid) && nice === Math.min(19, own + ROTATION_NICE_INCREMENT));
    expect(lowered.length).toBeGreaterThanOrEqual(2);
    expect(after.get(process.pid)).toBe(own);
  });

  it('niceIncrement 0 leaves them at the process priority; out-of-range values are refused', async () => {
    const own = threadNices().get(process.pid)!;
    const before = threadNices();
    pool = await RotationPool.create({ workers: 1, niceIncrement: 0 });
    await pool.warmUp();
    const fresh = [...threadNices()].filter(([tid]) => !before.has(tid));
    expect(fresh.length).toBeGreaterThan(0);
    expect(fresh.every(([, nice]) => nice === own)).toBe(true);
    await expect(RotationPool.create({ niceIncrement: 20 })).rejects.toThrow(/niceIncrement must be an integer in 0\.\.19/);
    await expect(RotationPool.create({ niceIncrement: -1 })).rejects.toThrow(/0\.\.19/);
    // The engine's rotation option, checked at Engine.open with a typed error.
    expect(() => validateRotationOptions({ niceIncrement: 2.5 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/rotation\.niceIncrement must be an integer in 0\.\.19/) }));
    expect(validateRotationOptions({ niceIncrement: 0 })).toEqual({ niceIncrement: 0 });
  });
});
