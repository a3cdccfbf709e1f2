/* What the app's files share: the app struct, request helpers, response builders, metrics and
 * the sync-wait registry. Not part of the app's API (app.h). */
#ifndef APP_INT_H
#define APP_INT_H

#include "app/app.h"
#include "core/buf.h"
#include "store/store.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct fl_config;
struct MHD_Daemon;

/* ---- metrics ---- */

#define APP_STEP_BUCKETS 12
#define APP_HTTP_CODES 600

struct app_metrics {
	pthread_mutex_t mu;
	uint64_t http[APP_HTTP_CODES]; /* responses by status code */
	uint64_t step_buckets[APP_STEP_BUCKETS]; /* cumulative, by duration */
	uint64_t step_count;
	double step_sum_s;
	uint64_t runs_created[4]; /* by origin: webhook, schedule, retry, resume */
	uint64_t schedule_fired;
	uint64_t reaped;
	uint64_t requeued;
	/* More metrics appended to each scrape (flowd serve: its worker's). A scrape holds hook_mu
	 * while it runs the hook, so that clearing the hook waits for scrapes in progress. */
	pthread_mutex_t hook_mu;
	void (*hook)(void *arg, struct fl_buf *out);
	void *hook_arg;
};

enum app_origin { APP_ORIGIN_WEBHOOK, APP_ORIGIN_SCHEDULE, APP_ORIGIN_RETRY, APP_ORIGIN_RESUME };

void app_metrics_init(struct app_metrics *m);
void app_metrics_release(struct app_metrics *m);
void app_metrics_http(struct app_metrics *m, int status);
void app_metrics_step(struct app_metrics *m, double seconds);
void app_metrics_count(struct app_metrics *m, uint64_t *counter);
/* GET /metrics */
void app_metrics_render(struct app *a, struct app_response *resp);

/* ---- sync waits ---- */

struct app_waiter {
	struct app_waiter *next; /* in the registry's list */
	char run_id[64];
	int64_t deadline_ms;     /* monotonic */
	int64_t next_poll_ms;    /* monotonic: when to look in the store (another replica) */
	int done;
	int armed;
	int registered;
	void (*wake)(void *ctx);
	void *wake_ctx;
	struct app_response resp;
};

struct app_sync {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct app_waiter *list;
	int count;
};

/* Creates a registered waiter for run_id that times out after timeout_ms. */
struct app_waiter *app_sync_wait(struct app *a, const char *run_id, int64_t timeout_ms);
/* The run responded (response JSON) or ended (final != 0 and response NULL: 204): answers every
 * waiter of run_id. */
void app_sync_notify(struct app *a, const char *run_id, const json_t *response, int final);
/* Times out due waiters and polls the store for waiters of runs answered elsewhere. */
void app_sync_sweep(struct app *a);
/* Answers every waiter with 503 (shutdown). */
void app_sync_abort_all(struct app *a);

/* ---- the app ---- */

struct app_sched_entry;

/* Flows as webhooks need them, cached for a second: a webhook then costs no read of the store.
 * A change made through this app is seen at once; one made through another replica within
 * APP_FLOW_CACHE_MS. */
#define APP_FLOW_CACHE 128
#define APP_FLOW_CACHE_MS 1000

struct app_flow_entry {
	char id[64];
	char version_id[64];
	json_t *version; /* the version's JSON, never modified once cached */
	int64_t expires_ms; /* monotonic */
};

struct app {
	const struct fl_config *cfg;
	struct store *store;
	struct bq_queue *queue;
	char *api_key;
	char *jwt_secret;
	int http_threads;
	int background;
	int reaper_interval_ms;
	int schedule_interval_ms;
	size_t body_limit;
	size_t engine_body_limit;

	struct MHD_Daemon *daemon;
	int port;

	struct app_metrics metrics;
	struct app_sync sync;

	pthread_mutex_t flow_mu;
	struct app_flow_entry flows[APP_FLOW_CACHE];

