/* Fuzzes the app's request parsing and routing: app_handle with a fuzzed method, target,
 * headers and body, against an app on an in-memory SQLite store with one flow and no queue (so
 * no sockets and no Redis). Input layout, lines separated by '\n':
 *   METHOD
 *   TARGET
 *   Name: value      (any number of header lines)
 *   (an empty line)
 *   BODY             (the rest, raw bytes)
 * Missing parts are empty. The harness checks that every answer is a valid HTTP status and, for
 * JSON answers, valid JSON; a crash or sanitizer report is a failure. */
#include "app/app.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "store/store.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The seed corpus (corpus/http/) uses this flow id, key and secret. */
#define FUZZ_FLOW "FuzzFlow0000000000001"
#define FUZZ_KEY "fuzz-api-key"
#define FUZZ_SECRET "fuzz-jwt-secret"

static struct app *app;
static struct store *st;
static struct fl_config cfg;

static void setup(void)
{
	fl_alloc_init();
	fl_log_setup(FL_LOG_FATAL, 0);
	memset(&cfg, 0, sizeof cfg);
	cfg.frontend_url = "http://localhost:8080";
	cfg.webhook_timeout_s = 1;
	cfg.max_flow_run_log_size_mb = 1;
	cfg.lock_duration_s = 30;
	cfg.stalled_interval_s = 30;
	cfg.flow_timeout_s = 600;
	cfg.config_path = "/nonexistent";
	cfg.queue_name = "workerJobs";
	cfg.redis_prefix = "bull";
	struct store_opts so = { .backend = STORE_SQLITE, .sqlite_path = ":memory:" };
	struct fl_err err = { 0 };
	st = store_open(&so, &err);
	if (!st || store_migrate(st, &err)) {
		fprintf(stderr, "fuzz_http: store: %s\n", err.msg);
		abort();
	}
	const char *def =
		"{\"displayName\":\"fuzz\",\"trigger\":{\"name\":\"trigger\",\"type\":"
		"\"PIECE_TRIGGER\",\"displayName\":\"t\",\"settings\":{\"pieceName\":"
		"\"@activepieces/piece-webhook\",\"pieceVersion\":\"0.1.0\",\"triggerName\":"
		"\"catch_webhook\",\"input\":{\"authType\":\"none\"}}}}";
	struct store_flow f = { .id = FUZZ_FLOW, .display_name = "fuzz",
				.version_id = "FuzzVersion0000000001", .definition = (char *)def,
				.created_at = 1 };
	if (store_flow_create(st, &f, &err)) {
		fprintf(stderr, "fuzz_http: flow: %s\n", err.msg);
		abort();
	}
	struct app_opts o = { .cfg = &cfg, .store = st, .queue = NULL, .api_key = FUZZ_KEY,
			      .jwt_secret = FUZZ_SECRET };
	app = app_new(&o, &err);
	if (!app)
		abort();
}

/* The next line of [*p, end) as a NUL-terminated copy (the caller frees it). */
static char *next_line(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *s = *p;
	const uint8_t *nl = memchr(s, '\n', (size_t)(end - s));
	const uint8_t *e = nl ? nl : end;
	*p = nl ? nl + 1 : end;
	size_t n = (size_t)(e - s);
	if (n && s[n - 1] == '\r')
		n--;
	char *line = fl_malloc(n + 1);
	memcpy(line, s, n);
	line[n] = '\0';
	return line;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!app)
		setup();
	const uint8_t *p = data, *end = data + size;
	char *method = next_line(&p, end);
	char *target = next_line(&p, end);
	struct app_header headers[32];
	char *lines[32];
	size_t n = 0;
	while (p < end) {
		char *line = next_line(&p, end);
		if (!*line) {
			fl_free(line);
			break;
		}
		if (n == 32) {
			fl_free(line);
			continue;
		}
		char *colon = strchr(line, ':');
		lines[n] = line;
		headers[n].name = line;
		headers[n].value = "";
		if (colon) {
			*colon = '\0';
			headers[n].value = colon + 1 + (colon[1] == ' ');
		}
		n++;
	}
	struct app_request req = { .method = method, .target = target, .headers = headers,
				   .n_headers = n, .body = (const char *)p,
				   .body_len = (size_t)(end - p) };
	struct app_response resp;
	app_handle(app, &req, &resp);
	if (resp.waiter)
		app_waiter_cancel(app, resp.waiter);
	if (resp.status < 100 || resp.status > 599)
		abort();
	if (resp.content_type && !strcmp(resp.content_type, "application/json") && resp.body) {
		json_t *v = json_loadb(resp.body, resp.body_len, JSON_DECODE_ANY, NULL);
		if (!v)
			abort();
		json_decref(v);
	}
	app_response_release(&resp);
	for (size_t i = 0; i < n; i++)
		fl_free(lines[i]);
	fl_free(method);
	fl_free(target);
	return 0;
}
