/* /v1/flow-runs: list, show (with the attempts and which steps each executed or replayed),
 * retry and cancel; and the public waitpoint endpoint that resumes a paused run. */
#include "app/app_int.h"
#include "core/alloc.h"
#include "core/codec.h"
#include "core/config.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/time.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static json_t *parse_or_null(const char *text)
{
	json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
	return v ? v : json_null();
}

static json_t *run_summary(const struct store_run *r)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:i, s:b}", "id", r->id, "flowId",
			      r->flow_id, "flowVersionId", r->flow_version_id, "status",
			      store_run_status_name(r->status), "created",
			      app_json_time(r->created_at), "startTime", app_json_time(r->start_time),
			      "finishTime", app_json_time(r->finish_time), "attempts", r->attempt,
			      "synchronous", r->synchronous);
	if (r->start_time && r->finish_time)
		json_object_set_new(o, "duration", json_integer(r->finish_time - r->start_time));
	else
		json_object_set_new(o, "duration", json_null());
	if (r->failed_step)
		json_object_set_new(o, "failedStep", parse_or_null(r->failed_step));
	if (r->retry_of)
		json_object_set_new(o, "retryOf", json_string(r->retry_of));
	if (r->peak_memory_kb > 0)
		json_object_set_new(o, "peakMemoryKb", json_integer(r->peak_memory_kb));
	return o;
}

/* Whether the step at path is the one at replayed or inside it (a loop replayed whole). */
static int path_within(const char *path, const char *replayed)
{
	size_t n = strlen(replayed);
	return !strncmp(path, replayed, n) && (path[n] == '\0' || path[n] == '[');
}

static void show_run(struct app *a, const char *id, struct app_response *resp)
{
	struct fl_err err = { 0 };
	struct store_run run;
	int rc = store_run_get(a->store, id, &run, &err);
	if (rc) {
		app_reply_fail(resp, rc, &err);
		return;
	}
	struct store_step *steps = NULL;
	size_t n_steps = 0;
	struct store_attempt *att = NULL;
	size_t n_att = 0;
	struct store_replay *rep = NULL;
	size_t n_rep = 0;
	rc = store_steps_list(a->store, id, &steps, &n_steps, &err);
	if (!rc)
		rc = store_attempt_list(a->store, id, &att, &n_att, &err);
	if (!rc)
		rc = store_replay_list(a->store, id, &rep, &n_rep, &err);
	if (rc) {
		app_reply_fail(resp, rc, &err);
		store_step_list_free(steps, n_steps);
		store_attempt_list_free(att, n_att);
		store_run_release(&run);
		return;
	}
	json_t *o = run_summary(&run);
	/* The engine's own steps object once the run is over; while it runs, the records so far. */
	json_t *snapshot = store_run_status_is_final(run.status) && run.steps
				   ? json_loads(run.steps, 0, NULL)
				   : NULL;
	json_object_set_new(o, "steps", json_is_object(snapshot)
						? snapshot
						: app_steps_assemble(steps, n_steps));
	if (run.response)
		json_object_set_new(o, "response", parse_or_null(run.response));
	if (run.status == STORE_RUN_PAUSED && run.waitpoint_id) {
		char *url = fl_asprintf("%s/v1/flow-runs/%s/waitpoints/%s", a->cfg->frontend_url,
					run.id, run.waitpoint_id);
		json_object_set_new(o, "waitpoint",
				    json_pack("{s:s, s:s}", "id", run.waitpoint_id, "resumeUrl", url));
		fl_free(url);
	}
	if (run.retries)
		json_object_set_new(o, "retries", json_integer(run.retries));

	/* Each step record says which attempt executed it, and which attempts replayed it instead,
	 * as their engines reported (a loop replayed whole replays its iterations too). */
	json_t *timeline = json_array();
	for (size_t i = 0; i < n_steps; i++) {
		json_t *replayed = json_array();
		int last = 0;
		for (size_t j = 0; j < n_rep; j++)
			if (rep[j].attempt != last && path_within(steps[i].path, rep[j].path)) {
				last = rep[j].attempt;
				json_array_append_new(replayed, json_integer(last));
			}
		json_array_append_new(
			timeline, json_pack("{s:s, s:s, s:s?, s:s, s:I, s:i, s:o, s:o}", "path",
					    steps[i].path, "name", steps[i].name, "type", steps[i].type,
					    "status", steps[i].status, "duration",
					    (json_int_t)steps[i].duration_ms, "executedInAttempt",
					    steps[i].attempt, "replayedInAttempts", replayed,
					    "updatedAt", app_json_time(steps[i].updated_at)));
	}
	json_object_set_new(o, "stepRecords", timeline);
	json_t *attempts = json_array();
	for (size_t j = 0; j < n_att; j++) {
		json_t *executed = json_array();
		for (size_t i = 0; i < n_steps; i++)
			if (steps[i].attempt == att[j].attempt)
				json_array_append_new(executed, json_string(steps[i].path));
		json_t *replayed = json_array();
		for (size_t i = 0; i < n_rep; i++)
			if (rep[i].attempt == att[j].attempt)
				json_array_append_new(replayed, json_string(rep[i].path));
		json_array_append_new(
			attempts,
			json_pack("{s:i, s:s?, s:s?, s:s?, s:o, s:o, s:s?, s:i, s:o, s:o}", "attempt",
				  att[j].attempt, "worker", att[j].worker, "jobId", att[j].job_id,
				  "executionType", att[j].execution_type, "startTime",
				  app_json_time(att[j].started_at), "finishTime",
				  app_json_time(att[j].finished_at), "status", att[j].status,
				  "replayedSteps", att[j].replayed, "executedSteps", executed,
				  "replayedPaths", replayed));
	}
	json_object_set_new(o, "attemptHistory", attempts);
	app_reply_json(resp, 200, o);
	store_step_list_free(steps, n_steps);
	store_attempt_list_free(att, n_att);
	store_replay_list_free(rep, n_rep);
	store_run_release(&run);
}

