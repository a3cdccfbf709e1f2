/* Engine child processes: see engine_proc.h. */
#include "worker/engine_proc.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "core/time.h"
#include "sandbox/zygote.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

/* How often a plain engine's RSS is compared with its limit while we wait for it. A reading
 * costs a few µs; between two of them an engine filling memory can add about 10 MB per ms, and
 * all of that is past the limit by the time it is killed. */
#define MEMORY_WATCH_MS 10

static void proc_init(struct wk_proc *p, int64_t memory_limit_kb)
{
	memset(p, 0, sizeof *p);
	p->to_engine = p->from_engine = p->engine_log = p->statm_fd = -1;
	p->memory_limit_kb = memory_limit_kb;
	fl_buf_init(&p->out);
	fl_buf_init(&p->log);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Three pipes: child's stdin, stdout, stderr. in[0], out[1], errp[1] go to the child. */
static int make_pipes(int in[2], int out[2], int errp[2], struct fl_err *err)
{
	in[0] = in[1] = out[0] = out[1] = errp[0] = errp[1] = -1;
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(errp, O_CLOEXEC)) {
		int e = errno;
		for (int i = 0; i < 2; i++) {
			close_fd(&in[i]);
			close_fd(&out[i]);
			close_fd(&errp[i]);
		}
		return fl_err_set(err, -e, "cannot create engine pipes: %s", strerror(e));
	}
	return 0;
}

