/* sb_host_probe and sb_host_check: what the host allows, found by trying each feature and then
 * running a whole sandbox, so that a mode is refused at start rather than failing (or, worse,
 * running unprotected) on the first job. The probe also prepares the cgroup parent under which
 * every sandbox gets its own cgroup, and removes what dead spawners left there. */
#include "sandbox/host.h"
#include "sandbox/root.h"
#include "sandbox/sb_int.h"

#include "core/alloc.h"
#include "core/config.h"
#include "core/err.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int read_int(const char *path, long *out)
{
	char buf[32];
	if (sb__read_file(path, buf, sizeof buf) <= 0)
		return -1;
	*out = strtol(buf, NULL, 10);
	return 0;
}

/* Forks a child into the given namespaces and waits for it: 0, or -errno of the clone. */
static int try_clone(unsigned long flags)
{
	pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, 0);
	if (pid == 0)
		_exit(0);
	if (pid < 0)
		return -errno;
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -ECHILD;
}

static int has_caps_for_maps(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &hdr, data))
		return 0;
	return (data[0].effective & (1u << CAP_SETUID)) && (data[0].effective & (1u << CAP_SETGID)) &&
	       (data[0].effective & (1u << CAP_SYS_ADMIN));
}

/* Whether word is one of the space- or comma-separated items of list. */
static int has_item(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *s = list; (s = strstr(s, word)); s += n)
		if ((s == list || s[-1] == ' ' || s[-1] == ',') &&
		    (s[n] == '\0' || s[n] == ' ' || s[n] == ',' || s[n] == '\n'))
			return 1;
	return 0;
}

struct cg_mounts {
	char v2_mount[256], v2_root[256];
	char v1_mount[256], v1_root[256];
	char v2_path[512], v1_path[512]; /* from /proc/self/cgroup */
};

static void find_cgroups(struct cg_mounts *m)
{
	memset(m, 0, sizeof *m);
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[2048];
	while (f && fgets(line, sizeof line, f)) {
		char root[256], mnt[256], fstype[64], super[512];
		/* id parent dev root mountpoint opts [optional...] - fstype source superopts */
		if (sscanf(line, "%*s %*s %*s %255s %255s", root, mnt) != 2)
			continue;
		const char *sep = strstr(line, " - ");
		if (!sep || sscanf(sep + 3, "%63s %*s %511s", fstype, super) != 2)
			continue;
		if (!strcmp(fstype, "cgroup2") && !m->v2_mount[0]) {
			snprintf(m->v2_mount, sizeof m->v2_mount, "%s", mnt);
			snprintf(m->v2_root, sizeof m->v2_root, "%s", root);
		} else if (!strcmp(fstype, "cgroup") && has_item(super, "memory") && !m->v1_mount[0]) {
			snprintf(m->v1_mount, sizeof m->v1_mount, "%s", mnt);
			snprintf(m->v1_root, sizeof m->v1_root, "%s", root);
		}
	}
	if (f)
		fclose(f);
	f = fopen("/proc/self/cgroup", "re");
	while (f && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = '\0';
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c1 = '\0';
		*c2 = '\0';
		if (!strcmp(line, "0") && c1[1] == '\0')
			snprintf(m->v2_path, sizeof m->v2_path, "%s", c2 + 1);
		else if (has_item(c1 + 1, "memory"))
			snprintf(m->v1_path, sizeof m->v1_path, "%s", c2 + 1);
	}
	if (f)
		fclose(f);
}

/* The directory of our cgroup under a mount whose root is mroot. */
static int cgroup_dir(const char *mount, const char *mroot, const char *path, char *out, size_t size)
{
	size_t n = strlen(mroot);
	if (!strcmp(mroot, "/"))
		n = 0;
	else if (strncmp(path, mroot, n) || (path[n] && path[n] != '/'))
		return -1;
	snprintf(out, size, "%s%s", mount, path + n);
	size_t len = strlen(out);
	if (len > 1 && out[len - 1] == '/')
		out[len - 1] = '\0';
	return 0;
}

static int knob_write(const char *dir, const char *knob, const char *value)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, knob);
	return sb__write_file(path, value, strlen(value));
}

