/* sb_spawn and the sandbox child. The spawner prepares a struct sb_launch, clones the child into
 * new user and PID namespaces (sharing its memory, as posix_spawn does, unless a zygote needs a
 * copy) and, while the child makes its other namespaces, writes its uid/gid maps and lets it
 * start; while the child builds its root, the spawner makes its cgroup and moves it there, and the
 * child waits for that before credentials, seccomp and exec. The child reports a failed step as
 * {step, errno, detail} on a close-on-exec pipe; EOF on that pipe means the payload was exec'd.
 * Between clone and exec the child only makes raw system calls (sb_sys.h). */
#include "sandbox/sandbox.h"
#include "sandbox/host.h"
#include "sandbox/sb_int.h"

#include "core/alloc.h"
#include "core/assert.h"
#include "core/err.h"
#include "core/fdpass.h"
#include "sandbox/sb_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef PIDFD_GET_MNT_NAMESPACE
#define PIDFD_GET_MNT_NAMESPACE _IO(0xFF, 3)
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* The kernel's struct clone_args (linux/sched.h, which clashes with <sched.h>). */
struct sb_clone_args {
	uint64_t flags;
	uint64_t pidfd;
	uint64_t child_tid;
	uint64_t parent_tid;
	uint64_t exit_signal;
	uint64_t stack;
	uint64_t stack_size;
	uint64_t tls;
	uint64_t set_tid;
	uint64_t set_tid_size;
	uint64_t cgroup;
};

enum { SB_MAX_FDS = 64 };

/* A CLONE_VM child runs on this: its launch, a guard page, then its stack. */
struct sb_ctx {
	struct sb_launch l;
	struct sb_job job; /* a pre-started sandbox's job lands here */
};

enum {
	SB_CTX_LAUNCH = (sizeof(struct sb_ctx) + 4095) & ~(size_t)4095,
	SB_CTX_GUARD = 4096,
	SB_CTX_STACK = 128 * 1024,
};

extern char **environ;

SB_CHILD _Noreturn void sb__child_exit(int code)
{
	for (;;)
		sb_sys1(SYS_exit_group, code);
}

SB_CHILD long sb__child_recv(int fd, void *buf, size_t len, int *fds, int max_fds, int *n_fds,
			     int *truncated)
{
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * 64)];
	} cbuf;
	struct msghdr mh;
	memset(&mh, 0, sizeof mh);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf.buf;
	mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)max_fds);
	long n;
	while ((n = sb_sys3(SYS_recvmsg, fd, &mh, MSG_CMSG_CLOEXEC)) == -EINTR)
		;
	*n_fds = 0;
	*truncated = n >= 0 && (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC));
	struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
	if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
		/* The control space is rounded up: it may hold one more fd than asked for. */
		*n_fds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		memcpy(fds, CMSG_DATA(c),
		       sizeof(int) * (size_t)(*n_fds < max_fds ? *n_fds : max_fds));
	}
	return n;
}

SB_CHILD _Noreturn void sb__child_fail(struct sb_launch *l, int step, int err, const char *what,
			      const char *path)
{
	struct sb_report r;
	memset(&r, 0, sizeof r);
	r.step = step;
	r.err = err > 0 ? err : EIO;
	if (what)
		sb__strlcpy(r.detail, what, sizeof r.detail);
	if (path) {
		sb__strlcat(r.detail, what ? " '" : "'", sizeof r.detail);
		sb__strlcat(r.detail, path, sizeof r.detail);
		sb__strlcat(r.detail, "'", sizeof r.detail);
	}
	/* If nobody listens any more, the exit status is all that is left. */
	sb_sys3(SYS_write, l->err_fd, &r, sizeof r);
	sb__child_exit(127);
}

/* fds[i] becomes fd i; the report pipe moves to fd n (close-on-exec); everything else is
 * closed. Before rlimits: RLIMIT_NOFILE may be lower than the fds being moved. */
