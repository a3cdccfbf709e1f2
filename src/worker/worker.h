/* The worker (shared/DESIGN.md §1, §5): AP_WORKER_CONCURRENCY slots on the BullMQ queue, each
 * running one flow-run job at a time in an engine process spoken to over pipes
 * (engine/proto.h), with the run's context, checkpoints and result exchanged with the app over
 * HTTP (app/engine_api.h). The worker holds no state of its own: a killed worker loses nothing,
 * because its jobs are requeued and replayed from what the app persisted. */
#ifndef WK_WORKER_H
#define WK_WORKER_H

#include "worker/app_client.h"

#include <stdint.h>

struct fl_buf;
struct fl_config;
struct fl_err;

struct wk_worker_opts {
	const struct fl_config *cfg; /* borrowed for the worker's life */
	const char *redis_url;       /* AP_REDIS_URL, or the embedded server's */
	const char *jwt_secret;      /* shared with the app */
	const char *engine_exe;      /* the flowd binary to run as `flowd engine`; NULL: ours */
	/* The app in the same process (flowd serve), reached without HTTP; NULL: AP_APP_URL. */
	wk_app_local_fn app_local;
	void *app_local_arg;
};

struct wk_worker;

/* Checks what the execution mode needs, connects to Redis and starts the slots. Returns 0 and
 * sets *out, or a negative code with err set; nothing is left running on failure. */
int wk_worker_new(const struct wk_worker_opts *opts, struct wk_worker **out, struct fl_err *err);

/* Graceful stop: fetch nothing more, give running jobs up to grace_ms, then kill their engines
 * and hand the jobs back to the queue at once. Returns how many were handed back. */
int wk_worker_stop(struct wk_worker *w, int grace_ms);
void wk_worker_free(struct wk_worker *w);

/* True while the worker reaches Redis. */
int wk_worker_healthy(struct wk_worker *w);

/* Appends the worker's Prometheus metrics (flowd_worker_*) to out. */
void wk_worker_metrics(struct wk_worker *w, struct fl_buf *out);

/* Resolves the JWT secret: AP_JWT_SECRET, else the file `jwt_secret` under AP_CONFIG_PATH that
 * the app generated; create says whether to generate the file if it is missing. Returns a heap
 * string, or NULL with err set. */
char *wk_jwt_secret(const struct fl_config *cfg, int create, struct fl_err *err);

#endif
