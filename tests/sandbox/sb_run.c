/* Test driver for the sandbox module: plays the worker. It probes the host, builds a root for
 * the payload, spawns it (directly or through a zygote) with the limits given on the command
 * line, waits, and prints how the sandbox ended as one JSON object on stdout's last line (the
 * payload's own output comes first, on the same stdout). The escape suite (run.py) drives it.
 *
 * usage: sb_run [options] -- PAYLOAD [ARGS...]
 *   --probe                print the host probe as JSON and exit
 *   --check MODE [STRICT]  run sb_host_check for an execution mode
 *   --bind SRC[:DST]       bind a host path (repeatable)
 *   --exec PATH            bind an executable and its libraries (default: the payload)
 *   --net | --netns-reuse  own network namespace (new, or made once by sb_netns_new)
 *   --deny-inet            seccomp refuses non-unix sockets
 *   --memory B --tmp B --fsize B --cpu S --procs N --files N
 *   --env K=V              payload environment (repeatable)
 *   --timeout-ms N         kill the sandbox after N ms of wall time
 *   --zygote HELPER        spawn through a zygote running HELPER (exec mode)
 *   --zygote-entry HELPER  same, with HELPER's in-process entry (no exec)
 *   --code-filter          SB_CODE_FILTER (zygote entry mode)
 *   --prestart             pre-start each sandbox (sb_prestart), then hand it the job; the
 *                          result tells whether the waiting sandbox held one of our fds
 *   --hold-pending S       with --prestart: write the waiting sandbox's pid to --pid-file and
 *                          wait S seconds before handing it the job
 *   --repeat N             run N sandboxes one after the other; report leaks
 *   --pid-file F           write "SANDBOX_PID ZYGOTE_PID" to F once the sandbox runs
 *   --unlink-before-spawn F  remove F after the root is built (a bind source that vanishes)
 *   --quiet                the payload's stdout goes to /dev/null
 *   --no-mount-tree        each sandbox binds its root itself, as where the kernel cannot
 *                          copy a detached mount tree */
#include "core/alloc.h"
#include "core/err.h"
#include "core/time.h"
#include "sandbox/host.h"
#include "sandbox/root.h"
#include "sandbox/sandbox.h"
#include "sandbox/zygote.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Cgroups of this spawner's sandboxes (src/sandbox names them <owner pid>-...): other flowd
 * workers on the host, other tests among them, have theirs in the same directory. */
static int count_own_cgroups(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -1;
	char prefix[32];
	int len = snprintf(prefix, sizeof prefix, "%d-", (int)getpid());
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, prefix, (size_t)len))
			n++;
	closedir(d);
	return n;
}

