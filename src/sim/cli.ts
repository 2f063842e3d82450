// `xenopsd-ng sim <subcommand> --dir DIR`: looks into a running sim host and injects faults through its
// control socket (DIR/control.sock).
import { parseArgs } from 'node:util';
import { SimControlClient, SimControlError } from './control/client.js';
import type { ConsoleSnapshot, HostStatus } from './control/protocol.js';

const HELP = `usage: xenopsd-ng sim <subcommand> --dir DIR [--json]

Talks to the sim host owning DIR (see 'xenopsd-ng sim-host --help') through DIR/control.sock.

subcommands:
  status                               host memory, domains (state, pages, guest), backends, faults
  console DOMID                        what the domain's guest printed on its console (the last 64 KiB
                                       dom0's console daemon kept); live output: connect to the unix socket
                                       in /local/domain/DOMID/console/tty (DIR/console/DOMID.sock); log
                                       file DIR/console/guest-NAME.log
  guest ignore-shutdown DOMID|all [on|off]   the guest leaves control/shutdown requests unanswered
  guest crash DOMID                    the guest crashes now (shutdown reason crash)
  guest boot-delay DOMID|all MS|default      guests booted from now on take MS to come up
  backend fail PATH [MESSAGE]          hotplug fails (hotplug-status=error) for backends under PATH
  backend hang PATH                    backends under PATH stop answering (no state changes)
  backend close PATH [MESSAGE]         new backends under PATH give up on probe: MESSAGE in the error node
                                       (/local/domain/0/error/backend/...), state Closing then Closed
  backend ok PATH                      lifts the fault on PATH
  hypercall fail CALL ERRNO [--times N]   CALL (e.g. createDomain) fails with ERRNO N times (default: always)
  xenstored latency MS                 delay every xenstored reply by MS
  host memory MIB                      resize host memory
  dirty-rate DOMID PAGES_PER_SEC       guest page-dirtying rate
  faults clear                         lift every fault
  kill [--hard]                        stop the sim host (--hard: exit at once, leaving its sockets)

PATH is a xenstore path under /local/domain/0/backend/, e.g. /local/domain/0/backend/vbd/3/51712 or
/local/domain/0/backend/vif (every vif). Exit codes: 0 done, 1 the sim host refused or is unreachable, 2 usage.
`;

class UsageError extends Error {}

function domidArg(raw: string | undefined, allowAll: boolean): number | undefined {
  if (allowAll && raw === 'all') return undefined;
  if (raw === undefined || !/^\d+$/.test(raw)) throw new UsageError(`expected a domid${allowAll ? " or 'all'" : ''}, got ${JSON.stringify(raw ?? '')}`);
  return Number(raw);
}

function intArg(raw: string | undefined, what: string): number {
  if (raw === undefined || !/^\d+$/.test(raw)) throw new UsageError(`expected ${what} (a non-negative integer), got ${JSON.stringify(raw ?? '')}`);
  return Number(raw);
}

