// Lazy, tolerant loading of Xen's libraries. Importing the bindings never touches the libraries, so the daemon
// (and its tests) load on machines without Xen; loadXenLibraries() is where a missing library becomes a clear
// error, and where the loaded libxenctrl's release is compared with the ones the bindings were checked against.
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { basename } from 'node:path';
import koffi from 'koffi';
import type { LibraryHandle } from './koffi-types.js';
import { HypervisorError } from '../src/hypervisor/types.js';
import { CHECKED_XEN_VERSIONS } from './structs.js';
import { libraryError } from './errors.js';

export interface XenLibraryPaths {
  /** Default: the soname of the checked release, libxenctrl.so.4.17. */
  libxenctrl?: string;
  libxenguest?: string;
}

export interface XenLibraries {
  xenctrl: LibraryHandle;
  xenguest: LibraryHandle;
  /** Release of the loaded libxenctrl file, e.g. '4.17' (from its versioned file name). */
  libraryVersion: string;
  /** The file the dynamic loader actually mapped. */
  libxenctrlFile: string;
}

export const DEFAULT_LIBXENCTRL = `libxenctrl.so.${CHECKED_XEN_VERSIONS[0]}`;
export const DEFAULT_LIBXENGUEST = `libxenguest.so.${CHECKED_XEN_VERSIONS[0]}`;

const cache = new Map<string, XenLibraries>();

/** 'libxenctrl.so.4.17.0' → '4.17'; undefined when the name carries no release. */
export function releaseFromLibraryName(file: string): string | undefined {
  const m = /\.so\.(\d+)\.(\d+)(?:\.\d+)*$/.exec(basename(file));
  return m ? `${m[1]}.${m[2]}` : undefined;
}

/** The file the dynamic loader mapped for libxenctrl: the real path given, else the one in /proc/self/maps. */
function mappedLibxenctrl(ctrlPath: string): string {
  if (ctrlPath.includes('/')) return realpathSync(ctrlPath);
  try {
    for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
      const slash = line.indexOf('/');
      if (slash < 0) continue;
      const file = line.slice(slash).trim();
      if (basename(file).startsWith('libxenctrl.so')) return file;
    }
  } catch {
    // No /proc: the soname asked for is the best evidence left.
  }
  return ctrlPath;
}

function load(path: string, what: string): LibraryHandle {
  try {
    return koffi.load(path);
  } catch (err) {
    throw libraryError(
      'dlopen',
      `${what} could not be loaded from ${path}: ${(err as Error).message}. ` +
        `The xen backend needs Xen ${CHECKED_XEN_VERSIONS.join('/')} libraries (Debian: libxenmisc${CHECKED_XEN_VERSIONS[0]})`,
    );
  }
}

/**
 * Checks that libxenctrl's release is one the bindings were checked against: its ABI (struct layouts, domctl
 * interface version) changes with every release, so a mismatch would corrupt memory rather than fail cleanly.
 */
export function assertCheckedRelease(file: string, release: string | undefined): void {
  if (release && (CHECKED_XEN_VERSIONS as readonly string[]).includes(release)) return;
  throw new HypervisorError(
    'xenctrl_version_check',
    'ENOTSUP',
    `libxenctrl ${release ?? '(unknown release)'} at ${file} is not a release these bindings were checked against ` +
      `(${CHECKED_XEN_VERSIONS.join(', ')}); refusing to use it`,
  );
}

export function loadXenLibraries(paths: XenLibraryPaths = {}): XenLibraries {
  const ctrlPath = paths.libxenctrl ?? DEFAULT_LIBXENCTRL;
  const guestPath = paths.libxenguest ?? DEFAULT_LIBXENGUEST;
  const key = `${ctrlPath}\0${guestPath}`;
  const cached = cache.get(key);
  if (cached) return cached;
  // Check the name before loading when it tells the release; the mapped file is checked after.
  if (ctrlPath.includes('/')) {
    if (!existsSync(ctrlPath)) throw libraryError('dlopen', `libxenctrl not found at ${ctrlPath}`);
    assertCheckedRelease(ctrlPath, releaseFromLibraryName(realpathSync(ctrlPath)));
  }
  const xenctrl = load(ctrlPath, 'libxenctrl');
  const file = mappedLibxenctrl(ctrlPath);
  const libraryVersion = releaseFromLibraryName(file) ?? releaseFromLibraryName(ctrlPath);
  assertCheckedRelease(file, libraryVersion);
  const xenguest = load(guestPath, 'libxenguest');
  const libs: XenLibraries = { xenctrl, xenguest, libraryVersion: libraryVersion!, libxenctrlFile: file };
  cache.set(key, libs);
  return libs;
}