static int knob_exists(const char *dir, const char *knob)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, knob);
	return access(path, F_OK) == 0;
}

/* Creates a probe cgroup under parent, checks the knobs, removes it. */
static int trial_cgroup(struct sb_host *h, const char *parent, int version)
{
	char dir[1024];
	snprintf(dir, sizeof dir, "%s/probe-%d", parent, (int)getpid());
	if (mkdir(dir, 0755) && errno != EEXIST) {
		int e = errno;
		snprintf(h->cgroup_why, sizeof h->cgroup_why, "cgroup v%d: cannot create '%s': %s",
			 version, dir, strerror(e));
		return -e;
	}
	int rc = knob_write(dir, version == 2 ? "memory.max" : "memory.limit_in_bytes", "1073741824");
	if (rc)
		snprintf(h->cgroup_why, sizeof h->cgroup_why, "cgroup v%d: cannot set a memory limit in '%s': %s",
			 version, dir, strerror(-rc));
	h->memory_peak = knob_exists(dir, version == 2 ? "memory.peak" : "memory.max_usage_in_bytes");
	struct sb_cgroup cg;
	sb__cgroup_init(&cg);
	cg.version = version;
	cg.path = dir;
	h->oom_count = sb__cgroup_oom_kills(&cg) >= 0;
	if (version == 2)
		h->cgroup_pids = knob_exists(dir, "pids.max");
	rmdir(dir);
	return rc;
}

static void probe_v2(struct sb_host *h, const struct cg_mounts *m, unsigned flags)
{
	char self[512], buf[512];
	if (!m->v2_mount[0] || !m->v2_path[0] ||
	    cgroup_dir(m->v2_mount, m->v2_root, m->v2_path, self, sizeof self)) {
		snprintf(h->cgroup_why, sizeof h->cgroup_why, "cgroup v2: no unified hierarchy holds this process");
		return;
	}
	char path[1024];
	snprintf(path, sizeof path, "%s/cgroup.controllers", self);
	if (sb__read_file(path, buf, sizeof buf) < 0 || !has_item(buf, "memory")) {
		snprintf(h->cgroup_why, sizeof h->cgroup_why,
			 "cgroup v2: the memory controller is not delegated to '%s'", self);
		return;
	}
	int pids = has_item(buf, "pids");
	snprintf(path, sizeof path, "%s/cgroup.subtree_control", self);
	if (sb__read_file(path, buf, sizeof buf) < 0 || !has_item(buf, "memory")) {
		int rc = knob_write(self, "cgroup.subtree_control", "+memory");
		if (rc == -EBUSY && (flags & SB_PROBE_MOVE_SELF)) {
			/* No internal processes: a cgroup that hands controllers to children holds
			 * none itself. If we are alone in ours, move into a leaf of it. */
			snprintf(path, sizeof path, "%s/cgroup.procs", self);
			char procs[4096];
			char me[24];
			snprintf(me, sizeof me, "%d\n", (int)getpid());
			if (sb__read_file(path, procs, sizeof procs) >= 0 && !strcmp(procs, me)) {
				char leaf[1024];
				snprintf(leaf, sizeof leaf, "%s/flowd-worker", self);
				if ((!mkdir(leaf, 0755) || errno == EEXIST) &&
				    !knob_write(leaf, "cgroup.procs", me))
					rc = knob_write(self, "cgroup.subtree_control", "+memory");
			}
		}
		if (rc) {
			snprintf(h->cgroup_why, sizeof h->cgroup_why,
				 "cgroup v2: cannot enable the memory controller in '%s': %s%s", self,
				 strerror(-rc),
				 rc == -EBUSY ? " (it holds processes; run flowd in a cgroup of its own, "
						"e.g. systemd Delegate=yes)" : "");
			return;
		}
	}
	if (pids)
		knob_write(self, "cgroup.subtree_control", "+pids");
	snprintf(h->cgroup_dir, sizeof h->cgroup_dir, "%s/flowd-sandboxes", self);
	if (mkdir(h->cgroup_dir, 0755) && errno != EEXIST) {
		snprintf(h->cgroup_why, sizeof h->cgroup_why, "cgroup v2: cannot create '%s': %s",
			 h->cgroup_dir, strerror(errno));
		return;
	}
	int rc = knob_write(h->cgroup_dir, "cgroup.subtree_control", pids ? "+memory +pids" : "+memory");
	if (rc && pids)
		rc = knob_write(h->cgroup_dir, "cgroup.subtree_control", "+memory");
	if (rc) {
		snprintf(h->cgroup_why, sizeof h->cgroup_why,
			 "cgroup v2: cannot enable the memory controller in '%s': %s", h->cgroup_dir,
			 strerror(-rc));
		return;
	}
	if (!trial_cgroup(h, h->cgroup_dir, 2))
		h->cgroup = 2;
}

