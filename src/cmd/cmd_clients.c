/* flowd flows and flowd runs: thin clients of the app's management API (app/client.h). They
 * parse options, make one request and print the answer (or the raw JSON with --json). */
#include "app/client.h"
#include "cmd/cmd.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/json.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct client_opts {
	int json;
	const char *id;
	const char *flow;
	const char *status;
	const char *limit;
	const char *cursor;
	const char *strategy;
	const char *positional[2];
	int n_positional;
};

/* Returns 0, or 2 after printing a usage error. */
static int parse(const char *cmd, int argc, char **argv, struct client_opts *o)
{
	memset(o, 0, sizeof *o);
	for (int i = 2; i < argc; i++) {
		const char *arg = argv[i];
		const char **slot = NULL;
		if (!strcmp(arg, "--json")) {
			o->json = 1;
			continue;
		}
		if (!strcmp(arg, "--id"))
			slot = &o->id;
		else if (!strcmp(arg, "--flow"))
			slot = &o->flow;
		else if (!strcmp(arg, "--status"))
			slot = &o->status;
		else if (!strcmp(arg, "--limit"))
			slot = &o->limit;
		else if (!strcmp(arg, "--cursor"))
			slot = &o->cursor;
		else if (!strcmp(arg, "--strategy"))
			slot = &o->strategy;
		if (slot) {
			if (i + 1 >= argc) {
				fprintf(stderr, "flowd %s: %s needs a value\n", cmd, arg);
				return 2;
			}
			*slot = argv[++i];
			continue;
		}
		if (arg[0] == '-' && arg[1]) {
			fprintf(stderr, "flowd %s: unknown option '%s'; see 'flowd help %s'\n", cmd, arg,
				cmd);
			return 2;
		}
		if (o->n_positional == 2) {
			fprintf(stderr, "flowd %s: unexpected argument '%s'\n", cmd, arg);
			return 2;
		}
		o->positional[o->n_positional++] = arg;
	}
	return 0;
}

/* Appends "&name=value" (URL-encoded) to b when value is set. */
static void add_query(struct fl_buf *b, const char *name, const char *value)
{
	if (!value)
		return;
	char *enc = curl_easy_escape(NULL, value, 0);
	fl_buf_addf(b, "%c%s=%s", strchr(b->data, '?') ? '&' : '?', name, enc ? enc : "");
	curl_free(enc);
}

/* Makes the call and prints an error for a failure; returns the exit code. */
static int call(const char *cmd, const char *method, const char *path, const json_t *body,
		int want_status, json_t **out)
{
	struct fl_config cfg;
	struct fl_err err = { 0 };
	*out = NULL;
	if (fl_config_load(&cfg, &err)) {
		fprintf(stderr, "flowd %s: %s\n", cmd, err.msg);
		return 2;
	}
	struct app_client c;
	if (app_client_init(&c, &cfg, &err)) {
		fprintf(stderr, "flowd %s: %s\n", cmd, err.msg);
		fl_config_release(&cfg);
		return 1;
	}
	long status = 0;
	int rc = app_client_call(&c, method, path, body, &status, out, &err);
	app_client_release(&c);
	fl_config_release(&cfg);
	if (rc) {
		fprintf(stderr, "flowd %s: %s\n", cmd, err.msg);
		return 1;
	}
	if (status != want_status && !(want_status == 200 && status == 201)) {
		const char *msg = json_string_value(json_object_get(*out, "error"));
		fprintf(stderr, "flowd %s: the app answered %ld: %s\n", cmd, status,
			msg ? msg : "(no message)");
		json_decref(*out);
		*out = NULL;
		return 1;
	}
	return 0;
}

static void print_json(const json_t *v)
{
	struct fl_buf b = FL_BUF_INIT;
	fl_json_write(&b, v, FL_JSON_INDENT);
	puts(b.data);
	fl_buf_release(&b);
}

