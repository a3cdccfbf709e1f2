/* JavaScript latency, all in one run:
 *  (b) one CODE step in a fresh JavaScriptCore context, in this warm process;
 *  (c) the same step the way Activepieces runs code unsandboxed: a fresh `node` process per
 *      step, and a fresh Node `vm` context in a warm node process;
 * plus, for the template engine, one step input of 5 plain-path templates (native path) and
 * one of 5 JavaScript templates (one fresh context). Prints median and p99 of each, and the
 * ratios of (c) to (b).
 * Usage: bench_js BENCH_DIR [runs] [node_runs] */
#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/time.h"
#include "engine/js.h"
#include "engine/template.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char step_code[] =
	"export const code = async (inputs) => {\n"
	"  const doubled = inputs.items.map((x) => x * 2);\n"
	"  const total = doubled.reduce((a, b) => a + b, 0);\n"
	"  return { total, count: doubled.length, label: `${inputs.name}:${total}` };\n"
	"};\n";
static const char step_inputs[] = "{\"items\":[1,2,3,4,5,6,7,8,9,10],\"name\":\"bench\"}";

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

struct stats {
	double median_us, p99_us;
};

static struct stats summarize(int64_t *ns, int n)
{
	qsort(ns, (size_t)n, sizeof *ns, cmp_i64);
	int p99 = (int)((n - 1) * 0.99 + 0.5);
	return (struct stats){ ns[n / 2] / 1000.0, ns[p99] / 1000.0 };
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct stats bench_code(struct js_runtime *rt, int runs)
{
	json_t *inputs = json_loads(step_inputs, 0, NULL);
	int64_t *ns = fl_malloc((size_t)runs * sizeof *ns);
	for (int i = -runs / 10; i < runs; i++) { /* the first tenth warms up, unmeasured */
		json_t *out = NULL;
		struct fl_err err;
		int64_t t0 = now_ns();
		int rc = js_run_code(rt, step_code, inputs, NULL, &out, NULL, &err);
		int64_t t1 = now_ns();
		if (rc || json_integer_value(json_object_get(out, "total")) != 110) {
			fprintf(stderr, "bench_js: code step failed: %s\n", err.msg);
			exit(1);
		}
		json_decref(out);
		if (i >= 0)
			ns[i] = t1 - t0;
	}
	json_decref(inputs);
	struct stats s = summarize(ns, runs);
	fl_free(ns);
	return s;
}

static struct stats bench_templates(struct js_runtime *rt, const char *input_json, int runs)
{
	json_t *scope = json_loads(
		"{\"trigger\":{\"body\":{\"user\":{\"name\":\"Ada\",\"email\":\"ada@example.com\"},"
		"\"items\":[{\"sku\":\"a1\",\"qty\":2},{\"sku\":\"b2\",\"qty\":1}],\"total\":31.5},"
		"\"headers\":{\"content-type\":\"application/json\"},\"queryParams\":{},"
		"\"method\":\"POST\"}}",
		0, NULL);
	json_t *input = json_loads(input_json, 0, NULL);
	int64_t *ns = fl_malloc((size_t)runs * sizeof *ns);
	for (int i = -runs / 10; i < runs; i++) {
		json_t *out = NULL;
		int64_t t0 = now_ns();
		int rc = eng_tmpl_resolve(rt, input, scope, &out, NULL);
		int64_t t1 = now_ns();
		if (rc) {
			fprintf(stderr, "bench_js: template resolution failed\n");
			exit(1);
		}
		json_decref(out);
		if (i >= 0)
			ns[i] = t1 - t0;
	}
	json_decref(input);
	json_decref(scope);
	struct stats s = summarize(ns, runs);
	fl_free(ns);
	return s;
}

/* Runs argv to completion with stdout captured into out (may be NULL). Returns the exit
 * status, or -1. */
static int run_process(char *const argv[], struct fl_buf *out)
{
	int fds[2];
	if (pipe(fds))
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(fds[1]);
	char buf[4096];
	ssize_t n;
	while ((n = read(fds[0], buf, sizeof buf)) > 0)
		if (out)
			fl_buf_add(out, buf, (size_t)n);
	close(fds[0]);
	int status;
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: bench_js BENCH_DIR [runs] [node_runs]\n");
		return 2;
	}
	const char *bench_dir = argv[1];
	int runs = argc > 2 ? atoi(argv[2]) : 2000;
	int node_runs = argc > 3 ? atoi(argv[3]) : 20;
	fl_alloc_init();
	struct js_runtime *rt = js_runtime_new(NULL);

