/* Step "cgroup": each sandbox gets a cgroup of its own under the host's sandbox parent
 * (struct sb_host.cgroup_dir), with the memory limit (never RLIMIT_AS: JavaScriptCore reserves
 * far more address space than it uses), no swap, and the whole sandbox killed together on OOM
 * where the kernel offers it. The spawner creates it and moves the child into it while the child
 * builds its root (a cgroup migration can take a few hundred microseconds, mkdir too), and the
 * child waits for that before seccomp and exec, so no instruction of the payload runs outside
 * it. Afterwards it gives the peak and whether the OOM
 * killer struck, and it is removed on release even after a SIGKILL. */
#include "sandbox/sb_int.h"
#include "sandbox/host.h"

#include "core/alloc.h"
#include "core/err.h"
#include "core/time.h"
#include "sandbox/sb_sys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static atomic_uint cgroup_seq;

static const char *events_knob(const struct sb_cgroup *cg)
{
	return cg->version == 2 ? "memory.events" : "memory.oom_control";
}

static const char *peak_knob(const struct sb_cgroup *cg)
{
	return cg->version == 2 ? "memory.peak" : "memory.max_usage_in_bytes";
}

/* Opens one of the cgroup's knobs; -1 with errno on failure. */
static int open_knob(const struct sb_cgroup *cg, const char *knob, int flags)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", cg->path, knob);
	return open(path, flags | O_CLOEXEC);
}

/* Reads a knob whole into buf (NUL-terminated) through fd, or by opening it when fd < 0.
 * Returns its length or -errno. */
static ssize_t read_knob(const struct sb_cgroup *cg, int fd, const char *knob, char *buf, size_t size)
{
	int own = fd < 0 ? open_knob(cg, knob, O_RDONLY) : -1;
	if (fd < 0 && own < 0)
		return -errno;
	ssize_t n;
	while ((n = pread(fd < 0 ? own : fd, buf, size - 1, 0)) < 0 && errno == EINTR)
		;
	if (n < 0)
		n = -errno;
	else
		buf[n] = '\0';
	if (own >= 0)
		close(own);
	return n;
}

void sb__cgroup_init(struct sb_cgroup *cg)
{
	memset(cg, 0, sizeof *cg);
	cg->procs_fd = -1;
	cg->events_fd = -1;
	cg->peak_fd = -1;
}

static int write_knob(const char *dir, const char *knob, const char *value)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, knob);
	return sb__write_file(path, value, strlen(value));
}

int sb__cgroup_create(const struct sb_host *host, const struct sb_limits *lim, pid_t owner,
		      struct sb_cgroup *cg, struct fl_err *err)
{
	sb__cgroup_init(cg);
	if (!host->cgroup) {
		if (lim->memory_bytes > 0)
			return fl_err_set(err, FL_EUNSUPPORTED,
					  "sandbox step 'cgroup' failed: no cgroup for the memory limit: %s",
					  host->cgroup_why);
		return 0;
	}
	cg->version = host->cgroup;
	/* Named after the worker, so that a later start can tell a dead worker's leftovers. */
	cg->path = fl_asprintf("%s/%d-%d-%u", host->cgroup_dir, (int)owner, (int)getpid(),
			       atomic_fetch_add(&cgroup_seq, 1));
	if (mkdir(cg->path, 0755)) {
		int e = errno;
		fl_err_set(err, -e, "sandbox step 'cgroup' failed: cannot create '%s': %s", cg->path,
			   strerror(e));
		fl_free(cg->path);
		sb__cgroup_init(cg);
		return -e;
	}
	char value[32];
	int rc = 0;
	const char *knob = "";
	if (cg->version == 2) {
		if (lim->memory_bytes > 0) {
			snprintf(value, sizeof value, "%" PRId64, lim->memory_bytes);
			if ((rc = write_knob(cg->path, knob = "memory.max", value)))
				goto fail;
			/* Swap would let the sandbox exceed its limit unseen. */
			if ((rc = write_knob(cg->path, knob = "memory.swap.max", "0")) && rc != -ENOENT)
				goto fail;
		}
		/* Kill every process of the sandbox on OOM, not just the largest. */
		if ((rc = write_knob(cg->path, knob = "memory.oom.group", "1")) && rc != -ENOENT)
			goto fail;
		if (host->cgroup_pids && lim->procs > 0) {
			snprintf(value, sizeof value, "%d", lim->procs);
			if ((rc = write_knob(cg->path, knob = "pids.max", value)))
				goto fail;
		}
		rc = 0;
	} else {
		if (lim->memory_bytes > 0) {
			snprintf(value, sizeof value, "%" PRId64, lim->memory_bytes);
			if ((rc = write_knob(cg->path, knob = "memory.limit_in_bytes", value)))
				goto fail;
			/* memory+swap: absent when swap accounting is off; EINVAL never expected. */
			if ((rc = write_knob(cg->path, knob = "memory.memsw.limit_in_bytes", value)) &&
			    rc != -ENOENT)
				goto fail;
			rc = 0;
		}
	}
	/* v1: the sandbox moves itself, one thread writing "0" to tasks, which the kernel does
	 * without write-locking the threadgroup rwsem; moving it from outside through
	 * cgroup.procs takes that lock and waits for an RCU grace period, milliseconds when other
	 * namespaces are being torn down. v2 has no such door (its fast way is CLONE_INTO_CGROUP):
	 * there the spawner moves it. */
	knob = cg->version == 1 ? "tasks" : "cgroup.procs";
	cg->procs_fd = open_knob(cg, knob, O_WRONLY);
	if (cg->procs_fd < 0) {
		rc = -errno;
		goto fail;
	}
	cg->events_fd = open_knob(cg, events_knob(cg), O_RDONLY);
	cg->peak_fd = open_knob(cg, peak_knob(cg), O_RDONLY);
	cg->oom_kills_before = sb__cgroup_oom_kills(cg);
	return 0;
fail:
	fl_err_set(err, rc, "sandbox step 'cgroup' failed: cannot set '%s/%s': %s", cg->path, knob,
		   strerror(-rc));
	sb__cgroup_destroy(cg);
	return rc;
}

