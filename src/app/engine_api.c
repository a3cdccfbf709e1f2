/* The /v1/engine endpoints that workers call: app/engine_api.h is the contract. Each request
 * is authenticated by a per-run token (core/token.h) and every write is committed before the
 * answer, which is the worker's signal that it may go on. */
#include "app/app_int.h"
#include "app/engine_api.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/time.h"
#include "core/token.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

size_t app_engine_body_limit(int max_log_size_mb)
{
	return (size_t)max_log_size_mb * 2 * 1024 * 1024 + 1024 * 1024;
}

static char *dump(const json_t *v)
{
	return v && !json_is_null(v) ? fl_json_dump(v) : NULL;
}

/* 409 with the run's status now, so that the worker knows why. */
static void reply_conflict(struct app *a, const char *run_id, struct app_response *resp,
			   const struct fl_err *err)
{
	struct store_run run;
	const char *status = "UNKNOWN";
	int have = !store_run_get(a->store, run_id, &run, NULL);
	if (have)
		status = store_run_status_name(run.status);
	app_reply_json(resp, 409, json_pack("{s:s, s:s}", "error", err->msg, "status", status));
	if (have)
		store_run_release(&run);
}

static void reply_store_fail(struct app *a, const char *run_id, struct app_response *resp,
			     int rc, const struct fl_err *err)
{
	if (rc == FL_ECONFLICT)
		reply_conflict(a, run_id, resp, err);
	else
		app_reply_fail(resp, rc, err);
}

static int get_attempt(const json_t *body, struct app_response *resp, int *attempt)
{
	json_t *v = json_object_get(body, "attempt");
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000000) {
		app_reply_error(resp, 400, "attempt: expected the attempt number from /start");
		return -1;
	}
	*attempt = (int)json_integer_value(v);
	return 0;
}

/* ---- start ---- */

static void start(struct app *a, const char *run_id, const json_t *body,
		  struct app_response *resp)
{
	const char *job_id = json_string_value(json_object_get(body, "jobId"));
	const char *delivery = json_string_value(json_object_get(body, "delivery"));
	const char *worker = json_string_value(json_object_get(body, "workerId"));
	const char *type = json_string_value(json_object_get(body, "executionType"));
	if (!type)
		type = "BEGIN";
	if (strcmp(type, "BEGIN") && strcmp(type, "RESUME")) {
		app_reply_error(resp, 400, "executionType: expected \"BEGIN\" or \"RESUME\"");
		return;
	}
	struct store_start st = { .run_id = run_id, .job_id = job_id, .delivery = delivery,
				  .worker = worker, .execution_type = type, .now = fl_now_ms() };
	struct store_run run;
	struct fl_err err = { 0 };
	int attempt = 0;
	struct store_step *steps = NULL;
	size_t n = 0;
	int rc = store_run_start_with_steps(a->store, &st, &run, &attempt, &steps, &n, &err);
	if (rc) {
		reply_store_fail(a, run_id, resp, rc, &err);
		return;
	}
	/* Usually the version a webhook just looked up: the cache spares parsing it again. */
	json_t *version = app_flow_version_cached(a, run.flow_id, run.flow_version_id);
	if (!version) {
		struct store_version ver;
		rc = store_version_get(a->store, run.flow_version_id, &ver, &err);
		if (rc) {
			app_reply_fail(resp, rc, &err);
			store_step_list_free(steps, n);
			store_run_release(&run);
			return;
		}
		version = json_loads(ver.definition, 0, NULL);
		store_version_release(&ver);
	}
	json_t *resume = json_null();
	if (run.resume_payload || (run.waitpoint_id && !strcmp(type, "RESUME"))) {
		struct store_waitpoint wp;
		const char *path = NULL;
		int have_wp = run.waitpoint_id && !store_waitpoint_get(a->store, run.waitpoint_id,
									&wp, NULL);
		if (have_wp)
			path = wp.step_path;
		json_t *payload = run.resume_payload ? json_loads(run.resume_payload, 0, NULL) : NULL;
		resume = json_pack("{s:s?, s:s?, s:o}", "waitpointId", run.waitpoint_id, "stepPath",
				   path, "payload", payload ? payload : json_object());
		if (have_wp)
			store_waitpoint_release(&wp);
	}
	json_t *trigger = fl_json_loads(run.trigger_output, JSON_DECODE_ANY, NULL);
	json_t *o = json_pack(
		"{s:s, s:s, s:s, s:i, s:s, s:b, s:o, s:o, s:o, s:o, s:s, s:I}", "runId", run.id,
		"flowId", run.flow_id, "flowVersionId", run.flow_version_id, "attempt", attempt,
		"executionType", type, "synchronous", run.synchronous, "flowVersion",
		version ? version : json_object(), "triggerOutput", trigger ? trigger : json_object(),
		"steps", app_steps_assemble(steps, n), "resume", resume, "frontendUrl",
		a->cfg->frontend_url, "logSizeLimitBytes",
		(json_int_t)a->cfg->max_flow_run_log_size_mb * 1024 * 1024);
	app_reply_json(resp, 200, o);
	store_step_list_free(steps, n);
	store_run_release(&run);
}

