/* `flowd run FLOW.json [--payload FILE|JSON] [--json]`: runs one flow once in this process, with
 * no Redis and no app (DESIGN.md §1). The host keeps the store in memory and prints a line per
 * step as it finishes, or the run result with --json. */
#include "cmd/cmd.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/time.h"
#include "engine/engine.h"
#include "engine/flow.h"
#include "net/policy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct run_cli {
	const char *flow_path;
	const char *payload_arg;
	int json;
};

struct local_host {
	json_t *store;
	int color;
	int quiet;
};

static const char *color(const struct local_host *h, const char *code)
{
	return h->color ? code : "";
}

static const char *status_color(const char *status)
{
	if (!strcmp(status, "SUCCEEDED"))
		return "\033[32m";
	if (!strcmp(status, "PAUSED") || !strcmp(status, "RUNNING"))
		return "\033[33m";
	return "\033[31m";
}

static void format_duration(char *out, size_t size, int64_t us)
{
	if (us < 1000)
		snprintf(out, size, "%lld µs", (long long)us);
	else if (us < 10000000)
		snprintf(out, size, "%.1f ms", (double)us / 1000);
	else
		snprintf(out, size, "%.1f s", (double)us / 1e6);
}

static int on_finished(void *ctx, const struct eng_step_event *ev)
{
	struct local_host *h = ctx;
	if (h->quiet)
		return 0;
	const char *status = json_string_value(json_object_get(ev->record, "status"));
	if (!status)
		status = "?";
	char dur[32];
	format_duration(dur, sizeof dur, ev->duration_us);
	const char *mark = !strcmp(status, "SUCCEEDED") ? "✓" : !strcmp(status, "PAUSED") ? "‖"
												: "✗";
	printf("%s%s%s %-28s %s%-9s%s %s%10s%s", color(h, status_color(status)), mark,
	       color(h, "\033[0m"), ev->path, color(h, status_color(status)), status,
	       color(h, "\033[0m"), color(h, "\033[2m"), dur, color(h, "\033[0m"));
	const char *error = json_string_value(json_object_get(ev->record, "errorMessage"));
	if (error)
		printf("  %s%s%s", color(h, "\033[31m"), error, color(h, "\033[0m"));
	putchar('\n');
	/* What a code step printed, indented under its line. */
	for (const char *p = ev->console; p && *p;) {
		size_t n = strcspn(p, "\n");
		printf("    %s%.*s%s\n", color(h, "\033[2m"), (int)n, p, color(h, "\033[0m"));
		p += n + (p[n] == '\n');
	}
	fflush(stdout);
	return 0;
}

static int store_get(void *ctx, const char *key, json_t **value, struct fl_err *err)
{
	struct local_host *h = ctx;
	json_t *v = json_object_get(h->store, key);
	*value = v ? json_incref(v) : NULL;
	return 0;
}

static int store_put(void *ctx, const char *key, const json_t *value, struct fl_err *err)
{
	struct local_host *h = ctx;
	json_object_set_new(h->store, key, json_deep_copy(value));
	return 0;
}

static int store_delete(void *ctx, const char *key, struct fl_err *err)
{
	struct local_host *h = ctx;
	json_object_del(h->store, key);
	return 0;
}

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "flowd run: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nusage: flowd run FLOW.json [--payload FILE|JSON] [--json]\n");
	return 2;
}

static int parse_args(int argc, char **argv, struct run_cli *cli)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--json")) {
			cli->json = 1;
		} else if (!strcmp(a, "--payload")) {
			if (i + 1 >= argc)
				return usage_error("%s needs a file or a JSON value", a);
			cli->payload_arg = argv[++i];
		} else if (!strncmp(a, "--payload=", 10)) {
			cli->payload_arg = a + 10;
		} else if (a[0] == '-' && a[1]) {
			return usage_error("unknown option '%s'", a);
		} else if (!cli->flow_path) {
			cli->flow_path = a;
		} else {
			return usage_error("unexpected argument '%s'", a);
		}
	}
	if (!cli->flow_path)
		return usage_error("%s", "no flow file given");
	return 0;
}

/* The payload: standard input for "-", a file when one exists at arg, else inline JSON. */
static json_t *load_payload(const char *arg, struct fl_err *err)
{
	if (!strcmp(arg, "-")) {
		json_error_t je;
		json_t *v = json_loadf(stdin, JSON_DECODE_ANY, &je);
		if (!v)
			fl_err_set(err, FL_EINVAL, "payload on standard input is not valid JSON: "
						   "%d:%d: %s",
				   je.line, je.column, je.text);
		return v;
	}
	struct stat st;
	if (stat(arg, &st) == 0 && !S_ISDIR(st.st_mode))
		return fl_json_load_file(arg, err);
	json_error_t je;
	json_t *v = json_loads(arg, JSON_DECODE_ANY, &je);
	if (v)
		return v;
	/* Something that does not look like JSON was meant as a file name. */
	const char *p = arg;
	while (*p == ' ')
		p++;
	if (!strchr("{[\"-0123456789", *p) && strncmp(p, "true", 4) && strncmp(p, "false", 5) &&
	    strncmp(p, "null", 4)) {
		fl_err_set(err, -ENOENT, "cannot open '%s': %s", arg, strerror(ENOENT));
		return NULL;
	}
	fl_err_set(err, FL_EINVAL, "payload is not valid JSON: %d:%d: %s", je.line, je.column,
		   je.text);
	return NULL;
}

