/* BullMQ-compatible queue client (shared/BULLMQ.md): the same Redis keys, hash fields and event
 * stream entries as the npm `bullmq` package, so that Node producers, QueueEvents listeners,
 * dashboards and Node workers share a queue with flowd. Every transition is one of our own Lua
 * scripts (src/queue/lua/), loaded with SCRIPT LOAD and run by EVALSHA.
 *
 * Two handles:
 *   struct bq_queue   producer and operator side: add jobs, counts, list, retry, clean, pause.
 *                     Thread-safe (one connection behind a mutex).
 *   struct bq_worker  consumer side: one thread and one connection per slot, a blocking waiter
 *                     on the marker, one maintenance thread for lock renewal and stalled checks.
 *
 * Times are the client's wall clock in ms, as BullMQ records them. */
#ifndef BQ_H
#define BQ_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct fl_err;

/* ---- Redis address ------------------------------------------------------------------------ */

/* Where Redis is, parsed from AP_REDIS_URL. */
struct bq_redis_addr {
	char *host;     /* NULL for a unix socket */
	int port;       /* 6379 when the URL gives none */
	char *path;     /* unix socket path, or NULL */
	char *username; /* ACL user, or NULL */
	char *password; /* or NULL */
	int db;         /* SELECT index, 0 by default */
};

/* Parses "redis://[[user]:password@]host[:port][/db]" or "unix:///path[?db=N]". Percent-escapes
 * in the user and password are decoded. Returns 0, or FL_ECONFIG with a message naming the URL
 * (without its password). On success the caller releases addr with bq_redis_addr_release. */
int bq_redis_addr_parse(const char *url, struct bq_redis_addr *addr, struct fl_err *err);
void bq_redis_addr_release(struct bq_redis_addr *addr);

/* ---- Job options --------------------------------------------------------------------------- */

/* removeOnComplete / removeOnFail, in every form BullMQ accepts. */
enum bq_keep_kind {
	BQ_KEEP_DEFAULT = 0, /* option absent: the worker's setting applies, else keep every job */
	BQ_KEEP_ALL,         /* false: keep every finished job */
	BQ_KEEP_NONE,        /* true: delete the job as it finishes */
	BQ_KEEP_COUNT,       /* N: keep the newest `count` finished jobs */
	BQ_KEEP_LIMITS,      /* {count?, age?}: newest `count` (if >= 0), none older than age_s
			      * seconds (if >= 0) */
};

struct bq_keep {
	enum bq_keep_kind kind;
	int64_t count;
	int64_t age_s;
};

enum bq_backoff_type { BQ_BACKOFF_NONE = 0, BQ_BACKOFF_FIXED, BQ_BACKOFF_EXPONENTIAL };

/* Options of one job; zero-initialise and set what you need. */
struct bq_job_opts {
	const char *job_id;  /* custom id; NULL takes the next integer. Must not be an integer,
			      * contain ':' or be "0" (BullMQ's rule) */
	int64_t delay_ms;    /* > 0: a delayed job, due at timestamp + delay */
	int priority;        /* 0: none; 1 (first) .. 2^21-1 (last) */
	bool lifo;           /* pushed to the head of `wait` instead of its tail */
	int attempts;        /* tries in all; 0 and 1 both mean no retry */
	enum bq_backoff_type backoff_type;
	int64_t backoff_delay_ms;
	struct bq_keep remove_on_complete;
	struct bq_keep remove_on_fail;
	int keep_logs;       /* opts.kl: > 0 keeps the newest N log lines */
	int64_t timestamp_ms; /* creation time; 0 means now */
};

/* ---- Queue handle (producer, operator) ----------------------------------------------------- */

struct bq_queue;

/* Connects to redis_url (AP_REDIS_URL form) for queue `name` under key prefix `prefix` (NULL:
 * "bull"), loads the scripts, and warns once per process if Redis is older than 6.2 or its
 * maxmemory-policy is not noeviction. Returns 0 and sets *out, or a negative code
 * (FL_ECONFIG for a bad URL, FL_EREDIS when Redis cannot be reached) with err set. A queue handle
 * is thread-safe; after a dropped connection the next call reconnects. */
int bq_queue_new(const char *redis_url, const char *prefix, const char *name,
		 struct bq_queue **out, struct fl_err *err);
void bq_queue_free(struct bq_queue *q);

/* Adds a job. `name` is the job name; `data` is its payload as JSON text (NULL: "{}"), checked to
 * be strict JSON; opts may be NULL. With a custom id that already exists nothing is added: the
 * event `duplicated` is emitted and *duplicated is set. *job_id (if job_id is not NULL) receives
 * the id as a heap string the caller frees with fl_free. Returns 0, FL_EINVAL for a bad id, name,
 * data or option (err says which), or FL_EREDIS. */
int bq_job_add(struct bq_queue *q, const char *name, const char *data,
	       const struct bq_job_opts *opts, char **job_id, bool *duplicated, struct fl_err *err);

#endif
