// Shared by the api and lifecycle tests: a sim host and a daemon in separate processes, clients for both, and a
// snapshot of everything that could leak (the whole xenstore tree with permissions, the domain list).
import { startSimHost, type SimHostHandle } from '../support/simhost.js';
import { startDaemon, type DaemonHandle, type DaemonOptions } from '../support/daemon.js';
import { XsClient } from '../../src/xenstore/client.js';
import { SimControlClient } from '../../src/sim/control/client.js';
import type { ApiClient } from '../../src/daemon/api-client.js';
import { RpcError } from '../../src/daemon/api-client.js';
import { writeFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { join } from 'node:path';

export interface World {
  sim: SimHostHandle;
  daemon: DaemonHandle;
  api: ApiClient;
  xs: XsClient;
  control: SimControlClient;
  /** A 1 MiB disk image in the sim dir, for vbds. */
  disk: string;
  /** Restart the daemon on the same state (after kill or stop). */
  restartDaemon(): Promise<void>;
  close(): Promise<void>;
}

export async function startWorld(opts: Omit<DaemonOptions, 'simDir'> & { memoryMib?: number } = {}): Promise<World> {
  const sim = await startSimHost({ memoryMib: opts.memoryMib ?? 65536 });
  const { memoryMib: _m, ...dopts } = opts;
  let daemon: DaemonHandle;
  try {
    daemon = await startDaemon({ simDir: sim.dir, ...dopts });
  } catch (err) {
    await sim.stop();
    throw err;
  }
  const xs = await XsClient.connect({ path: sim.xenstoredPath, reconnect: false });
  const control = await SimControlClient.connect(sim.controlPath);
  const disk = join(sim.dir, 'disk.img');
  writeFileSync(disk, Buffer.alloc(1 << 20));
  const world: World = {
    sim,
    daemon,
    api: daemon.api,
    xs,
    control,
    disk,
    async restartDaemon() {
      const stateDir = world.daemon.stateDir;
      const socketPath = world.daemon.socketPath;
      world.daemon = await startDaemon({ simDir: sim.dir, ...dopts, stateDir, socketPath });
      world.api = world.daemon.api;
    },
    async close() {
      await world.daemon.stop().catch(() => {});
      await xs.close().catch(() => {});
      control.close?.();
      await sim.stop();
    },
  };
  return world;
}

let seq = 0;
export function vmSpec(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: `vm${++seq}`,
    type: 'pv',
    memory: { max_mib: 64 },
    vcpus: { max: 2 },
    boot: { kernel: '/boot/vmlinuz', cmdline: 'console=hvc0' },
    ...overrides,
  };
}

export interface Task {
  id: string;
  method: string;
  state: string;
  progress: number;
  error?: { code: number; message: string; data?: { name: string; [k: string]: unknown } };
  result?: unknown;
  finished?: string;
  subtasks: Array<{ name: string; state: string }>;
}

export async function waitTask(api: ApiClient, id: string, timeoutS = 20): Promise<Task> {
  const t = await api.call<Task>('TASK.wait', { id, timeout_s: timeoutS });
  if (t.state === 'pending' || t.state === 'running') throw new Error(`task ${id} (${t.method}) still ${t.state} after ${timeoutS} s`);
  return t;
}

/** Submits an operation and waits for its task; returns the finished task. */
export async function op(api: ApiClient, method: string, params: Record<string, unknown>, timeoutS = 20): Promise<Task> {
  const { task } = await api.call<{ task: string }>(method, params);
  return waitTask(api, task, timeoutS);
}

/** Like op but fails the test unless the task completed. */
export async function opOk(api: ApiClient, method: string, params: Record<string, unknown>, timeoutS = 20): Promise<Task> {
  const t = await op(api, method, params, timeoutS);
  if (t.state !== 'completed') throw new Error(`${method} ${JSON.stringify(params)} ended ${t.state}: ${JSON.stringify(t.error)}`);
  return t;
}

export async function addVm(api: ApiClient, overrides: Record<string, unknown> = {}): Promise<string> {
  const { id } = await api.call<{ id: string }>('VM.add', { vm: vmSpec(overrides) });
  return id;
}

export async function power(api: ApiClient, id: string): Promise<string> {
  const r = await api.call<{ state: { power_state: string } }>('VM.stat', { id });
  return r.state.power_state;
}

