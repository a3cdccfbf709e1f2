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

/* ---- Operator view (flowd queue) ----------------------------------------------------------- */

/* The URL of the private redis-server that `flowd serve` starts when AP_REDIS_URL is unset:
 * "unix://<config_path>/redis/redis.sock". Heap string; the caller frees it with fl_free. */
char *bq_embedded_redis_url(const char *config_path);

/* Counts per state, the numbers BullMQ's getJobCounts gives (paused: the legacy BullMQ 5 list,
 * which BullMQ 6 no longer reports). */
struct bq_counts {
	int64_t active, completed, delayed, failed, paused, prioritized, waiting, waiting_children;
};
int bq_queue_counts(struct bq_queue *q, struct bq_counts *counts, struct fl_err *err);
/* Whether meta.paused is set. */
int bq_queue_is_paused(struct bq_queue *q, bool *paused, struct fl_err *err);

/* Pauses (no worker fetches; jobs stay where they are) or resumes the queue, with the `paused` /
 * `resumed` events. Returns 0 or FL_EREDIS. */
int bq_queue_pause(struct bq_queue *q, bool pause, struct fl_err *err);

/* The states bq_queue_list and bq_queue_clean take: "waiting", "active", "delayed",
 * "prioritized", "completed", "failed", "paused". */
bool bq_state_valid(const char *state);

/* Lists up to `limit` jobs in `state` starting at `offset`, in the order BullMQ's getJobs gives
 * (waiting/active/paused: next first; delayed/prioritized: soonest first; completed/failed:
 * newest first). *jobs receives a new JSON array of job objects shaped like BullMQ's
 * Job.toJSON ({"id","name","data","opts","progress","timestamp","delay","priority",
 * "processedOn","finishedOn","attemptsMade","attemptsStarted","stalledCounter",
 * "failedReason","returnvalue","stacktrace"}); the caller decrefs it. */
int bq_queue_list(struct bq_queue *q, const char *state, int64_t offset, int64_t limit,
		  json_t **jobs, struct fl_err *err);

/* One job as bq_queue_list shapes it, or FL_ENOTFOUND. */
int bq_job_get(struct bq_queue *q, const char *id, json_t **job, struct fl_err *err);

/* Moves failed jobs (at most `max`; <= 0: all) back to `wait`, as BullMQ's retryJobs. *moved
 * receives how many. */
int bq_queue_retry_failed(struct bq_queue *q, int64_t max, int64_t *moved, struct fl_err *err);

/* Deletes jobs in `state` (not "active") older than grace_ms (finishedOn for finished jobs,
 * creation time otherwise), at most `limit` (<= 0: no limit), as BullMQ's Queue.clean. *removed
 * receives how many. */
int bq_queue_clean(struct bq_queue *q, const char *state, int64_t grace_ms, int64_t limit,
		   int64_t *removed, struct fl_err *err);

/* ---- Worker (consumer) --------------------------------------------------------------------- */

/* One job handed to the processor. Everything is borrowed for the length of the callback. */
struct bq_job {
	const char *id;
	const char *name;
	const char *data_text;    /* the `data` field as stored */
	json_t *data;             /* data parsed (any JSON value) */
	json_t *opts;             /* opts parsed (an object) */
	int attempts;             /* opts.attempts: tries in all (0 and 1 both mean one) */
	int attempts_made;        /* finished attempts before this one (atm) */
	int attempts_started;     /* attempts started, this one included (ats) */
	int stalled_count;        /* times the job stalled (stc) */
	int priority;
	int64_t timestamp_ms;     /* creation */
	int64_t processed_on_ms;  /* start of this attempt */
	int slot;                 /* 0 .. concurrency-1: the slot running the job */
};

enum bq_outcome {
	BQ_COMPLETED,        /* store returnvalue, move to completed */
	BQ_FAILED,           /* retry if attempts and backoff allow, else move to failed */
	BQ_FAILED_NO_RETRY,  /* move to failed now, whatever attempts says */
};

/* What the processor fills in. The worker takes ownership of returnvalue and failed_reason. */
struct bq_result {
	enum bq_outcome outcome;
	json_t *returnvalue;  /* BQ_COMPLETED; NULL stores null */
	char *failed_reason;  /* failures; fl_malloc'd, NULL stores "" */
};

/* Runs one job in the slot's own thread. Slots run concurrently: the callback must be
 * thread-safe. It is not called for jobs whose name is not in job_names or whose data is not
 * JSON: those are failed at once, without retry, with a failedReason that says why. */
typedef void (*bq_process_fn)(void *arg, const struct bq_job *job, struct bq_result *result);