/* ---- step records ---- */

/* Converts [{"path","record"}] into store steps; 400 and -1 when malformed. The strings point
 * into *texts, which the caller frees with free_texts. */
static int parse_records(const json_t *list, struct store_step **out, size_t *n,
			 struct app_response *resp, struct app *a)
{
	*out = NULL;
	*n = 0;
	if (!list || json_is_null(list))
		return 0;
	if (!json_is_array(list)) {
		app_reply_error(resp, 400, "steps: expected an array of {\"path\",\"record\"}");
		return -1;
	}
	size_t count = json_array_size(list);
	struct store_step *steps = fl_calloc(count ? count : 1, sizeof *steps);
	for (size_t i = 0; i < count; i++) {
		const json_t *item = json_array_get(list, i);
		const char *path = json_string_value(json_object_get(item, "path"));
		const json_t *rec = json_object_get(item, "record");
		if (!path || !*path || strlen(path) > 4096 || !json_is_object(rec)) {
			app_reply_error(resp, 400,
					"steps[%zu]: expected {\"path\": string, \"record\": object}",
					i);
			store_step_list_free(steps, i);
			return -1;
		}
		const char *status = json_string_value(json_object_get(rec, "status"));
		const char *type = json_string_value(json_object_get(rec, "type"));
		const char *last = strrchr(path, '.');
		json_t *dur = json_object_get(rec, "duration");
		steps[i].path = fl_strdup(path);
		steps[i].name = fl_strdup(last ? last + 1 : path);
		steps[i].type = type ? fl_strdup(type) : NULL;
		steps[i].status = fl_strdup(status ? status : "SUCCEEDED");
		steps[i].record = fl_json_dump(rec);
		steps[i].duration_ms = json_is_integer(dur)  ? (int64_t)json_integer_value(dur)
				       : json_is_real(dur) ? (int64_t)json_real_value(dur)
							   : 0;
		app_metrics_step(&a->metrics, (double)steps[i].duration_ms / 1000.0);
	}
	*out = steps;
	*n = count;
	return 0;
}

static int put_records(struct app *a, const char *run_id, int attempt, const json_t *list,
		       struct app_response *resp)
{
	struct store_step *steps;
	size_t n;
	if (parse_records(list, &steps, &n, resp, a))
		return -1;
	if (!n) {
		fl_free(steps);
		return 0;
	}
	struct fl_err err = { 0 };
	int rc = store_steps_put(a->store, run_id, attempt, steps, n, fl_now_ms(), &err);
	store_step_list_free(steps, n);
	if (rc) {
		reply_store_fail(a, run_id, resp, rc, &err);
		return -1;
	}
	return 0;
}