SB_CHILD static void child_fds(struct sb_launch *l)
{
	int n = l->n_fds;
	int tmp[SB_MAX_FDS];
	long r;
	for (int i = 0; i < n; i++) {
		r = sb_sys3(SYS_fcntl, l->fds[i], F_DUPFD_CLOEXEC, n + 1);
		if (r < 0)
			sb__child_fail(l, SB_STEP_FDS, (int)-r, "cannot duplicate a payload fd", NULL);
		tmp[i] = (int)r;
	}
	if ((r = sb_sys3(SYS_dup3, l->err_fd, n, O_CLOEXEC)) < 0)
		sb__child_fail(l, SB_STEP_FDS, (int)-r, "cannot move the report pipe", NULL);
	l->err_fd = n;
	for (int i = 0; i < n; i++)
		if ((r = sb_sys3(SYS_dup3, tmp[i], i, 0)) < 0)
			sb__child_fail(l, SB_STEP_FDS, (int)-r, "cannot install a payload fd", NULL);
	if ((r = sb_sys3(SYS_close_range, n + 1, ~0U, 0))) {
		if (r != -ENOSYS && r != -EINVAL)
			sb__child_fail(l, SB_STEP_FDS, (int)-r, "cannot close inherited fds", NULL);
		for (int fd = n + 1; fd < l->fd_limit; fd++)
			sb_sys1(SYS_close, fd);
	}
}

/* A pre-started sandbox may wait long: it must not keep the worker's fds (pipes of other
 * engines, connections) open meanwhile. Keeps the report pipe, the go socket, the parent's
 * pidfd and the root's tree, as fds 0 to 3. */
SB_CHILD static void child_close_early(struct sb_launch *l)
{
	int keep[4] = { l->err_fd, l->go_fd, l->parent_pidfd, l->root_fd };
	int moved[4];
	long r;
	for (int i = 0; i < 4; i++) {
		moved[i] = -1;
		if (keep[i] < 0)
			continue;
		if ((r = sb_sys3(SYS_fcntl, keep[i], F_DUPFD_CLOEXEC, 3)) < 0)
			sb__child_fail(l, SB_STEP_FDS, (int)-r, "cannot keep a setup fd", NULL);
		moved[i] = (int)r;
	}
	for (int i = 0; i < 4; i++)
		if (moved[i] >= 0 && moved[i] != i && (r = sb_sys3(SYS_dup3, moved[i], i, O_CLOEXEC)) < 0)
			sb__child_fail(l, SB_STEP_FDS, (int)-r, "cannot keep a setup fd", NULL);
	l->err_fd = moved[0] >= 0 ? 0 : -1;
	l->go_fd = moved[1] >= 0 ? 1 : -1;
	l->parent_pidfd = moved[2] >= 0 ? 2 : -1;
	l->root_fd = moved[3] >= 0 ? 3 : -1;
	if ((r = sb_sys3(SYS_close_range, 4, ~0U, 0))) {
		if (r != -ENOSYS && r != -EINVAL)
			sb__child_fail(l, SB_STEP_FDS, (int)-r, "cannot close inherited fds", NULL);
		for (int fd = 4; fd < l->fd_limit; fd++)
			sb_sys1(SYS_close, fd);
	}
	/* A slot that kept nothing must not keep what was there before. */
	for (int i = 2; i < 4; i++)
		if (moved[i] < 0)
			sb_sys1(SYS_close, i);
}

/* Waits for the job of a pre-started sandbox: argv, envp and fds in one message. */
SB_CHILD static void child_job(struct sb_launch *l)
{
	struct sb_report ready;
	memset(&ready, 0, sizeof ready);
	ready.step = SB_STEP_READY;
	sb_sys3(SYS_write, l->err_fd, &ready, sizeof ready);
	struct sb_job *job = l->job;
	int n_fds = 0, truncated = 0;
	long n = sb__child_recv(l->go_fd, job->buf, sizeof job->buf - 1, job->fds, 64, &n_fds,
				&truncated);
	/* EOF: the worker dropped this sandbox unused. */
	if (n == 0)
		sb__child_exit(0);
	if (n < 0)
		sb__child_fail(l, SB_STEP_JOB, (int)-n, "cannot receive the job", NULL);
	struct sb_job_hdr h;
	if (truncated || n < (long)sizeof h)
		sb__child_fail(l, SB_STEP_JOB, E2BIG, "the job does not fit", NULL);
	memcpy(&h, job->buf, sizeof h);
	if (h.magic != SB_JOB_MAGIC || h.n_fds != n_fds || h.n_argv == 0 ||
	    h.n_argv > SB_JOB_STRINGS || h.n_envp > SB_JOB_STRINGS)
		sb__child_fail(l, SB_STEP_JOB, EPROTO, "malformed job", NULL);
	job->buf[n] = '\0';
	char *p = job->buf + sizeof h, *end = job->buf + n;
	for (uint32_t i = 0; i < h.n_argv + h.n_envp; i++) {
		if (p >= end)
			sb__child_fail(l, SB_STEP_JOB, EPROTO, "malformed job", NULL);
		if (i < h.n_argv)
			job->argv[i] = p;
		else
			job->envp[i - h.n_argv] = p;
		p += strlen(p) + 1;
	}
	job->argv[h.n_argv] = NULL;
	job->envp[h.n_envp] = NULL;
	l->argv = job->argv;
	l->envp = job->envp;
	l->fds = job->fds;
	l->n_fds = n_fds;
}

