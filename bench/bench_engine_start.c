/* Engine start-up per execution mode: the time from asking for an engine to the engine having
 * run the first step of a run (a CODE step, so JavaScriptCore is loaded and a context created and
 * evaluated), with the time to its "ready" line on the way. UNSANDBOXED execs `flowd engine`;
 * SANDBOX_PROCESS execs it in a fresh sandbox (sb_spawn) or forks it from a zygote that has
 * JavaScriptCore loaded (`flowd engine --zygote`). Cases run in rotation; medians are printed
 * with their cost over UNSANDBOXED. Then the same runs back to back give runs per second and per
 * core (CPU time of this process and its children) for a one-step flow, the engine side of (c).
 *
 * usage: bench_engine_start FLOWD [ROUNDS] */
#include "core/alloc.h"
#include "core/err.h"
#include "core/time.h"
#include "sandbox/host.h"
#include "sandbox/root.h"
#include "sandbox/sandbox.h"
#include "sandbox/zygote.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static const char op[] =
	"{\"type\":\"run\",\"runId\":\"RunBench0000000000001\",\"flowId\":\"bench\","
	"\"flowVersion\":{\"displayName\":\"bench\",\"trigger\":{\"name\":\"trigger\",\"type\":\"PIECE_TRIGGER\","
	"\"settings\":{\"pieceName\":\"@activepieces/piece-webhook\",\"pieceVersion\":\"0.1.0\","
	"\"triggerName\":\"catch_webhook\",\"input\":{}},"
	"\"nextAction\":{\"name\":\"code\",\"displayName\":\"code\",\"type\":\"CODE\",\"settings\":{"
	"\"input\":{\"n\":1},\"sourceCode\":{\"code\":\"export const code = async (inputs) => inputs.n + 1;\","
	"\"packageJson\":\"{}\"}}}}}}\n";

enum { C_PLAIN, C_SB, C_ZYGOTE, C_PRE_ZYGOTE, C_PRE_CODE, C_N };
static const char *const names[C_N] = {
	[C_PLAIN] = "UNSANDBOXED (exec flowd engine)",
	[C_SB] = "SANDBOX_PROCESS (sb_spawn, exec)",
	[C_ZYGOTE] = "SANDBOX_PROCESS (zygote fork)",
	[C_PRE_ZYGOTE] = "SANDBOX_PROCESS (zygote, pre-started)",
	[C_PRE_CODE] = "SANDBOX_CODE_AND_PROCESS (same)",
};

struct engine {
	pid_t pid;
	struct sb_child child;
	int sandboxed;
	int in, out;
	char buf[65536];
	size_t len;
};

/* Reads one line (without the newline) into line; 0, or -1 at EOF/timeout. */
static int read_line(struct engine *e, char *line, size_t size)
{
	for (;;) {
		char *nl = memchr(e->buf, '\n', e->len);
		if (nl) {
			size_t n = (size_t)(nl - e->buf);
			size_t c = n < size - 1 ? n : size - 1;
			memcpy(line, e->buf, c);
			line[c] = '\0';
			memmove(e->buf, nl + 1, e->len - n - 1);
			e->len -= n + 1;
			return 0;
		}
		struct pollfd pfd = { .fd = e->out, .events = POLLIN };
		if (poll(&pfd, 1, 20000) != 1)
			return -1;
		ssize_t r = read(e->out, e->buf + e->len, sizeof e->buf - e->len);
		if (r <= 0)
			return -1;
		e->len += (size_t)r;
	}
}

static char *const engine_env[] = { "LANG=C.UTF-8", "AP_LOG_LEVEL=error", NULL };