static void probe_v1(struct sb_host *h, const struct cg_mounts *m)
{
	char self[512];
	if (!m->v1_mount[0] || !m->v1_path[0] ||
	    cgroup_dir(m->v1_mount, m->v1_root, m->v1_path, self, sizeof self))
		return;
	snprintf(h->cgroup_dir, sizeof h->cgroup_dir, "%s/flowd-sandboxes", self);
	if (mkdir(h->cgroup_dir, 0755) && errno != EEXIST) {
		snprintf(h->cgroup_why + strlen(h->cgroup_why), sizeof h->cgroup_why - strlen(h->cgroup_why),
			 "; cgroup v1: cannot create '%s': %s", h->cgroup_dir, strerror(errno));
		return;
	}
	char why[sizeof h->cgroup_why];
	memcpy(why, h->cgroup_why, sizeof why);
	if (!trial_cgroup(h, h->cgroup_dir, 1)) {
		h->cgroup = 1;
		return;
	}
	char v1why[sizeof h->cgroup_why];
	memcpy(v1why, h->cgroup_why, sizeof v1why);
	snprintf(h->cgroup_why, sizeof h->cgroup_why, "%s; %s", why, v1why);
}

static void probe_cgroup(struct sb_host *h, unsigned flags)
{
	struct cg_mounts m;
	find_cgroups(&m);
	probe_v2(h, &m, flags);
	if (!h->cgroup)
		probe_v1(h, &m);
	if (h->cgroup) {
		h->cgroup_why[0] = '\0';
		sb__cgroup_sweep(h->cgroup_dir, h->cgroup);
	} else {
		h->cgroup_dir[0] = '\0';
		if (!h->cgroup_why[0])
			snprintf(h->cgroup_why, sizeof h->cgroup_why, "no cgroup v2 or v1 memory hierarchy is mounted");
	}
}

static int trial_entry(int argc, char **argv, void *arg)
{
	return 0;
}

/* Runs a whole sandbox (every step, then an in-process payload) with the given flags. */
static int trial_sandbox(struct sb_host *h, unsigned flags, char *why, size_t why_size)
{
	struct fl_err err;
	fl_err_clear(&err);
	struct sb_root *root = sb_root_new();
	struct sb_opts opts;
	sb_opts_init(&opts, h, root);
	opts.flags = flags;
	opts.limits.memory_bytes = h->cgroup ? 64LL << 20 : 0;
	const struct sb_plan *plan;
	int report[2] = { -1, -1 };
	int rc = sb__root_plan(root, &plan, &err);
	if (!rc && plan->tree < 0)
		h->mount_tree = 0;
	if (!rc && pipe2(report, O_CLOEXEC))
		rc = fl_err_set(&err, -errno, "pipe: %s", strerror(errno));
	if (!rc) {
		char *argv[] = { "probe", NULL };
		struct sb_spawn_req req = {
			.host = h, .plan = plan, .flags = flags, .netns_fd = -1, .limits = opts.limits,
			.uid = opts.uid, .gid = opts.gid, .argv = argv, .err_fd = report[1],
			.parent_pidfd = -1, .cgroup_owner = getpid(), .entry = trial_entry,
		};
		pid_t pid;
		int pidfd;
		struct sb_cgroup cg;
		struct sb_ctx *ctx;
		rc = sb__clone(&req, &pid, &pidfd, &cg, &ctx, NULL, &err);
		close(report[1]);
		if (!rc || rc == SB__GONE) {
			struct sb_child child;
			rc = sb__spawn_finish(&opts, &cg, ctx, pid, pidfd, report[0], rc == SB__GONE, &child, &err);
			report[0] = -1;
			if (!rc) {
				struct sb_exit ex;
				rc = sb_child_wait(&child, 5000, &ex);
				if (!rc && (!ex.exited || ex.code))
					rc = fl_err_set(&err, FL_EIO, "the trial sandbox ended with %s %d",
							ex.exited ? "code" : "signal", ex.exited ? ex.code : ex.signal);
				sb_child_release(&child);
			}
		} else {
			if (pidfd >= 0)
				sb__reap(pidfd);
			sb__ctx_free(ctx);
		}
	}
	if (report[0] >= 0)
		close(report[0]);
	sb_root_free(root);
	if (rc)
		snprintf(why, why_size, "%s", err.msg);
	return rc;
}