/* The kernel's struct sigaction (x86_64 and aarch64 alike). */
struct sb_kernel_sigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	unsigned long mask;
};

SB_CHILD _Noreturn void sb__child_main(struct sb_launch *l)
{
	/* The worker's handlers must not run here (in a CLONE_VM child they would run on the
	 * worker's memory), and its ignored signals must not carry over into the payload. The
	 * spawner blocked every signal around the clone; unblock once the handlers are gone. */
	struct sb_kernel_sigaction dfl = { .handler = SIG_DFL };
	for (int sig = 1; sig < 65; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sb_sys4(SYS_rt_sigaction, sig, &dfl, NULL, 8);
	unsigned long none = 0;
	sb_sys4(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, 8);
	/* Set at once, and again after the uid change clears it (credentials step). */
	sb_sys5(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	/* The clone made only the user and PID namespaces. The others are made here, owned by
	 * the new user namespace as the clone would have made them, while the spawner writes
	 * the maps (which they do not need): that took a while (an IPC namespace registers its
	 * sysctls and mounts its mqueue, a new network namespace takes a millisecond) on the
	 * spawner's side, before it could do anything else. */
	long r = sb_sys1(SYS_unshare, l->unshare_flags);
	if (r)
		sb__child_fail(l, SB_STEP_SPAWN, (int)-r, "cannot create the namespaces", NULL);
	sb__child_users(l);
	if (l->pending)
		child_close_early(l);
	sb__child_network(l);
	sb__child_mounts(l);
	sb__child_cgroup(l);
	sb__child_credentials(l);
	if (l->pending) {
		/* Nothing of the job has run yet: the filter can go on before it arrives, and the
		 * fds and limits are the job's. */
		sb__child_seccomp(l);
		child_job(l);
		child_fds(l);
		sb__child_rlimits(l);
	} else {
		child_fds(l);
		sb__child_rlimits(l);
		sb__child_seccomp(l);
	}
	if (l->entry) {
		/* Zygote: a forked copy of the zygote, so libc is ours to use. EOF on the report
		 * pipe tells the spawner we are running. */
		close(l->err_fd);
		environ = (char **)l->envp;
		int argc = 0;
		while (l->argv[argc])
			argc++;
		int code = l->entry(argc, (char **)l->argv, l->entry_arg);
		fflush(NULL);
		sb__child_exit(code);
	}
	r = sb_sys3(SYS_execve, l->argv[0], l->argv, l->envp);
	sb__child_fail(l, SB_STEP_EXEC, (int)-r, "cannot execute", l->argv[0]);
}

SB_CHILD static int child_start(void *arg)
{
	sb__child_main(arg);
}

void sb__ctx_free(struct sb_ctx *ctx)
{
	if (ctx)
		munmap(ctx, SB_CTX_LAUNCH + SB_CTX_GUARD + SB_CTX_STACK);
}

static struct sb_ctx *ctx_new(void)
{
	size_t size = SB_CTX_LAUNCH + SB_CTX_GUARD + SB_CTX_STACK;
	void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	mprotect((char *)m + SB_CTX_LAUNCH, SB_CTX_GUARD, PROT_NONE);
	return m;
}

/* A pidfd of this process, for the child's check that its parent is alive. Opened per spawn
 * (one system call): a kept one could be closed under us by code that closes fds it does not
 * know, and its number reused. */
int sb__self_pidfd(void)
{
	return (int)syscall(SYS_pidfd_open, getpid(), 0);
}

/* Tasks running or ready to run on the whole machine (us included), or -1. */
static int runnable_tasks(void)
{
	char buf[128];
	ssize_t n = sb__read_file("/proc/loadavg", buf, sizeof buf);
	const char *slash = n > 0 ? strchr(buf, '/') : NULL;
	if (!slash)
		return -1;
	while (slash > buf && slash[-1] >= '0' && slash[-1] <= '9')
		slash--;
	return atoi(slash);
}

/* A CPU of mask other than the one we run on, or -1: none, or none is likely to be idle (a
 * busy one would make us wait there for our share, and the child for us). */
static int another_cpu(const cpu_set_t *mask)
{
	int self = sched_getcpu(), n = CPU_SETSIZE, cpus = CPU_COUNT(mask);
	if (self < 0 || cpus < 2)
		return -1;
	int running = runnable_tasks();
	if (running < 1 || running >= cpus)
		return -1;
	for (int i = 1; i < n; i++)
		if (CPU_ISSET((self + i) % n, mask))
			return (self + i) % n;
	return -1;
}

/* Whether the process of pidfd has exited. */
static int exited(int pidfd)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };
	return poll(&p, 1, 0) == 1;
}

