#!/usr/bin/env node
// `xenopsctl`: the operator's command line for xenopsd-ng's API v1.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { ApiClient, RpcError } from '../daemon/api-client.js';
import { DEFAULT_SOCKET } from '../daemon/defaults.js';

const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3, notFound: 4, cancelled: 5, timeout: 6 } as const;

const USAGE = `usage: xenopsctl [--socket PATH] [--json] <command> [args]

commands:
  vm add FILE|-                   register a VM from a JSON spec (a file, or - for stdin); prints its id
  vm list                         every VM with its power state
  vm stat NAME|UUID               one VM: spec and state
  vm start NAME|UUID [--paused]   build and start (left paused with --paused)
  vm shutdown NAME|UUID [--hard] [--timeout S] [--force]
                                  clean shutdown (the guest has S seconds; with --force, destroyed when it
                                  does not answer in time), or destroy at once with --hard
  vm reboot NAME|UUID [--hard] [--timeout S] [--force]
  vm pause NAME|UUID | vm unpause NAME|UUID
  vm remove NAME|UUID             forget a halted VM
  task list                       every task the daemon holds
  task wait ID [--timeout S]      wait for a task to end
  task cancel ID                  cancel a task (it undoes what it did)
  events [--from N]               follow the updates log (ids of changed objects), one line each
  host stat | version             the host / the daemon's versions

options:
  --socket PATH   API socket (default: $XENOPSD_NG_SOCKET, else ${DEFAULT_SOCKET})
  --json          machine output: the API's JSON result, one document per line
  --no-wait       (vm operations) print the task id and return at once
  -h, --help      this text

Operations run as tasks; xenopsctl waits for them and shows a progress bar on a terminal when one takes longer
than a second.

exit status:
  0  success          1  the operation or call failed     2  bad usage
  3  daemon unreachable   4  no such VM/task (or an ambiguous name)   5  task cancelled   6  timed out
`;

class UsageError extends Error {}
class ExitError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Ctx {
  api: ApiClient;
  json: boolean;
  noWait: boolean;
  out: (line: string) => void;
}

async function resolveVm(ctx: Ctx, ref: string | undefined): Promise<string> {
  if (!ref) throw new UsageError('missing NAME|UUID');
  if (UUID_RE.test(ref)) return ref;
  const { vms } = await ctx.api.call<{ vms: Array<{ vm: { id: string; name: string } }> }>('VM.list');
  const hits = vms.filter((v) => v.vm.name === ref);
  if (hits.length === 0) throw new ExitError(EXIT.notFound, `no VM named '${ref}'`);
  if (hits.length > 1) throw new ExitError(EXIT.notFound, `${hits.length} VMs are named '${ref}'; use a uuid: ${hits.map((h) => h.vm.id).join(' ')}`);
  return hits[0]!.vm.id;
}

interface TaskRecord {
  id: string;
  method: string;
  vm?: string;
  state: string;
  progress: number;
  error?: { message: string; data?: { name: string } };
  subtasks: Array<{ name: string; state: string }>;
}

function drawBar(task: TaskRecord): void {
  const width = 30;
  const filled = Math.round(task.progress * width);
  const current = [...task.subtasks].reverse().find((s) => s.state === 'running')?.name ?? '';
  process.stderr.write(`\r${task.method} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${Math.round(task.progress * 100)}% ${current}`.padEnd(80).slice(0, 100));
}

async function waitTask(ctx: Ctx, id: string, timeoutS?: number): Promise<TaskRecord> {
  const started = Date.now();
  const tty = process.stderr.isTTY && !ctx.json;
  let drawn = false;
  for (;;) {
    const remaining = timeoutS === undefined ? 0.25 : Math.min(0.25, Math.max(0, timeoutS - (Date.now() - started) / 1000));
    const task = await ctx.api.call<TaskRecord>('TASK.wait', { id, timeout_s: remaining });
    const finished = task.state !== 'pending' && task.state !== 'running';
    if (tty && (drawn || Date.now() - started > 1000)) {
      drawBar(task);
      drawn = true;
    }
    if (finished || (timeoutS !== undefined && (Date.now() - started) / 1000 >= timeoutS)) {
      if (drawn) process.stderr.write('\n');
      return task;
    }
  }
}