static void list_runs(struct app *a, struct app_req *r, struct app_response *resp)
{
	struct store_run_filter f = { .limit = 50 };
	const char *flow = json_string_value(json_object_get(r->query, "flowId"));
	const char *status = json_string_value(json_object_get(r->query, "status"));
	const char *limit = json_string_value(json_object_get(r->query, "limit"));
	const char *cursor = json_string_value(json_object_get(r->query, "cursor"));
	if (flow && *flow)
		f.flow_id = flow;
	if (cursor && *cursor)
		f.cursor = cursor;
	if (limit && *limit) {
		char *end;
		long n = strtol(limit, &end, 10);
		if (*end || n < 1 || n > 1000) {
			app_reply_error(resp, 400, "limit must be an integer from 1 to 1000");
			return;
		}
		f.limit = (int)n;
	}
	if (status && *status) {
		char *copy = fl_strdup(status);
		char *save = NULL;
		for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			enum store_run_status st;
			if (store_run_status_parse(tok, &st)) {
				app_reply_error(resp, 400, "unknown run status '%s'", tok);
				fl_free(copy);
				return;
			}
			if (f.n_statuses < STORE_RUN_STATUS_COUNT)
				f.statuses[f.n_statuses++] = st;
		}
		fl_free(copy);
	}
	struct store_run *runs;
	size_t n;
	char *next;
	struct fl_err err = { 0 };
	int rc = store_run_list(a->store, &f, &runs, &n, &next, &err);
	if (rc) {
		app_reply_fail(resp, rc, &err);
		return;
	}
	json_t *data = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(data, run_summary(&runs[i]));
	app_reply_json(resp, 200,
		       json_pack("{s:o, s:o}", "data", data, "next",
				 next ? json_string(next) : json_null()));
	store_run_list_free(runs, n);
	fl_free(next);
}

static void reply_run(struct app *a, const char *id, int status, struct app_response *resp)
{
	struct store_run run;
	struct fl_err err = { 0 };
	int rc = store_run_get(a->store, id, &run, &err);
	if (rc) {
		app_reply_fail(resp, rc, &err);
		return;
	}
	app_reply_json(resp, status, run_summary(&run));
	store_run_release(&run);
}

static void retry_run(struct app *a, struct app_req *r, const char *id,
		      struct app_response *resp)
{
	struct fl_err err = { 0 };
	json_t *body;
	if (app_req_json(r, &body, &err)) {
		app_reply_error(resp, 400, "%s", err.msg);
		return;
	}
	const char *strategy = json_string_value(json_object_get(body, "strategy"));
	if (!strategy) {
		app_reply_error(resp, 400,
				"strategy: expected \"FROM_FAILED_STEP\" or \"ON_LATEST_VERSION\"");
		json_decref(body);
		return;
	}
	int rc;
	if (!strcmp(strategy, "FROM_FAILED_STEP")) {
		struct store_job job;
		rc = store_run_retry_from_failed(a->store, id, fl_now_ms(), &job, &err);
		struct store_run run;
		if (!rc)
			rc = store_run_get(a->store, id, &run, &err);
		if (!rc) {
			if (app_enqueue(a, job.job_id, run.id, run.flow_id, run.flow_version_id, "BEGIN",
					0, 0, &err))
				fl_warn("app", "retry of run '%s' not enqueued (the reaper will): %s", id,
					err.msg);
			app_metrics_count(&a->metrics, &a->metrics.runs_created[APP_ORIGIN_RETRY]);
			app_reply_json(resp, 200, run_summary(&run));
			store_run_release(&run);
		}
		store_job_release(&job);
	} else if (!strcmp(strategy, "ON_LATEST_VERSION")) {
		struct store_run old;
		struct store_flow flow;
		memset(&flow, 0, sizeof flow);
		rc = store_run_get(a->store, id, &old, &err);
		if (!rc)
			rc = store_flow_get(a->store, old.flow_id, &flow, &err);
		if (!rc) {
			char new_id[22];
			fl_random_id(new_id);
			struct store_run nr = { .id = new_id, .flow_id = old.flow_id,
						.flow_version_id = flow.version_id,
						.trigger_output = old.trigger_output, .job_id = new_id,
						.created_at = fl_now_ms(), .retry_of = old.id };
			rc = store_run_create(a->store, &nr, &err);
			if (!rc && app_enqueue(a, new_id, new_id, nr.flow_id, nr.flow_version_id,
					       "BEGIN", 0, 0, &err)) {
				store_run_abandon(a->store, new_id, STORE_RUN_QUEUED, 0,
						  STORE_RUN_INTERNAL_ERROR, err.msg, fl_now_ms(), NULL);
				rc = FL_EREDIS;
			}
			if (!rc) {
				app_metrics_count(&a->metrics,
						  &a->metrics.runs_created[APP_ORIGIN_RETRY]);
				reply_run(a, new_id, 201, resp);
			}
		}
		if (old.id)
			store_run_release(&old);
		store_flow_release(&flow);
	} else {
		app_reply_error(resp, 400,
				"strategy: expected \"FROM_FAILED_STEP\" or \"ON_LATEST_VERSION\", got '%s'",
				strategy);
		rc = 0;
	}
	if (rc)
		app_reply_fail(resp, rc, &err);
	json_decref(body);
}

