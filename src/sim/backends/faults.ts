// Injected backend faults: every device whose backend path starts with a registered prefix fails its
// hotplug script (mode fail), never answers at all (mode hang), as a wedged blkback or a stuck script, or gives up
// on probe (mode close), as blkback/netback do through xenbus_dev_fatal when they cannot set the device up.

export type BackendFaultMode = 'fail' | 'hang' | 'close';
export interface BackendFault {
  path: string;
  mode: BackendFaultMode;
  message?: string;
}

export class BackendFaults {
  private readonly faults = new Map<string, BackendFault>();

  set(path: string, mode: BackendFaultMode | 'none', message?: string): void {
    if (mode === 'none') this.faults.delete(path);
    else this.faults.set(path, { path, mode, message });
  }

  clear(): void {
    this.faults.clear();
  }

  /** The fault whose path is the longest prefix of backendPath (on a path-component boundary). */
  match(backendPath: string): BackendFault | undefined {
    let best: BackendFault | undefined;
    for (const f of this.faults.values()) {
      const hit = backendPath === f.path || backendPath.startsWith(f.path.endsWith('/') ? f.path : f.path + '/');
      if (hit && (!best || f.path.length > best.path.length)) best = f;
    }
    return best;
  }

  list(): BackendFault[] {
    return [...this.faults.values()];
  }
}