/** Turns the words after `sim` into one control call. */
export function parseCommand(words: string[], times?: string, hard?: boolean): { method: string; params: Record<string, unknown> } {
  const [cmd, sub, a, b] = words;
  const noMore = (n: number): void => {
    if (words.length > n) throw new UsageError(`unexpected argument ${JSON.stringify(words[n])}`);
  };
  switch (cmd) {
    case 'status':
      noMore(1);
      return { method: 'status', params: {} };
    case 'console':
      noMore(2);
      return { method: 'console.read', params: { domid: domidArg(sub, false) } };
    case 'guest': {
      if (sub === 'ignore-shutdown') {
        noMore(4);
        if (b !== undefined && b !== 'on' && b !== 'off') throw new UsageError(`expected on or off, got ${JSON.stringify(b)}`);
        const domid = domidArg(a, true);
        return { method: 'guest.fault', params: { fault: 'ignore-shutdown', on: b !== 'off', ...(domid !== undefined ? { domid } : {}) } };
      }
      if (sub === 'crash') {
        noMore(3);
        return { method: 'guest.fault', params: { fault: 'crash', domid: domidArg(a, false) } };
      }
      if (sub === 'boot-delay') {
        noMore(4);
        const domid = domidArg(a, true);
        const on = b !== 'default';
        return {
          method: 'guest.fault',
          params: { fault: 'slow-boot', on, ...(on ? { delayMs: intArg(b, 'milliseconds') } : {}), ...(domid !== undefined ? { domid } : {}) },
        };
      }
      throw new UsageError(`unknown guest subcommand ${JSON.stringify(sub ?? '')}`);
    }
    case 'backend': {
      if (!a) throw new UsageError('expected a backend PATH');
      if (sub === 'fail' || sub === 'close') {
        noMore(4);
        return { method: 'backend.fault', params: { path: a, mode: sub, ...(b ? { message: b } : {}) } };
      }
      if (sub === 'hang' || sub === 'ok') {
        noMore(3);
        return { method: 'backend.fault', params: { path: a, mode: sub === 'ok' ? 'none' : 'hang' } };
      }
      throw new UsageError(`unknown backend subcommand ${JSON.stringify(sub ?? '')}`);
    }
    case 'hypercall': {
      if (sub !== 'fail') throw new UsageError(`unknown hypercall subcommand ${JSON.stringify(sub ?? '')}`);
      noMore(4);
      if (!a || !b) throw new UsageError('expected CALL ERRNO');
      return { method: 'hypercall.fault', params: { call: a, errno: b, ...(times !== undefined ? { times: intArg(times, '--times') } : {}) } };
    }
    case 'xenstored':
      if (sub !== 'latency') throw new UsageError(`unknown xenstored subcommand ${JSON.stringify(sub ?? '')}`);
      noMore(3);
      return { method: 'xenstored.latency', params: { ms: intArg(a, 'milliseconds') } };
    case 'host':
      if (sub !== 'memory') throw new UsageError(`unknown host subcommand ${JSON.stringify(sub ?? '')}`);
      noMore(3);
      return { method: 'host.memory', params: { mib: intArg(a, 'MiB') } };
    case 'dirty-rate':
      noMore(3);
      return { method: 'domain.dirtyRate', params: { domid: domidArg(sub, false), pagesPerSec: intArg(a, 'pages per second') } };
    case 'faults':
      if (sub !== 'clear') throw new UsageError(`unknown faults subcommand ${JSON.stringify(sub ?? '')}`);
      noMore(2);
      return { method: 'faults.clear', params: {} };
    case 'kill':
      noMore(1);
      return { method: 'host.kill', params: { hard: hard === true } };
    default:
      throw new UsageError(cmd ? `unknown subcommand ${JSON.stringify(cmd)}` : 'a subcommand is required');
  }
}

const STATE_NAMES = ['Unknown', 'Initialising', 'InitWait', 'Initialised', 'Connected', 'Closing', 'Closed', 'Reconfiguring', 'Reconfigured'];

