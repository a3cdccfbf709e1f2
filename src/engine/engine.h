/* The walker: runs one flow (engine/flow.h) once, step by step, as shared/FLOWS.md §3 describes,
 * and produces the run result of shared/DESIGN.md §5.4. The walker knows nothing of pipes, queues
 * or stores: whatever must outlive the process goes through a struct eng_host, whose callbacks
 * `flowd run` implements in memory and `flowd engine` implements over pipes to the worker. */
#ifndef ENG_ENGINE_H
#define ENG_ENGINE_H

#include <jansson.h>
#include <stdint.h>

struct eng_flow;
struct eng_step;
struct fl_err;
struct net_policy;

/* Run statuses (DESIGN.md §5.3) that a run can end with in the engine. */
enum eng_status {
	ENG_SUCCEEDED,
	ENG_FAILED,
	ENG_PAUSED,
	ENG_TIMEOUT,
	ENG_INTERNAL_ERROR,
	ENG_LOG_SIZE_EXCEEDED,
};

const char *eng_status_name(enum eng_status status);

/* What the host learns about a step that finished. Everything is borrowed for the callback. */
struct eng_step_event {
	const struct eng_step *step;
	/* Where the step sits: its name at the top level, "<loop>[<index>].<name>" inside a loop
	 * (index 1-based, nested loops chained). Also the stepPath of Idempotency-Keys. */
	const char *path;
	/* The same as a JSON array of names and indexes: ["loop_1", 2, "step_3"]. */
	const json_t *path_json;
	const json_t *record;  /* the StepOutput {"type","status","input","output","duration",...} */
	int effects;           /* the step acted on the world: it must be durable before going on */
	int64_t duration_us;
	const char *console;   /* what a code step printed with console.*, or NULL */
};

/* The host. Callbacks that may be NULL say so. ctx is passed to each. */
struct eng_host {
	void *ctx;
	/* A step is about to run (not called for replayed steps). May be NULL. */
	void (*step_started)(void *ctx, const struct eng_step *step, const char *path);
	/* A step was not run because replay held its finished record, which was reused as it is
	 * (a loop replayed whole is one call; a loop replayed per iteration calls for each body
	 * step it reuses). This is what lets a run's record say which steps an attempt replayed
	 * and which it executed. May be NULL. */
	void (*step_replayed)(void *ctx, const struct eng_step *step, const char *path);
	/* A step finished, or paused. When ev->effects is set the host makes the record durable
	 * before it returns (the pipe host waits for the worker's acknowledgement). Returns 0 to go
	 * on, or a negative code to end the run INTERNAL_ERROR (a lost lock, a dead app). Replayed
	 * steps are not reported again. May be NULL. */
	int (*step_finished)(void *ctx, const struct eng_step_event *ev);
	/* A return_response step answered: response is {"status","headers","body"}. Called once per
	 * such step, before step_finished. May be NULL. */
	void (*respond)(void *ctx, const json_t *response);
	/* The run pauses: waitpoint is {"id","type":"DELAY"|"WEBHOOK","resumeAt"?,"stepName",
	 * "stepPath","resumeUrl"}. Called after the paused step's step_finished. May be NULL. */
	int (*paused)(void *ctx, const json_t *waitpoint);
	/* The store piece's entries (FLOWS.md §4). get sets *value to a new reference, or NULL when
	 * the key is absent. All three may be NULL: the store piece then fails. */
	int (*store_get)(void *ctx, const char *key, json_t **value, struct fl_err *err);
	int (*store_put)(void *ctx, const char *key, const json_t *value, struct fl_err *err);
	int (*store_delete)(void *ctx, const char *key, struct fl_err *err);
	/* Clock and sleep; NULL means fl_now_ms and fl_sleep_ms. Tests make time pass faster. */
	int64_t (*now_ms)(void *ctx);
	void (*sleep_ms)(void *ctx, int64_t ms);
};

struct eng_engine_opts {
	int64_t js_time_limit_ms;         /* per template evaluation and code step; 0: 10 s */
	const struct net_policy *policy;  /* for the http piece and fetch; NULL: unrestricted */
};

/* An engine: the JavaScript runtime and what outlives one run. One per process (or per
 * thread); runs on it are sequential. */
struct eng_engine;

struct eng_engine *eng_engine_new(const struct eng_engine_opts *opts);
void eng_engine_free(struct eng_engine *e);

/* The engine has nothing to do until its host answers (js_prepare_code_context). */
void eng_engine_idle(struct eng_engine *e);

struct eng_run_opts {
	const char *run_id;           /* for Idempotency-Keys, waitpoints and store scopes */
	const char *flow_id;          /* for FLOW and RUN store scopes */
	const char *frontend_url;     /* base of resume URLs; NULL: http://localhost:8080 */
	const json_t *trigger_output; /* the trigger step's output; NULL: {} */
	/* The steps object of an earlier delivery of this run (the "steps" of §5.4). A step found
	 * there finished (SUCCEEDED, or FAILED) is not run again: its record is reused, with its
	 * output in scope for a SUCCEEDED step, and a FAILED one ends the run FAILED again unless the
	 * step continues on failure. A loop is replayed per iteration, a router with the branches
	 * it evaluated. A step found PAUSED is re-entered with resume, or paused again without it.
	 * May be NULL. */
	const json_t *replay;
	/* Non-NULL when resuming: the payload {"body","headers","queryParams"} that re-enters the
	 * step found PAUSED in replay ({} for a delay). */
	const json_t *resume;
	int64_t log_size_limit;       /* bytes of persisted steps; 0: 10 MB */
	int64_t deadline_ms;          /* monotonic ms past which no new step starts (TIMEOUT); 0: none */
};

/* Runs flow once. *result is a new object, the run result of DESIGN.md §5.4:
 * {"status","steps","failedStep"?,"response"?,"duration","waitpoint"?}. The status is also
 * returned in *status. Returns 0 whenever a result was produced, whatever its status; a negative
 * code only when the flow cannot be run at all (err says why). */
int eng_run(struct eng_engine *e, const struct eng_flow *flow, const struct eng_run_opts *opts,
	    const struct eng_host *host, json_t **result, enum eng_status *status,
	    struct fl_err *err);

/* Merges a step record reported at path (an eng_step_event's path_json) into steps, a run's
 * steps object, creating loop records and iterations as needed. The worker or the app keeps a
 * run's persisted steps with this, so that a later delivery can replay them. Returns 0, or
 * FL_EINVAL when path is malformed. */
int eng_steps_merge(json_t *steps, const json_t *path, const json_t *record);

/* The base wait of retryOnFailure (4 s, then 8 s and 16 s). FLOWD_RETRY_BASE_MS overrides it;
 * it exists so that tests need not wait 28 s, and is not meant for production. */
int64_t eng_retry_base_ms(void);

#endif
