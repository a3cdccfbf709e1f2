/* The app's durable state: flows and their immutable versions, runs with their attempts and step
 * records, waitpoints, the piece store's entries and the schedule's claimed ticks. One API over
 * two backends, SQLite (the default, WAL) and PostgreSQL, chosen at open. Every state change of a
 * run is one transaction whose guards (status, current attempt, unused waitpoint) are checked
 * inside it, so that concurrent app threads and app replicas agree on one outcome.
 *
 * The store never talks to Redis: where an operation implies a job (a resume, a retry), it says
 * so in its result and the caller enqueues it. Times are ms since the epoch; 0 means "none". JSON
 * values are passed and returned as JSON text. Strings in result structs are owned by the struct;
 * release them with the matching *_release. Every function returns 0 or a negative code:
 * FL_ENOTFOUND, FL_ECONFLICT (a guard failed: err says which), FL_EDB (the database failed). */
#ifndef STORE_H
#define STORE_H

#include <stddef.h>
#include <stdint.h>

struct fl_err;
struct store;
struct store_step;

enum store_backend { STORE_SQLITE, STORE_POSTGRES };

struct store_opts {
	enum store_backend backend;
	const char *sqlite_path;  /* file; ":memory:" for tests */
	const char *postgres_url; /* libpq connection string */
	int pool_size;            /* PostgreSQL connections; 0: 4. SQLite always uses one */
	int busy_timeout_ms;      /* SQLite lock wait; 0: 5000 */
};

/* Opens the database (creating the SQLite file and setting WAL). Does not migrate. */
struct store *store_open(const struct store_opts *opts, struct fl_err *err);
void store_free(struct store *s);
/* Applies every embedded migration not yet recorded in schema_migrations, each in its own
 * transaction; safe to run from several replicas at once. */
int store_migrate(struct store *s, struct fl_err *err);
/* The highest applied migration version, or a negative code. */
int store_schema_version(struct store *s, struct fl_err *err);
const char *store_backend_name(const struct store *s);
/* A cheap round trip for health checks. */
int store_ping(struct store *s, struct fl_err *err);

/* ---- run and step statuses (shared/DESIGN.md §5.3) ---- */

enum store_run_status {
	STORE_RUN_QUEUED,
	STORE_RUN_RUNNING,
	STORE_RUN_PAUSED,
	STORE_RUN_SUCCEEDED,
	STORE_RUN_FAILED,
	STORE_RUN_TIMEOUT,
	STORE_RUN_INTERNAL_ERROR,
	STORE_RUN_MEMORY_LIMIT_EXCEEDED,
	STORE_RUN_LOG_SIZE_EXCEEDED,
	STORE_RUN_CANCELED,
	STORE_RUN_STATUS_COUNT
};

const char *store_run_status_name(enum store_run_status s);
/* Returns 0 and sets *out, or FL_EINVAL for an unknown name. */
int store_run_status_parse(const char *name, enum store_run_status *out);
/* SUCCEEDED and every failure status and CANCELED: nothing more happens to such a run unless
 * it is retried. */
int store_run_status_is_final(enum store_run_status s);

/* ---- flows ---- */

struct store_flow {
	char *id;
	char *display_name;
	char *version_id;      /* the latest version */
	int version_number;    /* 1 for the first version */
	char *definition;      /* the latest version's JSON */
	char *schedule_cron;   /* NULL unless the trigger is a schedule */
	char *schedule_tz;
	char *schedule_output; /* trigger output JSON of each scheduled run */
	int64_t created_at;
	int64_t updated_at;
};
void store_flow_release(struct store_flow *f);

/* Inserts flow f->id with its first version f->version_id. */
int store_flow_create(struct store *s, const struct store_flow *f, struct fl_err *err);
/* Adds version f->version_id to flow f->id and makes it the latest (display name, definition
 * and schedule fields are taken from f); *number receives its number. FL_ENOTFOUND for an
 * unknown or deleted flow. */
int store_flow_update(struct store *s, const struct store_flow *f, int *number,
		      struct fl_err *err);
/* Deletes a flow: it leaves listings, webhooks and schedules; its versions and runs remain. */
int store_flow_delete(struct store *s, const char *flow_id, int64_t now, struct fl_err *err);
int store_flow_get(struct store *s, const char *flow_id, struct store_flow *out,
		   struct fl_err *err);
/* Flows oldest first, after cursor (NULL: from the start; else a value of *next). *out is an
 * array of *n flows (free with store_flow_list_free); *next is NULL on the last page. */
int store_flow_list(struct store *s, const char *cursor, int limit, struct store_flow **out,
		    size_t *n, char **next, struct fl_err *err);
/* Every live flow whose schedule_cron is set. */
int store_flow_list_scheduled(struct store *s, struct store_flow **out, size_t *n,
			      struct fl_err *err);
