// Crash-safe small files: a reader after any crash sees either the old content or the new, never a torn write.
// write tmp → fsync → rename over → fsync the directory (so the rename itself is durable).
import { open, rename, rm, mkdir, readFile, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';

let tmpCounter = 0;

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function writeFileAtomic(path: string, data: string): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.tmp.${process.pid}.${++tmpCounter}`);
  const handle = await open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
}

export async function removeFileDurable(path: string): Promise<void> {
  await rm(path, { force: true });
  await fsyncDir(dirname(path));
}

export async function readJsonFile<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Lists the `*.json` entries of dir (creating it), removing temp files a crash left behind. */
export async function listJsonFiles(dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const names = await readdir(dir);
  const out: string[] = [];
  for (const name of names) {
    if (name.startsWith('.tmp.')) await rm(join(dir, name), { force: true });
    else if (name.endsWith('.json')) out.push(name.slice(0, -'.json'.length));
  }
  return out;
}
