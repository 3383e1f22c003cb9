/** Where a benchmark ran: what a reader needs to compare figures across machines. */
import { cpus, loadavg, totalmem } from 'node:os';

export interface MachineInfo {
  date: string;
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
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    logicalCpus: list.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    loadAverage1m: Math.round(loadavg()[0]! * 100) / 100,
  };
}
