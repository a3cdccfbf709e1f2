/* The zygote (zygote.h). Worker and zygote talk over a SOCK_SEQPACKET socket: one init message
 * (the host probe and the root's binds), then one message per spawn carrying the options,
 * argv, envp and, as SCM_RIGHTS, the payload fds, the report pipe and the cgroup fds. The reply
 * carries the result and the sandbox's pidfd. The sandbox is cloned with CLONE_PARENT, so it is
 * the worker's child: the worker reaps it, reads its cgroup and reports its setup errors exactly
 * as after sb_spawn. */
#include "sandbox/zygote.h"
#include "sandbox/host.h"
#include "sandbox/root.h"
#include "sandbox/sb_int.h"

#include "core/alloc.h"
#include "core/err.h"
#include "core/fdpass.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum { ZY_MSG_MAX = 64 * 1024, ZY_MAX_FDS = 64 + 4, ZY_MAX_STRINGS = 512 };
enum { ZY_INIT = 0x5a490001, ZY_SPAWN = 0x5a490002 };

struct zy_init {
	uint32_t type;
	uint32_t host_size;
	struct sb_host host;
	uint32_t n_binds;
	/* then n_binds pairs of NUL-terminated src, dst */
};

struct zy_spawn {
	uint32_t type;
	uint32_t flags;
	struct sb_limits limits;
	uint32_t uid, gid;
	int32_t n_fds;
	int32_t has_netns;
	int32_t pending; /* pre-start: no argv and no fds yet; the reply carries the job socket */
	uint32_t n_argv, n_envp;
	uint32_t has_cwd, has_hostname;
	/* then argv, envp, cwd, hostname as NUL-terminated strings */
};

struct zy_reply {
	int32_t rc;
	int32_t pid;
	int32_t has_entry; /* init reply: the zygote runs an entry function, not execve */
	char msg[512];
	/* The sandbox's cgroup, which the zygote made and the worker now owns. */
	int32_t cgroup_version;
	int64_t cgroup_oom_kills_before;
	char cgroup_path[512];
};

struct sb_zygote {
	pthread_mutex_t lock; /* one request at a time on the socket */
	pid_t pid;
	int sock;
	int entry;
	const struct sb_host *host;
	struct sb_root *root;
};

/* ---- zygote side ---- */

static char zy_buf[ZY_MSG_MAX];

static void zy_reply(int sock, int rc, pid_t pid, const char *msg, int pidfd,
		     const struct sb_cgroup *cg, int job_fd, int has_entry)
{
	struct zy_reply r;
	memset(&r, 0, sizeof r);
	r.rc = rc;
	r.pid = pid;
	r.has_entry = has_entry;
	snprintf(r.msg, sizeof r.msg, "%s", msg ? msg : "");
	if (cg && cg->path) {
		r.cgroup_version = cg->version;
		r.cgroup_oom_kills_before = cg->oom_kills_before;
		snprintf(r.cgroup_path, sizeof r.cgroup_path, "%s", cg->path);
	}
	int fds[2] = { pidfd, job_fd };
	fl_send_fds(sock, &r, sizeof r, fds, pidfd < 0 ? 0 : job_fd < 0 ? 1 : 2);
}

/* Splits n NUL-terminated strings starting at *p (bounded by end) into out. */
static int take_strings(char **p, const char *end, char **out, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		char *s = *p;
		char *nul = memchr(s, '\0', (size_t)(end - s));
		if (!nul)
			return -1;
		out[i] = s;
		*p = nul + 1;
	}
	return 0;
}

