/* SANDBOX_CODE_ONLY: what an engine applies to itself when it is not in a kernel sandbox (and,
 * in SANDBOX_CODE_AND_PROCESS, on top of one). No namespaces, so it works unprivileged: rlimits,
 * root dropped when we have it, no capabilities, no_new_privs, and the code filter, which is the
 * sandbox filter plus no execve and no new processes. */
#include "sandbox/sandbox.h"
#include "sandbox/sb_int.h"

#include "core/err.h"

#include <errno.h>
#include <grp.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

void sb_code_only_opts_init(struct sb_code_only_opts *opts)
{
	memset(opts, 0, sizeof *opts);
	opts->uid = 65534;
	opts->gid = 65534;
	opts->limits.file_size_bytes = 64LL << 20;
	opts->limits.procs = 64;
	opts->limits.open_files = 256;
}

static int cap_last_cap(void)
{
	char buf[16];
	if (sb__read_file("/proc/sys/kernel/cap_last_cap", buf, sizeof buf) > 0)
		return atoi(buf);
	return 63;
}

int sb_code_only_enter(const struct sb_code_only_opts *opts, struct fl_err *err)
{
	const struct sock_fprog *filter;
	int rc = sb__filter_get(SB_FILTER_CODE | ((opts->flags & SB_DENY_INET) ? SB_FILTER_INET : 0),
				&filter, err);
	if (rc)
		return rc;
	struct sb_rlimit lims[8];
	int n = sb__rlimits_prepare(&opts->limits, lims, 8);
	for (int i = 0; i < n; i++)
		if (setrlimit(lims[i].resource, &lims[i].lim))
			return fl_err_set(err, -errno, "code sandbox: cannot set rlimit %d: %s",
					  lims[i].resource, strerror(errno));
	int last = cap_last_cap();
	if (geteuid() == 0) {
		/* The bounding set needs CAP_SETPCAP, which the uid change below takes away. */
		for (int cap = 0; cap <= last; cap++)
			if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) && errno != EINVAL)
				return fl_err_set(err, -errno, "code sandbox: cannot drop capability %d: %s",
						  cap, strerror(errno));
		/* As root the process limit would not apply and every file would be open to us. */
		if (setgroups(0, NULL) || setresgid(opts->gid, opts->gid, opts->gid) ||
		    setresuid(opts->uid, opts->uid, opts->uid))
			return fl_err_set(err, -errno, "code sandbox: cannot switch to uid %u: %s",
					  (unsigned)opts->uid, strerror(errno));
	}
	if ((rc = sb__drop_caps(last)))
		return fl_err_set(err, rc, "code sandbox: cannot drop capabilities: %s", strerror(-rc));
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return fl_err_set(err, -errno, "code sandbox: cannot set no_new_privs: %s", strerror(errno));
	/* TSYNC: threads the engine already started get the filter too. */
	long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, filter);
	if (r != 0)
		return fl_err_set(err, r < 0 ? -errno : FL_EDENIED,
				  "code sandbox: cannot load the seccomp filter: %s",
				  r < 0 ? strerror(errno) : "a thread could not be synchronised");
	return 0;
}