void store_flow_list_free(struct store_flow *flows, size_t n);

struct store_version {
	char *id;
	char *flow_id;
	int number;
	char *display_name;
	char *definition;
	int64_t created_at;
};
void store_version_release(struct store_version *v);
/* Versions are immutable, so recent ones are served from memory. */
int store_version_get(struct store *s, const char *version_id, struct store_version *out,
		      struct fl_err *err);

/* ---- runs ---- */

struct store_run {
	char *id;
	char *flow_id;
	char *flow_version_id;
	enum store_run_status status;
	int synchronous;
	char *trigger_output;  /* JSON */
	char *job_id;          /* the BullMQ job of the current or next delivery */
	int attempt;           /* attempts started so far; 0 before the first */
	int64_t created_at;
	int64_t updated_at;    /* last change of any kind: the reaper's clock */
	int64_t start_time;
	int64_t finish_time;
	char *steps;           /* the engine's §5.4 steps map from its last result, or NULL */
	char *failed_step;     /* JSON {"name","displayName","message"} or NULL */
	char *response;        /* JSON {"status","headers","body"} or NULL */
	char *waitpoint_id;    /* the waitpoint the run is paused on (or resumed from) */
	char *resume_payload;  /* JSON payload of the resume being delivered, or NULL */
	char *retry_of;        /* for ON_LATEST_VERSION retries: the original run */
	int retries;           /* FROM_FAILED_STEP retries of this run */
	int requeues;          /* times the reaper re-enqueued a lost job */
	int64_t peak_memory_kb; /* engine's peak memory in the attempt that ended the run; 0: unknown */
};
void store_run_release(struct store_run *r);
void store_run_list_free(struct store_run *runs, size_t n);

/* Inserts r as QUEUED (r->status is ignored). r->id, flow ids, trigger_output, job_id and
 * created_at must be set. */
int store_run_create(struct store *s, const struct store_run *r, struct fl_err *err);
int store_run_get(struct store *s, const char *run_id, struct store_run *out, struct fl_err *err);

struct store_run_filter {
	const char *flow_id;                 /* NULL: any */
	int n_statuses;                      /* 0: any */
	enum store_run_status statuses[STORE_RUN_STATUS_COUNT];
	int limit;                           /* 1..1000 */
	const char *cursor;                  /* from a previous *next, or NULL */
};
/* Runs newest first. Rows carry no steps, response or trigger output (NULL) to keep pages
 * small. *next is NULL on the last page. */
int store_run_list(struct store *s, const struct store_run_filter *f, struct store_run **out,
		   size_t *n, char **next, struct fl_err *err);
/* Number of runs in each status, indexed by enum store_run_status. */
int store_run_count_by_status(struct store *s, int64_t counts[STORE_RUN_STATUS_COUNT],
			      struct fl_err *err);

/* ---- attempts: one per delivery of a run's job to a worker ---- */

struct store_start {
	const char *run_id;
	const char *job_id;         /* the BullMQ job being processed */
	const char *delivery;       /* unique per delivery (job id + attempts started), or NULL */
	const char *worker;         /* the worker's name, for the run record */
	const char *execution_type; /* "BEGIN" or "RESUME" */
	int64_t now;
};
/* Begins an attempt: the run becomes RUNNING and its attempt number grows by one. A start
 * repeated with the same delivery while that attempt is current returns the same attempt (a
 * retried request must not start a second attempt). A RESUME start of a run paused on a due
 * DELAY waitpoint consumes that waitpoint. FL_ECONFLICT when the run is final, canceled, or
 * paused with nothing to resume: the job must not run. *out receives the run after the change,
 * *attempt its number. */
int store_run_start(struct store *s, const struct store_start *st, struct store_run *out,
		    int *attempt, struct fl_err *err);
/* The same, also reading in the same transaction the run's step records to replay (*steps,
 * *n_steps; free with store_step_list_free), so that a worker's context is one consistent
 * snapshot. */
int store_run_start_with_steps(struct store *s, const struct store_start *st,
			       struct store_run *out, int *attempt, struct store_step **steps,
			       size_t *n_steps, struct fl_err *err);

struct store_attempt {
	int attempt;
	char *job_id;
	char *worker;
	char *execution_type;
	int64_t started_at;
	int64_t finished_at;
	char *status;      /* the run status the attempt ended with, "ABANDONED" when a later
			    * attempt took over, NULL while it runs */
	int replayed;      /* steps the attempt replayed (store_attempt_replayed) */
};
void store_attempt_list_free(struct store_attempt *a, size_t n);
int store_attempt_list(struct store *s, const char *run_id, struct store_attempt **out, size_t *n,
		       struct fl_err *err);