static void adopt_pipes(struct wk_proc *p, int in[2], int out[2], int errp[2])
{
	close(in[0]);
	close(out[1]);
	close(errp[1]);
	p->to_engine = in[1];
	p->from_engine = out[0];
	p->engine_log = errp[0];
	/* A dead engine must give EPIPE on write, not kill the worker with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
}

/* Closes every fd from first up; async-signal-safe, for a child between fork and exec. */
static void close_fds_from(int first)
{
	if (syscall(SYS_close_range, (unsigned)first, ~0U, 0) == 0)
		return;
	/* Kernels before 5.9. */
	struct rlimit rl;
	long max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
			   ? (long)rl.rlim_cur
			   : 65536;
	for (long fd = first; fd < max; fd++)
		close((int)fd);
}

int wk_proc_spawn(struct wk_proc *p, char *const argv[], char *const envp[],
		  int64_t memory_limit_kb, struct fl_err *err)
{
	proc_init(p, memory_limit_kb);
	int in[2], out[2], errp[2];
	int rc = make_pipes(in, out, errp, err);
	if (rc)
		return rc;
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(in[0]), close(in[1]), close(out[0]), close(out[1]), close(errp[0]), close(errp[1]);
		return fl_err_set(err, -e, "cannot fork engine: %s", strerror(e));
	}
	if (pid == 0) {
		/* Only async-signal-safe calls between fork and exec: the worker has threads. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(errp[1], 2) < 0)
			_exit(127);
		/* Not every library opens its fds close-on-exec (libcurl's connections to the app,
		 * hiredis's to Redis): without this the engine would inherit live connections that
		 * carry the worker's tokens, which no seccomp filter on socket() would stop. */
		close_fds_from(3);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	p->pid = pid;
	adopt_pipes(p, in, out, errp);
	return 0;
}

int wk_proc_spawn_sandboxed(struct wk_proc *p, const struct sb_opts *opts, struct sb_zygote *zygote,
			    char *const argv[], int extra_fd, struct fl_err *err)
{
	proc_init(p, 0);
	int in[2], out[2], errp[2];
	int rc = make_pipes(in, out, errp, err);
	if (rc)
		return rc;
	int fds[4] = { in[0], out[1], errp[1], extra_fd };
	int n_fds = extra_fd >= 0 ? 4 : 3;
	rc = zygote ? sb_zygote_spawn(zygote, opts, argv, fds, n_fds, &p->child, err)
		    : sb_spawn(opts, argv, fds, n_fds, &p->child, err);
	if (rc) {
		close(in[0]), close(in[1]), close(out[0]), close(out[1]), close(errp[0]), close(errp[1]);
		return rc;
	}
	p->sandboxed = 1;
	p->pid = p->child.pid;
	adopt_pipes(p, in, out, errp);
	return 0;
}

int wk_proc_alive(const struct wk_proc *p)
{
	return p->pid > 0;
}

int wk_proc_send(struct wk_proc *p, const char *line, size_t len)
{
	/* One writev for the line and its newline: two writes would wake the engine twice, once
	 * for a line it cannot use yet. */
	struct iovec parts[2] = { { (void *)line, len }, { "\n", 1 } };
	struct iovec *v = parts;
	int n = 2;
	while (n) {
		ssize_t w = writev(p->to_engine, v, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		while (n && (size_t)w >= v->iov_len) {
			w -= (ssize_t)v->iov_len;
			v++;
			n--;
		}
		if (n) {
			v->iov_base = (char *)v->iov_base + w;
			v->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* Forwards complete stderr lines of the engine to our log; flush forces out a partial one. */
static void drain_log(struct wk_proc *p, int flush)
{
	char *start = p->log.data, *nl;
	while ((nl = memchr(start, '\n', p->log.len - (size_t)(start - p->log.data)))) {
		*nl = '\0';
		if (nl > start)
			fl_log_fields(FL_LOG_INFO, "engine",
				      p->run_id[0] ? json_pack("{ss}", "runId", p->run_id) : NULL,
				      "%s", start);
		start = nl + 1;
	}
	size_t rest = p->log.len - (size_t)(start - p->log.data);
	if (flush && rest) {
		fl_info("engine", "%.*s", (int)rest, start);
		rest = 0;
	}
	memmove(p->log.data, start, rest);
	p->log.len = rest;
	if (p->log.cap)
		p->log.data[rest] = '\0';
}

/* The engine's resident KiB from /proc/<pid>/statm ("size resident ..." in pages), read through
 * a descriptor kept open: the watch runs often, an open per look would cost more than it. */
static int64_t rss_kb(struct wk_proc *p)
{
	char buf[128];
	if (p->statm_fd < 0) {
		char path[64];
		snprintf(path, sizeof path, "/proc/%d/statm", (int)p->pid);
		p->statm_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (p->statm_fd < 0)
			return -1;
	}
	ssize_t n = pread(p->statm_fd, buf, sizeof buf - 1, 0);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	char *end;
	strtoll(buf, &end, 10);
	long long resident = strtoll(end, NULL, 10);
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Plain engines have no cgroup: their resident memory is watched instead, every
 * MEMORY_WATCH_MS while we wait for them (not on every line they write). */
static int memory_watch(struct wk_proc *p)
{
	if (p->sandboxed || !p->memory_limit_kb || p->killed_for_memory)
		return 0;
	int64_t now = fl_mono_ms();
	if (now < p->next_watch_ms)
		return 0;
	p->next_watch_ms = now + MEMORY_WATCH_MS;
	int64_t kb = rss_kb(p);
	if (kb > p->peak_rss_kb)
		p->peak_rss_kb = kb;
	if (kb > p->memory_limit_kb) {
		fl_warn("worker", "engine %d uses %lld KiB, over the %lld KiB limit: killing it",
			(int)p->pid, (long long)kb, (long long)p->memory_limit_kb);
		p->killed_for_memory = 1;
		wk_proc_kill(p);
		return 1;
	}
	return 0;
}

int wk_proc_recv(struct wk_proc *p, int64_t deadline_ms, char **line)
{
	for (;;) {
		char *nl = memchr(p->out.data, '\n', p->out.len);
		if (nl) {
			size_t n = (size_t)(nl - p->out.data);
			*line = fl_strndup(p->out.data, n);
			memmove(p->out.data, nl + 1, p->out.len - n - 1);
			p->out.len -= n + 1;
			p->out.data[p->out.len] = '\0';
			return 0;
		}
		if (p->from_engine < 0)
			return p->killed_for_memory ? FL_ELIMIT : FL_EIO;
		int wait_ms = -1;
		if (deadline_ms) {
			int64_t left = deadline_ms - fl_mono_ms();
			if (left <= 0)
				return FL_ETIMEOUT;
			wait_ms = left > 1000000 ? 1000000 : (int)left;
		}
		if (!p->sandboxed && p->memory_limit_kb && (wait_ms < 0 || wait_ms > MEMORY_WATCH_MS))
			wait_ms = MEMORY_WATCH_MS;
		struct pollfd fds[2] = { { p->from_engine, POLLIN, 0 }, { p->engine_log, POLLIN, 0 } };
		int n = poll(fds, p->engine_log >= 0 ? 2 : 1, wait_ms);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (memory_watch(p))
			continue;
		if (n <= 0)
			continue;
		if (fds[1].revents && p->engine_log >= 0) {
			char buf[4096];
			ssize_t r = read(p->engine_log, buf, sizeof buf);
			if (r > 0) {
				fl_buf_add(&p->log, buf, (size_t)r);
				drain_log(p, 0);
			} else if (r == 0 || errno != EINTR) {
				drain_log(p, 1);
				close_fd(&p->engine_log);
			}
		}
		if (fds[0].revents) {
			char buf[65536];
			ssize_t r = read(p->from_engine, buf, sizeof buf);
			if (r > 0)
				fl_buf_add(&p->out, buf, (size_t)r);
			else if (r == 0 || errno != EINTR)
				close_fd(&p->from_engine);
		}
	}
}

int64_t wk_proc_peak_kb(const struct wk_proc *p)
{
	if (p->pid <= 0)
		return -1;
	if (p->sandboxed) {
		int64_t bytes;
		return sb_child_peak_memory(&p->child, &bytes) ? -1 : bytes / 1024;
	}
	return p->peak_rss_kb > 0 ? p->peak_rss_kb : -1;
}

void wk_proc_peak_reset(struct wk_proc *p)
{
	p->peak_rss_kb = p->pid > 0 && !p->sandboxed ? rss_kb(p) : 0;
}

void wk_proc_kill(struct wk_proc *p)
{
	if (p->pid <= 0)
		return;
	if (p->sandboxed)
		sb_child_kill(&p->child);
	else
		kill(p->pid, SIGKILL);
}

void wk_proc_finish(struct wk_proc *p, int kill_first, struct wk_exit *ex)
{
	struct wk_exit e = { .peak_memory_kb = -1 };
	if (p->pid > 0) {
		if (kill_first)
			wk_proc_kill(p);
		close_fd(&p->to_engine);
		if (p->sandboxed) {
			struct sb_exit se;
			if (sb_child_wait(&p->child, -1, &se) == 0) {
				e.exited = se.exited;
				e.code = se.code;
				e.signal = se.signal;
				e.memory_exceeded = se.oom_killed;
				e.peak_memory_kb =
					se.peak_memory_bytes >= 0 ? se.peak_memory_bytes / 1024 : -1;
			}
			sb_child_release(&p->child);
		} else {
			int status = 0;
			while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
				;
			e.exited = WIFEXITED(status);
			e.code = e.exited ? WEXITSTATUS(status) : 0;
			e.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
			e.memory_exceeded = p->killed_for_memory;
			e.peak_memory_kb = p->peak_rss_kb > 0 ? p->peak_rss_kb : -1;
		}
	}
	if (p->engine_log >= 0) {
		/* Whatever the engine said last (a crash message) belongs in the log. */
		char buf[4096];
		ssize_t r;
		int fl = fcntl(p->engine_log, F_GETFL);
		fcntl(p->engine_log, F_SETFL, fl | O_NONBLOCK);
		while ((r = read(p->engine_log, buf, sizeof buf)) > 0)
			fl_buf_add(&p->log, buf, (size_t)r);
		drain_log(p, 1);
	}
	close_fd(&p->to_engine);
	close_fd(&p->from_engine);
	close_fd(&p->engine_log);
	close_fd(&p->statm_fd);
	fl_buf_release(&p->out);
	fl_buf_release(&p->log);
	p->pid = 0;
	p->sandboxed = 0;
	if (ex)
		*ex = e;
}