/* Called from the worker's maintenance thread (or from bq_worker_stop), at most once per job and
 * only while its processor runs, when the job is no longer ours: its lock expired or was taken,
 * or the job was handed back at shutdown. Its outcome will not be recorded, so the processor
 * should stop working on it. job is borrowed; the processor's callback for it is still
 * running, or about to return. Once the processor has returned, the finish's own lock check
 * decides, and a refusal is counted in bq_worker_stats.lost. It runs under the worker's lock:
 * it must be quick and must not call bq_worker_* (bq_job_lock_lost is fine). */
typedef void (*bq_lock_lost_fn)(void *arg, const struct bq_job *job);

struct bq_worker_opts {
	const char *redis_url;      /* AP_REDIS_URL form */
	const char *prefix;         /* NULL: "bull" */
	const char *queue;
	const char *worker_name;    /* recorded as the job's `pb`; NULL: none */
	int concurrency;            /* slots: AP_WORKER_CONCURRENCY */
	int lock_duration_ms;       /* AP_WORKER_LOCK_DURATION_SECONDS */
	int lock_renew_ms;          /* 0: half the lock duration */
	int stalled_interval_ms;    /* AP_WORKER_STALLED_INTERVAL_SECONDS; <= 0 disables the check */
	int max_stalled_count;      /* stalls a job survives; the next one fails it */
	int drain_delay_ms;         /* longest wait on the marker, at most 10000 */
	const char *const *job_names; /* NULL-terminated names this worker runs; NULL: any */
	struct bq_keep remove_on_complete; /* applies when the job's own option is absent */
	struct bq_keep remove_on_fail;
	bq_process_fn process;
	bq_lock_lost_fn lock_lost;  /* may be NULL; bq_job_lock_lost() polls the same fact */
	void *arg;                  /* passed to process and lock_lost */
};

/* BullMQ's defaults: concurrency 1, lock 30 s renewed every 15 s, stalled check every 30 s,
 * maxStalledCount 1, drain delay 5 s, keep finished jobs. The caller sets url, queue, process. */
void bq_worker_opts_init(struct bq_worker_opts *o);

struct bq_worker;

/* Connects every slot, the blocking waiter and the maintenance connection, warns about the
 * Redis version or eviction policy, and starts the threads: one per slot, one waiting on the
 * marker (BZPOPMIN, client name "<prefix>:<base64(queue)>"), one renewing locks and running the
 * stalled check. Returns 0 and sets *out, or FL_EINVAL / FL_ECONFIG / FL_EREDIS with err set (no
 * thread is left running). Once started, connection failures are retried with backoff. */
int bq_worker_new(const struct bq_worker_opts *opts, struct bq_worker **out, struct fl_err *err);

/* Graceful stop: no slot fetches again, jobs in flight get up to grace_ms to finish, then every
 * job whose processor is still running is handed back to the head of `wait` at once (lock_lost
 * is called for each) so another worker runs it without waiting for the lock to expire. A job
 * whose processor has returned is not handed back: the stop waits for its outcome to be
 * recorded. Blocks for about grace_ms plus one Redis round trip (while Redis is away, for at
 * most the lock duration or 15 s more). Returns how many jobs were handed back. Processors
 * still running after that must be made to return (for instance by killing their engines)
 * before bq_worker_free. Calling it twice is harmless. */
int bq_worker_stop(struct bq_worker *w, int grace_ms);

/* Stops (grace 0) if needed, waits for every thread, and frees. NULL is a no-op. */
void bq_worker_free(struct bq_worker *w);

struct bq_worker_stats {
	uint64_t completed;  /* finishes accepted by Redis */
	uint64_t failed;     /* final failures accepted by Redis */
	uint64_t retried;    /* attempts put back for a retry */
	uint64_t lost;       /* jobs whose lock was lost or whose finish was refused */
	uint64_t finish_calls; /* Redis calls that carried completed/failed outcomes: slots that
				* finish at once share one */
	int busy;            /* slots running a job now */
	bool connected;      /* the maintenance connection is up */
};
void bq_worker_get_stats(struct bq_worker *w, struct bq_worker_stats *stats);

/* True once the job's lock is known lost (see bq_lock_lost_fn). Thread-safe. */
bool bq_job_lock_lost(const struct bq_job *job);

/* From inside the processor, on the job's slot thread: records progress (JSON text, emitted as
 * a `progress` event) or appends a line to the job's log (kept to opts.kl lines). Returns 0,
 * FL_EINVAL for progress that is not JSON, FL_ENOTFOUND if the job is gone, or FL_EREDIS. */
int bq_job_progress(const struct bq_job *job, const char *progress, struct fl_err *err);
int bq_job_log(const struct bq_job *job, const char *line, struct fl_err *err);

#endif
