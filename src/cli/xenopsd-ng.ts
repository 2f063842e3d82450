#!/usr/bin/env node
// The `xenopsd-ng` command: one bin, several subcommands, each in its own module (loaded lazily so that
// `xenopsd-ng sim-host` never loads the daemon, and the daemon never loads the sim host).

const USAGE = `usage: xenopsd-ng <command> [options]

commands:
  run                 start the daemon (the API on a unix socket); see 'xenopsd-ng run --help'
  sim-host --dir DIR  run a simulated Xen host owning DIR; see 'xenopsd-ng sim-host --help'
  sim <subcommand>    inspect or inject faults into a running sim host; see 'xenopsd-ng sim --help'
  dev                 start a sim host and the daemon on it together (what 'npm start' runs)
`;

type Main = (argv: string[]) => Promise<number | void>;
const commands: Record<string, () => Promise<{ main: Main }>> = {
  run: () => import('../daemon/main.js'),
  'sim-host': () => import('../sim/main.js'),
  sim: () => import('../sim/cli.js'),
  dev: () => import('./dev.js'),
};

async function dispatch(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(USAGE);
    return cmd ? 0 : 2;
  }
  const load = commands[cmd];
  if (!load) {
    process.stderr.write(`xenopsd-ng: unknown command '${cmd}'\n${USAGE}`);
    return 2;
  }
  const mod = await load();
  const rc = await mod.main(rest);
  return typeof rc === 'number' ? rc : 0;
}

dispatch(process.argv.slice(2)).then(
  (rc) => {
    process.exitCode = rc;
  },
  (err: unknown) => {
    process.stderr.write(`xenopsd-ng: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
