/* Pre-started sandboxes (the pool of shared/DESIGN.md §6): a sandbox set up now, up to and
 * including seccomp, that waits for its job. Set-up (namespaces, root, cgroup placement, the
 * filter) then happens off the job's path; the job only brings argv, environment and fds, in
 * one message, and the sandbox goes straight to exec (or to a zygote's entry function). */
#include "sandbox/sandbox.h"
#include "sandbox/host.h"
#include "sandbox/sb_int.h"
#include "sandbox/zygote.h"

#include "core/alloc.h"
#include "core/err.h"
#include "core/fdpass.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int sb__pending_finish(const struct sb_opts *opts, struct sb_cgroup *cg, struct sb_ctx *ctx,
		       pid_t pid, int pidfd, int report_fd, int job_fd, int gone, int entry,
		       struct sb_pending **out, struct fl_err *err)
{
	int rc = sb__read_report(report_fd, err);
	if (rc == SB__READY) {
		struct sb_pending *p = fl_calloc(1, sizeof *p);
		p->pid = pid;
		p->pidfd = pidfd;
		p->report_fd = report_fd;
		p->job_fd = job_fd;
		p->cpu_seconds = opts->limits.cpu_seconds;
		p->entry = entry;
		p->cg = *cg;
		sb__cgroup_init(cg);
		p->ctx = ctx;
		*out = p;
		return 0;
	}
	if (!rc)
		rc = fl_err_set(err, FL_EIO, "sandbox step 'spawn' failed: the sandbox died during its setup");
	(void)gone;
	close(report_fd);
	if (job_fd >= 0)
		close(job_fd);
	sb__reap(pidfd);
	sb__ctx_free(ctx);
	sb__cgroup_destroy(cg);
	return rc;
}

int sb_prestart(const struct sb_opts *opts, struct sb_pending **out, struct fl_err *err)
{
	*out = NULL;
	pid_t pid;
	int pidfd = -1, report_fd, job_fd = -1;
	struct sb_cgroup cg;
	struct sb_ctx *ctx = NULL;
	int rc = sb__clone_opts(opts, NULL, NULL, 0, &pid, &pidfd, &cg, &ctx, &report_fd, &job_fd,
				err);
	if (rc && rc != SB__GONE)
		return rc;
	return sb__pending_finish(opts, &cg, ctx, pid, pidfd, report_fd, job_fd, rc == SB__GONE, 0,
				  out, err);
}

pid_t sb_pending_pid(const struct sb_pending *p)
{
	return p->pid;
}

void sb_pending_free(struct sb_pending *p)
{
	if (!p)
		return;
	close(p->job_fd);
	close(p->report_fd);
	sb__reap(p->pidfd);
	sb__ctx_free(p->ctx);
	sb__cgroup_destroy(&p->cg);
	fl_free(p);
}

int sb_pending_run(struct sb_pending *p, char *const argv[], char *const envp[], const int *fds,
		   int n_fds, struct sb_child *child, struct fl_err *err)
{
	int rc = 0;
	if (!argv || !argv[0] || (!p->entry && argv[0][0] != '/'))
		rc = fl_err_set(err, FL_EINVAL, "the sandbox payload must be an absolute path");
	else if (n_fds < 0 || n_fds > 64)
		rc = fl_err_set(err, FL_EINVAL, "a sandbox takes at most 64 fds");
	static __thread char msg[SB_JOB_MAX];
	size_t len = sizeof(struct sb_job_hdr);
	struct sb_job_hdr h = { .magic = SB_JOB_MAGIC, .n_fds = n_fds };
	for (int pass = 0; !rc && pass < 2; pass++) {
		char *const *v = pass ? envp : argv;
		for (uint32_t i = 0; v && v[i]; i++) {
			size_t n = strlen(v[i]) + 1;
			if (len + n >= SB_JOB_MAX || i >= SB_JOB_STRINGS) {
				rc = fl_err_set(err, FL_ELIMIT, "the job's argv and environment exceed %d bytes",
						SB_JOB_MAX);
				break;
			}
			memcpy(msg + len, v[i], n);
			len += n;
			if (pass)
				h.n_envp++;
			else
				h.n_argv++;
		}
	}
	if (!rc) {
		memcpy(msg, &h, sizeof h);
		int sent = fl_send_fds(p->job_fd, msg, len, fds, n_fds);
		if (sent)
			rc = fl_err_set(err, sent,
					"sandbox step 'job' failed: the pre-started sandbox is gone: %s",
					fl_strerror(sent));
		explicit_bzero(msg, len);
	}
	if (rc) {
		sb_pending_free(p);
		return rc;
	}
	close(p->job_fd);
	struct sb_opts opts;
	memset(&opts, 0, sizeof opts);
	opts.limits.cpu_seconds = p->cpu_seconds;
	rc = sb__spawn_finish(&opts, &p->cg, p->ctx, p->pid, p->pidfd, p->report_fd, 0, child, err);
	fl_free(p);
	return rc;
}
