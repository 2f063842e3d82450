/*
 * LD_PRELOAD shim that lets Debian's C xenstored (xen-utils-4.17) run as a plain userspace
 * process with no hypervisor, so tests can use it as a reference server on its unix socket.
 *
 * It answers the handful of hypervisor-facing calls xenstored makes (found with
 * `nm -D --undefined-only`) with dummies:
 *   - xc_interface_open / xengnttab_open / xenevtchn_open / xenforeignmemory_open: a dummy handle;
 *   - event channels: bind_virq / bind_interdomain hand out port numbers, the "event fd" is a
 *     pipe nobody writes, so no event ever arrives (guest rings are never driven);
 *   - grant maps: an anonymous zeroed page (empty ring: nothing to read);
 *   - xc_domain_getinfo: every domid below DOMID_FIRST_RESERVED exists and is running, so
 *     permissions naming any ordinary domid are kept;
 *   - open("/proc/xen/xsd_port") and open("/proc/xen/xsd_kva"): memfds holding a port number
 *     and a page for dom0's ring.
 * It also makes xenstored die with the process that started it (PR_SET_PDEATHSIG), so a test
 * runner killed by a timeout leaves no daemon behind.
 * No Xen header is needed: handles are opaque and the few struct fields written are the
 * leading ones of xc_dominfo_t (domid, ssidref, then the dying/crashed/shutdown bit-field).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#define DOMID_FIRST_RESERVED 0x7FF0U
#define PAGE 4096
#define DOM0_PORT "1\n"

static int dummy_handle; /* its address is every handle we return */

__attribute__((constructor)) static void die_with_parent(void)
{
	pid_t parent = getppid();
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent) /* the parent died before prctl took effect */
		_exit(1);
}
static int event_pipe[2] = { -1, -1 };
static uint32_t next_port = 2; /* 1 is dom0's xsd_port */

void *xc_interface_open(void *logger, void *dombuild_logger, unsigned flags) { return &dummy_handle; }
int xc_interface_close(void *xch) { return 0; }

/* Fills the prefix of xc_dominfo_t that xenstored reads: domid, ssidref, flag bits all clear. */
int xc_domain_getinfo(void *xch, uint32_t first_domid, unsigned int max_doms, void *info)
{
	if (max_doms == 0 || first_domid >= DOMID_FIRST_RESERVED)
		return 0;
	memset(info, 0, 3 * sizeof(uint32_t));
	((uint32_t *)info)[0] = first_domid;
	return 1;
}

void *xenforeignmemory_open(void *logger, unsigned flags) { return &dummy_handle; }
int xenforeignmemory_close(void *fmem) { return 0; }

void *xengnttab_open(void *logger, unsigned flags) { return &dummy_handle; }
int xengnttab_close(void *xgt) { return 0; }
int xengnttab_set_max_grants(void *xgt, uint32_t count) { return 0; }
void *xengnttab_map_grant_ref(void *xgt, uint32_t domid, uint32_t ref, int prot)
{
	void *page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return page == MAP_FAILED ? NULL : page;
}
int xengnttab_unmap(void *xgt, void *start_address, uint32_t count) { return munmap(start_address, (size_t)count * PAGE); }

void *xenevtchn_open(void *logger, unsigned flags)
{
	if (event_pipe[0] < 0 && pipe2(event_pipe, O_CLOEXEC) < 0)
		return NULL;
	return &dummy_handle;
}
void *xenevtchn_fdopen(void *logger, int fd, unsigned flags) { return xenevtchn_open(logger, flags); }
int xenevtchn_close(void *xce) { return 0; }
int xenevtchn_fd(void *xce) { return event_pipe[0]; }
int xenevtchn_bind_virq(void *xce, unsigned int virq) { return (int)next_port++; }
int xenevtchn_bind_interdomain(void *xce, uint32_t domid, uint32_t remote_port) { return (int)next_port++; }
int xenevtchn_unbind(void *xce, uint32_t port) { return 0; }
int xenevtchn_notify(void *xce, uint32_t port) { return 0; }
int xenevtchn_pending(void *xce) { errno = EAGAIN; return -1; }
int xenevtchn_unmask(void *xce, uint32_t port) { return 0; }

/* A memfd of `size` bytes starting with `content`, positioned at offset 0. */
static int memfd_with(const char *name, const char *content, size_t size)
{
	int fd = memfd_create(name, MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	if (ftruncate(fd, (off_t)size) < 0 ||
	    (content && pwrite(fd, content, strlen(content), 0) < 0)) {
		close(fd);
		return -1;
	}
	return fd;
}

static int fake_proc_xen(const char *path)
{
	if (strcmp(path, "/proc/xen/xsd_port") == 0)
		return memfd_with("xsd_port", DOM0_PORT, strlen(DOM0_PORT));
	if (strcmp(path, "/proc/xen/xsd_kva") == 0)
		return memfd_with("xsd_kva", NULL, PAGE);
	return -2;
}

static int forward_open(const char *sym, const char *path, int flags, mode_t mode)
{
	int (*real)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, sym);
	if (!real) {
		errno = ENOSYS;
		return -1;
	}
	return real(path, flags, mode);
}

int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	int fd = fake_proc_xen(path);
	if (fd != -2)
		return fd;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	return forward_open("open", path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	mode_t mode = 0;
	int fd = fake_proc_xen(path);
	if (fd != -2)
		return fd;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	return forward_open("open64", path, flags, mode);
}