static void zy_spawn(int sock, const struct sb_host *host, const struct sb_plan *plan, ssize_t len,
		     int *fds, int n_fds, int parent_pidfd, sb_zygote_entry_fn entry, void *arg)
{
	struct zy_spawn h;
	static char *argv[ZY_MAX_STRINGS + 1], *envp[ZY_MAX_STRINGS + 1];
	char *cwd = NULL, *hostname = NULL, *one[1];
	struct fl_err err;
	fl_err_clear(&err);
	memcpy(&h, zy_buf, sizeof h);
	int want = h.n_fds + 1 + !!h.has_netns;
	char *p = zy_buf + sizeof h, *end = zy_buf + len;
	if (h.n_fds < 0 || h.n_fds > 64 || n_fds != want || (h.n_argv == 0) != !!h.pending ||
	    h.n_argv > ZY_MAX_STRINGS || h.n_envp > ZY_MAX_STRINGS ||
	    take_strings(&p, end, argv, h.n_argv) || take_strings(&p, end, envp, h.n_envp) ||
	    (h.has_cwd && take_strings(&p, end, one, 1)) || ((cwd = h.has_cwd ? one[0] : NULL), 0) ||
	    (h.has_hostname && take_strings(&p, end, one, 1))) {
		zy_reply(sock, FL_EPROTO, 0, "malformed spawn request", -1, NULL, -1, 0);
		return;
	}
	hostname = h.has_hostname ? one[0] : NULL;
	argv[h.n_argv] = NULL;
	envp[h.n_envp] = NULL;
	int k = h.n_fds + 1;
	struct sb_spawn_req req = {
		.host = host,
		.plan = plan,
		.flags = h.flags,
		.netns_fd = h.has_netns ? fds[k++] : -1,
		.limits = h.limits,
		.uid = h.uid,
		.gid = h.gid,
		.hostname = hostname,
		.cwd = cwd,
		.argv = argv,
		.envp = envp,
		.fds = fds,
		.n_fds = h.n_fds,
		.err_fd = fds[h.n_fds],
		.clone_parent = 1,
		.pending = h.pending,
		.parent_pidfd = parent_pidfd,
		.cgroup_owner = getppid(),
		.entry = entry,
		.entry_arg = arg,
	};
	pid_t pid;
	int pidfd;
	struct sb_cgroup cg;
	struct sb_ctx *ctx;
	int job_fd = -1;
	int rc = sb__clone(&req, &pid, &pidfd, &cg, &ctx, &job_fd, &err);
	sb__ctx_free(ctx);
	zy_reply(sock, rc, pid > 0 ? pid : 0, rc && rc != SB__GONE ? err.msg : NULL, pidfd, &cg,
		 job_fd, 0);
	sb__cgroup_forget(&cg);
	if (pidfd >= 0)
		close(pidfd);
	if (job_fd >= 0)
		close(job_fd);
}

int sb_zygote_serve(int sock, sb_zygote_entry_fn entry, void *arg)
{
	/* Die with the worker. If it died before this line, the socket is already at EOF. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	int parent_pidfd = (int)syscall(SYS_pidfd_open, getppid(), 0);
	int fds[ZY_MAX_FDS], n_fds;
	ssize_t len = fl_recv_fds(sock, zy_buf, sizeof zy_buf, fds, ZY_MAX_FDS, &n_fds);
	struct zy_init init;
	if (len < (ssize_t)sizeof init)
		return len < 0 ? (int)len : FL_EPROTO;
	memcpy(&init, zy_buf, sizeof init);
	if (init.type != ZY_INIT || init.host_size != sizeof(struct sb_host))
		return FL_EPROTO;
	static struct sb_host host;
	host = init.host;
	struct sb_root *root = sb_root_new();
	char *p = zy_buf + sizeof init, *end = zy_buf + len;
	struct fl_err err;
	fl_err_clear(&err);
	int rc = 0;
	for (uint32_t i = 0; i < init.n_binds && !rc; i++) {
		char *pair[2];
		if (take_strings(&p, end, pair, 2))
			rc = fl_err_set(&err, FL_EPROTO, "malformed init message");
		else
			rc = sb_root_add(root, pair[0], pair[1], 0, &err);
	}
	const struct sb_plan *plan = NULL;
	if (!rc)
		rc = sb__root_plan(root, &plan, &err);
	zy_reply(sock, rc, getpid(), rc ? err.msg : NULL, -1, NULL, -1, entry != NULL);
	if (rc)
		return rc;
	for (;;) {
		len = fl_recv_fds(sock, zy_buf, sizeof zy_buf, fds, ZY_MAX_FDS, &n_fds);
		if (len == 0)
			break;
		if (len < 0) {
			if (len == -EMSGSIZE) {
				zy_reply(sock, FL_ELIMIT, 0, "spawn request too large", -1, NULL, -1, 0);
				continue;
			}
			break;
		}
		uint32_t type;
		memcpy(&type, zy_buf, sizeof type);
		if (type == ZY_SPAWN && len >= (ssize_t)sizeof(struct zy_spawn))
			zy_spawn(sock, &host, plan, len, fds, n_fds, parent_pidfd, entry, arg);
		else
			zy_reply(sock, FL_EPROTO, 0, "unknown request", -1, NULL, -1, 0);
		for (int i = 0; i < n_fds; i++)
			close(fds[i]);
		/* The next sandbox starts as a copy of this process: leave nothing of this job's
		 * request (argv, environment) in it. */
		explicit_bzero(zy_buf, (size_t)len);
	}
	sb_root_free(root);
	return 0;
}

