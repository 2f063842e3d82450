// `xenopsd-ng sim-host --dir DIR`: runs a simulated Xen host owning DIR until SIGTERM/SIGINT.
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { SimHost, SOCKETS } from './host.js';

const HELP = `usage: xenopsd-ng sim-host --dir DIR [options]

Runs a simulated Xen host in this process: a hypervisor model, its xenstored, dom0's block and network
backends with their hotplug checks, a console daemon (as xenconsoled), and a PV guest in every domain once it
is unpaused. It owns DIR:
  DIR/xenstored.sock   xenstored (the xenstore wire protocol; dom0 connection)
  DIR/hypervisor.sock  the hypervisor calls (msgpackr RPC; the daemon's 'sim' backend)
  DIR/control.sock     status and fault injection (see 'xenopsd-ng sim --help')
  DIR/sim-host.pid     lock: one sim host per DIR
  DIR/console/         per guest: <domid>.sock streams its console (the path is in console/tty while it
                       runs); guest-<name>.log keeps what it printed (see 'xenopsd-ng sim console')
When ready it prints one JSON line on stdout: {"ready":true,"pid":...,"dir":...,"xenstored":...,
"hypervisor":...,"control":...}. Logs (pino JSON) go to stderr. SIGTERM or SIGINT stops it and removes its
sockets; its domains die with it, as they would with the host.

options:
  --dir DIR              directory to own (created if missing)              (required)
  --memory-mib N         host memory in MiB                                 (default 16384)
  --pcpus N              physical cpus                                      (default 8)
  --boot-delay-ms N      time from a guest's first unpause to its first xenstore write (default 200)
  --shutdown-delay-ms N  time a guest takes to act on control/shutdown      (default 10)
  --destroy-delay-ms N   time a destroyed domain stays dying                (default 20)
  --xenstored-latency-ms N  delay added to every xenstored reply           (default 0)
  --guest-dirty-rate N   pages per second each guest writes once booted     (default 0: idle guests)
  --log-level LEVEL      trace|debug|info|warn|error|silent                 (default info)
  --exit-on-stdin-close  stop when stdin reaches end of file (a test harness that dies takes its host along)
  -h, --help             show this help
`;

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

function intOption(name: string, raw: string | undefined, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new UsageError(`--${name} must be an integer in ${min}..${max}, got ${JSON.stringify(raw)}`);
  }
  return Number(raw);
}

class UsageError extends Error {}

/** Where usage and help go; tests pass their own. */
export interface MainIo {
  out: (text: string) => void;
  err: (text: string) => void;
}
const processIo: MainIo = { out: (t) => void process.stdout.write(t), err: (t) => void process.stderr.write(t) };

