/* Sandbox start-up cost: the time from asking for a sandbox to the reaped exit of a trivial
 * payload (/bin/true), for sb_spawn with and without a network namespace (new or reused), for
 * a spawn through the zygote, next to Debian's bubblewrap doing the same (a read-only /usr, a
 * fresh /proc, /dev and /tmp, all namespaces) and to a plain fork+exec. The cases run in
 * rotation, so that load from elsewhere on the machine hits them alike; the median and 90th
 * percentile of each are printed with their ratios.
 *
 * usage: bench_sandbox [ROUNDS] [ZYGOTE_HELPER] */
#include "core/alloc.h"
#include "core/err.h"
#include "core/time.h"
#include "sandbox/host.h"
#include "sandbox/root.h"
#include "sandbox/sandbox.h"
#include "sandbox/zygote.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

enum { C_FORK, C_BWRAP_NONET, C_BWRAP, C_SB, C_SB_NET, C_SB_NETNS, C_ZYGOTE, C_PRE, C_PRE_ZYGOTE, C_N };
static const char *const names[C_N] = {
	[C_FORK] = "fork+exec (no sandbox)",
	[C_BWRAP_NONET] = "bwrap --unshare-all --share-net",
	[C_BWRAP] = "bwrap --unshare-all",
	[C_SB] = "sb_spawn",
	[C_SB_NET] = "sb_spawn SB_NET (new netns)",
	[C_SB_NETNS] = "sb_spawn SB_NET (slot netns)",
	[C_ZYGOTE] = "sb_zygote_spawn (exec)",
	[C_PRE] = "pre-started: job only (sb_pending_run)",
	[C_PRE_ZYGOTE] = "pre-started via zygote: job only",
};

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static int64_t run_plain(char *const argv[], int devnull)
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, devnull, 1);
	posix_spawn_file_actions_adddup2(&fa, devnull, 2);
	int64_t t0 = fl_mono_us();
	pid_t pid;
	if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ))
		return -1;
	int status;
	waitpid(pid, &status, 0);
	int64_t t = fl_mono_us() - t0;
	posix_spawn_file_actions_destroy(&fa);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? t : -1;
}

/* pre: the sandbox is pre-started before the clock starts (its set-up is reported apart), and
 * the time is that of the job alone. */
static int64_t run_sb(const struct sb_opts *opts, struct sb_zygote *z, int pre, int devnull,
		      int64_t *release_us, int64_t *prestart_us)
{
	char *argv[] = { "/bin/true", NULL };
	int fds[3] = { devnull, devnull, devnull };
	struct sb_child child;
	struct fl_err err;
	struct sb_pending *pending = NULL;
	if (pre) {
		int64_t p0 = fl_mono_us();
		int rc = z ? sb_zygote_prestart(z, opts, &pending, &err) : sb_prestart(opts, &pending, &err);
		if (rc) {
			fprintf(stderr, "bench_sandbox: %s\n", err.msg);
			return -1;
		}
		*prestart_us = fl_mono_us() - p0;
	}
	int64_t t0 = fl_mono_us();
	int rc = pre ? sb_pending_run(pending, argv, NULL, fds, 3, &child, &err)
		 : z ? sb_zygote_spawn(z, opts, argv, fds, 3, &child, &err)
		     : sb_spawn(opts, argv, fds, 3, &child, &err);
	if (rc) {
		fprintf(stderr, "bench_sandbox: %s\n", err.msg);
		return -1;
	}
	struct sb_exit ex;
	sb_child_wait(&child, -1, &ex);
	int64_t t = fl_mono_us() - t0;
	int64_t t1 = fl_mono_us();
	sb_child_release(&child);
	*release_us = fl_mono_us() - t1;
	return ex.exited && ex.code == 0 ? t : -1;
}

