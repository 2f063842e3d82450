// XS_CONTROL: the debug/admin commands of xenstored that make sense without a hypervisor.
// live-update only answers (there is nothing to update); memreport writes a one-line summary.
import { appendFileSync } from 'node:fs';
import { MsgType } from '../../xenstore/wire.js';
import type { Connection } from './connection.js';
import type { Quotas, XsCore } from './core.js';
import { atoi, countNuls, cStrings } from './payload.js';

type Cmd = (core: XsCore, conn: Connection, args: string[]) => string | undefined;

interface QuotaDef {
  name: string;
  key: keyof Quotas;
  descr: string;
}

const HARD_QUOTAS: QuotaDef[] = [
  { name: 'nodes', key: 'nodes', descr: 'Nodes per domain' },
  { name: 'watches', key: 'watches', descr: 'Watches per domain' },
  { name: 'transactions', key: 'transactions', descr: 'Transactions per domain' },
  { name: 'outstanding', key: 'outstanding', descr: 'Outstanding requests per domain' },
  { name: 'transaction-nodes', key: 'transactionNodes', descr: 'Max. number of accessed nodes per transaction' },
  { name: 'memory', key: 'memory', descr: 'Total Xenstore memory per domain (error level)' },
  { name: 'node-size', key: 'valueSize', descr: 'Max. size of a node' },
  { name: 'path-max', key: 'pathMax', descr: 'Max. length of a node path' },
  { name: 'permissions', key: 'permissions', descr: 'Max. number of permissions per node' },
];
const SOFT_QUOTAS: QuotaDef[] = [{ name: 'memory', key: 'memorySoft', descr: 'Total Xenstore memory per domain (warning level)' }];

function pad(s: string | number, width: number, left: boolean): string {
  const str = String(s);
  return left ? str.padEnd(width) : str.padStart(width);
}

function quotaCommand(defs: QuotaDef[], allowDomain: boolean): Cmd {
  return (core, conn, args) => {
    if (args.length === 0) {
      let resp = 'Quota settings:\n';
      for (const q of defs) resp += `${pad(q.name, 17, true)}: ${pad(core.quotas[q.key], 8, false)} ${q.descr}\n`;
      conn.reply(MsgType.CONTROL, resp + '\0');
      return undefined;
    }
    if (args[0] === 'set') {
      if (args.length !== 3) return 'EINVAL';
      const val = atoi(args[2]!);
      if (val < 1) return 'EINVAL';
      const q = defs.find((d) => d.name === args[1]);
      if (!q) return 'EINVAL';
      core.quotas[q.key] = q.key === 'pathMax' ? Math.min(val, 2048) : val;
      conn.ack(MsgType.CONTROL);
      return undefined;
    }
    if (!allowDomain || args.length !== 1) return 'EINVAL';
    const domid = atoi(args[0]!) >>> 0;
    const d = core.domains.find(domid);
    if (!d) return 'ENOENT';
    let transactions = 0;
    for (const c of d.conns) transactions += c.transactions.size;
    const line = (name: string, v: number) => `${pad(name, 16, true)}: ${pad(v, 8, false)}\n`;
    const resp =
      `Domain ${domid}:\n` +
      line('nodes', d.nbentry) +
      line('watches', d.nbwatch) +
      line('transactions', transactions) +
      line('outstanding', 0) +
      line('memory', d.memory);
    conn.reply(MsgType.CONTROL, resp + '\0');
    return undefined;
  };
}

const noArgsAck: Cmd = (_core, conn, args) => {
  if (args.length) return 'EINVAL';
  conn.ack(MsgType.CONTROL);
  return undefined;
};

const COMMANDS: [string, Cmd, string][] = [
  ['check', noArgsAck, ''],
  [
    'log',
    (_core, conn, args) => {
      if (args.length !== 1 || (args[0] !== 'on' && args[0] !== 'off')) return 'EINVAL';
      conn.ack(MsgType.CONTROL);
      return undefined;
    },
    'on|off',
  ],
  [
    'live-update',
    (_core, conn, args) => {
      if (args.length < 1) return 'EINVAL';
      if (args[0] === '-a') {
        if (args.length !== 1) return 'EINVAL';
        conn.reply(MsgType.CONTROL, 'No live-update session active.\0');
        return undefined;
      }
      conn.reply(MsgType.CONTROL, 'Live-update is not supported by the simulated xenstored.\0');
      return undefined;
    },
    '[-c <cmdline>] [-F] [-t <timeout>] <file>\n    Default timeout is 60 seconds.',
  ],
  [
    'logfile',
    (_core, conn, args) => {
      if (args.length !== 1) return 'EINVAL';
      conn.ack(MsgType.CONTROL);
      return undefined;
    },
    '<file>',
  ],
  [
    'memreport',
    (core, conn, args) => {
      if (args.length > 1) return 'EINVAL';
      // Without a file the report goes to the trace file, and the sim has none: EBADF, which the
      // protocol cannot carry, so EINVAL (as the C daemon answers when run without -T).
      if (args.length === 0) return 'EINVAL';
      try {
        appendFileSync(args[0]!, `simulated xenstored: ${core.db.size} nodes, ${core.domains.list().length} domains\n`);
      } catch {
        return 'EINVAL';
      }
      conn.ack(MsgType.CONTROL);
      return undefined;
    },
    '[<file>]',
  ],
  [
    'print',
    (core, conn, args) => {
      if (args.length !== 1) return 'EINVAL';
      core.log?.info({ control: args[0] }, 'control: print');
      conn.ack(MsgType.CONTROL);
      return undefined;
    },
    '<string>',
  ],
  ['quota', quotaCommand(HARD_QUOTAS, true), '[set <name> <val>|<domid>]'],
  ['quota-soft', quotaCommand(SOFT_QUOTAS, false), '[set <name> <val>]'],
  [
    'help',
    (_core, conn, args) => {
      if (args.length) return 'EINVAL';
      conn.reply(MsgType.CONTROL, COMMANDS.map(([c, , pars]) => `${c}\t${pars}\n`).join('') + '\0');
      return undefined;
    },
    '',
  ],
];

export function doControl(core: XsCore, conn: Connection, payload: Buffer): string | undefined {
  if (core.isUnprivileged(conn)) return 'EACCES';
  const nul = payload.indexOf(0);
  if (nul < 0) return 'EINVAL';
  const name = payload.toString('latin1', 0, nul);
  const cmd = COMMANDS.find(([c]) => c === name);
  if (!cmd) return 'EINVAL';
  const strings = cStrings(payload);
  if (strings.length !== countNuls(payload)) return 'EIO';
  return cmd[1](core, conn, strings.slice(1));
}
