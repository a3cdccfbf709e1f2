/* Step "rlimits": processes (threads included), open files, file size and CPU time. Not the
 * address space: JavaScriptCore reserves far more than it touches, so memory is limited by the
 * cgroup instead. RLIMIT_NPROC counts per user per user namespace, and the sandbox runs as a
 * non-root uid in a namespace of its own, so the limit is the sandbox's alone. */
#include "sandbox/sb_int.h"
#include "sandbox/sb_sys.h"

#include <errno.h>
#include <sys/resource.h>

int sb__rlimits_prepare(const struct sb_limits *lim, struct sb_rlimit *out, int max)
{
	int n = 0;
	if (lim->procs > 0 && n < max)
		out[n++] = (struct sb_rlimit){ RLIMIT_NPROC, { (rlim_t)lim->procs, (rlim_t)lim->procs } };
	if (lim->open_files > 0 && n < max)
		out[n++] = (struct sb_rlimit){ RLIMIT_NOFILE,
					       { (rlim_t)lim->open_files, (rlim_t)lim->open_files } };
	if (lim->file_size_bytes > 0 && n < max)
		out[n++] = (struct sb_rlimit){ RLIMIT_FSIZE, { (rlim_t)lim->file_size_bytes,
							       (rlim_t)lim->file_size_bytes } };
	/* Soft and hard alike: the payload runs as PID 1 of its namespace, which ignores a
	 * SIGXCPU it has no handler for, so the hard limit's SIGKILL is what stops it. */
	if (lim->cpu_seconds > 0 && n < max)
		out[n++] = (struct sb_rlimit){ RLIMIT_CPU, { (rlim_t)lim->cpu_seconds,
							     (rlim_t)lim->cpu_seconds } };
	/* A crashing engine must not write a core file of its memory anywhere. */
	if (n < max)
		out[n++] = (struct sb_rlimit){ RLIMIT_CORE, { 0, 0 } };
	return n;
}

SB_CHILD void sb__child_rlimits(struct sb_launch *l)
{
	static const char *const names[] = {
		[RLIMIT_NPROC] = "RLIMIT_NPROC", [RLIMIT_NOFILE] = "RLIMIT_NOFILE",
		[RLIMIT_FSIZE] = "RLIMIT_FSIZE", [RLIMIT_CPU] = "RLIMIT_CPU", [RLIMIT_CORE] = "RLIMIT_CORE",
	};
	for (int i = 0; i < l->n_rlimits; i++) {
		long r = sb_sys4(SYS_prlimit64, 0, l->rlimits[i].resource, &l->rlimits[i].lim, NULL);
		if (r)
			sb__child_fail(l, SB_STEP_RLIMITS, (int)-r, "cannot set", names[l->rlimits[i].resource]);
	}
}