int sb_host_probe(struct sb_host *h, unsigned flags, struct fl_err *err)
{
	memset(h, 0, sizeof *h);
	h->root = has_caps_for_maps();
	long v;
	h->cap_last_cap = read_int("/proc/sys/kernel/cap_last_cap", &v) ? 40 : (int)v;
	h->mount_setattr = !(syscall(SYS_mount_setattr, -1, "", 0, NULL, 0) < 0 && errno == ENOSYS);

	unsigned int action = SECCOMP_RET_ERRNO;
	const struct sock_fprog *prog;
	struct fl_err ferr;
	if (syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action))
		snprintf(h->seccomp_why, sizeof h->seccomp_why, "the kernel has no seccomp filters: %s",
			 strerror(errno));
	else if (sb__filter_get(0, &prog, &ferr))
		snprintf(h->seccomp_why, sizeof h->seccomp_why, "%s", ferr.msg);
	else
		h->seccomp = 1;

	const unsigned long ns = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC |
				 CLONE_NEWUTS | CLONE_NEWCGROUP;
	int rc;
	if (!read_int("/proc/sys/user/max_user_namespaces", &v) && v == 0)
		snprintf(h->userns_why, sizeof h->userns_why,
			 "user namespaces are disabled (sysctl user.max_user_namespaces = 0)");
	else if (!h->root && !read_int("/proc/sys/kernel/unprivileged_userns_clone", &v) && v == 0)
		snprintf(h->userns_why, sizeof h->userns_why,
			 "unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone = 0)");
	else if ((rc = try_clone(ns)))
		snprintf(h->userns_why, sizeof h->userns_why, "cannot create user, PID, mount, IPC, UTS and cgroup namespaces: %s%s",
			 strerror(-rc),
			 !h->root && !read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", &v) && v
				 ? " (sysctl kernel.apparmor_restrict_unprivileged_userns = 1)" : "");
	else
		h->userns = 1;
	if (h->userns) {
		if ((rc = try_clone(CLONE_NEWUSER | CLONE_NEWNET)))
			snprintf(h->netns_why, sizeof h->netns_why, "cannot create a network namespace: %s",
				 strerror(-rc));
		else
			h->netns = 1;
	} else {
		snprintf(h->netns_why, sizeof h->netns_why, "%s", h->userns_why);
	}

	probe_cgroup(h, flags);

	if (!h->userns)
		snprintf(h->sandbox_why, sizeof h->sandbox_why, "%s", h->userns_why);
	else if (!h->seccomp)
		snprintf(h->sandbox_why, sizeof h->sandbox_why, "%s", h->seccomp_why);
	else if (flags & SB_PROBE_NO_TRIAL)
		h->sandbox = 1;
	else {
		/* The trial goes through the real spawn path, which refuses until this is set. A
		 * root copied from a tree is tried first: where the kernel takes the copy but not
		 * its move into the sandbox, sandboxes bind their roots themselves. */
		h->sandbox = 1;
		h->mount_tree = 1;
		int failed = trial_sandbox(h, 0, h->sandbox_why, sizeof h->sandbox_why);
		if (failed && h->mount_tree) {
			h->mount_tree = 0;
			failed = trial_sandbox(h, 0, h->sandbox_why, sizeof h->sandbox_why);
		}
		if (failed)
			h->sandbox = 0;
		else
			h->sandbox_why[0] = '\0';
		if (h->sandbox && h->netns) {
			char why[sizeof h->netns_why];
			if (trial_sandbox(h, SB_NET, why, sizeof why)) {
				h->netns = 0;
				snprintf(h->netns_why, sizeof h->netns_why, "%s", why);
			}
		}
	}
	(void)err;
	return 0;
}