/* Records the paths the attempt replayed ("replayed": [path, ...], optional). */
static int put_replayed(struct app *a, const char *run_id, int attempt, const json_t *list,
			struct app_response *resp)
{
	if (!list || json_is_null(list))
		return 0;
	size_t n = json_array_size(list);
	if (!json_is_array(list) || n > 1000000) {
		app_reply_error(resp, 400, "replayed: expected an array of step paths");
		return -1;
	}
	if (!n)
		return 0;
	const char **paths = fl_calloc(n, sizeof *paths);
	for (size_t i = 0; i < n; i++) {
		paths[i] = json_string_value(json_array_get(list, i));
		if (!paths[i] || !*paths[i] || strlen(paths[i]) > 4096) {
			app_reply_error(resp, 400, "replayed[%zu]: expected a step path", i);
			fl_free(paths);
			return -1;
		}
	}
	struct fl_err err = { 0 };
	int rc = store_attempt_replayed(a->store, run_id, attempt, paths, n, fl_now_ms(), &err);
	fl_free(paths);
	if (rc) {
		reply_store_fail(a, run_id, resp, rc, &err);
		return -1;
	}
	return 0;
}

static void steps_endpoint(struct app *a, const char *run_id, const json_t *body,
			   struct app_response *resp)
{
	int attempt;
	if (get_attempt(body, resp, &attempt))
		return;
	if (!json_is_array(json_object_get(body, "steps"))) {
		app_reply_error(resp, 400, "steps: expected an array of {\"path\",\"record\"}");
		return;
	}
	if (put_replayed(a, run_id, attempt, json_object_get(body, "replayed"), resp))
		return;
	if (put_records(a, run_id, attempt, json_object_get(body, "steps"), resp))
		return;
	app_reply_json(resp, 200, json_pack("{s:b}", "ok", 1));
}

/* ---- response ---- */

static void response_endpoint(struct app *a, const char *run_id, const json_t *body,
			      struct app_response *resp)
{
	int attempt;
	if (get_attempt(body, resp, &attempt))
		return;
	const json_t *response = json_object_get(body, "response");
	if (!json_is_object(response)) {
		app_reply_error(resp, 400, "response: expected {\"status\",\"headers\",\"body\"}");
		return;
	}
	char *text = fl_json_dump(response);
	int stored = 0;
	struct fl_err err = { 0 };
	int rc = store_run_respond(a->store, run_id, attempt, text, fl_now_ms(), &stored, &err);
	free(text);
	if (rc) {
		reply_store_fail(a, run_id, resp, rc, &err);
		return;
	}
	if (stored)
		app_sync_notify(a, run_id, response, 0);
	app_reply_json(resp, 200, json_pack("{s:b}", "stored", stored));
}

/* ---- result and pause ---- */

static int parse_pause(const json_t *wp, struct store_pause *p, struct app_response *resp)
{
	memset(p, 0, sizeof *p);
	if (!json_is_object(wp)) {
		app_reply_error(resp, 400, "waitpoint: a PAUSED result needs {\"id\",\"type\"}");
		return -1;
	}
	p->waitpoint_id = json_string_value(json_object_get(wp, "id"));
	p->step_path = json_string_value(json_object_get(wp, "stepPath"));
	if (!p->step_path)
		p->step_path = json_string_value(json_object_get(wp, "stepName"));
	const char *type = json_string_value(json_object_get(wp, "type"));
	if (!p->waitpoint_id || !*p->waitpoint_id || strlen(p->waitpoint_id) > 64 ||
	    strchr(p->waitpoint_id, ':')) {
		app_reply_error(resp, 400, "waitpoint.id: expected a string without ':'");
		return -1;
	}
	if (!type || !strcmp(type, "WEBHOOK")) {
		p->type = STORE_WAITPOINT_WEBHOOK;
		return 0;
	}
	if (strcmp(type, "DELAY")) {
		app_reply_error(resp, 400, "waitpoint.type: expected \"WEBHOOK\" or \"DELAY\"");
		return -1;
	}
	p->type = STORE_WAITPOINT_DELAY;
	const json_t *at = json_object_get(wp, "resumeAt");
	if (json_is_integer(at))
		p->resume_at = (int64_t)json_integer_value(at);
	else if (json_is_real(at))
		p->resume_at = (int64_t)json_real_value(at);
	else if (!json_is_string(at) || fl_parse_iso8601(json_string_value(at), &p->resume_at)) {
		app_reply_error(resp, 400, "waitpoint.resumeAt: expected ms or an ISO time");
		return -1;
	}
	return 0;
}