int cmd_flows(int argc, char **argv)
{
	struct client_opts o;
	if (argc < 2) {
		cmd_print_usage(cmd_find("flows"));
		return 2;
	}
	if (parse("flows", argc, argv, &o))
		return 2;
	const char *sub = argv[1];
	json_t *out = NULL;
	int rc;
	if (!strcmp(sub, "push")) {
		if (o.n_positional != 1) {
			fprintf(stderr, "flowd flows push: expected one FILE\n");
			return 2;
		}
		struct fl_err err = { 0 };
		json_t *doc = fl_json_load_file(o.positional[0], &err);
		if (!doc) {
			fprintf(stderr, "flowd flows push: %s\n", err.msg);
			return 2;
		}
		char *path = o.id ? fl_asprintf("/v1/flows/%s", o.id) : fl_strdup("/v1/flows");
		rc = call("flows push", o.id ? "PUT" : "POST", path, doc, 200, &out);
		fl_free(path);
		json_decref(doc);
		if (!rc) {
			if (o.json)
				print_json(out);
			else
				app_client_print_flow(stdout, out);
		}
	} else if (!strcmp(sub, "ls")) {
		struct fl_buf p = FL_BUF_INIT;
		fl_buf_adds(&p, "/v1/flows");
		add_query(&p, "limit", o.limit);
		add_query(&p, "cursor", o.cursor);
		rc = call("flows ls", "GET", p.data, NULL, 200, &out);
		fl_buf_release(&p);
		if (!rc) {
			if (o.json)
				print_json(out);
			else
				app_client_print_flows(stdout, out);
		}
	} else {
		fprintf(stderr, "flowd flows: unknown subcommand '%s'; see 'flowd help flows'\n", sub);
		return 2;
	}
	json_decref(out);
	return rc;
}

int cmd_runs(int argc, char **argv)
{
	struct client_opts o;
	if (argc < 2) {
		cmd_print_usage(cmd_find("runs"));
		return 2;
	}
	if (parse("runs", argc, argv, &o))
		return 2;
	const char *sub = argv[1];
	json_t *out = NULL;
	int rc;
	if (!strcmp(sub, "ls")) {
		struct fl_buf p = FL_BUF_INIT;
		fl_buf_adds(&p, "/v1/flow-runs");
		add_query(&p, "flowId", o.flow);
		add_query(&p, "status", o.status);
		add_query(&p, "limit", o.limit);
		add_query(&p, "cursor", o.cursor);
		rc = call("runs ls", "GET", p.data, NULL, 200, &out);
		fl_buf_release(&p);
		if (!rc) {
			if (o.json)
				print_json(out);
			else
				app_client_print_runs(stdout, out);
		}
		json_decref(out);
		return rc;
	}
	if (strcmp(sub, "show") && strcmp(sub, "retry") && strcmp(sub, "cancel")) {
		fprintf(stderr, "flowd runs: unknown subcommand '%s'; see 'flowd help runs'\n", sub);
		return 2;
	}
	if (o.n_positional != 1) {
		fprintf(stderr, "flowd runs %s: expected one RUN_ID\n", sub);
		return 2;
	}
	char *id = curl_easy_escape(NULL, o.positional[0], 0);
	char cmdname[32];
	snprintf(cmdname, sizeof cmdname, "runs %s", sub);
	if (!strcmp(sub, "show")) {
		char *path = fl_asprintf("/v1/flow-runs/%s", id);
		rc = call(cmdname, "GET", path, NULL, 200, &out);
		fl_free(path);
	} else if (!strcmp(sub, "retry")) {
		const char *strategy = o.strategy ? o.strategy : "FROM_FAILED_STEP";
		json_t *body = json_pack("{s:s}", "strategy", strategy);
		char *path = fl_asprintf("/v1/flow-runs/%s/retry", id);
		rc = call(cmdname, "POST", path, body, 200, &out);
		fl_free(path);
		json_decref(body);
	} else {
		char *path = fl_asprintf("/v1/flow-runs/%s/cancel", id);
		json_t *body = json_object();
		rc = call(cmdname, "POST", path, body, 200, &out);
		json_decref(body);
		fl_free(path);
	}
	curl_free(id);
	if (!rc) {
		if (o.json)
			print_json(out);
		else if (!strcmp(sub, "show"))
			app_client_print_run(stdout, out);
		else
			printf("run %s is %s\n", json_string_value(json_object_get(out, "id")),
			       json_string_value(json_object_get(out, "status")));
	}
	json_decref(out);
	return rc;
}
