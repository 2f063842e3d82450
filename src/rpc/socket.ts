// The unix socket's life: refuse to start when another daemon answers on the path, remove a stale socket file, set
// mode 0600 (0660 + chgrp with a group) without a window where it is wider, and remove only our own file at the end.
import { chmodSync, chownSync, lstatSync, mkdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';

/** Whether something accepts connections on the unix socket `path`. */
export function probeSocket(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(true); // accepted by the kernel but the peer is slow: someone owns it
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(true);
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(false);
      else reject(new Error(`cannot probe socket ${path}: ${err.message}`));
    });
  });
}

/** Make `path` free for listening: create its directory; fail if a live daemon or a non-socket is there. */
export async function claimSocketPath(path: string): Promise<void> {
  // sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
  const bytes = Buffer.byteLength(path);
  if (bytes > 107) throw new Error(`socket path ${path} is too long (${bytes} bytes; a unix socket path may have 107)`);
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it`);
  if (await probeSocket(path)) throw new Error(`another daemon is answering on ${path}; refusing to start`);
  unlinkSync(path); // stale: left by a daemon that died
}

/** A group name or gid → gid (names looked up in /etc/group). */
export function resolveGroup(group: string | number): number {
  if (typeof group === 'number' || /^[0-9]+$/.test(group)) return Number(group);
  for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined) return Number(gid);
  }
  throw new Error(`group ${group} does not exist (not in /etc/group)`);
}

/** The mode the socket gets. */
export function socketMode(group: string | number | undefined): number {
  return group === undefined ? 0o600 : 0o660;
}

export function applySocketAccess(path: string, group: string | number | undefined): void {
  if (group !== undefined) {
    const gid = resolveGroup(group);
    try {
      chownSync(path, -1, gid);
    } catch (err) {
      throw new Error(`cannot give socket ${path} to group ${group}: ${(err as Error).message}`);
    }
  }
  chmodSync(path, socketMode(group));
}

/** Identity of the socket file we created, so close() removes ours and not a successor's. */
export function socketIdentity(path: string): string | undefined {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

export function removeSocketIfOurs(path: string, identity: string | undefined): void {
  if (identity !== undefined && socketIdentity(path) === identity) {
    try {
      unlinkSync(path);
    } catch {
      // already gone
    }
  }
}