void app_api_runs(struct app *a, struct app_req *r, struct app_response *resp)
{
	const char *m = r->raw->method ? r->raw->method : "GET";
	if (r->n_segs == 2) {
		if (!strcmp(m, "GET"))
			list_runs(a, r, resp);
		else
			app_reply_error(resp, 405, "method %s not allowed on /v1/flow-runs", m);
		return;
	}
	const char *id = r->segs[2];
	if (r->n_segs == 3) {
		if (!strcmp(m, "GET"))
			show_run(a, id, resp);
		else
			app_reply_error(resp, 405, "method %s not allowed on a run", m);
		return;
	}
	if (r->n_segs == 4 && !strcmp(m, "POST") && !strcmp(r->segs[3], "retry")) {
		retry_run(a, r, id, resp);
		return;
	}
	if (r->n_segs == 4 && !strcmp(m, "POST") && !strcmp(r->segs[3], "cancel")) {
		struct fl_err err = { 0 };
		int rc = store_run_cancel(a->store, id, fl_now_ms(), &err);
		if (rc) {
			app_reply_fail(resp, rc, &err);
			return;
		}
		app_sync_notify(a, id, NULL, 1);
		reply_run(a, id, 200, resp);
		return;
	}
	app_reply_error(resp, 404, "no route for %s '%s'", m, r->path);
}

/* ---- ANY /v1/flow-runs/:id/waitpoints/:waitpointId[/sync] ---- */

void app_api_waitpoint(struct app *a, struct app_req *r, struct app_response *resp)
{
	const char *run_id = r->segs[2], *wp_id = r->segs[4];
	int sync = r->n_segs == 6;
	struct fl_err err = { 0 };
	json_t *body = NULL;
	if (r->raw->body_len && app_content_type_is_json(r->content_type)) {
		if (app_req_json(r, &body, &err)) {
			app_reply_error(resp, 400, "%s", err.msg);
			return;
		}
	} else if (r->raw->body_len) {
		body = fl_json_bytes(r->raw->body, r->raw->body_len);
	}
	json_t *headers = app_req_headers_json(r);
	json_t *payload = json_pack("{s:o, s:o, s:O}", "body", body ? body : json_object(),
				    "headers", headers, "queryParams", r->query);
	char *text = fl_json_dump(payload);
	json_decref(payload);

	enum store_resume_outcome outcome = STORE_RESUME_KEPT;
	struct store_job job;
	int rc = store_waitpoint_resume(a->store, run_id, wp_id, text, fl_now_ms(), &outcome, &job,
					&err);
	free(text);
	if (rc == FL_ENOTFOUND || rc == FL_ECONFLICT) {
		app_reply_error(resp, 410, "%s", err.msg);
		return;
	}
	if (rc == FL_EINVAL) {
		app_reply_error(resp, 409, "%s", err.msg);
		return;
	}
	if (rc) {
		app_reply_fail(resp, rc, &err);
		return;
	}
	struct app_waiter *w = sync ? app_sync_wait(a, run_id,
						    (int64_t)a->cfg->webhook_timeout_s * 1000)
				    : NULL;
	if (outcome == STORE_RESUME_ENQUEUE) {
		struct store_run run;
		if (!store_run_get(a->store, run_id, &run, &err)) {
			if (app_enqueue(a, job.job_id, run.id, run.flow_id, run.flow_version_id,
					"RESUME", run.synchronous, 0, &err))
				fl_warn("app", "resume of run '%s' not enqueued (the reaper will): %s",
					run_id, err.msg);
			store_run_release(&run);
		}
		app_metrics_count(&a->metrics, &a->metrics.runs_created[APP_ORIGIN_RESUME]);
	}
	store_job_release(&job);
	if (w) {
		resp->waiter = w;
		return;
	}
	app_reply_json(resp, 200,
		       json_pack("{s:s, s:s, s:s}", "runId", run_id, "waitpointId", wp_id, "status",
				 outcome == STORE_RESUME_ENQUEUE ? "RESUMED" : "ACCEPTED"));
}