	struct stats native = bench_templates(
		rt,
		"{\"name\":\"{{trigger.body.user.name}}\",\"email\":\"{{trigger.body.user.email}}\","
		"\"sku\":\"{{trigger.body.items[0].sku}}\",\"total\":\"{{trigger.body.total}}\","
		"\"greeting\":\"Hello {{trigger.body.user.name}}\"}",
		runs * 5);
	struct stats jstmpl = bench_templates(
		rt,
		"{\"name\":\"{{trigger.body.user.name.toUpperCase()}}\","
		"\"count\":\"{{trigger.body.items.length + 1}}\","
		"\"skus\":\"{{trigger.body.items.map(i => i.sku).join(',')}}\","
		"\"total\":\"{{trigger.body.total * 2}}\",\"flag\":\"{{ 1 < 2 }}\"}",
		runs);
	struct stats code = bench_code(rt, runs);
	js_runtime_free(rt);

	printf("template input, 5 plain paths (native):   median %8.1f us   p99 %8.1f us\n",
	       native.median_us, native.p99_us);
	printf("template input, 5 JS expressions:         median %8.1f us   p99 %8.1f us\n",
	       jstmpl.median_us, jstmpl.p99_us);
	printf("(b) code step, fresh JSC context:         median %8.1f us   p99 %8.1f us   (%d runs)\n",
	       code.median_us, code.p99_us, runs);

	/* (c) the same step in node */
	char dir[] = "/tmp/flowd-bench-js-XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	char step_path[256], runner[512], vm_runner[512];
	snprintf(step_path, sizeof step_path, "%s/step.mjs", dir);
	snprintf(runner, sizeof runner, "%s/node_step.mjs", bench_dir);
	snprintf(vm_runner, sizeof vm_runner, "%s/node_vm.mjs", bench_dir);
	write_file(step_path, step_code);

	char *node_argv[] = { "node", runner, step_path, (char *)step_inputs, NULL };
	struct fl_buf probe = FL_BUF_INIT;
	if (run_process(node_argv, &probe) != 0 || !strstr(probe.data, "110")) {
		printf("(c) node: not available (is node installed?); skipped\n");
		fl_buf_release(&probe);
		return 0;
	}
	fl_buf_release(&probe);
	int64_t *ns = fl_malloc((size_t)node_runs * sizeof *ns);
	for (int i = 0; i < node_runs; i++) {
		int64_t t0 = now_ns();
		if (run_process(node_argv, NULL) != 0) {
			fprintf(stderr, "bench_js: node step failed\n");
			return 1;
		}
		ns[i] = now_ns() - t0;
	}
	struct stats fresh = summarize(ns, node_runs);
	fl_free(ns);

	char runs_text[16];
	snprintf(runs_text, sizeof runs_text, "%d", runs);
	char *vm_argv[] = { "node", vm_runner, step_path, (char *)step_inputs, runs_text, NULL };
	struct fl_buf vm_out = FL_BUF_INIT;
	struct stats vm = { 0, 0 };
	if (run_process(vm_argv, &vm_out) != 0 ||
	    sscanf(vm_out.data, "%lf %lf", &vm.median_us, &vm.p99_us) != 2) {
		fprintf(stderr, "bench_js: node vm runner failed: %s\n", vm_out.data);
		return 1;
	}
	fl_buf_release(&vm_out);
	unlink(step_path);
	rmdir(dir);

	printf("(c) code step, fresh node process:        median %8.1f us   p99 %8.1f us   (%d runs)\n",
	       fresh.median_us, fresh.p99_us, node_runs);
	printf("(c) code step, fresh node vm context:     median %8.1f us   p99 %8.1f us   (%d runs)\n",
	       vm.median_us, vm.p99_us, runs);
	printf("ratio fresh node process / (b):           %8.1fx  (target >= 50x)\n",
	       fresh.median_us / code.median_us);
	printf("ratio fresh node vm context / (b):        %8.1fx\n", vm.median_us / code.median_us);
	printf("target (b) <= 1000 us: %s\n", code.median_us <= 1000 ? "met" : "MISSED");
	return 0;
}
