// CPU time of other processes (and their descendants) from /proc, so a benchmark on a shared machine can report
// CPU per operation next to wall time: wall figures move with the load of other work, CPU per operation much less.
import { readFileSync, readdirSync } from 'node:fs';

const TICK_MS = 10; // USER_HZ is 100 on Linux (getconf CLK_TCK)

function children(pid: number): number[] {
  const out: number[] = [];
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/)) if (c) out.push(Number(c));
    } catch {
      // thread gone
    }
  }
  return out;
}

/** utime + stime of pid and every descendant, in ms (10 ms resolution); 0 when /proc is not there. */
export function processTreeCpuMs(pid: number): number {
  let total = 0;
  const todo = [pid];
  while (todo.length > 0) {
    const p = todo.pop()!;
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces) start after the last ')'.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(f[11]) + Number(f[12])) * TICK_MS; // utime, stime (fields 14 and 15)
    } catch {
      continue;
    }
    todo.push(...children(p));
  }
  return total;
}

export interface CpuProbe {
  /** CPU ms used by each named process since the probe was made. */
  read(): Record<string, number>;
}

/** Starts counting CPU of the named pids (and of this process, as "bench"). */
export function cpuProbe(pids: Record<string, number>): CpuProbe {
  const start = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, processTreeCpuMs(pid)]));
  const self0 = process.cpuUsage();
  return {
    read() {
      const out: Record<string, number> = {};
      for (const [k, pid] of Object.entries(pids)) out[k] = processTreeCpuMs(pid) - start[k]!;
      const self = process.cpuUsage(self0);
      out.bench = Math.round((self.user + self.system) / 1000);
      return out;
    },
  };
}
