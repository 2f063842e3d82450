// The daemon's persistent memory: VM specs, what each running domain was built with, and the journal of operations
// in progress. Each record is one crash-safe file; everything is also held in memory so reads cost no I/O.
//   <stateDir>/vms/<uuid>.json      VM spec (VM.add … VM.remove)
//   <stateDir>/domains/<uuid>.json  DomainRecord while the VM has a domain
//   <stateDir>/journal/<uuid>.json  JournalEntry while an operation runs on the VM
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import {
  writeFileAtomic,
  removeFileDurable,
  readJsonFile,
  listJsonFiles,
  isMemoryBacked,
  writeFileAtomicSync,
  removeFileDurableSync,
} from './atomic-file.js';
import type { VmSpec } from './spec.js';

export interface DeviceRecord {
  kind: 'vbd' | 'vif' | 'console';
  devid: number;
  backend: string;
  frontend: string;
}

/** What a running domain was built with: enough to manage, tear down or re-adopt it after a restart. */
export interface DomainRecord {
  vm: string;
  domid: number;
  /** The spec as it was when the domain was built (VM.add of a new spec does not change a running domain). */
  builtWith: VmSpec;
  storePort: number;
  consolePort: number;
  storeMfn: string;
  consoleMfn: string;
  startedAt: string;
  devices: DeviceRecord[];
  /** Set by on_*: preserve — the domain is kept, shut down, for inspection. */
  preserved?: boolean;
}

export type JournalOp = 'start' | 'shutdown' | 'reboot' | 'pause' | 'unpause' | 'set_vcpus' | 'set_memory' | 'check';

/** An operation in progress, written before its first atom, removed after its last (or its undo). */
export interface JournalEntry {
  vm: string;
  op: JournalOp;
  taskId: string;
  started: string;
  /** The domain the operation acts on (absent for start: a half-built domain is found by its handle, the VM uuid). */
  domid?: number;
  /** The operation's parameters that recovery needs (e.g. start's paused). */
  args?: Record<string, unknown>;
}

export class VmStore {
  private readonly specs = new Map<string, VmSpec>();
  private readonly domains = new Map<string, DomainRecord>();
  private readonly journal = new Map<string, JournalEntry>();

  /** On a file system in memory, records are written with synchronous calls (microseconds, no thread-pool hop). */
  private syncIo = false;

  private constructor(private readonly dir: string) {}

  /** opts.synchronous overrides the choice made from the file system's type (tests cover both ways). */
  static async open(dir: string, opts: { synchronous?: boolean } = {}): Promise<VmStore> {
    const store = new VmStore(dir);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    store.syncIo = opts.synchronous ?? isMemoryBacked(dir);
    await store.load('vms', store.specs);
    await store.load('domains', store.domains);
    await store.load('journal', store.journal);
    return store;
  }

  private async load<T>(sub: string, into: Map<string, T>): Promise<void> {
    for (const id of await listJsonFiles(join(this.dir, sub))) {
      const value = await readJsonFile<T>(join(this.dir, sub, `${id}.json`));
      if (value !== undefined) into.set(id, value);
    }
  }

  private path(sub: string, id: string): string {
    return join(this.dir, sub, `${id}.json`);
  }

  private async write(sub: string, id: string, value: unknown): Promise<void> {
    const path = this.path(sub, id);
    if (this.syncIo) writeFileAtomicSync(path, JSON.stringify(value));
    else await writeFileAtomic(path, JSON.stringify(value));
  }

  private async remove(sub: string, id: string): Promise<void> {
    const path = this.path(sub, id);
    if (this.syncIo) removeFileDurableSync(path);
    else await removeFileDurable(path);
  }

  /** Whether records are written synchronously (the state directory is in memory). */
  get synchronousWrites(): boolean {
    return this.syncIo;
  }

  // --- specs
  getSpec(id: string): VmSpec | undefined {
    return this.specs.get(id);
  }
  listSpecs(): VmSpec[] {
    return [...this.specs.values()];
  }
  findByName(name: string): VmSpec[] {
    return this.listSpecs().filter((s) => s.name === name);
  }
  async putSpec(spec: VmSpec): Promise<void> {
    await this.write('vms', spec.id, spec);
    this.specs.set(spec.id, spec);
  }
  async removeSpec(id: string): Promise<void> {
    await this.remove('vms', id);
    this.specs.delete(id);
  }

  // --- domain records
  getDomain(vm: string): DomainRecord | undefined {
    return this.domains.get(vm);
  }
  listDomains(): DomainRecord[] {
    return [...this.domains.values()];
  }
  async putDomain(rec: DomainRecord): Promise<void> {
    await this.write('domains', rec.vm, rec);
    this.domains.set(rec.vm, rec);
  }
  async removeDomain(vm: string): Promise<void> {
    await this.remove('domains', vm);
    this.domains.delete(vm);
  }

  // --- journal
  getJournal(vm: string): JournalEntry | undefined {
    return this.journal.get(vm);
  }
  listJournal(): JournalEntry[] {
    return [...this.journal.values()];
  }
  async putJournal(entry: JournalEntry): Promise<void> {
    await this.write('journal', entry.vm, entry);
    this.journal.set(entry.vm, entry);
  }
  async removeJournal(vm: string): Promise<void> {
    if (!this.journal.has(vm)) return;
    await this.remove('journal', vm);
    this.journal.delete(vm);
  }
}