int main(int argc, char **argv)
{
	fl_alloc_init();
	int rounds = argc > 1 ? atoi(argv[1]) : 300;
	const char *zygote_helper = argc > 2 ? argv[2] : NULL;
	struct fl_err err;
	struct sb_host host;
	sb_host_probe(&host, 0, &err);
	if (!host.sandbox) {
		printf("sandbox: not available on this host: %s\n", host.sandbox_why);
		return 0;
	}
	struct sb_root *root = sb_root_new();
	if (sb_root_add_exec(root, "/bin/true", &err)) {
		fprintf(stderr, "bench_sandbox: %s\n", err.msg);
		return 1;
	}
	struct sb_opts opts, opts_net, opts_netns;
	sb_opts_init(&opts, &host, root);
	opts.limits.memory_bytes = host.cgroup ? opts.limits.memory_bytes : 0;
	opts_net = opts;
	opts_net.flags |= SB_NET;
	opts_netns = opts_net;
	if (sb_netns_new(&opts_netns.netns_fd, &err)) {
		fprintf(stderr, "bench_sandbox: %s\n", err.msg);
		return 1;
	}
	struct sb_zygote *z = NULL;
	if (zygote_helper) {
		char *zargv[] = { (char *)zygote_helper, "--exec", NULL };
		if (sb_zygote_new(zargv, &host, root, &z, &err)) {
			fprintf(stderr, "bench_sandbox: %s\n", err.msg);
			return 1;
		}
	}
	int have_bwrap = access("/usr/bin/bwrap", X_OK) == 0;
	char *bwrap_common[] = { "/usr/bin/bwrap", "--unshare-all", "--ro-bind", "/usr", "/usr",
				 "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
				 "--symlink", "usr/bin", "/bin", "--proc", "/proc", "--dev", "/dev",
				 "--tmpfs", "/tmp", "--die-with-parent", "/bin/true", NULL };
	char *bwrap_nonet[32];
	int k = 0;
	bwrap_nonet[k++] = bwrap_common[0];
	bwrap_nonet[k++] = "--unshare-all";
	bwrap_nonet[k++] = "--share-net";
	for (int i = 2; bwrap_common[i]; i++)
		bwrap_nonet[k++] = bwrap_common[i];
	bwrap_nonet[k] = NULL;
	char *plain[] = { "/bin/true", NULL };
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);

	int64_t *t[C_N], release[C_N], prestart[C_N];
	int n[C_N];
	for (int c = 0; c < C_N; c++) {
		t[c] = fl_calloc((size_t)rounds, sizeof **t);
		n[c] = 0;
		release[c] = 0;
		prestart[c] = 0;
	}
	for (int r = -5; r < rounds; r++) { /* five rounds of warm-up */
		for (int c = 0; c < C_N; c++) {
			int64_t v = -1, rel = 0, pre = 0;
			switch (c) {
			case C_FORK: v = run_plain(plain, devnull); break;
			case C_BWRAP_NONET: if (have_bwrap) v = run_plain(bwrap_nonet, devnull); break;
			case C_BWRAP: if (have_bwrap) v = run_plain(bwrap_common, devnull); break;
			case C_SB: v = run_sb(&opts, NULL, 0, devnull, &rel, &pre); break;
			case C_SB_NET: if (host.netns) v = run_sb(&opts_net, NULL, 0, devnull, &rel, &pre); break;
			case C_SB_NETNS: v = run_sb(&opts_netns, NULL, 0, devnull, &rel, &pre); break;
			case C_ZYGOTE: if (z) v = run_sb(&opts, z, 0, devnull, &rel, &pre); break;
			case C_PRE: v = run_sb(&opts, NULL, 1, devnull, &rel, &pre); break;
			case C_PRE_ZYGOTE: if (z) v = run_sb(&opts, z, 1, devnull, &rel, &pre); break;
			}
			if (r >= 0 && v >= 0) {
				t[c][n[c]++] = v;
				release[c] += rel;
				prestart[c] += pre;
			}
		}
	}
	for (int c = 0; c < C_N; c++)
		qsort(t[c], (size_t)n[c], sizeof **t, cmp_i64);
#define MED(c) (n[c] ? (double)t[c][n[c] / 2] : 0)
	printf("(a) sandbox set-up + exec of /bin/true until its exit is reaped; %d rounds, cases in rotation\n", rounds);
	printf("    cgroup v%d memory limit on sb_* cases; release (kill, reap, cgroup removal) measured apart\n", host.cgroup);
	printf("    %-34s %9s %9s %10s %10s %10s\n", "case", "median", "p90", "x fork", "x bwrap", "release");
	for (int c = 0; c < C_N; c++) {
		if (!n[c]) {
			printf("    %-34s %9s\n", names[c], "n/a");
			continue;
		}
		int peer = (c == C_SB_NET || c == C_SB_NETNS || c == C_BWRAP) ? C_BWRAP : C_BWRAP_NONET;
		char vs_bwrap[16] = "-";
		if (c != C_FORK && c != C_BWRAP && c != C_BWRAP_NONET && n[peer])
			snprintf(vs_bwrap, sizeof vs_bwrap, "%.2f", MED(c) / MED(peer));
		char rel[16] = "-";
		if (c >= C_SB)
			snprintf(rel, sizeof rel, "%.0f us", (double)release[c] / n[c]);
		printf("    %-34s %6.0f us %6.0f us %10.2f %10s %10s\n", names[c], MED(c),
		       (double)t[c][n[c] * 9 / 10], MED(c) / MED(C_FORK), vs_bwrap, rel);
		if (c >= C_PRE)
			printf("    %-34s %6.0f us (mean, off the job's path)\n", "  its pre-start", (double)prestart[c] / n[c]);
	}
	int ok = n[C_SB] && MED(C_SB) <= 2000 && (!n[C_BWRAP_NONET] || MED(C_SB) <= MED(C_BWRAP_NONET));
	printf("    target: sb_spawn <= 2 ms and no slower than bwrap (no net) -> %s\n", ok ? "met" : "NOT met");
	sb_zygote_free(z);
	sb_root_free(root);
	return 0;
}