export function formatStatus(s: HostStatus): string {
  const lines = [
    `sim host pid ${s.pid}, dir ${s.dir}, up ${(s.uptimeMs / 1000).toFixed(1)} s`,
    `memory: ${s.totalMib} MiB total, ${s.freeMib} MiB free (${s.freePages} of ${s.totalPages} pages of ${s.pageSize} bytes); ${s.pcpus} pcpus`,
    `domains: ${s.domains.length}`,
    `  ${'domid'.padEnd(6)}${'state'.padEnd(10)}${'tot_pages'.padStart(10)}${'max_pages'.padStart(10)}  ${'vcpus'.padEnd(6)}${'cpu_s'.padStart(8)}${'dirty/s'.padStart(9)}  guest`,
  ];
  for (const d of s.domains) {
    const state = d.state + (d.shutdownReason !== undefined ? `(${d.shutdownReason})` : '');
    const guest = d.guest ? `${d.guest.phase}${d.guest.ignoreShutdown ? ' ignoring-shutdown' : ''}` : '-';
    lines.push(
      `  ${String(d.domid).padEnd(6)}${state.padEnd(10)}${String(d.totPages).padStart(10)}${String(d.maxPages).padStart(10)}  ${String(d.onlineVcpus).padEnd(6)}${(d.cpuTimeNs / 1e9).toFixed(2).padStart(8)}${String(d.dirtyRate).padStart(9)}  ${guest}`,
    );
  }
  const backends = Object.entries(s.backends);
  lines.push(`backends: ${backends.length}`);
  for (const [path, b] of backends) lines.push(`  ${path}  state ${b.state} (${STATE_NAMES[b.state] ?? '?'})  hotplug ${b.hotplug}`);
  const f = s.faults;
  const faults = [
    ...f.backends.map((b) => `backend ${b.mode} ${b.path}${b.message ? ` (${b.message})` : ''}`),
    ...f.guests.map((g) => `guest ${g.domid === '*' ? 'all' : g.domid} ${g.fault}${g.delayMs !== undefined ? ` ${g.delayMs} ms` : ''}`),
    ...f.hypercalls.map((h) => `hypercall ${h.call} fails ${h.errno} ${h.times !== undefined ? `${h.times} more time(s)` : 'always'}`),
    ...(f.xenstoredLatencyMs ? [`xenstored latency ${f.xenstoredLatencyMs} ms`] : []),
  ];
  lines.push(`faults: ${faults.length ? '' : 'none'}`);
  for (const x of faults) lines.push(`  ${x}`);
  return lines.join('\n') + '\n';
}

/** The buffered console as the guest printed it, with a note when its start was dropped. */
export function formatConsole(c: ConsoleSnapshot): string {
  const head = c.dropped > 0 ? `[${c.dropped} earlier bytes dropped]\n` : '';
  return head + c.output + (c.output === '' || c.output.endsWith('\n') ? '' : '\n');
}

/** Where the command writes; tests pass their own. */
export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
}
const processIo: CliIo = { out: (t) => void process.stdout.write(t), err: (t) => void process.stderr.write(t) };

export async function main(argv: string[], io: CliIo = processIo): Promise<number> {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: {
        dir: { type: 'string' },
        json: { type: 'boolean' },
        times: { type: 'string' },
        hard: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: true,
    }));
  } catch (err) {
    io.err(`xenopsd-ng sim: ${(err as Error).message}\n${HELP}`);
    return 2;
  }
  if (values.help || positionals[0] === 'help') {
    io.out(HELP);
    return 0;
  }
  let call;
  try {
    if (!values.dir) throw new UsageError('--dir DIR is required');
    call = parseCommand(positionals, values.times, values.hard);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.err(`xenopsd-ng sim: ${err.message}\n${HELP}`);
    return 2;
  }
  let client: SimControlClient;
  try {
    client = await SimControlClient.connect({ dir: values.dir });
  } catch (err) {
    io.err(`xenopsd-ng sim: no sim host answers on ${values.dir}/control.sock (${(err as Error).message})\n`);
    return 1;
  }
  try {
    const result = await client.call(call.method, call.params);
    if (values.json) io.out(JSON.stringify(result) + '\n');
    else if (call.method === 'status') io.out(formatStatus(result as HostStatus));
    else if (call.method === 'console.read') io.out(formatConsole(result as ConsoleSnapshot));
    else io.out('ok\n');
    return 0;
  } catch (err) {
    const msg = err instanceof SimControlError ? err.message : `${(err as Error).message}`;
    io.err(`xenopsd-ng ${msg}\n`);
    return 1;
  } finally {
    await client.close().catch(() => undefined);
  }
}
