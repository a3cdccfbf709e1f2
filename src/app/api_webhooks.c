/* ANY /v1/webhooks/:flowId[/sync]: turns an HTTP request into a run. The trigger output is
 * {"method","headers","body","queryParams","rawBody"} (shared/FLOWS.md §4 catch_webhook): a JSON
 * body is parsed (invalid JSON with a JSON content type is 400 and starts nothing), a form body
 * becomes an object, anything else stays text. The trigger's authType (basic, header, hmac) is
 * checked before any run exists: a failed check is 401. A sync call waits for the run's
 * response (app/sync.c). Also app_enqueue, the one place that builds EXECUTE_FLOW jobs. */
#include "app/app_int.h"
#include "app/engine_api.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/time.h"
#include "engine/pieces/pieces.h"
#include "queue/bq.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

int app_enqueue(struct app *a, const char *job_id, const char *run_id, const char *flow_id,
		const char *flow_version_id, const char *execution_type, int synchronous,
		int64_t delay_ms, struct fl_err *err)
{
	if (!a->queue)
		return fl_err_set(err, FL_EREDIS, "no queue is connected");
	json_t *data = json_pack("{s:i, s:s, s:s, s:s, s:s, s:b}", "schemaVersion", 1, "runId",
				 run_id, "flowId", flow_id, "flowVersionId", flow_version_id,
				 "executionType", execution_type, "synchronous", synchronous);
	char *text = fl_json_dump(data);
	json_decref(data);
	struct bq_job_opts opts = {
		.job_id = job_id,
		.delay_ms = delay_ms > 0 ? delay_ms : 0,
		.attempts = APP_JOB_ATTEMPTS,
		.backoff_type = BQ_BACKOFF_EXPONENTIAL,
		.backoff_delay_ms = APP_JOB_BACKOFF_MS,
		.remove_on_complete = { .kind = BQ_KEEP_NONE },
		.remove_on_fail = { .kind = BQ_KEEP_LIMITS, .count = -1,
				    .age_s = APP_JOB_FAILED_AGE_S },
	};
	bool duplicated = false;
	int rc = bq_job_add(a->queue, APP_JOB_NAME, text, &opts, NULL, &duplicated, err);
	free(text);
	if (!rc && duplicated)
		fl_debug("app", "job '%s' already exists", job_id);
	return rc;
}

/* ---- the flow cache ---- */