static void print_summary(const struct local_host *h, const json_t *result, int64_t us)
{
	const char *status = json_string_value(json_object_get(result, "status"));
	char dur[32];
	format_duration(dur, sizeof dur, us);
	printf("\n%srun %s%s in %s\n", color(h, status_color(status)), status, color(h, "\033[0m"),
	       dur);
	const json_t *failed = json_object_get(result, "failedStep");
	if (failed)
		printf("failed step %s: %s\n", json_string_value(json_object_get(failed, "name")),
		       json_string_value(json_object_get(failed, "message")));
	const json_t *resp = json_object_get(result, "response");
	if (resp) {
		char *body = fl_json_dump(json_object_get(resp, "body"));
		printf("response %lld %s\n",
		       (long long)json_integer_value(json_object_get(resp, "status")), body);
		free(body);
	}
	const json_t *wp = json_object_get(result, "waitpoint");
	if (wp) {
		const char *type = json_string_value(json_object_get(wp, "type"));
		const char *at = json_string_value(json_object_get(wp, "resumeAtIso"));
		printf("paused at %s (%s waitpoint%s%s); flowd run does not resume runs: push the "
		       "flow to the app for that\n",
		       json_string_value(json_object_get(wp, "stepName")), type,
		       at ? " until " : "", at ? at : "");
	}
}

int cmd_run(int argc, char **argv)
{
	struct run_cli cli = { 0 };
	int rc = parse_args(argc, argv, &cli);
	if (rc)
		return rc;

	struct fl_err err = { 0 };
	struct fl_config cfg;
	if (fl_config_load(&cfg, &err)) {
		fprintf(stderr, "flowd run: %s\n", err.msg);
		return 2;
	}
	fl_log_setup((enum fl_log_level)cfg.log_level, cfg.log_pretty);

	struct net_policy *policy = NULL;
	if (net_policy_from_config(&cfg, &policy, &err)) {
		fprintf(stderr, "flowd run: %s\n", err.msg);
		fl_config_release(&cfg);
		return 2;
	}
	struct eng_flow *flow = NULL;
	if (eng_flow_load_file(cli.flow_path, 0, &flow, &err)) {
		net_policy_free(policy);
		fprintf(stderr, "flowd run: %s\n", err.msg);
		fl_config_release(&cfg);
		return 2;
	}
	json_t *payload = NULL;
	if (cli.payload_arg) {
		payload = load_payload(cli.payload_arg, &err);
		if (!payload) {
			fprintf(stderr, "flowd run: --payload: %s\n", err.msg);
			eng_flow_free(flow);
			net_policy_free(policy);
			fl_config_release(&cfg);
			return 2;
		}
	}

	struct local_host lh = {
		.store = json_object(),
		.color = isatty(STDOUT_FILENO) && !getenv("NO_COLOR"),
		.quiet = cli.json,
	};
	struct eng_host host = {
		.ctx = &lh,
		.step_finished = on_finished,
		.store_get = store_get,
		.store_put = store_put,
		.store_delete = store_delete,
	};
	char run_id[22];
	fl_random_id(run_id);
	struct eng_run_opts opts = {
		.run_id = run_id,
		.flow_id = "local",
		.frontend_url = cfg.frontend_url,
		.trigger_output = payload,
		.log_size_limit = (int64_t)cfg.max_flow_run_log_size_mb * 1024 * 1024,
		.deadline_ms = fl_mono_ms() + (int64_t)cfg.flow_timeout_s * 1000,
	};
	struct eng_engine_opts eo = { .policy = policy };
	struct eng_engine *engine = eng_engine_new(&eo);
	json_t *result = NULL;
	enum eng_status status = ENG_INTERNAL_ERROR;
	int64_t t0 = fl_mono_us();
	rc = eng_run(engine, flow, &opts, &host, &result, &status, &err);
	int64_t us = fl_mono_us() - t0;
	int exit_code;
	if (rc) {
		fprintf(stderr, "flowd run: '%s': %s\n", cli.flow_path, err.msg);
		exit_code = 2;
	} else {
		if (cli.json) {
			char *text = fl_json_dump(result);
			puts(text);
			free(text);
		} else {
			print_summary(&lh, result, us);
		}
		exit_code = status == ENG_SUCCEEDED || status == ENG_PAUSED ? 0 : 1;
	}
	fflush(stdout);
	json_decref(result);
	json_decref(payload);
	json_decref(lh.store);
	eng_engine_free(engine);
	eng_flow_free(flow);
	net_policy_free(policy);
	fl_config_release(&cfg);
	return exit_code;
}