static void finish(struct app *a, const char *run_id, const json_t *body, int pause_only,
		   struct app_response *resp)
{
	int attempt;
	if (get_attempt(body, resp, &attempt))
		return;
	enum store_run_status status = STORE_RUN_PAUSED;
	if (!pause_only) {
		const char *s = json_string_value(json_object_get(body, "status"));
		if (!s || store_run_status_parse(s, &status) || status == STORE_RUN_QUEUED ||
		    status == STORE_RUN_RUNNING || status == STORE_RUN_CANCELED) {
			app_reply_error(resp, 400, "status: '%s' is not a run result",
					s ? s : "(missing)");
			return;
		}
	}
	struct store_pause pause;
	if (status == STORE_RUN_PAUSED &&
	    parse_pause(json_object_get(body, "waitpoint"), &pause, resp))
		return;
	/* Records the engine had not posted yet go first: the result must not lose them. */
	if (put_replayed(a, run_id, attempt, json_object_get(body, "replayed"), resp))
		return;
	if (put_records(a, run_id, attempt, json_object_get(body, "records"), resp))
		return;

	const json_t *final_flag = json_object_get(body, "final");
	int is_final = !json_is_false(final_flag);
	struct fl_err err = { 0 };
	int rc;
	struct store_job job = { 0 };
	struct store_run after;
	int have_after = 0;
	const json_t *response = json_object_get(body, "response");
	if (!json_is_object(response))
		response = NULL;
	if (!is_final && status != STORE_RUN_PAUSED && status != STORE_RUN_SUCCEEDED) {
		rc = store_run_retry_pending(a->store, run_id, attempt, status, fl_now_ms(), &err);
	} else {
		char *steps = dump(json_object_get(body, "steps"));
		char *failed = dump(json_object_get(body, "failedStep"));
		char *resp_text = dump(response);
		const json_t *peak = json_object_get(body, "peakMemoryKb");
		struct store_finish f = { .run_id = run_id, .attempt = attempt, .status = status,
					  .steps = steps, .failed_step = failed,
					  .response = resp_text,
					  .peak_memory_kb = json_is_integer(peak)
								    ? (int64_t)json_integer_value(peak)
								    : 0,
					  .pause = status == STORE_RUN_PAUSED ? &pause : NULL,
					  .now = fl_now_ms() };
		rc = store_run_finish_get(a->store, &f, &job, &after, &err);
		have_after = !rc;
		free(steps);
		free(failed);
		free(resp_text);
	}
	if (rc) {
		reply_store_fail(a, run_id, resp, rc, &err);
		return;
	}
	struct store_run run;
	if (have_after) {
		run = after;
	} else if (store_run_get(a->store, run_id, &run, &err)) {
		store_job_release(&job);
		app_reply_fail(resp, FL_EDB, &err);
		return;
	}
	if (job.needed &&
	    app_enqueue(a, job.job_id, run.id, run.flow_id, run.flow_version_id, job.execution_type,
			run.synchronous, job.delay_ms, &err))
		fl_warn("app", "resume of run '%s' not enqueued (the reaper will): %s", run_id,
			err.msg);
	store_job_release(&job);
	if (store_run_status_is_final(run.status)) {
		json_t *stored = run.response ? fl_json_loads(run.response, 0, NULL) : NULL;
		app_sync_notify(a, run_id, stored, 1);
		json_decref(stored);
	}
	app_reply_json(resp, 200, json_pack("{s:s}", "status", store_run_status_name(run.status)));
	store_run_release(&run);
}

/* ---- piece store ---- */