static int count_lines(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	int n = 0, c;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static int die(const char *what, const struct fl_err *err)
{
	json_t *o = json_pack("{s:b,s:{s:i,s:s}}", "ok", 0, "error", "code", err->code, "message", err->msg);
	char *s = json_dumps(o, JSON_COMPACT);
	printf("\n%s\n", s);
	free(s);
	json_decref(o);
	fprintf(stderr, "sb_run: %s: %s\n", what, err->msg);
	return 1;
}

int main(int argc, char **argv)
{
	fl_alloc_init();
	struct fl_err err;
	fl_err_clear(&err);
	struct sb_host host;
	const char *binds[64], *execs[16], *envs[64];
	int n_binds = 0, n_execs = 0, n_envs = 0;
	const char *zygote = NULL, *pid_file = NULL, *unlink_path = NULL;
	int entry = 0, netns_reuse = 0, repeat = 1, timeout_ms = -1, quiet = 0, probe = 0;
	int no_mount_tree = 0;
	int prestart = 0, held_fd = 0, hold_pending = 0;
	const char *check = NULL, *check_net = NULL;
	struct sb_limits lim;
	unsigned flags = 0;
	struct sb_opts defaults;
	sb_opts_init(&defaults, NULL, NULL);
	lim = defaults.limits;
	int i = 1;
	for (; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (!strcmp(a, "--probe")) probe = 1;
		else if (!strcmp(a, "--check") && v) { check = v; i++; if (i + 1 < argc && !strcmp(argv[i + 1], "STRICT")) { check_net = "STRICT"; i++; } }
		else if (!strcmp(a, "--bind") && v) { binds[n_binds++] = v; i++; }
		else if (!strcmp(a, "--exec") && v) { execs[n_execs++] = v; i++; }
		else if (!strcmp(a, "--env") && v) { envs[n_envs++] = v; i++; }
		else if (!strcmp(a, "--net")) flags |= SB_NET;
		else if (!strcmp(a, "--netns-reuse")) { flags |= SB_NET; netns_reuse = 1; }
		else if (!strcmp(a, "--deny-inet")) flags |= SB_DENY_INET;
		else if (!strcmp(a, "--code-filter")) flags |= SB_CODE_FILTER;
		else if (!strcmp(a, "--prestart")) prestart = 1;
		else if (!strcmp(a, "--hold-pending") && v) { hold_pending = atoi(v); i++; }
		else if (!strcmp(a, "--memory") && v) { lim.memory_bytes = atoll(v); i++; }
		else if (!strcmp(a, "--tmp") && v) { lim.tmp_bytes = atoll(v); i++; }
		else if (!strcmp(a, "--fsize") && v) { lim.file_size_bytes = atoll(v); i++; }
		else if (!strcmp(a, "--cpu") && v) { lim.cpu_seconds = atoi(v); i++; }
		else if (!strcmp(a, "--procs") && v) { lim.procs = atoi(v); i++; }
		else if (!strcmp(a, "--files") && v) { lim.open_files = atoi(v); i++; }
		else if (!strcmp(a, "--timeout-ms") && v) { timeout_ms = atoi(v); i++; }
		else if (!strcmp(a, "--zygote") && v) { zygote = v; i++; }
		else if (!strcmp(a, "--zygote-entry") && v) { zygote = v; entry = 1; i++; }
		else if (!strcmp(a, "--repeat") && v) { repeat = atoi(v); i++; }
		else if (!strcmp(a, "--pid-file") && v) { pid_file = v; i++; }
		else if (!strcmp(a, "--unlink-before-spawn") && v) { unlink_path = v; i++; }
		else if (!strcmp(a, "--quiet")) quiet = 1;
		else if (!strcmp(a, "--no-mount-tree")) no_mount_tree = 1;
		else {
			fprintf(stderr, "sb_run: unknown option '%s'\n", a);
			return 2;
		}
	}
	char **payload = argv + i;
	if (sb_host_probe(&host, 0, &err))
		return die("probe", &err);
	if (no_mount_tree)
		host.mount_tree = 0;
	if (probe) {
		char *s = json_dumps(sb_host_json(&host), JSON_INDENT(2));
		printf("%s\n", s);
		return 0;
	}
	if (check) {
		int mode = !strcmp(check, "UNSANDBOXED") ? 0 : !strcmp(check, "SANDBOX_CODE_ONLY") ? 1
			 : !strcmp(check, "SANDBOX_PROCESS") ? 2 : 3;
		int rc = sb_host_check(&host, mode, check_net ? 1 : 0, &err);
		printf("%s\n", rc ? err.msg : "ok");
		return rc ? 1 : 0;
	}
	if (!payload[0]) {
		fprintf(stderr, "sb_run: no payload\n");
		return 2;
	}

	struct sb_root *root = sb_root_new();
	if (!n_execs)
		execs[n_execs++] = payload[0];
	for (int k = 0; k < n_execs; k++)
		if (sb_root_add_exec(root, execs[k], &err))
			return die("root", &err);
	for (int k = 0; k < n_binds; k++) {
		char *src = fl_strdup(binds[k]);
		char *dst = strchr(src, ':');
		if (dst)
			*dst++ = '\0';
		if (sb_root_add(root, src, dst, 0, &err))
			return die("root", &err);
	}
	envs[n_envs] = NULL;

	struct sb_opts opts;
	sb_opts_init(&opts, &host, root);
	opts.flags = flags;
	opts.limits = lim;
	opts.envp = (char *const *)envs;
	if (!host.cgroup)
		opts.limits.memory_bytes = 0;
	if (netns_reuse && sb_netns_new(&opts.netns_fd, &err))
		return die("netns", &err);

	struct sb_zygote *z = NULL;
	if (zygote) {
		char *zargv[] = { (char *)zygote, entry ? "--entry" : "--exec", NULL };
		if (sb_zygote_new(zargv, &host, root, &z, &err))
			return die("zygote", &err);
	}

	if (unlink_path)
		unlink(unlink_path);
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	int fds[3] = { devnull, quiet ? devnull : 1, 2 };
	char cgdir[600];
	snprintf(cgdir, sizeof cgdir, "%s", host.cgroup_dir);
	int fds_before = 0, cgroups_before = 0, mounts_before = 0;
	int64_t spawn_us_total = 0;
	struct sb_exit ex;
	memset(&ex, 0, sizeof ex);
	int timed_out = 0;
	for (int r = 0; r < repeat; r++) {
		struct sb_child child;
		int64_t t0 = fl_mono_us();
		int rc;
		if (prestart) {
			/* A pipe of ours that the waiting sandbox must not keep open. */
			int canary[2];
			if (pipe2(canary, O_CLOEXEC))
				return 1;
			struct sb_pending *pending;
			rc = z ? sb_zygote_prestart(z, &opts, &pending, &err) : sb_prestart(&opts, &pending, &err);
			if (rc)
				return die("prestart", &err);
			close(canary[1]);
			char c;
			held_fd |= read(canary[0], &c, 1) != 0;
			close(canary[0]);
			if (hold_pending && pid_file) {
				FILE *f = fopen(pid_file, "we");
				fprintf(f, "%d %d\n", (int)sb_pending_pid(pending), z ? (int)sb_zygote_pid(z) : 0);
				fclose(f);
				sleep((unsigned)hold_pending);
			}
			rc = sb_pending_run(pending, payload, opts.envp, fds, 3, &child, &err);
		} else {
			rc = z ? sb_zygote_spawn(z, &opts, payload, fds, 3, &child, &err)
			       : sb_spawn(&opts, payload, fds, 3, &child, &err);
		}
		spawn_us_total += fl_mono_us() - t0;
		if (rc)
			return die("spawn", &err);
		if (pid_file) {
			char tmp[600];
			snprintf(tmp, sizeof tmp, "%s.tmp", pid_file);
			FILE *f = fopen(tmp, "we");
			fprintf(f, "%d %d\n", (int)child.pid, z ? (int)sb_zygote_pid(z) : 0);
			fclose(f);
			rename(tmp, pid_file);
		}
		rc = sb_child_wait(&child, timeout_ms, &ex);
		if (rc == FL_ETIMEOUT) {
			timed_out = 1;
			sb_child_kill(&child);
			rc = sb_child_wait(&child, -1, &ex);
		}
		if (rc) {
			fl_err_set(&err, rc, "wait: %s", fl_strerror(rc));
			return die("wait", &err);
		}
		sb_child_release(&child);
		/* Leaks are counted from after the first sandbox, which compiles the seccomp filter
		 * and freezes the root. */
		if (r == 0) {
			fds_before = count_dir("/proc/self/fd");
			cgroups_before = host.cgroup ? count_own_cgroups(cgdir) : 0;
			mounts_before = count_lines("/proc/self/mountinfo");
		}
	}
	fflush(stdout);
	json_t *o = json_pack("{s:b,s:b,s:i,s:i,s:b,s:b,s:I,s:I,s:b,s:I}", "ok", 1, "exited", ex.exited,
			      "code", ex.code, "signal", ex.signal, "oomKilled", ex.oom_killed,
			      "cpuLimit", ex.cpu_limit, "peakMemory", (json_int_t)ex.peak_memory_bytes,
			      "cpuUs", (json_int_t)ex.cpu_us, "timedOut", timed_out, "spawnUs",
			      (json_int_t)(spawn_us_total / repeat));
	if (prestart)
		json_object_set_new(o, "pendingHeldFd", json_boolean(held_fd));
	if (repeat > 1) {
		json_object_set_new(o, "fdsLeaked", json_integer(count_dir("/proc/self/fd") - fds_before));
		json_object_set_new(o, "cgroupsLeaked",
				    json_integer(host.cgroup ? count_own_cgroups(cgdir) - cgroups_before
							       : 0));
		json_object_set_new(o, "mountsLeaked",
				    json_integer(count_lines("/proc/self/mountinfo") - mounts_before));
	}
	sb_zygote_free(z);
	char *s = json_dumps(o, JSON_COMPACT);
	printf("\n%s\n", s);
	free(s);
	json_decref(o);
	if (opts.netns_fd >= 0)
		close(opts.netns_fd);
	sb_root_free(root);
	return 0;
}
