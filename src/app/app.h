/* The app (shared/DESIGN.md §4): the HTTP API on libmicrohttpd, the store behind it, the
 * producer side of the queue, schedule triggers, sync webhook waits and the reaper. It never
 * runs a flow: it enqueues EXECUTE_FLOW jobs and serves the workers that run them
 * (app/engine_api.h).
 *
 * Requests go through one function, app_handle, which knows nothing of sockets: the HTTP layer
 * (app.c) collects a request and calls it, and so does the fuzz target. */
#ifndef APP_H
#define APP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct bq_queue;
struct fl_buf;
struct fl_config;
struct fl_err;
struct store;

struct app_opts {
	const struct fl_config *cfg; /* borrowed for the app's life */
	struct store *store;         /* borrowed; migrated */
	struct bq_queue *queue;      /* borrowed; NULL: every enqueue fails (tests, fuzzing) */
	const char *api_key;         /* management bearer key */
	const char *jwt_secret;      /* engine token secret */
	int http_threads;            /* 0: 4 */
	int background;              /* start the scheduler, reaper and sync-wait threads */
	int reaper_interval_ms;      /* 0: half the reaper's grace, at most 5000 */
	int schedule_interval_ms;    /* 0: 500 */
};

struct app;

struct app *app_new(const struct app_opts *opts, struct fl_err *err);
/* Starts listening on cfg->port (and the background threads if asked). Returns 0, or a negative
 * code when the port cannot be bound. */
int app_listen(struct app *a, struct fl_err *err);
/* The port actually bound (useful when cfg->port was 0). */
int app_port(const struct app *a);
/* Graceful stop: stops accepting connections, gives sync webhook waits up to grace_ms to be
 * answered (then answers them 503), finishes requests in progress and joins every thread. */
void app_stop(struct app *a, int grace_ms);
void app_free(struct app *a);

/* ---- one request, without sockets ---- */

struct app_header {
	const char *name;
	const char *value;
};

struct app_request {
	const char *method;
	const char *target;               /* path and query as sent, percent-encoded */
	const struct app_header *headers; /* names in any case */
	size_t n_headers;
	const char *body;
	size_t body_len;
	int body_too_large;               /* the HTTP layer dropped a body over the limit */
	/* A caller in this process (the worker of flowd serve) that has its body as JSON already
	 * gives it here instead, borrowed, and the engine endpoints read it: body is then NULL
	 * and body_len the length of its compact JSON text, for the body limit. */
	const json_t *body_json;
	/* Set by a caller in this process: a JSON answer is left in app_response.json instead of
	 * being written out to body. */
	int json_reply;
};

struct app_waiter;

struct app_response {
	int status;
	char *content_type;               /* owned */
	struct app_header *headers;       /* owned, extra headers */
	size_t n_headers;
	char *body;                       /* owned */
	size_t body_len;
	json_t *json;                     /* owned: the JSON answer, for a json_reply request */
	int keep_json;                    /* the request asked for json_reply */
	/* Set when the answer is not ready (a sync webhook): the HTTP layer arms the waiter with
	 * app_waiter_arm and answers when it fires. */
	struct app_waiter *waiter;
};

/* Handles req and fills resp (which the caller releases with app_response_release). Never
 * fails: errors are responses. */
void app_handle(struct app *a, const struct app_request *req, struct app_response *resp);
void app_response_release(struct app_response *resp);

/* The body limit of a request for target, so that the HTTP layer can refuse early (413). */
size_t app_body_limit(const struct app *a, const char *target);

/* Arms a pending waiter: wake(ctx) runs once, from any thread, when the answer is ready (the
 * run responded, ended, or the wait timed out). Returns 1 if it was ready already, in which case
 * wake will not run. */
int app_waiter_arm(struct app *a, struct app_waiter *w, void (*wake)(void *ctx), void *ctx);
/* Moves the answer into resp and frees the waiter. Call once, after wake or after arm said
 * ready. */
void app_waiter_take(struct app *a, struct app_waiter *w, struct app_response *resp);
/* Gives up on a waiter that was never armed (the fuzz target, a failed suspend). */
void app_waiter_cancel(struct app *a, struct app_waiter *w);

/* Appends fn's Prometheus text to every GET /metrics (flowd serve: the metrics of the worker in
 * the same process). fn(arg, out) runs on an HTTP thread during a scrape. Setting NULL waits for
 * scrapes in progress, so that arg may be freed afterwards. */
void app_set_metrics_hook(struct app *a, void (*fn)(void *arg, struct fl_buf *out), void *arg);

/* Runs one pass of the scheduler or of the reaper now (tests drive them without threads). */
void app_schedule_tick(struct app *a, int64_t now_ms);
void app_reap(struct app *a, int64_t now_ms);

#endif