	/* scheduler state: next tick per scheduled flow */
	pthread_mutex_t sched_mu;
	struct app_sched_entry *sched;
	int64_t sched_loaded_ms;

	pthread_t bg_thread;
	int bg_started;
	pthread_mutex_t bg_mu;
	pthread_cond_t bg_cv;
	int stopping;
};

/* ---- requests ---- */

struct app_req {
	const struct app_request *raw;
	char *path;             /* decoded path, without query */
	char *segs[8];          /* path segments, percent-decoded */
	int n_segs;
	json_t *query;          /* object: name -> last value */
	const char *content_type;
};

const char *app_req_header(const struct app_req *r, const char *name);
/* Parses the body as JSON into *out. An empty body is NULL with 0. FL_EINVAL with a message. */
int app_req_json(const struct app_req *r, json_t **out, struct fl_err *err);
int app_content_type_is_json(const char *ct);
/* The request's headers as an object with lower-cased names. */
json_t *app_req_headers_json(const struct app_req *r);

/* ---- responses ---- */

/* A JSON body; takes ownership of body (may be NULL for no body). */
void app_reply_json(struct app_response *resp, int status, json_t *body);
/* {"error": message} */
void app_reply_error(struct app_response *resp, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Maps a store/queue code to an HTTP status and replies with err's message. */
void app_reply_fail(struct app_response *resp, int code, const struct fl_err *err);
void app_response_add_header(struct app_response *resp, const char *name, const char *value);
/* Fills resp from a flow's {"status","headers","body"} response. */
void app_reply_flow_response(struct app_response *resp, const json_t *response);

/* ---- handlers ---- */

void app_api_flows(struct app *a, struct app_req *r, struct app_response *resp);
void app_api_runs(struct app *a, struct app_req *r, struct app_response *resp);
void app_api_webhook(struct app *a, struct app_req *r, struct app_response *resp);
void app_api_waitpoint(struct app *a, struct app_req *r, struct app_response *resp);
void app_api_engine(struct app *a, struct app_req *r, struct app_response *resp);

/* ---- shared run operations ---- */

/* Enqueues the EXECUTE_FLOW job of run. Returns 0 or a negative code. */
int app_enqueue(struct app *a, const char *job_id, const char *run_id, const char *flow_id,
		const char *flow_version_id, const char *execution_type, int synchronous,
		int64_t delay_ms, struct fl_err *err);
/* Builds the §5.4 steps object from a run's step records (merged by path, in order). */
json_t *app_steps_assemble(const struct store_step *steps, size_t n);
/* ISO 8601 string or null for 0. */
json_t *app_json_time(int64_t ms);
/* Parses the schedule of a flow's trigger. *cron is NULL (and 0 returned) when the trigger is
 * not a schedule; FL_EINVAL with a JSON path in err for a bad schedule. Strings are heap. */
int app_flow_schedule(const json_t *version, char **cron, char **tz, char **output,
		      struct fl_err *err);

/* The latest version of flow_id (id into version_id[64], JSON into *version, a new reference),
 * from the cache or the store. FL_ENOTFOUND for an unknown or deleted flow. */
int app_flow_lookup(struct app *a, const char *flow_id, char version_id[64], json_t **version,
		    struct fl_err *err);
/* Drops flow_id from the cache (it changed). */
void app_flow_forget(struct app *a, const char *flow_id);
/* Version version_id of flow_id as the cache holds it (a new reference), or NULL when the cache
 * holds another version or none. Versions never change, so it may be older than a lookup's. */
json_t *app_flow_version_cached(struct app *a, const char *flow_id, const char *version_id);

/* ---- background work ---- */

void app_schedule_release(struct app *a);
/* How long a run may sit unchanged before the reaper looks at its job. */
int64_t app_reaper_grace_ms(const struct fl_config *cfg);

void app_bg_start(struct app *a);
void app_bg_stop(struct app *a);

#endif