/* Records that attempt reused the finished records of the steps at paths instead of running
 * them (the engine's step_replayed events), for the run's record. Guarded like
 * store_steps_put: FL_ECONFLICT when attempt is not the current, running one. Recording a path
 * again is harmless. */
int store_attempt_replayed(struct store *s, const char *run_id, int attempt,
			   const char *const *paths, size_t n, int64_t now, struct fl_err *err);

struct store_replay {
	int attempt;
	char *path;
};
/* Every (attempt, path) store_attempt_replayed recorded for the run, by attempt. */
int store_replay_list(struct store *s, const char *run_id, struct store_replay **out, size_t *n,
		      struct fl_err *err);
void store_replay_list_free(struct store_replay *r, size_t n);

/* ---- step records: one per step path, the unit of checkpoint and replay ---- */

struct store_step {
	char *path;          /* unique within the run: "step_1", "loop_1[2].step_3", ... */
	char *name;
	char *type;          /* CODE, PIECE, LOOP_ON_ITEMS, ROUTER, or the trigger's type */
	char *status;        /* SUCCEEDED, FAILED, PAUSED, RUNNING, STOPPED */
	char *record;        /* the engine's whole StepOutput JSON, replayed as it is */
	int64_t duration_ms;
	int attempt;         /* the attempt that executed it */
	int64_t seq;         /* order of persistence within the run */
	int64_t updated_at;
};
void store_step_list_free(struct store_step *steps, size_t n);

/* Persists steps (insert or replace by path) for the run's current attempt, in one transaction.
 * Replaying the same call is harmless. FL_ECONFLICT when attempt is not the current one or the
 * run is not RUNNING: that attempt has been superseded and must stop. */
int store_steps_put(struct store *s, const char *run_id, int attempt,
		    const struct store_step *steps, size_t n, int64_t now, struct fl_err *err);
/* Step records in persistence order. */
int store_steps_list(struct store *s, const char *run_id, struct store_step **out, size_t *n,
		     struct fl_err *err);

/* Records the sync response of the run's current attempt; only the first one counts.
 * *stored is 1 when this call stored it. FL_ECONFLICT for a superseded attempt. */
int store_run_respond(struct store *s, const char *run_id, int attempt, const char *response,
		      int64_t now, int *stored, struct fl_err *err);

/* ---- run results ---- */

enum store_waitpoint_type { STORE_WAITPOINT_DELAY, STORE_WAITPOINT_WEBHOOK };

/* A waitpoint as the engine reports it when a step pauses. Its id is the engine's (stable for a
 * run and step path, so that links sent out before the pause name it). */
struct store_pause {
	const char *waitpoint_id;
	const char *step_path;
	enum store_waitpoint_type type;
	int64_t resume_at;            /* DELAY: when the delayed job is due */
};

struct store_finish {
	const char *run_id;
	int attempt;
	enum store_run_status status; /* PAUSED or a final status */
	const char *steps;            /* §5.4 steps JSON, or NULL */
	const char *failed_step;      /* JSON or NULL */
	const char *response;         /* JSON or NULL: kept only if none was stored yet */
	int64_t peak_memory_kb;       /* the engine's peak memory as the worker saw it; 0: unknown */
	const struct store_pause *pause; /* required with PAUSED */
	int64_t now;
};

/* What the caller must enqueue after a state change. */
struct store_job {
	int needed;             /* 0: nothing to enqueue */
	char *job_id;
	const char *execution_type; /* static: "BEGIN" or "RESUME" */
	int64_t delay_ms;       /* > 0: a delayed job */
};
void store_job_release(struct store_job *j);

/* Ends the run's current attempt with f->status. A PAUSED result opens its waitpoint; if a
 * resume for that waitpoint arrived first (EARLY), the run goes straight back to QUEUED and *job
 * says what to enqueue; a pause on a DELAY waitpoint asks for a delayed RESUME job. Posting the same result again for the same
 * attempt succeeds and changes nothing (*job is empty). FL_ECONFLICT when f->attempt is not
 * current (a late result from a superseded attempt is refused), FL_ENOTFOUND for an unknown run,
 * FL_EINVAL for a PAUSED result without a waitpoint. */
int store_run_finish(struct store *s, const struct store_finish *f, struct store_job *job,
		     struct fl_err *err);
/* The same, also reading the run after the change into *after (release it) in the same
 * transaction. */
int store_run_finish_get(struct store *s, const struct store_finish *f, struct store_job *job,
			 struct store_run *after, struct fl_err *err);

/* Ends the current attempt with status (a failure) when the BullMQ job will be delivered again:
 * the run goes back to QUEUED for that redelivery, with its step records kept. Repeating the
 * call is harmless. FL_ECONFLICT when attempt is not current or the run is not RUNNING. */
