/**
 * Crash-resume: a child process rotates a volume while writing to it and is SIGKILLed at a random
 * point (sometimes twice: the second time during its own resume). The parent then checks that
 * every sector is readable with its last acknowledged content (or a write that was under way),
 * resumes the task, waits for it, checks again, and checks that no cluster is left under a
 * generation whose key is gone.
 *
 * ROTATION_CRASH_TRIALS (default 20) and ROTATION_CRASH_SEED change the schedule; the stress run
 * is `ROTATION_CRASH_TRIALS=200 npx vitest run test/rotation/crash-resume.test.ts`.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { bytesEqual, sectorContent, seededRandom } from './helpers/content.js';
import { KEY_CRN, createFilledVolume, openHarness, removeDir, tempDir } from './helpers/setup.js';
import type { TestVolume } from './helpers/test-volume.js';

const TRIALS = Number(process.env.ROTATION_CRASH_TRIALS ?? 20);
const SEED = Number(process.env.ROTATION_CRASH_SEED ?? 20261122);
const PARALLEL = 2;
const CHILD = fileURLToPath(new URL('./fixtures/rotate-child.ts', import.meta.url));
const GEOMETRY = { sizeSectors: 8 * 96, sectorSize: 512, clusterSectors: 8 };

interface SectorLog {
  acked: number;
  /** Writes announced after the last acknowledged one: any of them may have committed. */
  pending: number[];
}

interface ChildRun {
  killed: boolean;
  lines: string[];
}

/** Run the child; kill it after `killAfterLines` lines past READY plus `extraDelayMs` (or let it finish). */
function runChild(dir: string, seed: number, run: number, kill: { afterLines: number; extraDelayMs: number } | null): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir, String(seed), String(run)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let stderr = '';
    let buffer = '';
    let ready = false;
    let sinceReady = 0;
    let killed = false;
    const doKill = (): void => {
      if (killed) return;
      killed = true;
      child.kill('SIGKILL');
    };
    child.stdout.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      let at: number;
      while ((at = buffer.indexOf('\n')) >= 0) {
        const text = buffer.slice(0, at);
        buffer = buffer.slice(at + 1);
        lines.push(text);
        if (text === 'READY') ready = true;
        else if (ready && kill !== null && !killed && ++sinceReady >= kill.afterLines) {
          if (kill.extraDelayMs > 0) setTimeout(doKill, kill.extraDelayMs);
          else doKill();
        }
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (buffer.length > 0) lines.push(buffer); // a partial line: the kill cut it
      if (signal === 'SIGKILL') resolve({ killed: true, lines });
      else if (code === 0) resolve({ killed: false, lines });
      else reject(new Error(`rotate-child exited with ${code}: ${stderr}`));
    });
  });
}

function applyLog(log: Map<number, SectorLog>, lines: string[]): void {
  for (const text of lines) {
    const [kind, a, b] = text.split(' ');
    if (kind !== 'I' && kind !== 'A') continue;
    if (b === undefined) continue; // cut by the kill: the write had not started
    const sector = Number(a);
    const version = Number(b);
    const entry = log.get(sector) ?? { acked: 0, pending: [] };
    if (kind === 'I') entry.pending.push(version);
    else {
      entry.acked = version;
      entry.pending = entry.pending.filter((v) => v > version);
    }
    log.set(sector, entry);
  }
}

function checkSectors(volume: TestVolume, log: Map<number, SectorLog>, when: string): void {
  for (let s = 0; s < volume.sizeSectors; s++) {
    const entry = log.get(s) ?? { acked: 0, pending: [] };
    const got = volume.read(s);
    const candidates = [entry.acked, ...entry.pending];
    if (!candidates.some((v) => bytesEqual(got, sectorContent(volume.sectorSize, s, v)))) {
      throw new Error(`${when}: sector ${s} holds none of versions ${candidates.join(', ')}`);
    }
    // A write that was under way at the kill either committed or not; from now on it is settled.
    const settled = candidates.find((v) => bytesEqual(got, sectorContent(volume.sectorSize, s, v)))!;
    log.set(s, { acked: settled, pending: [] });
  }
}

interface TrialResult {
  killsMidTask: number;
  kills: number;
}

async function trial(index: number): Promise<TrialResult> {
  const random = seededRandom(SEED + index * 7919);
  const dir = tempDir('bv-rot-crash-');
  try {
    // Prepare the volume in the parent, then hand the directory to the child.
    const setup = await openHarness(dir);
    await createFilledVolume(setup, 'vol', GEOMETRY);
    await setup.close();

    const log = new Map<number, SectorLog>();
    const childRuns = random() < 0.3 ? 2 : 1;
    let kills = 0;
    let killsMidTask = 0;
    for (let run = 1; run <= childRuns; run++) {
      const kill = random() < 0.5 ? { afterLines: 1 + Math.floor(random() * 200), extraDelayMs: 0 } : { afterLines: 1, extraDelayMs: Math.floor(random() * 250) };
      const result = await runChild(dir, SEED + index, run, kill);
      applyLog(log, result.lines);
      if (!result.killed) break;
      kills++;
      if (!result.lines.some((l) => l.startsWith('DONE'))) killsMidTask++;
    }

    const h = await openHarness(dir);
    try {
      const volume = h.volumes.get('vol') ?? (await import('./helpers/test-volume.js')).TestVolume.open(h.root, h.cipher, 'vol');
      h.volumes.set('vol', volume);
      checkSectors(volume, log, `trial ${index} after the crash`);
      let tasks = h.manager.list();
      if (tasks.length === 0) {
        // Killed before the task was created: rotate now.
        await h.manager.create({ volumeId: 'vol', keyCrn: KEY_CRN, fromKeyVersion: 1, toKeyVersion: 2 });
        tasks = h.manager.list();
      } else {
        await h.manager.resumeAll();
      }
      expect(tasks).toHaveLength(1);
      const done = await h.manager.wait(tasks[0]!.id, { timeoutMs: 60_000 });
      expect(done.state).toBe('completed');
      volume.reload();
      checkSectors(volume, log, `trial ${index} after the resume`);
      const stored = volume.storedGenerations();
      expect(stored).toEqual([done.targetGeneration]);
      for (const generation of volume.clusterGenerations().keys()) expect(stored).toContain(generation);
      expect(done.sectorsDone).toBe(done.sectorsTotal);
    } finally {
      await h.close();
    }
    return { kills, killsMidTask };
  } finally {
    removeDir(dir);
  }
}

describe('crash-resume of a rotation (child process SIGKILLed at random points)', () => {
  it(`survives ${TRIALS} seeded kill trials`, { timeout: Math.max(120_000, TRIALS * 15_000) }, async () => {
    const results: TrialResult[] = [];
    let next = 0;
    const lanes = Array.from({ length: PARALLEL }, async () => {
      while (next < TRIALS) {
        const index = next++;
        results.push(await trial(index));
      }
    });
    await Promise.all(lanes);
    const kills = results.reduce((sum, r) => sum + r.kills, 0);
    const midTask = results.reduce((sum, r) => sum + r.killsMidTask, 0);
    // Most kills must land while the task is running, or the suite tests little.
    expect(results).toHaveLength(TRIALS);
    expect(midTask).toBeGreaterThanOrEqual(Math.ceil(TRIALS * 0.6));
    console.info(`crash-resume: ${TRIALS} trials, ${kills} kills, ${midTask} during the task`);
  });
});