export async function main(argv: string[], io: MainIo = processIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        dir: { type: 'string' },
        'memory-mib': { type: 'string' },
        pcpus: { type: 'string' },
        'boot-delay-ms': { type: 'string' },
        'shutdown-delay-ms': { type: 'string' },
        'destroy-delay-ms': { type: 'string' },
        'xenstored-latency-ms': { type: 'string' },
        'guest-dirty-rate': { type: 'string' },
        'log-level': { type: 'string' },
        'exit-on-stdin-close': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    io.err(`xenopsd-ng sim-host: ${(err as Error).message}\n${HELP}`);
    return 2;
  }
  if (values.help) {
    io.out(HELP);
    return 0;
  }
  let opts;
  try {
    if (!values.dir) throw new UsageError('--dir DIR is required');
    const level = values['log-level'] ?? 'info';
    if (!LOG_LEVELS.includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join('|')}`);
    opts = {
      dir: resolve(values.dir),
      memoryMib: intOption('memory-mib', values['memory-mib'], 64, 64 * 1024 * 1024),
      pcpus: intOption('pcpus', values.pcpus, 1, 4096),
      bootDelayMs: intOption('boot-delay-ms', values['boot-delay-ms'], 0, 3_600_000),
      shutdownDelayMs: intOption('shutdown-delay-ms', values['shutdown-delay-ms'], 0, 3_600_000),
      destroyDelayMs: intOption('destroy-delay-ms', values['destroy-delay-ms'], 0, 3_600_000),
      xenstoredLatencyMs: intOption('xenstored-latency-ms', values['xenstored-latency-ms'], 0, 60_000),
      guestDirtyRate: intOption('guest-dirty-rate', values['guest-dirty-rate'], 0, 10_000_000),
      level,
    };
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.err(`xenopsd-ng sim-host: ${err.message}\n${HELP}`);
    return 2;
  }

  const logDest = pino.destination(2);
  // A reader of our stderr that went away must not take the host (and its domains) down with it.
  logDest.on('error', () => undefined);
  const log = pino({ level: opts.level, name: 'sim-host', base: { pid: process.pid } }, logDest);
  await mkdir(opts.dir, { recursive: true });
  const lockPath = join(opts.dir, 'sim-host.pid');
  const lock = await takeLock(lockPath);
  if (typeof lock === 'string') {
    process.stderr.write(`xenopsd-ng sim-host: ${lock}\n`);
    return 1;
  }
  // We own DIR now: sockets left by a host that died are stale.
  for (const name of Object.values(SOCKETS)) await unlink(join(opts.dir, name)).catch(() => undefined);

  let host: SimHost | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (why: string, code: number): Promise<void> =>
    (stopping ??= (async () => {
      log.info({ why }, 'sim host stopping');
      await host?.stop().catch((err: unknown) => log.error({ err }, 'stop failed'));
      await unlink(lockPath).catch(() => undefined);
      log.flush?.();
      process.exitCode = code;
      // Guests' timers and watches are gone; nothing else should keep us, but do not wait on stragglers.
      setTimeout(() => process.exit(code), 200).unref();
    })());

  try {
    host = await SimHost.start({
      dir: opts.dir,
      memoryMib: opts.memoryMib,
      pcpus: opts.pcpus,
      bootDelayMs: opts.bootDelayMs,
      shutdownDelayMs: opts.shutdownDelayMs,
      destroyDelayMs: opts.destroyDelayMs,
      xenstoredLatencyMs: opts.xenstoredLatencyMs,
      guestDirtyRate: opts.guestDirtyRate,
      log,
      onKill: (hard) => {
        if (hard) {
          // As a host that loses power: no cleanup, sockets and lock file stay behind.
          log.warn('sim host killed (hard)');
          process.exit(137);
        }
        void stop('killed through the control socket', 0);
      },
    });
  } catch (err) {
    log.error({ err }, 'sim host failed to start');
    await unlink(lockPath).catch(() => undefined);
    process.stderr.write(`xenopsd-ng sim-host: ${(err as Error).message}\n`);
    return 1;
  }
  process.once('SIGTERM', () => void stop('SIGTERM', 0));
  process.once('SIGINT', () => void stop('SIGINT', 0));
  if (values['exit-on-stdin-close']) {
    process.stdin.on('data', () => undefined);
    process.stdin.once('end', () => void stop('stdin closed', 0));
    process.stdin.once('error', () => void stop('stdin closed', 0));
  }
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception (kept running)'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection (kept running)'));

  const ready = {
    ready: true,
    pid: process.pid,
    dir: opts.dir,
    xenstored: host.socketPath('xenstored'),
    hypervisor: host.socketPath('hypervisor'),
    control: host.socketPath('control'),
  };
  process.stdout.write(JSON.stringify(ready) + '\n');
  log.info(ready, 'sim host ready');
  // Keep running until a signal: the servers hold the event loop open.
  await new Promise<void>(() => undefined);
  return 0;
}

/** Creates DIR/sim-host.pid exclusively; a lock whose pid is dead is stale and taken over. Returns an error text when owned. */
async function takeLock(path: string): Promise<true | string> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(path, 'wx');
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = Number((await readFile(path, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(owner) && owner > 0 && isAlive(owner)) return `${path}: the directory is owned by sim host pid ${owner}`;
    await unlink(path).catch(() => undefined);
  }
  return `${path}: could not take the lock`;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