/* One byte, and with it fd when >= 0. */
static int send_go(int fd, int with_fd)
{
	return fl_send_fds(fd, "g", 1, &with_fd, with_fd >= 0 ? 1 : 0);
}

int sb__clone(const struct sb_spawn_req *req, pid_t *pid_out, int *pidfd_out, struct sb_cgroup *cg,
	      struct sb_ctx **ctx_out, int *job_fd, struct fl_err *err)
{
	*pid_out = -1;
	*pidfd_out = -1;
	*ctx_out = NULL;
	if (job_fd)
		*job_fd = -1;
	sb__cgroup_init(cg);
	const struct sb_host *host = req->host;
	if (req->n_fds < 0 || req->n_fds > SB_MAX_FDS)
		return fl_err_set(err, FL_EINVAL, "a sandbox takes at most %d fds", SB_MAX_FDS);
	if (!req->pending && (!req->argv || !req->argv[0] || (!req->entry && req->argv[0][0] != '/')))
		return fl_err_set(err, FL_EINVAL, "the sandbox payload must be an absolute path");
	/* Until it execs, the sandbox shares the worker's memory (CLONE_VM), and the OOM killer
	 * kills every process sharing a victim's memory: a limit its set-up could reach would take
	 * the worker down with it. Set-up needs well under 1 MiB. */
	if (req->limits.memory_bytes > 0 && req->limits.memory_bytes < SB_MIN_MEMORY)
		return fl_err_set(err, FL_EINVAL, "sandbox memory limit %lld bytes is below the minimum of %d MiB",
				  (long long)req->limits.memory_bytes, SB_MIN_MEMORY >> 20);
	if (req->limits.memory_bytes > 0 && !host->cgroup)
		return fl_err_set(err, FL_EUNSUPPORTED,
				  "sandbox step 'cgroup' failed: no cgroup for the memory limit: %s",
				  host->cgroup_why);
	const struct sock_fprog *filter;
	unsigned kind = ((req->flags & SB_DENY_INET) ? SB_FILTER_INET : 0) |
			((req->flags & SB_CODE_FILTER) && req->entry ? SB_FILTER_CODE : 0);
	int rc = sb__filter_get(kind, &filter, err);
	if (rc)
		return rc;