/* ---- worker side ---- */

int sb_zygote_new(char *const argv[], const struct sb_host *host, struct sb_root *root,
		  struct sb_zygote **out, struct fl_err *err)
{
	*out = NULL;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return fl_err_set(err, -errno, "zygote: socketpair: %s", strerror(errno));
	/* Above 3, so that the dup2 to 3 below always clears close-on-exec. */
	int child_end = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
	close(sv[1]);
	if (child_end < 0) {
		close(sv[0]);
		return fl_err_set(err, -errno, "zygote: dup: %s", strerror(errno));
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, child_end, 3);
	char *envp[] = { NULL };
	pid_t pid;
	int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	close(child_end);
	if (rc) {
		close(sv[0]);
		return fl_err_set(err, -rc, "zygote: cannot run '%s': %s", argv[0], strerror(rc));
	}
	struct sb_zygote *z = fl_calloc(1, sizeof *z);
	pthread_mutex_init(&z->lock, NULL);
	z->pid = pid;
	z->sock = sv[0];
	z->host = host;
	z->root = root;

	/* Init: the probe result and the root, so that the zygote builds the same plan. */
	char *msg = fl_malloc(ZY_MSG_MAX);
	struct zy_init init;
	memset(&init, 0, sizeof init);
	init.type = ZY_INIT;
	init.host_size = sizeof(struct sb_host);
	init.host = *host;
	init.n_binds = (uint32_t)sb_root_count(root);
	size_t len = sizeof init;
	memcpy(msg, &init, sizeof init);
	for (int i = 0; i < sb_root_count(root) && !rc; i++) {
		const char *src, *dst;
		sb_root_get(root, i, &src, &dst);
		size_t a = strlen(src) + 1, b = strlen(dst) + 1;
		if (len + a + b > ZY_MSG_MAX) {
			rc = fl_err_set(err, FL_ELIMIT, "zygote: the sandbox root is too large to send");
			break;
		}
		memcpy(msg + len, src, a);
		memcpy(msg + len + a, dst, b);
		len += a + b;
	}
	if (!rc && (rc = fl_send_fds(z->sock, msg, len, NULL, 0)))
		fl_err_set(err, rc, "zygote: cannot send its setup: %s", fl_strerror(rc));
	fl_free(msg);
	struct zy_reply reply;
	if (!rc) {
		struct pollfd pfd = { .fd = z->sock, .events = POLLIN };
		int fds[1], n_fds = 0;
		ssize_t n = poll(&pfd, 1, 10000) == 1 ? fl_recv_fds(z->sock, &reply, sizeof reply, fds, 1, &n_fds) : -ETIMEDOUT;
		for (int i = 0; i < n_fds; i++)
			close(fds[i]);
		if (n != (ssize_t)sizeof reply)
			rc = fl_err_set(err, n < 0 ? (int)n : FL_EPROTO,
					"zygote: '%s' did not start: %s", argv[0],
					n < 0 ? strerror((int)-n) : "it closed its socket");
		else if (reply.rc)
			rc = fl_err_set(err, reply.rc, "zygote: setup failed: %s", reply.msg);
		else
			z->entry = reply.has_entry;
	}
	if (rc) {
		sb_zygote_free(z);
		return rc;
	}
	/* The root is now fixed in the zygote: freeze ours the same way. */
	const struct sb_plan *plan;
	if ((rc = sb__root_plan(root, &plan, err))) {
		sb_zygote_free(z);
		return rc;
	}
	*out = z;
	return 0;
}

