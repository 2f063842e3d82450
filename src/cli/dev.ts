// `xenopsd-ng dev` (what `npm start` is for): a sim host as a child process plus the daemon on it, with the API on
// the default socket. Falls back to a user-writable directory when /run is not writable, and says where.
// Ctrl-C (or SIGTERM) stops the daemon first, then the sim host.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { DEFAULT_RUN_DIR } from '../daemon/defaults.js';

const USAGE = `usage: xenopsd-ng dev [--dir DIR] [--socket PATH] [--log-level LEVEL]

Starts a simulated Xen host (a child process) and the daemon on it. Defaults: everything under ${DEFAULT_RUN_DIR}
(sim host in sim/, VM state in state/, API on api.sock); when that is not writable, under
$XDG_RUNTIME_DIR/xenopsd-ng or ${tmpdir()}/xenopsd-ng-<uid>. The paths are printed at start.
Ctrl-C stops both (daemon first). Exit status 0 after a clean stop, 1 if either part fails to start.
`;

function writableRunDir(preferred: string): string {
  const candidates = [preferred];
  if (process.env.XDG_RUNTIME_DIR) candidates.push(join(process.env.XDG_RUNTIME_DIR, 'xenopsd-ng'));
  candidates.push(join(tmpdir(), `xenopsd-ng-${process.getuid?.() ?? 'user'}`));
  for (const dir of candidates) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      accessSync(dir, constants.W_OK);
      return dir;
    } catch {
      // try the next one
    }
  }
  throw new Error(`no writable directory among ${candidates.join(', ')}`);
}

function startSimHost(simDir: string): Promise<ChildProcess> {
  // The same entry point that runs this command (ts under tsx, or js in dist), with the same loader flags.
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, 'sim-host', '--dir', simDir], {
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: true,
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('sim host did not get ready within 30 s'));
    }, 30_000);
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('\n')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`sim host exited (${code ?? sig}) before it was ready`));
    });
  });
}

export async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: { dir: { type: 'string' }, socket: { type: 'string' }, 'log-level': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (err) {
    process.stderr.write(`xenopsd-ng dev: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const runDir = writableRunDir(values.dir ?? DEFAULT_RUN_DIR);
  const simDir = join(runDir, 'sim');
  mkdirSync(simDir, { recursive: true, mode: 0o700 });
  const socketPath = values.socket ?? process.env.XENOPSD_NG_SOCKET ?? join(runDir, 'api.sock');
  const stateDir = join(runDir, 'state');
  const logger = pino({ level: values['log-level'] ?? process.env.LOG_LEVEL ?? 'info', base: { name: 'xenopsd-ng' } }, pino.destination(2));

  const sim = await startSimHost(simDir);
  const killSim = () => sim.kill('SIGKILL');
  process.once('exit', killSim);
  const { Daemon } = await import('../daemon/daemon.js');
  const { daemonVersion } = await import('../daemon/main.js');
  let daemon;
  try {
    daemon = await Daemon.start({ backend: 'sim', simDir, socketPath, stateDir, logger, version: daemonVersion() });
  } catch (err) {
    process.stderr.write(`xenopsd-ng dev: the daemon failed to start: ${(err as Error).message}\n`);
    killSim();
    return 1;
  }
  process.stdout.write(
    `xenopsd-ng dev: sim host in ${simDir}, VM state in ${stateDir}\n` +
      `API on ${socketPath}\n` +
      `  try: curl --unix-socket ${socketPath} -d '{"jsonrpc":"2.0","id":1,"method":"API.version"}' http://localhost/v1\n` +
      `   or: XENOPSD_NG_SOCKET=${socketPath} npx tsx src/cli/xenopsctl.ts vm list\n` +
      `Ctrl-C stops both.\n`,
  );
  const simExited = new Promise<void>((r) => sim.once('exit', () => r()));
  const why = await new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
    void simExited.then(() => resolve('sim host exited'));
  });
  logger.info({ why }, 'stopping');
  await daemon.stop();
  if (sim.exitCode === null && sim.signalCode === null) {
    sim.kill('SIGTERM');
    const timer = setTimeout(killSim, 5000);
    await simExited;
    clearTimeout(timer);
  }
  process.off('exit', killSim);
  process.stdout.write('xenopsd-ng dev: stopped\n');
  return why === 'sim host exited' ? 1 : 0;
}