	/* Exec mode shares our memory until exec (no copy of a large worker's page tables, and
	 * none to tear down at exec); a zygote's entry needs a copy of the zygote. */
	int share_vm = !req->entry && !req->clone_parent;
	struct sb_ctx *ctx = ctx_new();
	if (!ctx)
		return fl_err_set(err, -errno, "sandbox step 'spawn' failed: mmap: %s", strerror(errno));
	struct sb_launch *l = &ctx->l;
	static char *const empty_env[] = { NULL };
	memset(l, 0, sizeof *l);
	l->plan = req->plan;
	l->flags = req->flags;
	l->use_mount_setattr = host->mount_setattr;
	l->root_fd = -1;
	l->setgroups_allowed = host->root;
	l->cap_last_cap = host->cap_last_cap;
	l->uid = host->root ? req->uid : geteuid();
	l->gid = host->root ? req->gid : getegid();
	l->hostname = req->hostname ? req->hostname : "sandbox";
	l->cwd = req->cwd ? req->cwd : "/tmp";
	int64_t tmp = req->limits.tmp_bytes > 0 ? req->limits.tmp_bytes : 64 << 20;
	/* One inode per 4 KiB of space: an inode bomb runs out when a disk bomb would. */
	snprintf(l->tmp_opts, sizeof l->tmp_opts, "mode=1777,size=%lld,nr_inodes=%lld,uid=%u,gid=%u",
		 (long long)tmp, (long long)(tmp / 4096 + 64), (unsigned)l->uid, (unsigned)l->gid);
	snprintf(l->root_opts, sizeof l->root_opts, "mode=0755,size=1m,nr_inodes=%d,uid=%u,gid=%u",
		 SB_MAX_BINDS + 64, (unsigned)l->uid, (unsigned)l->gid);
	l->n_rlimits = sb__rlimits_prepare(&req->limits, l->rlimits, 8);
	l->filter = filter;
	l->fds = req->fds;
	l->n_fds = req->n_fds;
	l->err_fd = req->err_fd;
	l->parent_pidfd = req->parent_pidfd;
	struct rlimit nofile;
	l->fd_limit = getrlimit(RLIMIT_NOFILE, &nofile) || nofile.rlim_cur > 65536 ? 65536 : (int)nofile.rlim_cur;
	l->argv = req->argv;
	l->envp = req->envp ? req->envp : empty_env;
	l->entry = req->entry;
	l->entry_arg = req->entry_arg;
	l->wait_cgroup = host->cgroup != 0;
	l->pending = req->pending;
	l->job = &ctx->job;

	/* The PID namespace must come with the clone (the child is its init); the child makes the
	 * rest itself. */
	int flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_PIDFD;
	l->unshare_flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
	int saved_netns = -1;
	if (req->flags & SB_NET) {
		int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		if (self < 0 || sb__netns_ino(self, &l->host_netns_ino, &l->host_netns_dev)) {
			rc = fl_err_set(err, -errno, "sandbox step 'network' failed: cannot open '/proc/thread-self/ns/net': %s",
					strerror(errno));
			if (self >= 0)
				close(self);
			sb__ctx_free(ctx);
			return rc;
		}
		l->check_netns = 1;
		if (req->netns_fd >= 0) {
			/* The child inherits this thread's namespace; we come back right after. */
			if (setns(req->netns_fd, CLONE_NEWNET)) {
				rc = fl_err_set(err, -errno, "sandbox step 'network' failed: cannot enter the slot's network namespace: %s",
						strerror(errno));
				close(self);
				sb__ctx_free(ctx);
				return rc;
			}
			saved_netns = self;
		} else {
			l->unshare_flags |= CLONE_NEWNET;
			close(self);
		}
	}

