/* Sandbox start-up cost: the time from asking for a sandbox to the reaped exit of a trivial
 * payload (/bin/true), for sb_spawn with and without a network namespace (new or reused), for
 * a spawn through the zygote and for the job alone on a pre-started sandbox, next to Debian's
 * bubblewrap doing the same (a read-only /usr, a fresh /proc, /dev and /tmp, all namespaces)
 * and to a plain fork+exec. The cases run in rotation, so that load from elsewhere on the
 * machine hits them alike; the median and 90th percentile of each are printed with their
 * ratios. Cases that create a network namespace run in a second phase of their own: tearing
 * one down keeps RCU busy for milliseconds, which slows whatever runs next (a cgroup migration
 * waits for an RCU grace period), and would charge one case for another's namespace.
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
#include <sys/resource.h>
#include <sys/syscall.h>
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

/* CPU time of the calling thread, µs. */
static int64_t thread_cpu_us(void)
{
	struct rusage ru;
	getrusage(RUSAGE_THREAD, &ru);
	return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
	       ru.ru_stime.tv_usec;
}

/* CPU time the last case used, ours and its processes': unlike wall time, it hardly depends on
 * what else the machine runs. */
static int64_t last_cpu_us;

static int64_t run_plain(char *const argv[], int devnull)
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, devnull, 1);
	posix_spawn_file_actions_adddup2(&fa, devnull, 2);
	int64_t t0 = fl_mono_us(), c0 = thread_cpu_us();
	pid_t pid;
	if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ))
		return -1;
	int status;
	struct rusage ru;
	wait4(pid, &status, 0, &ru);
	int64_t t = fl_mono_us() - t0;
	last_cpu_us = thread_cpu_us() - c0 + (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
		      ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
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
	int64_t t0 = fl_mono_us(), c0 = thread_cpu_us();
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
	/* With a pre-started sandbox, its set-up CPU time is in ex.cpu_us too: it ran off the job's
	 * path but on the machine all the same. */
	last_cpu_us = thread_cpu_us() - c0 + ex.cpu_us;
	int64_t t1 = fl_mono_us();
	sb_child_release(&child);
	*release_us = fl_mono_us() - t1;
	return ex.exited && ex.code == 0 ? t : -1;
}

/* In a child: the one-time cost of sb_code_only_enter, and what the filter adds to a system call
 * (getppid, which the kernel answers at once), written to fd as two numbers in ns. */
static void code_only_child(int fd)
{
	enum { CALLS = 200000 };
	int64_t t0 = fl_mono_us();
	for (int i = 0; i < CALLS; i++)
		syscall(SYS_getppid);
	int64_t plain = fl_mono_us() - t0;
	struct sb_code_only_opts o;
	sb_code_only_opts_init(&o);
	struct fl_err err;
	t0 = fl_mono_us();
	if (sb_code_only_enter(&o, &err))
		_exit(1);
	int64_t enter = fl_mono_us() - t0;
	t0 = fl_mono_us();
	for (int i = 0; i < CALLS; i++)
		syscall(SYS_getppid);
	int64_t filtered = fl_mono_us() - t0;
	char line[64];
	int len = snprintf(line, sizeof line, "%lld %lld\n", (long long)enter * 1000,
			   (long long)((filtered - plain) * 1000 / CALLS));
	_exit(write(fd, line, (size_t)len) == len ? 0 : 1);
}