pid_t sb_zygote_pid(const struct sb_zygote *z)
{
	return z->pid;
}

void sb_zygote_free(struct sb_zygote *z)
{
	if (!z)
		return;
	close(z->sock);
	kill(z->pid, SIGKILL);
	while (waitpid(z->pid, NULL, 0) < 0 && errno == EINTR)
		;
	pthread_mutex_destroy(&z->lock);
	fl_free(z);
}

static int put_str(char *msg, size_t *len, const char *s)
{
	size_t n = strlen(s) + 1;
	if (*len + n > ZY_MSG_MAX)
		return -1;
	memcpy(msg + *len, s, n);
	*len += n;
	return 0;
}

/* Sends one spawn (or pre-start) request and reads the reply: the pidfd, the job socket of a
 * pre-started sandbox, and the cgroup the zygote made, which is ours from then on. */
static int zy_request(struct sb_zygote *z, const struct sb_opts *opts, char *const argv[],
		      const int *fds, int n_fds, int pending, int report_w, pid_t *pid, int *pidfd,
		      int *job_fd, int *gone, struct sb_cgroup *cg, struct fl_err *err)
{
	*pidfd = -1;
	*job_fd = -1;
	*gone = 0;
	sb__cgroup_init(cg);
	static __thread char msg[ZY_MSG_MAX];
	struct zy_spawn h;
	memset(&h, 0, sizeof h);
	h.type = ZY_SPAWN;
	h.flags = opts->flags;
	h.limits = opts->limits;
	h.uid = opts->uid;
	h.gid = opts->gid;
	h.n_fds = n_fds;
	h.pending = pending;
	h.has_netns = (opts->flags & SB_NET) && opts->netns_fd >= 0;
	h.has_cwd = opts->cwd != NULL;
	h.has_hostname = opts->hostname != NULL;
	size_t len = sizeof h;
	int bad = 0;
	for (; argv && argv[h.n_argv]; h.n_argv++)
		bad |= put_str(msg, &len, argv[h.n_argv]);
	for (; !pending && opts->envp && opts->envp[h.n_envp]; h.n_envp++)
		bad |= put_str(msg, &len, opts->envp[h.n_envp]);
	if (opts->cwd)
		bad |= put_str(msg, &len, opts->cwd);
	if (opts->hostname)
		bad |= put_str(msg, &len, opts->hostname);
	memcpy(msg, &h, sizeof h);
	int all[ZY_MAX_FDS], k = 0;
	for (int i = 0; i < n_fds; i++)
		all[k++] = fds[i];
	all[k++] = report_w;
	if (h.has_netns)
		all[k++] = opts->netns_fd;
	if (bad) {
		explicit_bzero(msg, len);
		return fl_err_set(err, FL_ELIMIT, "zygote: argv and environment exceed %d bytes", ZY_MSG_MAX);
	}
	pthread_mutex_lock(&z->lock);
	int rc = fl_send_fds(z->sock, msg, len, all, k);
	explicit_bzero(msg, len);
	struct zy_reply reply;
	int rfds[2], n_rfds = 0;
	ssize_t n = 0;
	if (!rc)
		n = fl_recv_fds(z->sock, &reply, sizeof reply, rfds, 2, &n_rfds);
	pthread_mutex_unlock(&z->lock);
	if (rc)
		return fl_err_set(err, rc, "zygote: cannot send the spawn request: %s", fl_strerror(rc));
	if (n_rfds > 0)
		*pidfd = rfds[0];
	if (n_rfds > 1)
		*job_fd = rfds[1];
	if (n != (ssize_t)sizeof reply)
		return fl_err_set(err, n < 0 ? (int)n : FL_EIO, "zygote: no reply to a spawn request (it died?)");
	*pid = reply.pid;
	if (reply.cgroup_path[0]) {
		reply.cgroup_path[sizeof reply.cgroup_path - 1] = '\0';
		cg->version = reply.cgroup_version;
		cg->path = fl_strdup(reply.cgroup_path);
		cg->oom_kills_before = reply.cgroup_oom_kills_before;
	}
	if (reply.rc == SB__GONE)
		*gone = 1;
	else if (reply.rc)
		rc = fl_err_set(err, reply.rc, "%s", reply.msg);
	if (!rc && (*pidfd < 0 || (pending && !*gone && *job_fd < 0)))
		rc = fl_err_set(err, FL_EPROTO, "zygote: fds missing from its reply");
	return rc;
}