int store_run_retry_pending(struct store *s, const char *run_id, int attempt,
			    enum store_run_status status, int64_t now, struct fl_err *err);

/* Force-ends a run the reaper found abandoned: only if it is still in status expect and attempt
 * expect_attempt (so a result that arrives meanwhile wins). message becomes failedStep's
 * message. FL_ECONFLICT when the guard fails. */
int store_run_abandon(struct store *s, const char *run_id, enum store_run_status expect,
		      int expect_attempt, enum store_run_status status, const char *message,
		      int64_t now, struct fl_err *err);
/* Notes that the reaper re-enqueued the run's job (requeues + 1), guarded like abandon. */
int store_run_requeued(struct store *s, const char *run_id, enum store_run_status expect,
		       int64_t now, struct fl_err *err);

/* Runs in status whose updated_at is older than before, oldest first, at most limit. */
int store_run_list_stale(struct store *s, enum store_run_status status, int64_t before, int limit,
			 struct store_run **out, size_t *n, struct fl_err *err);

/* Cancels a QUEUED or PAUSED run (its open waitpoints are closed). FL_ECONFLICT otherwise. */
int store_run_cancel(struct store *s, const char *run_id, int64_t now, struct fl_err *err);

/* FROM_FAILED_STEP: a run that ended in failure goes back to QUEUED with its SUCCEEDED step
 * records kept and the rest dropped, so that the next delivery replays up to the failed step and
 * runs it again. *job is the BEGIN job to enqueue. FL_ECONFLICT when the run did not fail. */
int store_run_retry_from_failed(struct store *s, const char *run_id, int64_t now,
				struct store_job *job, struct fl_err *err);

/* ---- waitpoints ---- */

enum store_waitpoint_state {
	STORE_WAITPOINT_OPEN,  /* the run is paused on it */
	STORE_WAITPOINT_EARLY, /* a resume arrived before the pause: kept until the pause lands */
	STORE_WAITPOINT_USED,
};

struct store_waitpoint {
	char *id;
	char *run_id;
	char *step_path;   /* NULL for an EARLY waitpoint whose pause has not landed */
	enum store_waitpoint_type type;
	int64_t resume_at; /* DELAY only */
	enum store_waitpoint_state state;
	char *payload;     /* the resume payload JSON once called */
	int64_t created_at;
	int64_t used_at;
};
void store_waitpoint_release(struct store_waitpoint *w);

int store_waitpoint_get(struct store *s, const char *waitpoint_id, struct store_waitpoint *out,
			struct fl_err *err);

enum store_resume_outcome {
	STORE_RESUME_ENQUEUE, /* the run was paused: it is QUEUED now, enqueue *job */
	STORE_RESUME_KEPT,    /* the pause is not persisted yet: kept, applied when it is */
};
/* Resumes run_id through waitpoint_id with payload (JSON {"body","headers","queryParams"}).
 * A run paused on the waitpoint goes back to QUEUED (its other open waitpoints close). A run
 * still QUEUED or RUNNING keeps the call as an EARLY waitpoint, applied by the pause that names
 * it. Each waitpoint resumes at most once, even under concurrent calls. FL_ENOTFOUND for a
 * waitpoint the run does not have (unknown run, or paused on another one), FL_ECONFLICT when it
 * was used or the run is over (both are 410 to callers), FL_EINVAL for a DELAY waitpoint, which
 * only its delayed job resumes. */
int store_waitpoint_resume(struct store *s, const char *run_id, const char *waitpoint_id,
			   const char *payload, int64_t now, enum store_resume_outcome *outcome,
			   struct store_job *job, struct fl_err *err);

/* ---- piece store entries ---- */

/* *value (heap JSON text) or FL_ENOTFOUND. */
int store_kv_get(struct store *s, const char *key, char **value, struct fl_err *err);
int store_kv_put(struct store *s, const char *key, const char *value, int64_t now,
		 struct fl_err *err);
/* *deleted is 1 when the key existed. */
int store_kv_delete(struct store *s, const char *key, int *deleted, struct fl_err *err);

/* ---- schedules ---- */

/* Claims tick (ms) of flow_id and, in the same transaction, creates run (QUEUED). Exactly one
 * claimer of a (flow, tick) succeeds across every replica; the others get FL_ECONFLICT. */
int store_schedule_claim(struct store *s, const char *flow_id, int64_t tick,
			 const struct store_run *run, struct fl_err *err);
/* The latest claimed tick of flow_id, or 0. */
int store_schedule_last_tick(struct store *s, const char *flow_id, int64_t *tick,
			     struct fl_err *err);
/* Forgets ticks older than before. */
int store_schedule_prune(struct store *s, int64_t before, struct fl_err *err);

#endif
