/* Step "seccomp": a deny list, installed last because it forbids what the steps before it do
 * (mount, unshare, ...). Denied calls fail with EPERM, so a runtime can report them; clone3
 * fails with ENOSYS because its flags live in memory a filter cannot read, and libc then falls
 * back to clone, whose flags it can. System calls of another ABI (i386, x32) kill the process:
 * they would go around the native rules. Filters are compiled with libseccomp once per process
 * and loaded in the child as plain BPF, since a forked child of a threaded worker must not call
 * into the allocator. */
#include "sandbox/sb_int.h"

#include "core/alloc.h"
#include "core/err.h"
#include "sandbox/sb_sys.h"

#include <errno.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Denied in every sandbox: ways out of the namespaces, into the kernel's attack surface, or at
 * other processes. Names the installed libseccomp does not know are skipped. */
static const char *const denied[] = {
	"ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp",
	"mount", "umount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount",
	"fspick", "move_mount", "open_tree", "mount_setattr", "open_tree_attr",
	"unshare", "setns",
	"bpf", "io_uring_setup", "io_uring_enter", "io_uring_register",
	"keyctl", "add_key", "request_key",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"create_module", "query_module", "get_kernel_syms",
	"perf_event_open", "userfaultfd", "fanotify_init", "lookup_dcookie",
	"swapon", "swapoff", "reboot", "acct", "quotactl", "quotactl_fd", "syslog", "vhangup",
	"open_by_handle_at", "name_to_handle_at",
	"iopl", "ioperm", "modify_ldt", "uselib", "nfsservctl", "_sysctl", "sysfs", "ustat",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime",
	"personality",
};

/* Namespace flags clone must not carry. */
static const unsigned long clone_ns_flags[] = {
	CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
	CLONE_NEWCGROUP,
};

static pthread_mutex_t filters_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sock_fprog *filters[4];

static int add(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n,
	       const struct scmp_arg_cmp *cmp, struct fl_err *err)
{
	int nr = seccomp_syscall_resolve_name(name);
	if (nr == __NR_SCMP_ERROR)
		return 0;
	int rc = seccomp_rule_add_array(ctx, action, nr, n, cmp);
	if (rc)
		return fl_err_set(err, rc, "seccomp: cannot add a rule for '%s': %s", name, strerror(-rc));
	return 0;
}

static int build(unsigned kind, scmp_filter_ctx ctx, struct fl_err *err)
{
	int rc;
	const uint32_t deny = SCMP_ACT_ERRNO(EPERM);
	/* A filter for the native ABI only: anything else is the bad-arch action. */
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) ||
	    (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) ||
	    (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)))
		return fl_err_set(err, rc, "seccomp: cannot set filter attributes: %s", strerror(-rc));
	for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++)
		if ((rc = add(ctx, deny, denied[i], 0, NULL, err)))
			return rc;
	for (size_t i = 0; i < sizeof clone_ns_flags / sizeof clone_ns_flags[0]; i++) {
		struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_MASKED_EQ, clone_ns_flags[i], clone_ns_flags[i]);
		if ((rc = add(ctx, deny, "clone", 1, &c, err)))
			return rc;
	}
	if ((rc = add(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL, err)))
		return rc;
	/* Pushing characters into a terminal's input would run commands outside. The kernel
	 * reads the request as 32 bits: compare only those. */
	static const unsigned long tty_requests[] = { TIOCSTI, TIOCLINUX };
	for (size_t i = 0; i < 2; i++) {
		struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, tty_requests[i]);
		if ((rc = add(ctx, deny, "ioctl", 1, &c, err)))
			return rc;
	}
	if (kind & SB_FILTER_INET) {
		struct scmp_arg_cmp gt = SCMP_A0(SCMP_CMP_GT, AF_UNIX, 0), lt = SCMP_A0(SCMP_CMP_LT, AF_UNIX, 0);
		if ((rc = add(ctx, deny, "socket", 1, &gt, err)) || (rc = add(ctx, deny, "socket", 1, &lt, err)))
			return rc;
	}
	if (kind & SB_FILTER_CODE) {
		/* The engine needs threads but never a new process or program. */
		static const char *const code_denied[] = { "execve", "execveat", "fork", "vfork" };
		for (size_t i = 0; i < 4; i++)
			if ((rc = add(ctx, deny, code_denied[i], 0, NULL, err)))
				return rc;
		struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0);
		if ((rc = add(ctx, deny, "clone", 1, &c, err)))
			return rc;
	}
	return 0;
}

/* Compiles one filter to BPF in memory. */
static int compile(unsigned kind, struct sock_fprog **out, struct fl_err *err)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx)
		return fl_err_set(err, FL_EUNSUPPORTED, "seccomp: libseccomp cannot create a filter");
	int rc = build(kind, ctx, err);
	int fd = -1;
	if (!rc) {
		fd = memfd_create("sb-seccomp", MFD_CLOEXEC);
		if (fd < 0)
			rc = fl_err_set(err, -errno, "seccomp: memfd_create: %s", strerror(errno));
	}
	if (!rc && (rc = seccomp_export_bpf(ctx, fd)))
		fl_err_set(err, rc, "seccomp: cannot export the filter: %s", strerror(-rc));
	seccomp_release(ctx);
	if (rc) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	off_t size = lseek(fd, 0, SEEK_END);
	if (size <= 0 || size % (off_t)sizeof(struct sock_filter) || size / 8 > 65535) {
		close(fd);
		return fl_err_set(err, FL_EPROTO, "seccomp: exported filter has a bad size");
	}
	struct sock_fprog *prog = fl_calloc(1, sizeof *prog);
	prog->len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
	prog->filter = fl_malloc((size_t)size);
	if (pread(fd, prog->filter, (size_t)size, 0) != size) {
		close(fd);
		fl_free(prog->filter);
		fl_free(prog);
		return fl_err_set(err, FL_EIO, "seccomp: cannot read the exported filter back");
	}
	close(fd);
	*out = prog;
	return 0;
}

int sb__filter_get(unsigned kind, const struct sock_fprog **out, struct fl_err *err)
{
	int rc = 0;
	kind &= 3;
	pthread_mutex_lock(&filters_lock);
	if (!filters[kind])
		rc = compile(kind, &filters[kind], err);
	*out = filters[kind];
	pthread_mutex_unlock(&filters_lock);
	return rc;
}

SB_CHILD void sb__child_seccomp(struct sb_launch *l)
{
	long r = sb_sys5(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (r)
		sb__child_fail(l, SB_STEP_SECCOMP, (int)-r, "cannot set no_new_privs", NULL);
	if ((r = sb_sys3(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, l->filter)))
		sb__child_fail(l, SB_STEP_SECCOMP, (int)-r, "cannot load the filter", NULL);
}