static int start(int c, const char *flowd, const struct sb_opts *opts, struct sb_zygote *z,
		 struct sb_pending *pending, int devnull, struct engine *e)
{
	int to[2], from[2];
	if (pipe2(to, O_CLOEXEC) || pipe2(from, O_CLOEXEC))
		return -1;
	memset(e, 0, sizeof *e);
	char *argv[] = { (char *)flowd, "engine", NULL };
	int rc = 0;
	struct fl_err err;
	if (c == C_PLAIN) {
		posix_spawn_file_actions_t fa;
		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_adddup2(&fa, to[0], 0);
		posix_spawn_file_actions_adddup2(&fa, from[1], 1);
		posix_spawn_file_actions_adddup2(&fa, devnull, 2);
		rc = posix_spawn(&e->pid, flowd, &fa, NULL, argv, engine_env);
		posix_spawn_file_actions_destroy(&fa);
	} else {
		int fds[3] = { to[0], from[1], devnull };
		rc = c == C_SB ? sb_spawn(opts, argv, fds, 3, &e->child, &err)
		     : c == C_ZYGOTE ? sb_zygote_spawn(z, opts, argv, fds, 3, &e->child, &err)
				     : sb_pending_run(pending, argv, engine_env, fds, 3, &e->child, &err);
		if (rc)
			fprintf(stderr, "bench_engine_start: %s\n", err.msg);
		e->sandboxed = 1;
	}
	close(to[0]);
	close(from[1]);
	e->in = to[1];
	e->out = from[0];
	return rc ? -1 : 0;
}

static void stop(struct engine *e)
{
	close(e->in);
	close(e->out);
	if (e->sandboxed) {
		sb_child_wait(&e->child, 5000, NULL);
		sb_child_release(&e->child);
	} else {
		waitpid(e->pid, NULL, 0);
	}
}