/** Polls until cond() is true (or throws after timeoutMs). */
export async function until(cond: () => Promise<boolean> | boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Every node of the tree as "path = value (perms)" lines, sorted. */
export async function dumpTree(xs: XsClient, root = '/'): Promise<string[]> {
  const lines: string[] = [];
  const walk = async (path: string): Promise<void> => {
    const value = await xs.tryRead(path);
    if (value === undefined) return;
    const perms = await xs.getPerms(path).catch(() => []);
    lines.push(`${path} = ${JSON.stringify(value)} (${perms.map((p) => `${p.perm}${p.id}`).join(',')})`);
    const children = await xs.directory(path).catch(() => [] as string[]);
    for (const c of children) await walk(path === '/' ? `/${c}` : `${path}/${c}`);
  };
  await walk(root);
  return lines.sort();
}

/** What must not leak: the xenstore tree (minus the sim's own bookkeeping) and the domains. */
export async function snapshot(w: World): Promise<{ tree: string[]; domains: string[] }> {
  const tree = (await dumpTree(w.xs)).filter((l) => !l.startsWith('/tool'));
  const status = await w.control.call('status', {});
  const domains = status.domains.filter((d) => d.domid !== 0).map((d) => `${d.domid}:${d.handle}:${d.state}`).sort();
  return { tree, domains };
}

/** Rejects unless fn rejects with an RpcError of this data.name; returns the error. */
export async function rpcError(fn: () => Promise<unknown>, name: string): Promise<RpcError> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof RpcError && err.errorName === name) return err;
    throw new Error(`expected ${name}, got ${err instanceof RpcError ? `${err.errorName}: ${err.message}` : String(err)}`);
  }
  throw new Error(`expected ${name}, but the call succeeded`);
}

/** Asserts the world is back to baseline; destroyed domains linger as dying for a moment, so it polls (5 s). */
export async function assertNoLeak(w: World, baseline: { tree: string[]; domains: string[] }): Promise<void> {
  let last = await snapshot(w);
  const end = Date.now() + 5000;
  while (JSON.stringify(last) !== JSON.stringify(baseline) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    last = await snapshot(w);
  }
  assert.deepStrictEqual(last, baseline);
}

/**
 * The world is consistent with the daemon's view: the live domains are exactly the recorded ones, and xenstore holds
 * nodes only for them (/local/domain/<domid>, backends, /vm/<uuid>).
 */
export async function assertConsistent(w: World): Promise<void> {
  const end = Date.now() + 5000;
  let problem = '';
  do {
    const { vms } = await w.api.call<{ vms: Array<{ vm: { id: string }; state: { power_state: string; domid?: number } }> }>('VM.list');
    const recorded = new Map(vms.filter((v) => v.state.domid !== undefined).map((v) => [v.state.domid!, v.vm.id]));
    const status = await w.control.call('status', {});
    const live = status.domains.filter((d) => d.domid !== 0 && d.state !== 'dying');
    const dying = status.domains.filter((d) => d.state === 'dying');
    const localDoms = (await w.xs.directory('/local/domain')).map(Number).filter((d) => d !== 0).sort();
    const vmNodes = (await w.xs.directory('/vm').catch(() => [] as string[])).sort();
    const backends: number[] = [];
    for (const kind of ['vbd', 'vif', 'console']) {
      for (const c of await w.xs.directory(`/local/domain/0/backend/${kind}`).catch(() => [] as string[])) backends.push(Number(c));
    }
    const want = [...recorded.keys()].sort();
    problem = '';
    if (JSON.stringify(live.map((d) => d.domid).sort()) !== JSON.stringify(want)) problem += `live domains ${live.map((d) => d.domid)} != recorded ${want}; `;
    if (dying.length) problem += `dying ${dying.map((d) => d.domid)}; `;
    if (JSON.stringify(localDoms) !== JSON.stringify(want)) problem += `/local/domain has ${localDoms}; `;
    if (JSON.stringify(vmNodes) !== JSON.stringify([...recorded.values()].sort())) problem += `/vm has ${vmNodes}; `;
    if (backends.some((b) => !recorded.has(b))) problem += `backends for ${backends}; `;
    if (!problem) return;
    await new Promise((r) => setTimeout(r, 50));
  } while (Date.now() < end);
  assert.fail(`inconsistent: ${problem}`);
}

/** Waits until the daemon has no task pending or running. */
export async function idle(w: World, timeoutMs = 15_000): Promise<void> {
  await until(async () => {
    const { tasks } = await w.api.call<{ tasks: Task[] }>('TASK.list');
    return tasks.every((t) => t.state !== 'pending' && t.state !== 'running');
  }, timeoutMs, 'daemon idle');
}

/** A snapshot taken once destroyed domains are gone (a baseline must not include a domain still dying). */
export async function settledSnapshot(w: World): Promise<{ tree: string[]; domains: string[] }> {
  let snap = await snapshot(w);
  const end = Date.now() + 10_000;
  while (snap.domains.some((d) => d.endsWith(':dying')) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    snap = await snapshot(w);
  }
  return snap;
}