	/* A socket, not a pipe: writing to a child that died must not SIGPIPE the worker. Packets:
	 * a pre-started sandbox's job arrives on it as one message. */
	int go[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, go)) {
		rc = fl_err_set(err, -errno, "sandbox step 'spawn' failed: socketpair: %s", strerror(errno));
		goto restore;
	}
	l->go_fd = go[0];

	/* The child is queued where we run, and a scheduler that packs tasks onto few CPUs leaves
	 * it there until we block: after the clone we still write its maps and make its cgroup,
	 * which it could be overlapping with its own set-up. So we step aside to another CPU
	 * for that and leave this one to the child. Moving ourselves rather than the child: the
	 * child then runs where the scheduler put it, its CPU mask never changes, and if the
	 * other CPU is busy only our short share waits there. */
	cpu_set_t cpus;
	int other_cpu = -1, moved = 0;
	if (!sched_getaffinity(0, sizeof cpus, &cpus))
		other_cpu = another_cpu(&cpus);

	/* The child's root: a copy of the plan's tree (about 10 µs), which the child inherits and
	 * moves into its mount namespace. Without one, the child binds it all itself. */
	if (host->mount_tree && req->plan->tree >= 0)
		l->root_fd = (int)syscall(SYS_open_tree, req->plan->tree, "", SB_TREE_COPY);

	int pidfd = -1;
	pid_t pid = -1;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (share_vm) {
		pid = clone(child_start, (char *)ctx + SB_CTX_LAUNCH + SB_CTX_GUARD + SB_CTX_STACK,
			    flags | CLONE_VM | SIGCHLD, l, &pidfd, NULL, NULL);
	} else {
		pid = (pid_t)syscall(SYS_clone, (unsigned long)flags |
				     (req->clone_parent ? CLONE_PARENT : SIGCHLD), NULL, &pidfd, NULL, 0);
		if (pid == 0)
			sb__child_main(l);
	}
	int clone_errno = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	close(go[0]);
	if (l->root_fd >= 0)
		close(l->root_fd);
	if (pid < 0) {
		rc = fl_err_set(err, -clone_errno, "sandbox step 'spawn' failed: clone: %s", strerror(clone_errno));
		close(go[1]);
		goto restore;
	}
	*pid_out = pid;
	*pidfd_out = pidfd;
	if (other_cpu >= 0) {
		cpu_set_t one;
		CPU_ZERO(&one);
		CPU_SET(other_cpu, &one);
		moved = !sched_setaffinity(0, sizeof one, &one);
	}
	if ((rc = sb__write_id_maps(pid, l->uid, l->gid, host->root, err)))
		fl_err_prefix(err, "sandbox step 'users' failed");
	else if ((rc = send_go(go[1], -1)))
		fl_err_set(err, rc, "sandbox step 'spawn' failed: cannot release the child: %s", strerror(-rc));
	/* The child may have failed its first step (its namespaces) before we got here: then its
	 * report says why, not the maps of a process that is gone. */
	if (rc && exited(pidfd))
		rc = SB__GONE;
	/* The cgroup is made while the child builds its root; it waits for it before seccomp. */
	if (!rc && host->cgroup) {
		if ((rc = sb__cgroup_create(host, &req->limits, req->cgroup_owner, cg, err)))
			;
		else if ((rc = sb__cgroup_place(cg, pid)))
			fl_err_set(err, rc, "sandbox step 'cgroup' failed: cannot move the sandbox into '%s': %s",
				   cg->path, strerror(-rc));
		else if ((rc = send_go(go[1], cg->version == 1 ? cg->procs_fd : -1)) == -EPIPE ||
			 rc == -ECONNRESET)
			/* It failed a step meanwhile: its report says which. */
			rc = SB__GONE;
		else if (rc)
			fl_err_set(err, rc, "sandbox step 'spawn' failed: cannot release the child: %s", strerror(-rc));
	}
	if (moved)
		sched_setaffinity(0, sizeof cpus, &cpus);
	if (rc == SB__GONE) {
		sb__cgroup_destroy(cg);
	} else if (rc) {
		syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
		sb__cgroup_destroy(cg);
	}
	if (!rc && req->pending && job_fd)
		*job_fd = go[1];
	else
		close(go[1]);
restore:
	if (saved_netns >= 0) {
		if (setns(saved_netns, CLONE_NEWNET))
			FL_ASSERT(!"thread left in a sandbox network namespace");
		close(saved_netns);
	}
	/* A CLONE_VM child runs on ctx until it execs or dies; a copied child has its own. */
	if (share_vm && *pid_out > 0)
		*ctx_out = ctx;
	else
		sb__ctx_free(ctx);
	return rc;
}

