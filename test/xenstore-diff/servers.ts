// The two servers the differential test compares: Debian's C xenstored (under the shim) and the
// sim's xenstored (in this process, or as its standalone process), each on its own socket.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startCXenstored } from '../support/cxenstored/index.js';

export interface ServerUnderTest {
  name: string;
  socketPath: string;
  stop(): Promise<void>;
}

const SIM_MODULE = '../../src/sim/xenstored/index.js';

/** Why the sim xenstored cannot be used (its module is not there yet), or undefined. */
export function simXenstoredAvailable(): string | undefined {
  const source = new URL('../../src/sim/xenstored/index.ts', import.meta.url);
  return existsSync(source) ? undefined : 'src/sim/xenstored/index.ts is missing';
}

interface SimXenstoredLike {
  listen(path: string): Promise<unknown>;
  close(): Promise<unknown>;
}

export async function startSim(dir: string): Promise<ServerUnderTest> {
  mkdirSync(dir, { recursive: true });
  // Imported by name at run time so this file type-checks while the sim is being written.
  const mod = (await import(SIM_MODULE)) as { SimXenstored: new (opts?: object) => SimXenstoredLike };
  const sim = new mod.SimXenstored({});
  const socketPath = join(dir, 'socket');
  await sim.listen(socketPath);
  return { name: 'sim', socketPath, stop: async () => void (await sim.close()) };
}

export async function startC(dir: string, opts: { trace?: boolean; args?: string[] } = {}): Promise<ServerUnderTest> {
  mkdirSync(dir, { recursive: true });
  const c = await startCXenstored({ dir, trace: opts.trace ?? false, args: opts.args });
  return { name: 'C', socketPath: c.socketPath, stop: c.stop };
}
