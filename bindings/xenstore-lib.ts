// koffi declarations of Debian's libxenstore.so.4 (Xen 4.17, /usr/include/xenstore.h) and libc's free().
// Every function is called through `.async` by bindings/xenstore.ts: each libxenstore call is a blocking
// round trip to xenstored and must never run on the event-loop thread.
import koffi, { type LibraryHandle, type TypeObject } from 'koffi';

/** A `struct xs_handle *`: koffi returns pointers as BigInt without type, so it is branded here. */
export type XsHandlePtr = bigint & { readonly __brand: 'xs_handle' };
/** A malloc'ed block returned by libxenstore, to be released with free(). */
export type MallocPtr = bigint & { readonly __brand: 'malloc' };

type AsyncFn = { async: (...args: unknown[]) => void } & ((...args: unknown[]) => unknown);

export interface LibXenstore {
  readonly path: string;
  xs_open: AsyncFn;
  xs_close: AsyncFn;
  xs_read: AsyncFn;
  xs_write: AsyncFn;
  xs_mkdir: AsyncFn;
  xs_rm: AsyncFn;
  xs_directory: AsyncFn;
  xs_get_permissions: AsyncFn;
  xs_set_permissions: AsyncFn;
  xs_transaction_start: AsyncFn;
  xs_transaction_end: AsyncFn;
  xs_watch: AsyncFn;
  xs_unwatch: AsyncFn;
  xs_fileno: AsyncFn;
  xs_check_watch: AsyncFn;
  xs_get_domain_path: AsyncFn;
  xs_introduce_domain: AsyncFn;
  xs_release_domain: AsyncFn;
  xs_is_domain_introduced: AsyncFn;
  xs_resume_domain: AsyncFn;
  xs_set_target: AsyncFn;
  xs_control_command: AsyncFn;
  free: AsyncFn;
  /** struct xs_permissions { unsigned int id; unsigned int perms; } */
  XsPermissions: TypeObject;
}

export const LIBXENSTORE_SONAME = 'libxenstore.so.4';
export const XS_PERM_READ = 0x01;
export const XS_PERM_WRITE = 0x02;

export class LibxenstoreUnavailableError extends Error {
  constructor(readonly library: string, cause: unknown) {
    super(
      `cannot load ${library} (Debian package libxenstore4): ${(cause as Error)?.message ?? String(cause)}; ` +
        `use the native xenstore transport instead`,
    );
    this.name = 'LibxenstoreUnavailableError';
  }
}

let cached: LibXenstore | undefined;

/** Loads libxenstore once per process; throws LibxenstoreUnavailableError naming the library when it is missing. */
export function loadLibxenstore(library = LIBXENSTORE_SONAME): LibXenstore {
  if (cached && cached.path === library) return cached;
  let lib: LibraryHandle;
  let libc: LibraryHandle;
  try {
    lib = koffi.load(library);
    libc = koffi.load('libc.so.6');
  } catch (e) {
    throw new LibxenstoreUnavailableError(library, e);
  }
  const XsPermissions = koffi.struct('xs_permissions', { id: 'uint32_t', perms: 'uint32_t' });
  const f = (decl: string) => lib.func(decl) as unknown as AsyncFn;
  // Opaque handles and malloc'ed results are declared void * so koffi hands back the raw address (a BigInt).
  cached = {
    path: library,
    xs_open: f('void *xs_open(unsigned long flags)'),
    xs_close: f('void xs_close(void *h)'),
    xs_read: f('void *xs_read(void *h, uint32_t t, const char *path, _Out_ unsigned int *len)'),
    xs_write: f('bool xs_write(void *h, uint32_t t, const char *path, const void *data, unsigned int len)'),
    xs_mkdir: f('bool xs_mkdir(void *h, uint32_t t, const char *path)'),
    xs_rm: f('bool xs_rm(void *h, uint32_t t, const char *path)'),
    xs_directory: f('void *xs_directory(void *h, uint32_t t, const char *path, _Out_ unsigned int *num)'),
    xs_get_permissions: f('void *xs_get_permissions(void *h, uint32_t t, const char *path, _Out_ unsigned int *num)'),
    xs_set_permissions: f('bool xs_set_permissions(void *h, uint32_t t, const char *path, const void *perms, unsigned int num)'),
    xs_transaction_start: f('uint32_t xs_transaction_start(void *h)'),
    xs_transaction_end: f('bool xs_transaction_end(void *h, uint32_t t, bool abort)'),
    xs_watch: f('bool xs_watch(void *h, const char *path, const char *token)'),
    xs_unwatch: f('bool xs_unwatch(void *h, const char *path, const char *token)'),
    xs_fileno: f('int xs_fileno(void *h)'),
    xs_check_watch: f('void *xs_check_watch(void *h)'),
    xs_get_domain_path: f('void *xs_get_domain_path(void *h, unsigned int domid)'),
    xs_introduce_domain: f('bool xs_introduce_domain(void *h, unsigned int domid, unsigned long mfn, unsigned int eventchn)'),
    xs_release_domain: f('bool xs_release_domain(void *h, unsigned int domid)'),
    xs_is_domain_introduced: f('bool xs_is_domain_introduced(void *h, unsigned int domid)'),
    xs_resume_domain: f('bool xs_resume_domain(void *h, unsigned int domid)'),
    xs_set_target: f('bool xs_set_target(void *h, unsigned int domid, unsigned int target)'),
    xs_control_command: f('void *xs_control_command(void *h, const char *cmd, const void *data, unsigned int len)'),
    free: libc.func('void free(void *p)') as unknown as AsyncFn,
    XsPermissions,
  };
  return cached;
}

/** Result of one `.async` call: the return value and errno as the worker thread left it. */
export interface AsyncResult<T> {
  value: T;
  errno: number;
}

/** Runs `fn.async(...args)` and resolves with its value and errno (koffi restores the worker's errno in the callback). */
export function callAsync<T>(fn: AsyncFn, ...args: unknown[]): Promise<AsyncResult<T>> {
  return new Promise((resolve, reject) => {
    fn.async(...args, (err: unknown, value: T) => {
      if (err) reject(err);
      else resolve({ value, errno: koffi.errno() });
    });
  });
}

/** Copies `len` bytes of a malloc'ed result into a Buffer (the caller frees the block). */
export function copyBytes(ptr: bigint, len: number): Buffer {
  return len === 0 ? Buffer.alloc(0) : Buffer.from(new Uint8Array(koffi.view(ptr, len)));
}

export function decodeStrings(ptr: bigint, count: number): string[] {
  return count === 0 ? [] : (koffi.decode(ptr, koffi.array('char *', count)) as string[]);
}

export function decodeCString(ptr: bigint): string {
  return koffi.decode.string(ptr);
}

/**
 * Releases a block libxenstore malloc'ed. Called synchronously on purpose: free() never blocks, and a worker hop
 * would cost more than the call (every libxenstore function itself goes through `.async`).
 */
export function freeBlock(lib: LibXenstore, ptr: bigint): void {
  (lib.free as unknown as (p: bigint) => void)(ptr);
}