int sb__cgroup_place(const struct sb_cgroup *cg, pid_t pid)
{
	if (cg->procs_fd < 0 || cg->version == 1)
		return 0;
	char value[24];
	int n = snprintf(value, sizeof value, "%d\n", (int)pid);
	return sb__write_fd(cg->procs_fd, value, (size_t)n);
}

int sb__cgroup_peak(const struct sb_cgroup *cg, int64_t *bytes)
{
	if (!cg->path)
		return FL_EUNSUPPORTED;
	char buf[64];
	ssize_t n = read_knob(cg, cg->peak_fd, peak_knob(cg), buf, sizeof buf);
	if (n == -ENOENT)
		return FL_EUNSUPPORTED;
	if (n < 0)
		return (int)n;
	char *end;
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	if (errno || end == buf)
		return FL_EPROTO;
	*bytes = v;
	return 0;
}

int64_t sb__cgroup_oom_kills(const struct sb_cgroup *cg)
{
	if (!cg->path)
		return -1;
	char buf[1024];
	if (read_knob(cg, cg->events_fd, events_knob(cg), buf, sizeof buf) < 0)
		return -1;
	for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (!strncmp(line, "oom_kill ", 9))
			return strtoll(line + 9, NULL, 10);
	return -1;
}

/* SIGKILLs every process listed in dir's cgroup.procs. Returns how many were listed. */
static int kill_listed(const char *dir)
{
	char path[1024], buf[4096];
	snprintf(path, sizeof path, "%s/cgroup.procs", dir);
	if (sb__read_file(path, buf, sizeof buf) <= 0)
		return 0;
	int n = 0;
	for (char *s = buf; *s;) {
		char *end;
		long pid = strtol(s, &end, 10);
		if (end == s)
			break;
		if (pid > 0 && kill((pid_t)pid, SIGKILL) == 0)
			n++;
		s = end + strspn(end, "\n");
	}
	return n;
}

static int remove_dir(const char *dir, int version)
{
	/* The sandbox's init is reaped by now, and with it the PID namespace; what could remain
	 * is a process that escaped the namespace, so kill it rather than leak the cgroup. */
	if (version == 2) {
		if (write_knob(dir, "cgroup.kill", "1") == -ENOENT)
			kill_listed(dir);
	} else {
		kill_listed(dir);
	}
	int64_t deadline = fl_mono_us() + 2000000;
	useconds_t pause = 100;
	for (;;) {
		if (!rmdir(dir) || errno == ENOENT)
			return 0;
		if (errno != EBUSY || fl_mono_us() > deadline)
			return -errno;
		/* Exiting tasks leave the cgroup a moment after they are reaped. */
		kill_listed(dir);
		usleep(pause);
		if (pause < 20000)
			pause *= 2;
	}
}

static void close_fds(struct sb_cgroup *cg)
{
	int *fds[] = { &cg->procs_fd, &cg->events_fd, &cg->peak_fd };
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
		if (*fds[i] >= 0) {
			close(*fds[i]);
			*fds[i] = -1;
		}
}

int sb__cgroup_destroy(struct sb_cgroup *cg)
{
	int rc = 0;
	close_fds(cg);
	if (cg->path)
		rc = remove_dir(cg->path, cg->version);
	fl_free(cg->path);
	sb__cgroup_init(cg);
	return rc;
}

void sb__cgroup_sweep(const char *parent_dir, int version)
{
	DIR *d = opendir(parent_dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		char *end;
		long owner = strtol(e->d_name, &end, 10);
		if (end == e->d_name || *end != '-' || owner <= 0)
			continue;
		if (owner == getpid() || kill((pid_t)owner, 0) == 0 || errno != ESRCH)
			continue;
		char dir[1024];
		snprintf(dir, sizeof dir, "%s/%s", parent_dir, e->d_name);
		remove_dir(dir, version);
	}
	closedir(d);
}

void sb__cgroup_forget(struct sb_cgroup *cg)
{
	close_fds(cg);
	fl_free(cg->path);
	sb__cgroup_init(cg);
}

SB_CHILD void sb__child_cgroup(struct sb_launch *l)
{
	/* The spawner creates our cgroup while we build our root, then sends a byte, with, on
	 * cgroup v1, the cgroup's tasks file to move ourselves in. Nothing of the payload has run
	 * yet. */
	long r;
	if (l->wait_cgroup) {
		char go;
		int tasks, n_fds, truncated;
		r = sb__child_recv(l->go_fd, &go, 1, &tasks, 1, &n_fds, &truncated);
		if (r != 1)
			sb__child_exit(126);
		if (n_fds == 1) {
			r = sb_sys3(SYS_write, tasks, "0\n", 2);
			sb_sys1(SYS_close, tasks);
			if (r != 2)
				sb__child_fail(l, SB_STEP_CGROUP, r < 0 ? (int)-r : EIO,
					       "cannot move into the sandbox cgroup", NULL);
		}
	}
	/* A cgroup namespace rooted at our own cgroup hides the host's hierarchy. */
	r = sb_sys1(SYS_unshare, CLONE_NEWCGROUP);
	if (r)
		sb__child_fail(l, SB_STEP_CGROUP, (int)-r, "cannot create the cgroup namespace", NULL);
}