/* One run of the one-step flow: until the code step has finished, then to the end. */
static int one_run(struct engine *e, int64_t t0, int64_t *ready_us, int64_t *first_us)
{
	char line[65536];
	if (read_line(e, line, sizeof line) || !strstr(line, "\"ready\""))
		return -1;
	*ready_us = fl_mono_us() - t0;
	if (write(e->in, op, sizeof op - 1) != (ssize_t)(sizeof op - 1))
		return -1;
	for (;;) {
		if (read_line(e, line, sizeof line))
			return -1;
		if (strstr(line, "\"step_finished\"") && strstr(line, "\"name\":\"code\"")) {
			*first_us = fl_mono_us() - t0;
			if (!strstr(line, "\"status\":\"SUCCEEDED\""))
				return -1;
		}
		if (strstr(line, "\"ack\":true"))
			if (write(e->in, "{\"type\":\"ack\"}\n", 15) != 15)
				return -1;
		if (strstr(line, "\"type\":\"finished\""))
			return strstr(line, "\"status\":\"SUCCEEDED\"") ? 0 : -1;
	}
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static int64_t cpu_us_total(void)
{
	struct rusage self, kids;
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	return (int64_t)(self.ru_utime.tv_sec + self.ru_stime.tv_sec + kids.ru_utime.tv_sec +
			 kids.ru_stime.tv_sec) * 1000000 +
	       self.ru_utime.tv_usec + self.ru_stime.tv_usec + kids.ru_utime.tv_usec +
	       kids.ru_stime.tv_usec;
}

int main(int argc, char **argv)
{
	fl_alloc_init();
	if (argc < 2) {
		fprintf(stderr, "usage: bench_engine_start FLOWD [ROUNDS]\n");
		return 2;
	}
	char flowd[4096];
	if (!realpath(argv[1], flowd)) {
		fprintf(stderr, "bench_engine_start: '%s': %s\n", argv[1], strerror(errno));
		return 1;
	}
	int rounds = argc > 2 ? atoi(argv[2]) : 100;
	struct fl_err err;
	struct sb_host host;
	sb_host_probe(&host, 0, &err);
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	struct sb_root *root = sb_root_new();
	struct sb_opts opts, opts_code;
	struct sb_zygote *z = NULL;
	int sandbox = host.sandbox;
	if (sandbox) {
		if (sb_root_add_exec(root, flowd, &err) || sb_root_add_net_files(root, &err)) {
			fprintf(stderr, "bench_engine_start: %s\n", err.msg);
			return 1;
		}
		sb_opts_init(&opts, &host, root);
		opts.envp = engine_env;
		if (!host.cgroup)
			opts.limits.memory_bytes = 0;
		opts_code = opts;
		opts_code.flags |= SB_CODE_FILTER;
		char *zargv[] = { flowd, "engine", "--zygote", NULL };
		if (sb_zygote_new(zargv, &host, root, &z, &err)) {
			fprintf(stderr, "bench_engine_start: %s\n", err.msg);
			return 1;
		}
	} else {
		printf("    sandbox modes unavailable here: %s\n", host.sandbox_why);
	}
	int64_t *ready[C_N], *first[C_N];
	int n[C_N] = { 0 };
	for (int c = 0; c < C_N; c++) {
		ready[c] = fl_calloc((size_t)rounds, sizeof(int64_t));
		first[c] = fl_calloc((size_t)rounds, sizeof(int64_t));
	}
	for (int r = -3; r < rounds; r++) {
		for (int c = 0; c < C_N; c++) {
			if (c != C_PLAIN && !sandbox)
				continue;
			struct engine e;
			struct sb_pending *pending = NULL;
			/* The pool's sandbox is made before the job arrives, off the clock. */
			if (c >= C_PRE_ZYGOTE &&
			    sb_zygote_prestart(z, c == C_PRE_CODE ? &opts_code : &opts, &pending, &err)) {
				fprintf(stderr, "bench_engine_start: %s\n", err.msg);
				return 1;
			}
			int64_t t0 = fl_mono_us(), ru, fu;
			if (start(c, flowd, &opts, z, pending, devnull, &e)) {
				fprintf(stderr, "bench_engine_start: %s: cannot start the engine\n", names[c]);
				return 1;
			}
			if (one_run(&e, t0, &ru, &fu)) {
				fprintf(stderr, "bench_engine_start: %s: the run failed\n", names[c]);
				return 1;
			}
			stop(&e);
			if (r >= 0) {
				ready[c][n[c]] = ru;
				first[c][n[c]++] = fu;
			}
		}
	}
	printf("(b) engine start until its first step (a CODE step on JavaScriptCore) has run; %d rounds\n", rounds);
	printf("    %-36s %12s %14s %12s\n", "mode", "ready line", "first step", "over plain");
	for (int c = 0; c < C_N; c++) {
		if (!n[c])
			continue;
		qsort(ready[c], (size_t)n[c], sizeof(int64_t), cmp_i64);
		qsort(first[c], (size_t)n[c], sizeof(int64_t), cmp_i64);
		printf("    %-36s %9.2f ms %11.2f ms %9.2f ms\n", names[c], ready[c][n[c] / 2] / 1000.0,
		       first[c][n[c] / 2] / 1000.0, (first[c][n[c] / 2] - first[C_PLAIN][n[C_PLAIN] / 2]) / 1000.0);
	}
	printf("    (each first step here also starts the engine's JavaScriptCore VM; the worker starts and\n"
	       "    warms a process-mode engine before its job arrives, so the 5 ms target of SANDBOX_PROCESS\n"
	       "    is judged on the job's path by sandbox_service (b))\n");

	/* (c), engine side: fresh engine per run, runs back to back. */
	int runs = rounds;
	printf("(c) one-step runs back to back, a fresh engine each (worker, queue and app not included)\n");
	printf("    %-36s %10s %14s\n", "mode", "runs/s", "runs/s/core");
	for (int c = 0; c < C_N; c++) {
		if (c != C_PLAIN && !sandbox)
			continue;
		int64_t w0 = fl_mono_us(), c0 = cpu_us_total();
		for (int r = 0; r < runs; r++) {
			struct engine e;
			int64_t ru, fu;
			struct sb_pending *pending = NULL;
			if (c >= C_PRE_ZYGOTE &&
			    sb_zygote_prestart(z, c == C_PRE_CODE ? &opts_code : &opts, &pending, &err))
				return 1;
			if (start(c, flowd, &opts, z, pending, devnull, &e) || one_run(&e, fl_mono_us(), &ru, &fu))
				return 1;
			stop(&e);
		}
		double wall = (fl_mono_us() - w0) / 1e6, cpu = (cpu_us_total() - c0) / 1e6;
		printf("    %-36s %10.0f %14.0f\n", names[c], runs / wall, runs / cpu);
	}
	sb_zygote_free(z);
	sb_root_free(root);
	return 0;
}