static struct app_flow_entry *flow_slot(struct app *a, const char *flow_id)
{
	uint32_t h = 2166136261u;
	for (const char *p = flow_id; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return &a->flows[h % APP_FLOW_CACHE];
}

int app_flow_lookup(struct app *a, const char *flow_id, char version_id[64], json_t **version,
		    struct fl_err *err)
{
	*version = NULL;
	if (strlen(flow_id) >= 64)
		return fl_err_set(err, FL_ENOTFOUND, "flow not found");
	int64_t now = fl_mono_ms();
	pthread_mutex_lock(&a->flow_mu);
	struct app_flow_entry *e = flow_slot(a, flow_id);
	if (e->version && !strcmp(e->id, flow_id) && now < e->expires_ms) {
		memcpy(version_id, e->version_id, 64);
		*version = json_incref(e->version);
	}
	pthread_mutex_unlock(&a->flow_mu);
	if (*version)
		return 0;
	struct store_flow f;
	int rc = store_flow_get(a->store, flow_id, &f, err);
	if (rc)
		return rc;
	json_t *v = json_loads(f.definition, 0, NULL);
	if (!v || strlen(f.version_id) >= 64) {
		json_decref(v);
		store_flow_release(&f);
		return fl_err_set(err, FL_EDB, "flow '%s' has an unreadable version", flow_id);
	}
	snprintf(version_id, 64, "%s", f.version_id);
	*version = json_incref(v);
	pthread_mutex_lock(&a->flow_mu);
	json_decref(e->version);
	snprintf(e->id, sizeof e->id, "%s", flow_id);
	snprintf(e->version_id, sizeof e->version_id, "%s", f.version_id);
	e->version = v;
	e->expires_ms = now + APP_FLOW_CACHE_MS;
	pthread_mutex_unlock(&a->flow_mu);
	store_flow_release(&f);
	return 0;
}

json_t *app_flow_version_cached(struct app *a, const char *flow_id, const char *version_id)
{
	if (!flow_id || !version_id || strlen(flow_id) >= 64)
		return NULL;
	json_t *v = NULL;
	pthread_mutex_lock(&a->flow_mu);
	struct app_flow_entry *e = flow_slot(a, flow_id);
	if (e->version && !strcmp(e->id, flow_id) && !strcmp(e->version_id, version_id))
		v = json_incref(e->version);
	pthread_mutex_unlock(&a->flow_mu);
	return v;
}

void app_flow_forget(struct app *a, const char *flow_id)
{
	pthread_mutex_lock(&a->flow_mu);
	struct app_flow_entry *e = flow_slot(a, flow_id);
	if (!strcmp(e->id, flow_id)) {
		json_decref(e->version);
		e->version = NULL;
		e->id[0] = '\0';
	}
	pthread_mutex_unlock(&a->flow_mu);
}

/* ---- catch_webhook: authentication and trigger output (engine/pieces/webhook.c) ---- */

/* 1 when the request passes the trigger's authentication (or it has none). */
static int authorized(const struct app_req *r, const json_t *version, const json_t *headers)
{
	const json_t *settings = json_object_get(json_object_get(version, "trigger"), "settings");
	const char *piece = json_string_value(json_object_get(settings, "pieceName"));
	if (!piece || !strstr(piece, "piece-webhook"))
		return 1;
	return !pc_webhook_check_auth(json_object_get(settings, "input"), headers, r->raw->body,
				      r->raw->body_len, NULL);
}

void app_api_webhook(struct app *a, struct app_req *r, struct app_response *resp)
{
	const char *flow_id = r->segs[2];
	int sync = r->n_segs == 4;
	struct fl_err err = { 0 };
	char version_id[64];
	json_t *version;
	int rc = app_flow_lookup(a, flow_id, version_id, &version, &err);
	if (rc) {
		app_reply_fail(resp, rc, &err);
		return;
	}
	json_t *headers = app_req_headers_json(r);
	int ok = authorized(r, version, headers);
	json_decref(version);
	if (!ok) {
		json_decref(headers);
		app_response_add_header(resp, "WWW-Authenticate", "Basic");
		app_reply_error(resp, 401, "the webhook's authentication failed");
		return;
	}
	json_t *output = pc_webhook_trigger_output(r->raw->method, headers, r->query, r->raw->body,
						   r->raw->body_len, &err);
	json_decref(headers);
	if (!output) {
		app_reply_error(resp, 400, "%s", err.msg);
		return;
	}
	char *text = fl_json_dump(output);
	json_decref(output);

	char run_id[22];
	fl_random_id(run_id);
	struct store_run run = { .id = run_id, .flow_id = (char *)flow_id,
				 .flow_version_id = version_id, .synchronous = sync,
				 .trigger_output = text, .job_id = run_id, .created_at = fl_now_ms() };
	rc = store_run_create(a->store, &run, &err);
	free(text);
	if (rc) {
		app_reply_fail(resp, rc, &err);
		return;
	}
	/* Registered before the job exists, so that no answer can come before we listen. */
	struct app_waiter *w =
		sync ? app_sync_wait(a, run_id, (int64_t)a->cfg->webhook_timeout_s * 1000) : NULL;
	rc = app_enqueue(a, run_id, run_id, flow_id, version_id, "BEGIN", sync, 0, &err);
	if (rc) {
		fl_error("app", "cannot enqueue run '%s': %s", run_id, err.msg);
		store_run_abandon(a->store, run_id, STORE_RUN_QUEUED, 0, STORE_RUN_INTERNAL_ERROR,
				  "the run could not be enqueued", fl_now_ms(), NULL);
		if (w)
			app_waiter_cancel(a, w);
		app_reply_json(resp, 503,
			       json_pack("{s:s, s:s}", "error", "the queue is unavailable", "runId",
					 run_id));
		return;
	}
	app_metrics_count(&a->metrics, &a->metrics.runs_created[APP_ORIGIN_WEBHOOK]);
	if (w) {
		resp->waiter = w;
		return;
	}
	app_reply_json(resp, 200, json_pack("{s:s}", "runId", run_id));
}