static void code_only_report(void)
{
	long long enter[15], per_call[15];
	int n = 0;
	for (int i = 0; i < 15; i++) {
		int p[2];
		if (pipe(p))
			return;
		pid_t pid = fork();
		if (pid == 0) {
			close(p[0]);
			code_only_child(p[1]);
		}
		close(p[1]);
		char buf[64] = "";
		ssize_t r = read(p[0], buf, sizeof buf - 1);
		close(p[0]);
		waitpid(pid, NULL, 0);
		if (r > 0 && sscanf(buf, "%lld %lld", &enter[n], &per_call[n]) == 2)
			n++;
	}
	if (!n)
		return;
	qsort(enter, (size_t)n, sizeof enter[0], cmp_i64);
	qsort(per_call, (size_t)n, sizeof per_call[0], cmp_i64);
	printf("    SANDBOX_CODE_ONLY: entering it once %.0f us (per engine, not per job); each system call\n"
	       "    costs %lld ns more under the filter, so a job making 1,000 of them pays %.0f us\n",
	       enter[n / 2] / 1000.0, per_call[n / 2], per_call[n / 2] * 1000 / 1000.0);
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

	int64_t *t[C_N], *cpu[C_N], release[C_N], prestart[C_N];
	int n[C_N];
	for (int c = 0; c < C_N; c++) {
		t[c] = fl_calloc((size_t)rounds, sizeof **t);
		cpu[c] = fl_calloc((size_t)rounds, sizeof **t);
		n[c] = 0;
		release[c] = 0;
		prestart[c] = 0;
	}
	static const int phases[2][C_N + 1] = {
		{ C_FORK, C_BWRAP_NONET, C_SB, C_SB_NETNS, C_ZYGOTE, C_PRE, C_PRE_ZYGOTE, -1 },
		{ C_FORK, C_BWRAP, C_SB_NET, -1 },
	};
	int64_t *fork_net = fl_calloc((size_t)rounds, sizeof(int64_t));
	int n_fork_net = 0;
	for (int ph = 0; ph < 2; ph++)
	for (int r = -5; r < rounds; r++) { /* five rounds of warm-up */
		for (int j = 0; phases[ph][j] >= 0; j++) {
			int c = phases[ph][j];
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
			if (r >= 0 && v >= 0 && ph == 1 && c == C_FORK) {
				fork_net[n_fork_net++] = v;
			} else if (r >= 0 && v >= 0) {
				cpu[c][n[c]] = last_cpu_us;
				t[c][n[c]++] = v;
				release[c] += rel;
				prestart[c] += pre;
			}
		}
	}
	qsort(fork_net, (size_t)n_fork_net, sizeof(int64_t), cmp_i64);
	for (int c = 0; c < C_N; c++) {
		qsort(t[c], (size_t)n[c], sizeof **t, cmp_i64);
		qsort(cpu[c], (size_t)n[c], sizeof **t, cmp_i64);
	}
#define MED(c) (n[c] ? (double)t[c][n[c] / 2] : 0)
	printf("(a) sandbox set-up + exec of /bin/true until its exit is reaped; %d rounds, cases in rotation\n", rounds);
	printf("    (cases making a new network namespace rotate in a second phase, with their own fork+exec: %.0f us)\n",
	       n_fork_net ? (double)fork_net[n_fork_net / 2] : 0.0);
	printf("    cgroup v%d memory limit on sb_* cases; root %s;\n", host.cgroup,
	       host.mount_tree ? "a copy of a mount tree built once" : "bound by each sandbox");
	printf("    release (kill, reap, cgroup removal, mount namespace teardown) measured apart\n");
	printf("    %-40s %9s %9s %8s %8s %9s %8s %9s\n", "case", "median", "p90", "x fork", "x bwrap",
	       "CPU", "x bwrap", "release");
	for (int c = 0; c < C_N; c++) {
		if (!n[c]) {
			printf("    %-40s %9s\n", names[c], "n/a");
			continue;
		}
		int peer = (c == C_SB_NET || c == C_SB_NETNS || c == C_BWRAP) ? C_BWRAP : C_BWRAP_NONET;
		char vs_bwrap[16] = "-", cpu_vs_bwrap[16] = "-";
		if (c != C_FORK && c != C_BWRAP && c != C_BWRAP_NONET && n[peer]) {
			snprintf(vs_bwrap, sizeof vs_bwrap, "%.2f", MED(c) / MED(peer));
			snprintf(cpu_vs_bwrap, sizeof cpu_vs_bwrap, "%.2f",
				 (double)cpu[c][n[c] / 2] / (double)cpu[peer][n[peer] / 2]);
		}
		char rel[16] = "-";
		if (c >= C_SB)
			snprintf(rel, sizeof rel, "%.0f us", (double)release[c] / n[c]);
		/* Each phase against its own fork+exec. */
		double base = (c == C_BWRAP || c == C_SB_NET) && n_fork_net ? (double)fork_net[n_fork_net / 2] : MED(C_FORK);
		printf("    %-40s %6.0f us %6.0f us %8.2f %8s %6.0f us %8s %9s\n", names[c], MED(c),
		       (double)t[c][n[c] * 9 / 10], MED(c) / base, vs_bwrap, (double)cpu[c][n[c] / 2],
		       cpu_vs_bwrap, rel);
		if (c >= C_PRE)
			printf("    %-40s %6.0f us (mean wall time, off the job's path)\n", "  its pre-start",
			       (double)prestart[c] / n[c]);
	}
	code_only_report();
	int ok = n[C_SB] && MED(C_SB) <= 2000 && (!n[C_BWRAP_NONET] || MED(C_SB) <= MED(C_BWRAP_NONET));
	printf("    target: sb_spawn <= 2 ms and no slower than bwrap (no net) -> %s (%.0f us)\n",
	       ok ? "met" : "NOT met", MED(C_SB));
	if (n[C_PRE])
		printf("    a job on a pre-started sandbox: %.0f us -> %s\n", MED(C_PRE), MED(C_PRE) <= 2000 ? "met" : "NOT met");
	sb_zygote_free(z);
	sb_root_free(root);
	return 0;
}
