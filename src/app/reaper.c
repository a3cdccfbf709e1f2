/* The reaper: no run stays RUNNING (or QUEUED) forever. Periodically it looks at runs that have
 * not changed for longer than a job's lock and stall detection take to hand a dead worker's job
 * to another worker, and asks Redis about their job:
 *   - RUNNING, job gone or finished: the worker ended without a result (INTERNAL_ERROR);
 *   - RUNNING past AP_FLOW_TIMEOUT_SECONDS plus that grace, whatever the job says: TIMEOUT;
 *   - QUEUED, job missing (an enqueue that failed, a Redis that lost data): enqueued again, up to
 *     three times, then INTERNAL_ERROR; job finished without running the run: INTERNAL_ERROR;
 *   - PAUSED on a delay that is long due and whose delayed job is missing: enqueued again.
 * Every change is guarded by the run's status and attempt, so a result that arrives meanwhile
 * wins, and several replicas reaping at once agree. */
#include "app/app_int.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "core/time.h"
#include "queue/bq.h"

#include <string.h>

#define BATCH 200
#define MAX_REQUEUES 3

enum job_state { JOB_UNKNOWN, JOB_MISSING, JOB_PENDING, JOB_FINISHED };

/* What Redis says of job_id; *reason receives a failed job's failedReason (heap) if any. */
static enum job_state job_state(struct app *a, const char *job_id, char **reason)
{
	*reason = NULL;
	if (!a->queue || !job_id)
		return JOB_UNKNOWN;
	json_t *job = NULL;
	struct fl_err err = { 0 };
	int rc = bq_job_get(a->queue, job_id, &job, &err);
	if (rc == FL_ENOTFOUND)
		return JOB_MISSING;
	if (rc)
		return JOB_UNKNOWN; /* Redis is down: decide nothing */
	json_t *fin = json_object_get(job, "finishedOn");
	enum job_state st = fin && !json_is_null(fin) ? JOB_FINISHED : JOB_PENDING;
	const char *fr = json_string_value(json_object_get(job, "failedReason"));
	if (fr && *fr)
		*reason = fl_strdup(fr);
	json_decref(job);
	return st;
}

static void finalise(struct app *a, const struct store_run *r, enum store_run_status status,
		     const char *message, int64_t now)
{
	struct fl_err err = { 0 };
	if (store_run_abandon(a->store, r->id, r->status, r->attempt, status, message, now, &err))
		return; /* it moved on meanwhile */
	fl_warn("app", "reaper: run '%s' was %s and is now %s: %s", r->id,
		store_run_status_name(r->status), store_run_status_name(status), message);
	app_metrics_count(&a->metrics, &a->metrics.reaped);
	app_sync_notify(a, r->id, NULL, 1);
}

static const char *execution_type_of(const struct store_run *r)
{
	/* Resume jobs are named <runId>_<waitpointId>; first and retry deliveries are BEGIN. */
	size_t n = strlen(r->id);
	if (r->job_id && !strncmp(r->job_id, r->id, n) && r->job_id[n] == '_' &&
	    strncmp(r->job_id + n + 1, "retry", 5))
		return "RESUME";
	return "BEGIN";
}

static void requeue(struct app *a, const struct store_run *r, int64_t now)
{
	struct fl_err err = { 0 };
	if (store_run_requeued(a->store, r->id, r->status, now, &err))
		return;
	if (app_enqueue(a, r->job_id ? r->job_id : r->id, r->id, r->flow_id, r->flow_version_id,
			execution_type_of(r), r->synchronous, 0, &err)) {
		fl_warn("app", "reaper: cannot enqueue run '%s' again: %s", r->id, err.msg);
		return;
	}
	fl_warn("app", "reaper: run '%s' had no job; enqueued '%s' again", r->id,
		r->job_id ? r->job_id : r->id);
	app_metrics_count(&a->metrics, &a->metrics.requeued);
}

int64_t app_reaper_grace_ms(const struct fl_config *cfg)
{
	/* A dead worker's job is back in `wait` within lock + stalled interval; one more lock
	 * period lets the next worker pick it up and start (which touches the run). */
	return (2 * (int64_t)cfg->lock_duration_s + cfg->stalled_interval_s) * 1000;
}

void app_reap(struct app *a, int64_t now)
{
	const struct fl_config *cfg = a->cfg;
	int64_t grace = app_reaper_grace_ms(cfg);
	int64_t timeout = (int64_t)cfg->flow_timeout_s * 1000 + grace;
	struct store_run *runs;
	size_t n;
	struct fl_err err = { 0 };

	if (!store_run_list_stale(a->store, STORE_RUN_RUNNING, now - grace, BATCH, &runs, &n, &err)) {
		for (size_t i = 0; i < n; i++) {
			struct store_run *r = &runs[i];
			char *reason;
			enum job_state st = job_state(a, r->job_id, &reason);
			if (now - r->updated_at > timeout) {
				finalise(a, r, STORE_RUN_TIMEOUT,
					 "the run outlived AP_FLOW_TIMEOUT_SECONDS without a result",
					 now);
			} else if (st == JOB_MISSING || st == JOB_FINISHED) {
				char *msg = fl_asprintf("the worker ended the run's job without a result%s%s",
							reason ? ": " : "", reason ? reason : "");
				finalise(a, r, STORE_RUN_INTERNAL_ERROR, msg, now);
				fl_free(msg);
			}
			fl_free(reason);
		}
		store_run_list_free(runs, n);
	}

	if (!store_run_list_stale(a->store, STORE_RUN_QUEUED, now - grace, BATCH, &runs, &n, &err)) {
		for (size_t i = 0; i < n; i++) {
			struct store_run *r = &runs[i];
			char *reason;
			enum job_state st = job_state(a, r->job_id, &reason);
			if (st == JOB_MISSING && r->requeues < MAX_REQUEUES) {
				requeue(a, r, now);
			} else if (st == JOB_MISSING || st == JOB_FINISHED) {
				char *msg = fl_asprintf("the run's job ended before it ran%s%s",
							reason ? ": " : "", reason ? reason : "");
				finalise(a, r, STORE_RUN_INTERNAL_ERROR, msg, now);
				fl_free(msg);
			}
			fl_free(reason);
		}
		store_run_list_free(runs, n);
	}

	if (!store_run_list_stale(a->store, STORE_RUN_PAUSED, now - grace, BATCH, &runs, &n, &err)) {
		for (size_t i = 0; i < n; i++) {
			struct store_run *r = &runs[i];
			struct store_waitpoint wp;
			if (!r->waitpoint_id || store_waitpoint_get(a->store, r->waitpoint_id, &wp, NULL))
				continue;
			int due = wp.type == STORE_WAITPOINT_DELAY && wp.state == STORE_WAITPOINT_OPEN &&
				  wp.resume_at + grace < now;
			store_waitpoint_release(&wp);
			char *reason = NULL;
			if (due && job_state(a, r->job_id, &reason) == JOB_MISSING &&
			    r->requeues < MAX_REQUEUES)
				requeue(a, r, now);
			fl_free(reason);
		}
		store_run_list_free(runs, n);
	}
}