function taskOutcome(ctx: Ctx, task: TaskRecord): number {
  if (ctx.json) ctx.out(JSON.stringify(task));
  switch (task.state) {
    case 'completed':
      if (!ctx.json) ctx.out(`${task.method} ${task.vm ?? ''}: done`.trim());
      return EXIT.ok;
    case 'cancelled':
      if (!ctx.json) process.stderr.write(`${task.method}: cancelled\n`);
      return EXIT.cancelled;
    case 'failed': {
      const name = task.error?.data?.name;
      if (!ctx.json) process.stderr.write(`${task.method} failed: ${name ? `${name}: ` : ''}${task.error?.message ?? 'unknown error'}\n`);
      if (name === 'TIMEOUT') return EXIT.timeout;
      if (name === 'DOES_NOT_EXIST') return EXIT.notFound;
      return EXIT.failed;
    }
    default:
      if (!ctx.json) process.stderr.write(`task ${task.id} is still ${task.state}\n`);
      return EXIT.timeout;
  }
}

async function runOp(ctx: Ctx, method: string, params: Record<string, unknown>): Promise<number> {
  const { task } = await ctx.api.call<{ task: string }>(method, params);
  if (ctx.noWait) {
    ctx.out(ctx.json ? JSON.stringify({ task }) : task);
    return EXIT.ok;
  }
  return taskOutcome(ctx, await waitTask(ctx, task));
}

function num(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`${name} must be a number >= 0, got '${raw}'`);
  return n;
}

async function readSpec(file: string | undefined): Promise<unknown> {
  if (!file) throw new UsageError('vm add needs FILE or - (stdin)');
  let text: string;
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    text = Buffer.concat(chunks).toString();
  } else text = await readFile(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ExitError(EXIT.usage, `${file === '-' ? 'stdin' : file} is not JSON: ${(err as Error).message}`);
  }
}

async function vmCommand(ctx: Ctx, args: string[], opts: { paused?: boolean; hard?: boolean; force?: boolean; timeout?: string }): Promise<number> {
  const [verb, ref] = args;
  switch (verb) {
    case 'add': {
      const { id } = await ctx.api.call<{ id: string }>('VM.add', { vm: await readSpec(ref) as Record<string, unknown> });
      ctx.out(ctx.json ? JSON.stringify({ id }) : id);
      return EXIT.ok;
    }
    case 'list': {
      const { vms } = await ctx.api.call<{ vms: Array<{ vm: { id: string; name: string }; state: { power_state: string; domid?: number } }> }>('VM.list');
      if (ctx.json) ctx.out(JSON.stringify({ vms }));
      else {
        ctx.out(`${'UUID'.padEnd(37)}${'NAME'.padEnd(24)}${'STATE'.padEnd(10)}DOMID`);
        for (const v of vms) ctx.out(`${v.vm.id.padEnd(37)}${v.vm.name.slice(0, 23).padEnd(24)}${v.state.power_state.padEnd(10)}${v.state.domid ?? '-'}`);
      }
      return EXIT.ok;
    }
    case 'stat': {
      const r = await ctx.api.call('VM.stat', { id: await resolveVm(ctx, ref) });
      ctx.out(ctx.json ? JSON.stringify(r) : JSON.stringify(r, null, 2));
      return EXIT.ok;
    }
    case 'remove':
      await ctx.api.call('VM.remove', { id: await resolveVm(ctx, ref) });
      if (!ctx.json) ctx.out('removed');
      else ctx.out('{}');
      return EXIT.ok;
    case 'start':
      return runOp(ctx, 'VM.start', { id: await resolveVm(ctx, ref), ...(opts.paused ? { paused: true } : {}) });
    case 'shutdown':
    case 'reboot': {
      const timeout_s = num('--timeout', opts.timeout);
      return runOp(ctx, `VM.${verb}`, {
        id: await resolveVm(ctx, ref),
        mode: opts.hard ? 'hard' : 'clean',
        ...(timeout_s !== undefined ? { timeout_s } : {}),
        ...(opts.force ? { force: true } : {}),
      });
    }
    case 'pause':
    case 'unpause':
      return runOp(ctx, `VM.${verb}`, { id: await resolveVm(ctx, ref) });
    default:
      throw new UsageError(`unknown vm command '${verb ?? ''}'`);
  }
}