/* A mode refused for what the host lacks. */
static int cannot_run(struct fl_err *err, const char *mode, const char *lack, const char *why)
{
	return fl_err_set(err, FL_EUNSUPPORTED, "AP_EXECUTION_MODE=%s cannot run on this host: %s: %s",
			  mode, lack, why);
}

int sb_host_check(const struct sb_host *h, int execution_mode, int network_mode, struct fl_err *err)
{
	const char *mode = fl_execution_mode_name((enum fl_execution_mode)execution_mode);
	switch (execution_mode) {
	case FL_EXEC_UNSANDBOXED:
		return 0;
	case FL_EXEC_SANDBOX_CODE_ONLY:
		if (!h->seccomp)
			return cannot_run(err, mode, "it needs seccomp", h->seccomp_why);
		return 0;
	case FL_EXEC_SANDBOX_PROCESS:
	case FL_EXEC_SANDBOX_CODE_AND_PROCESS:
		if (!h->userns)
			return cannot_run(err, mode, "it needs user namespaces", h->userns_why);
		if (!h->seccomp)
			return cannot_run(err, mode, "it needs seccomp", h->seccomp_why);
		if (!h->cgroup)
			return cannot_run(err, mode,
					  "it needs a cgroup with the memory controller (cgroup delegation)",
					  h->cgroup_why);
		if (!h->sandbox)
			return cannot_run(err, mode, "a trial sandbox failed", h->sandbox_why);
		if (network_mode == FL_NET_STRICT && !h->netns)
			return fl_err_set(err, FL_EUNSUPPORTED,
					  "AP_EXECUTION_MODE=%s with AP_NETWORK_MODE=STRICT cannot run on this host: it needs a network namespace: %s",
					  mode, h->netns_why);
		return 0;
	}
	return fl_err_set(err, FL_EINVAL, "unknown execution mode %d", execution_mode);
}

json_t *sb_host_json(const struct sb_host *h)
{
	json_t *o = json_object();
	json_object_set_new(o, "root", json_boolean(h->root));
	json_object_set_new(o, "userNamespaces", json_boolean(h->userns));
	json_object_set_new(o, "networkNamespace", json_boolean(h->netns));
	json_object_set_new(o, "seccomp", json_boolean(h->seccomp));
	json_object_set_new(o, "cgroup", json_integer(h->cgroup));
	json_object_set_new(o, "cgroupDir", json_string(h->cgroup_dir));
	json_object_set_new(o, "cgroupPids", json_boolean(h->cgroup_pids));
	json_object_set_new(o, "memoryPeak", json_boolean(h->memory_peak));
	json_object_set_new(o, "oomCount", json_boolean(h->oom_count));
	json_object_set_new(o, "mountSetattr", json_boolean(h->mount_setattr));
	json_object_set_new(o, "mountTree", json_boolean(h->mount_tree));
	json_object_set_new(o, "sandbox", json_boolean(h->sandbox));
	json_t *why = json_object();
	if (h->userns_why[0])
		json_object_set_new(why, "userNamespaces", json_string(h->userns_why));
	if (h->netns_why[0])
		json_object_set_new(why, "networkNamespace", json_string(h->netns_why));
	if (h->seccomp_why[0])
		json_object_set_new(why, "seccomp", json_string(h->seccomp_why));
	if (h->cgroup_why[0])
		json_object_set_new(why, "cgroup", json_string(h->cgroup_why));
	if (h->sandbox_why[0])
		json_object_set_new(why, "sandbox", json_string(h->sandbox_why));
	json_object_set_new(o, "missing", why);
	return o;
}
