/** Where a benchmark ran: what a reader needs to compare figures across machines. */
import { readFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { nativeCipherStatus } from '../../src/cipher/index.js';

export interface MachineInfo {
  date: string;
  /** The CPU's name and, on Linux, its family and model: "AMD EPYC" alone names Zen 3 and Zen 4 alike, whose AES paths differ. */
  cpuModel: string;
  logicalCpus: number;
  memoryGiB: number;
  node: string;
  platform: string;
  /** 1-minute load average when the benchmark started: how busy the (possibly shared) machine was. */
  loadAverage1m: number;
}

export function machineInfo(): MachineInfo {
  const list = cpus();
  return {
    date: new Date().toISOString(),
    cpuModel: `${list[0]?.model.trim() ?? 'unknown'}${cpuFamilyModel()}`,
    logicalCpus: list.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    loadAverage1m: Math.round(loadavg()[0]! * 100) / 100,
  };
}

/**
 * A field of the first processor in /proc/cpuinfo ("cpu family", "model", "flags"); undefined
 * where there is no such file (not Linux) or field.
 */
export function cpuInfoField(name: string): string | undefined {
  let info: string;
  try {
    info = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return undefined;
  }
  return new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(info)?.[1]?.trim();
}

/** " (CPU family F model M)" from /proc/cpuinfo, or "" where there is none. */
function cpuFamilyModel(): string {
  const family = cpuInfoField('cpu family');
  const model = cpuInfoField('model');
  return family === undefined || model === undefined ? '' : ` (CPU family ${family} model ${model})`;
}

/** Which cipher an engine in this process runs, and on which AES code path (per process, workers included). */
export function cipherDescription(): string {
  const status = nativeCipherStatus();
  return status.available ? `native cipher on its ${status.cpuPath ?? '?'} path` : 'ts cipher';
}
