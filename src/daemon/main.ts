// `xenopsd-ng run`: parse the command line, start the daemon, stop it cleanly on SIGINT/SIGTERM.
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import pino from 'pino';
import { Daemon } from './daemon.js';
import type { BackendKind } from './backend.js';

import { DEFAULT_SOCKET, DEFAULT_STATE_DIR } from './defaults.js';
export { DEFAULT_SOCKET, DEFAULT_STATE_DIR };

const USAGE = `usage: xenopsd-ng run [options]

Runs the daemon: the JSON-RPC API v1 on a unix socket (POST /v1), driving a sim host or real Xen.

options:
  --backend sim|xen      hypervisor backend (default: sim when --sim-dir is given, else xen)
  --sim-dir DIR          directory of a running sim host (xenstored.sock, hypervisor.sock)
  --socket PATH          API socket (default: $XENOPSD_NG_SOCKET, else ${DEFAULT_SOCKET})
  --state-dir DIR        VM metadata and domain records (default ${DEFAULT_STATE_DIR}; keep it on
                         a tmpfs that lives as long as the host's domains do)
  --group G              group allowed to use the socket (mode 0660); without it the mode is 0600
  --log-level LEVEL      pino level: trace, debug, info, warn, error (default: $LOG_LEVEL, else info)
  --shutdown-timeout S   default seconds a guest has to answer a clean shutdown (default 60)
  --device-timeout S     seconds a backend has to reach InitWait (default 10); hotplug gets 4x that
  --concurrency N        operations running at once across VMs (default 64; one at a time per VM)
  --test-hooks PATH      (tests only) control socket for cancel-point triggers
  -h, --help             this text

Logs are JSON lines on stderr. Once the API listens, one JSON line {"ready":true,...} is printed on stdout.
Exit status: 0 after a clean stop (SIGINT/SIGTERM), 1 when start-up fails, 2 on a bad command line.
`;

/** The version in the project's package.json, found by walking up from this module (src/ or dist/src/ layout). */
export function daemonVersion(): string {
  let dir = import.meta.dirname;
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(resolve(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'xenopsd-ng' && pkg.version) return pkg.version;
    } catch {
      // not here: one level up
    }
    dir = resolve(dir, '..');
  }
  return '0.0.0';
}

function positiveNumber(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got '${raw}'`);
  return n;
}

export async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        backend: { type: 'string' },
        'sim-dir': { type: 'string' },
        socket: { type: 'string' },
        'state-dir': { type: 'string' },
        group: { type: 'string' },
        'log-level': { type: 'string' },
        'shutdown-timeout': { type: 'string' },
        'device-timeout': { type: 'string' },
        concurrency: { type: 'string' },
        'test-hooks': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`xenopsd-ng run: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const backend = (values.backend ?? (values['sim-dir'] ? 'sim' : 'xen')) as BackendKind;
  let shutdownS: number | undefined;
  let deviceS: number | undefined;
  let concurrency: number | undefined;
  try {
    if (backend !== 'sim' && backend !== 'xen') throw new Error(`--backend must be sim or xen, got '${backend}'`);
    if (backend === 'sim' && !values['sim-dir']) throw new Error('--backend sim needs --sim-dir DIR');
    shutdownS = positiveNumber('--shutdown-timeout', values['shutdown-timeout']);
    deviceS = positiveNumber('--device-timeout', values['device-timeout']);
    concurrency = positiveNumber('--concurrency', values.concurrency);
    if (concurrency !== undefined && !Number.isInteger(concurrency)) throw new Error('--concurrency must be an integer');
  } catch (err) {
    process.stderr.write(`xenopsd-ng run: ${(err as Error).message}\n`);
    return 2;
  }
  const logger = pino(
    { level: values['log-level'] ?? process.env.LOG_LEVEL ?? 'info', base: { pid: process.pid, name: 'xenopsd-ng' } },
    pino.destination(2),
  );
  const socketPath = values.socket ?? process.env.XENOPSD_NG_SOCKET ?? DEFAULT_SOCKET;
  const stateDir = values['state-dir'] ?? DEFAULT_STATE_DIR;
  let daemon: Daemon;
  try {
    daemon = await Daemon.start({
      backend,
      simDir: values['sim-dir'],
      socketPath,
      stateDir,
      group: values.group,
      logger,
      version: daemonVersion(),
      concurrency,
      testHooks: values['test-hooks'],
      timeouts: {
        ...(shutdownS !== undefined ? { shutdownS } : {}),
        ...(deviceS !== undefined ? { deviceInitMs: deviceS * 1000, hotplugMs: deviceS * 4000 } : {}),
      },
    });
  } catch (err) {
    logger.fatal({ err }, 'start-up failed');
    process.stderr.write(`xenopsd-ng run: ${(err as Error).message}\n`);
    return 1;
  }
  logger.info({ socket: daemon.socketPath, stateDir, backend }, 'listening');
  process.stdout.write(JSON.stringify({ ready: true, socket: daemon.socketPath, pid: process.pid, backend }) + '\n');
  await new Promise<void>((resolveStop) => {
    const stop = (sig: string) => {
      logger.info({ signal: sig }, 'stopping');
      resolveStop();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  await daemon.stop();
  logger.info('stopped');
  logger.flush();
  return 0;
}