int sb__read_report(int fd, struct fl_err *err)
{
	struct sb_report r;
	size_t got = 0;
	while (got < sizeof r) {
		ssize_t n = read(fd, (char *)&r + got, sizeof r - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fl_err_set(err, -errno, "sandbox step 'spawn' failed: reading the report pipe: %s",
					  strerror(errno));
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (got == 0)
		return 0;
	if (got < sizeof r)
		return fl_err_set(err, FL_EPROTO, "sandbox step 'spawn' failed: truncated report from the child");
	if (r.step == SB_STEP_READY)
		return SB__READY;
	r.detail[sizeof r.detail - 1] = '\0';
	int code = r.err > 0 && r.err < 4096 ? -r.err : FL_EIO;
	if (r.detail[0])
		return fl_err_set(err, code, "sandbox step '%s' failed: %s: %s", sb__step_name(r.step),
				  r.detail, strerror(-code));
	return fl_err_set(err, code, "sandbox step '%s' failed: %s", sb__step_name(r.step),
			  strerror(-code));
}

void sb_opts_init(struct sb_opts *opts, const struct sb_host *host, struct sb_root *root)
{
	memset(opts, 0, sizeof *opts);
	opts->host = host;
	opts->root = root;
	opts->netns_fd = -1;
	opts->uid = 65534;
	opts->gid = 65534;
	opts->limits.memory_bytes = 1LL << 30;
	opts->limits.tmp_bytes = 64LL << 20;
	opts->limits.file_size_bytes = 64LL << 20;
	opts->limits.procs = 64;
	opts->limits.open_files = 256;
}

void sb__reap(int pidfd)
{
	siginfo_t si;
	syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
	while (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 && errno == EINTR)
		;
	close(pidfd);
}

/* The mount namespace of a sandbox that has just exec'd, or -1. Its last process would otherwise
 * tear it down (unmount the root, /tmp and /proc, and wait for an RCU grace period) in its exit,
 * before we are told: held, that happens in sb_child_release instead, off the job's path. The
 * payload may be gone already; then there is nothing to hold. The pid is ours until reaped. */
static int hold_mntns(pid_t pid, int pidfd)
{
	int fd = ioctl(pidfd, PIDFD_GET_MNT_NAMESPACE, 0);
	if (fd < 0 && (errno == ENOTTY || errno == EINVAL)) {
		char path[64];
		snprintf(path, sizeof path, "/proc/%d/ns/mnt", (int)pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	return fd;
}

int sb__spawn_finish(const struct sb_opts *opts, struct sb_cgroup *cg, struct sb_ctx *ctx,
		     pid_t pid, int pidfd, int report_fd, int gone, struct sb_child *child,
		     struct fl_err *err)
{
	int rc = sb__read_report(report_fd, err);
	close(report_fd);
	if (!rc && gone)
		rc = fl_err_set(err, FL_EIO, "sandbox step 'spawn' failed: the sandbox died during its setup");
	if (rc) {
		sb__reap(pidfd);
		sb__ctx_free(ctx);
		sb__cgroup_destroy(cg);
		return rc;
	}
	/* EOF: the child has exec'd (it closes the pipe after leaving our memory) or entered
	 * its entry function. */
	sb__ctx_free(ctx);
	memset(child, 0, sizeof *child);
	child->pid = pid;
	child->pidfd = pidfd;
	child->mntns_fd = hold_mntns(pid, pidfd);
	child->state = 1;
	child->cpu_seconds = opts->limits.cpu_seconds;
	child->cgroup = *cg;
	sb__cgroup_init(cg);
	return 0;
}

static int check_opts(const struct sb_opts *opts, struct fl_err *err)
{
	if (!opts->host || !opts->root)
		return fl_err_set(err, FL_EINVAL, "sandbox options need a host and a root");
	if (!opts->host->sandbox)
		return fl_err_set(err, FL_EUNSUPPORTED, "sandbox unavailable on this host: %s",
				  opts->host->userns ? opts->host->sandbox_why : opts->host->userns_why);
	if ((opts->flags & SB_NET) && opts->netns_fd < 0 && !opts->host->netns)
		return fl_err_set(err, FL_EUNSUPPORTED, "sandbox network namespace unavailable: %s",
				  opts->host->netns_why);
	return 0;
}

int sb__clone_opts(const struct sb_opts *opts, char *const argv[], const int *fds, int n_fds,
		   pid_t *pid, int *pidfd, struct sb_cgroup *cg, struct sb_ctx **ctx,
		   int *report_fd, int *job_fd, struct fl_err *err)
{
	int rc = check_opts(opts, err);
	if (rc)
		return rc;
	const struct sb_plan *plan;
	if ((rc = sb__root_plan(opts->root, &plan, err)))
		return rc;
	int report[2];
	if (pipe2(report, O_CLOEXEC))
		return fl_err_set(err, -errno, "sandbox step 'spawn' failed: pipe: %s", strerror(errno));
	struct sb_spawn_req req = {
		.host = opts->host,
		.plan = plan,
		.flags = opts->flags,
		.netns_fd = opts->netns_fd,
		.limits = opts->limits,
		.uid = opts->uid,
		.gid = opts->gid,
		.hostname = opts->hostname,
		.cwd = opts->cwd,
		.argv = argv,
		.envp = argv ? opts->envp : NULL,
		.fds = fds,
		.n_fds = n_fds,
		.err_fd = report[1],
		.parent_pidfd = sb__self_pidfd(),
		.cgroup_owner = getpid(),
		.pending = job_fd != NULL,
	};
	rc = sb__clone(&req, pid, pidfd, cg, ctx, job_fd, err);
	close(report[1]);
	if (req.parent_pidfd >= 0)
		close(req.parent_pidfd);
	if (rc && rc != SB__GONE) {
		close(report[0]);
		if (*pidfd >= 0)
			sb__reap(*pidfd);
		sb__ctx_free(*ctx);
		return rc;
	}
	*report_fd = report[0];
	return rc;
}

int sb_spawn(const struct sb_opts *opts, char *const argv[], const int *fds, int n_fds,
	     struct sb_child *child, struct fl_err *err)
{
	pid_t pid;
	int pidfd = -1, report_fd;
	struct sb_cgroup cg;
	struct sb_ctx *ctx = NULL;
	int rc = sb__clone_opts(opts, argv, fds, n_fds, &pid, &pidfd, &cg, &ctx, &report_fd, NULL,
				err);
	if (rc && rc != SB__GONE)
		return rc;
	return sb__spawn_finish(opts, &cg, ctx, pid, pidfd, report_fd, rc == SB__GONE, child, err);
}

int sb_child_wait(struct sb_child *child, int timeout_ms, struct sb_exit *out)
{
	if (child->state == 2) {
		if (out)
			*out = child->exit;
		return 0;
	}
	if (child->state != 1)
		return FL_EINVAL;
	if (timeout_ms != 0) {
		struct pollfd pfd = { .fd = child->pidfd, .events = POLLIN };
		int n;
		while ((n = poll(&pfd, 1, timeout_ms)) < 0 && errno == EINTR)
			;
		if (n < 0)
			return -errno;
		if (n == 0)
			return FL_ETIMEOUT;
	}
	siginfo_t si;
	struct rusage ru;
	memset(&si, 0, sizeof si);
	memset(&ru, 0, sizeof ru);
	long r;
	while ((r = syscall(SYS_waitid, P_PIDFD, child->pidfd, &si, WEXITED | WNOHANG, &ru)) < 0 &&
	       errno == EINTR)
		;
	if (r < 0)
		return -errno;
	if (si.si_pid == 0)
		return FL_ETIMEOUT;
	struct sb_exit *ex = &child->exit;
	memset(ex, 0, sizeof *ex);
	if (si.si_code == CLD_EXITED) {
		ex->exited = 1;
		ex->code = si.si_status;
	} else {
		ex->signal = si.si_status;
	}
	ex->cpu_us = (int64_t)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec +
		     (int64_t)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec;
	int64_t kills = sb__cgroup_oom_kills(&child->cgroup);
	ex->oom_killed = kills > 0 && kills > child->cgroup.oom_kills_before;
	/* Inside, nothing can SIGKILL the sandbox's init, so a SIGKILL that was neither ours nor
	 * the OOM killer's is the CPU limit. The CPU time is only a sanity check: the kernel
	 * counts exact run time, rusage reports less on a busy virtual machine (we saw 86%). */
	ex->cpu_limit = ex->signal == SIGXCPU ||
			(ex->signal == SIGKILL && child->cpu_seconds > 0 && !child->killed &&
			 !ex->oom_killed && ex->cpu_us >= (int64_t)child->cpu_seconds * 500000);
	if (sb__cgroup_peak(&child->cgroup, &ex->peak_memory_bytes))
		ex->peak_memory_bytes = -1;
	child->state = 2;
	if (out)
		*out = *ex;
	return 0;
}

int sb_child_kill(struct sb_child *child)
{
	if (child->state != 1)
		return 0;
	if (syscall(SYS_pidfd_send_signal, child->pidfd, SIGKILL, NULL, 0) && errno != ESRCH)
		return -errno;
	child->killed = 1;
	return 0;
}

int sb_child_peak_memory(const struct sb_child *child, int64_t *bytes)
{
	if (child->state == 0)
		return FL_EINVAL;
	return sb__cgroup_peak(&child->cgroup, bytes);
}

void sb_child_release(struct sb_child *child)
{
	if (child->state == 1) {
		sb_child_kill(child);
		sb_child_wait(child, -1, NULL);
	}
	if (child->state != 0) {
		/* First: the sandbox's /tmp is charged to its cgroup. */
		if (child->mntns_fd >= 0)
			close(child->mntns_fd);
		sb__cgroup_destroy(&child->cgroup);
		close(child->pidfd);
	}
	memset(child, 0, sizeof *child);
	child->pidfd = -1;
	child->mntns_fd = -1;
}
