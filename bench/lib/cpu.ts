// CPU time of other processes from /proc, so a benchmark on a shared machine can report
// CPU per operation next to wall time: wall figures move with the load of other work, CPU per operation much less.
import { readFileSync } from 'node:fs';

const TICK_MS = 10; // USER_HZ is 100 on Linux (getconf CLK_TCK)

/** utime + stime of pid (all its threads), in ms (10 ms resolution); 0 when /proc is not there. One small read:
 *  the benchmark reads it around every sample. Child processes (tsx's esbuild service) are not counted. */
export function processCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_MS; // utime, stime (fields 14 and 15)
  } catch {
    return 0;
  }
}

export interface CpuProbe {
  /** CPU ms used by each named process since the probe was made. */
  read(): Record<string, number>;
}

/** Starts counting CPU of the named pids (and of this process, as "bench", its probe reads included). */
export function cpuProbe(pids: Record<string, number>): CpuProbe {
  const start = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, processCpuMs(pid)]));
  const self0 = process.cpuUsage();
  return {
    read() {
      const out: Record<string, number> = {};
      for (const [k, pid] of Object.entries(pids)) out[k] = processCpuMs(pid) - start[k]!;
      const self = process.cpuUsage(self0);
      out.bench = Math.round((self.user + self.system) / 1000);
      return out;
    },
  };
}