static void store_endpoint(struct app *a, struct app_req *r, const json_t *body,
			   struct app_response *resp)
{
	const char *m = r->raw->method ? r->raw->method : "GET";
	const char *key = json_string_value(json_object_get(r->query, "key"));
	if (!key || !*key || strlen(key) > APP_STORE_KEY_MAX) {
		app_reply_error(resp, 400, "key: expected 1 to %d characters", APP_STORE_KEY_MAX);
		return;
	}
	struct fl_err err = { 0 };
	int rc;
	if (!strcmp(m, "GET")) {
		char *value = NULL;
		rc = store_kv_get(a->store, key, &value, &err);
		if (rc) {
			app_reply_fail(resp, rc, &err);
			return;
		}
		json_t *v = json_loads(value, JSON_DECODE_ANY, NULL);
		fl_free(value);
		app_reply_json(resp, 200,
			       json_pack("{s:s, s:o}", "key", key, "value", v ? v : json_null()));
	} else if (!strcmp(m, "PUT") || !strcmp(m, "POST")) {
		const json_t *v = json_object_get(body, "value");
		if (!v) {
			app_reply_error(resp, 400, "value: required");
			return;
		}
		char *text = fl_json_dump(v);
		if (strlen(text) > APP_STORE_VALUE_MAX) {
			free(text);
			app_reply_error(resp, 413, "value: larger than %d bytes", APP_STORE_VALUE_MAX);
			return;
		}
		rc = store_kv_put(a->store, key, text, fl_now_ms(), &err);
		free(text);
		if (rc) {
			app_reply_fail(resp, rc, &err);
			return;
		}
		app_reply_json(resp, 200, json_pack("{s:s, s:O}", "key", key, "value", v));
	} else if (!strcmp(m, "DELETE")) {
		int deleted = 0;
		rc = store_kv_delete(a->store, key, &deleted, &err);
		if (rc) {
			app_reply_fail(resp, rc, &err);
			return;
		}
		app_reply_json(resp, 200, json_pack("{s:b}", "deleted", deleted));
	} else {
		app_reply_error(resp, 405, "method %s not allowed on the store", m);
	}
}

/* ---- routing ---- */

void app_api_engine(struct app *a, struct app_req *r, struct app_response *resp)
{
	const char *h = app_req_header(r, "authorization");
	char token_run[FL_TOKEN_RUN_ID_MAX + 1];
	struct fl_err err = { 0 };
	const char *token = h && !strncasecmp(h, "Bearer ", 7) ? h + 7 : NULL;
	if (fl_token_verify(a->jwt_secret, token, fl_now_ms() / 1000, token_run, &err)) {
		app_reply_error(resp, 401, "%s", err.msg);
		return;
	}
	const char *m = r->raw->method ? r->raw->method : "GET";
	json_t *body = NULL;
	if (r->raw->body_json) {
		/* The worker in this process: the same JSON, without writing and parsing it. */
		body = json_incref((json_t *)r->raw->body_json);
	} else if (app_req_json(r, &body, &err)) {
		app_reply_error(resp, 400, "%s", err.msg);
		return;
	}
	if (body && !json_is_object(body)) {
		app_reply_error(resp, 400, "the body must be a JSON object");
		json_decref(body);
		return;
	}
	if (r->n_segs == 3 && !strcmp(r->segs[2], "store")) {
		store_endpoint(a, r, body, resp);
	} else if (r->n_segs == 5 && !strcmp(r->segs[2], "runs")) {
		const char *run_id = r->segs[3], *op = r->segs[4];
		if (strcmp(run_id, token_run)) {
			app_reply_error(resp, 403, "the token is for another run");
		} else if (strcmp(m, "POST")) {
			app_reply_error(resp, 405, "method %s not allowed", m);
		} else if (!strcmp(op, "start")) {
			start(a, run_id, body, resp);
		} else if (!strcmp(op, "steps")) {
			steps_endpoint(a, run_id, body, resp);
		} else if (!strcmp(op, "response")) {
			response_endpoint(a, run_id, body, resp);
		} else if (!strcmp(op, "result")) {
			finish(a, run_id, body, 0, resp);
		} else if (!strcmp(op, "pause")) {
			finish(a, run_id, body, 1, resp);
		} else {
			app_reply_error(resp, 404, "no engine endpoint '%s'", op);
		}
	} else {
		app_reply_error(resp, 404, "no route for '%s'", r->path);
	}
	json_decref(body);
}