static int zy_check(struct sb_zygote *z, const struct sb_opts *opts, struct fl_err *err)
{
	if (opts->host != z->host || opts->root != z->root)
		return fl_err_set(err, FL_EINVAL, "zygote: the options must use the zygote's host and root");
	if (!opts->host->sandbox)
		return fl_err_set(err, FL_EUNSUPPORTED, "sandbox unavailable on this host: %s",
				  opts->host->sandbox_why);
	return 0;
}

/* What a spawn and a pre-start share: the checks, the report pipe and the zygote's fork. On
 * success *report_r is the pipe's read end; on failure everything started is undone. */
static int zy_start(struct sb_zygote *z, const struct sb_opts *opts, char *const argv[],
		    const int *fds, int n_fds, int pending, pid_t *pid, int *pidfd, int *job_fd,
		    int *gone, struct sb_cgroup *cg, int *report_r, struct fl_err *err)
{
	int rc = zy_check(z, opts, err);
	if (rc)
		return rc;
	if (!pending && (n_fds < 0 || n_fds > 64 || !argv || !argv[0]))
		return fl_err_set(err, FL_EINVAL, "zygote: bad spawn arguments");
	int report[2];
	if (pipe2(report, O_CLOEXEC))
		return fl_err_set(err, -errno, "sandbox step 'spawn' failed: pipe: %s", strerror(errno));
	*pid = 0;
	rc = zy_request(z, opts, argv, fds, n_fds, pending, report[1], pid, pidfd, job_fd, gone, cg,
			err);
	close(report[1]);
	if (rc) {
		close(report[0]);
		if (*job_fd >= 0)
			close(*job_fd);
		if (*pidfd >= 0)
			sb__reap(*pidfd);
		sb__cgroup_destroy(cg);
		return rc;
	}
	*report_r = report[0];
	return 0;
}

int sb_zygote_spawn(struct sb_zygote *z, const struct sb_opts *opts, char *const argv[],
		    const int *fds, int n_fds, struct sb_child *child, struct fl_err *err)
{
	pid_t pid;
	int pidfd = -1, job_fd = -1, gone = 0, report = -1;
	struct sb_cgroup cg;
	int rc =
	    zy_start(z, opts, argv, fds, n_fds, 0, &pid, &pidfd, &job_fd, &gone, &cg, &report, err);
	if (rc)
		return rc;
	if (job_fd >= 0)
		close(job_fd);
	return sb__spawn_finish(opts, &cg, NULL, pid, pidfd, report, gone, child, err);
}

int sb_zygote_prestart(struct sb_zygote *z, const struct sb_opts *opts, struct sb_pending **out,
		       struct fl_err *err)
{
	*out = NULL;
	pid_t pid;
	int pidfd = -1, job_fd = -1, gone = 0, report = -1;
	struct sb_cgroup cg;
	int rc =
	    zy_start(z, opts, NULL, NULL, 0, 1, &pid, &pidfd, &job_fd, &gone, &cg, &report, err);
	if (rc)
		return rc;
	return sb__pending_finish(opts, &cg, NULL, pid, pidfd, report, job_fd, gone, z->entry, out,
				  err);
}