async function taskCommand(ctx: Ctx, args: string[], opts: { timeout?: string }): Promise<number> {
  const [verb, id] = args;
  switch (verb) {
    case 'list': {
      const { tasks } = await ctx.api.call<{ tasks: TaskRecord[] }>('TASK.list');
      if (ctx.json) ctx.out(JSON.stringify({ tasks }));
      else for (const t of tasks) ctx.out(`${t.id}  ${t.method.padEnd(16)} ${t.state.padEnd(10)} ${Math.round(t.progress * 100)}%  ${t.vm ?? ''}`);
      return EXIT.ok;
    }
    case 'wait':
      if (!id) throw new UsageError('task wait needs ID');
      return taskOutcome(ctx, await waitTask(ctx, id, num('--timeout', opts.timeout)));
    case 'cancel':
      if (!id) throw new UsageError('task cancel needs ID');
      await ctx.api.call('TASK.cancel', { id });
      ctx.out(ctx.json ? '{}' : 'cancel requested');
      return EXIT.ok;
    default:
      throw new UsageError(`unknown task command '${verb ?? ''}'`);
  }
}

async function events(ctx: Ctx, from: number): Promise<number> {
  let next = from;
  for (;;) {
    const r = await ctx.api.call<{ updates: Array<{ kind: string; id: string }>; next: number }>('UPDATES.get', { from: next, timeout_s: 30 }, 60_000);
    for (const u of r.updates) ctx.out(ctx.json ? JSON.stringify(u) : `${u.kind} ${u.id}`);
    next = r.next;
  }
}

export async function run(argv: string[], out: (line: string) => void = (l) => process.stdout.write(l + '\n')): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        socket: { type: 'string' },
        json: { type: 'boolean' },
        'no-wait': { type: 'boolean' },
        paused: { type: 'boolean' },
        hard: { type: 'boolean' },
        force: { type: 'boolean' },
        timeout: { type: 'string' },
        from: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`xenopsctl: ${(err as Error).message}\n${USAGE}`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  if (values.help || positionals.length === 0) {
    (values.help ? process.stdout : process.stderr).write(USAGE);
    return values.help ? EXIT.ok : EXIT.usage;
  }
  const api = new ApiClient(values.socket ?? process.env.XENOPSD_NG_SOCKET ?? DEFAULT_SOCKET, { maxSockets: 2 });
  const ctx: Ctx = { api, json: values.json ?? false, noWait: values['no-wait'] ?? false, out };
  const [group, ...rest] = positionals;
  try {
    switch (group) {
      case 'vm':
        return await vmCommand(ctx, rest, values);
      case 'task':
        return await taskCommand(ctx, rest, values);
      case 'events':
        return await events(ctx, num('--from', values.from) ?? 0);
      case 'host':
        if (rest[0] !== 'stat') throw new UsageError(`unknown host command '${rest[0] ?? ''}'`);
        out(JSON.stringify(await api.call('HOST.stat'), null, ctx.json ? 0 : 2));
        return EXIT.ok;
      case 'version':
        out(JSON.stringify(await api.call('API.version'), null, ctx.json ? 0 : 2));
        return EXIT.ok;
      default:
        throw new UsageError(`unknown command '${group}'`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`xenopsctl: ${err.message}\n${USAGE}`);
      return EXIT.usage;
    }
    if (err instanceof ExitError) {
      process.stderr.write(`xenopsctl: ${err.message}\n`);
      return err.code;
    }
    if (err instanceof RpcError) {
      if (ctx.json) out(JSON.stringify({ error: err.body }));
      else process.stderr.write(`xenopsctl: ${err.errorName ? `${err.errorName}: ` : ''}${err.message}\n`);
      if (err.errorName === 'DOES_NOT_EXIST') return EXIT.notFound;
      if (err.errorName === 'INVALID_PARAMS' || err.code === -32602) return EXIT.usage;
      return EXIT.failed;
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'EACCES') {
      process.stderr.write(`xenopsctl: cannot reach the daemon at ${api.socketPath} (${code}); is it running? (--socket / XENOPSD_NG_SOCKET)\n`);
      return EXIT.unreachable;
    }
    process.stderr.write(`xenopsctl: ${(err as Error).message}\n`);
    return EXIT.failed;
  } finally {
    api.close();
  }
}

// Run when executed as the bin (not when imported by tests).
const self = process.argv[1] ?? '';
if (/xenopsctl(\.[cm]?[jt]s)?$/.test(self)) {
  run(process.argv.slice(2)).then(
    (rc) => {
      process.exitCode = rc;
    },
    (err: unknown) => {
      process.stderr.write(`xenopsctl: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
