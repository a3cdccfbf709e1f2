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
#include "queue/bq.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
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

/* ---- authentication of catch_webhook ---- */

/* A field of the trigger's auth settings: authFields.<key>, or <key> at the top of input. */
static const char *auth_field(const json_t *input, const char *key, const char *def)
{
	const char *v = json_string_value(json_object_get(json_object_get(input, "authFields"), key));
	if (!v)
		v = json_string_value(json_object_get(input, key));
	return v && *v ? v : def;
}

static int same(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);
	return alen == blen && !CRYPTO_memcmp(a, b, alen);
}

static int check_basic(const struct app_req *r, const json_t *input)
{
	const char *user = auth_field(input, "username", ""), *pass = auth_field(input, "password", "");
	const char *h = app_req_header(r, "authorization");
	if (!h || strncasecmp(h, "Basic ", 6))
		return 0;
	h += 6;
	while (*h == ' ')
		h++;
	size_t len = strlen(h);
	if (len > 4096)
		return 0;
	unsigned char *dec = fl_malloc(len + 4);
	int n = EVP_DecodeBlock(dec, (const unsigned char *)h, (int)len);
	int ok = 0;
	if (n >= 0) {
		/* EVP_DecodeBlock counts padding as zero bytes; drop them. */
		while (len && h[len - 1] == '=' && n > 0) {
			n--;
			len--;
		}
		char *want = fl_asprintf("%s:%s", user, pass);
		ok = same((const char *)dec, (size_t)n, want);
		fl_free(want);
	}
	fl_free(dec);
	return ok;
}

static int check_header(const struct app_req *r, const json_t *input)
{
	const char *name = auth_field(input, "headerName", NULL);
	const char *value = auth_field(input, "headerValue", "");
	const char *got = name ? app_req_header(r, name) : NULL;
	return got && same(got, strlen(got), value);
}

static int check_hmac(const struct app_req *r, const json_t *input)
{
	const char *header = auth_field(input, "hmacHeaderName", "x-signature");
	const char *secret = auth_field(input, "hmacSecret", "");
	const char *alg = auth_field(input, "hmacAlgorithm", "sha256");
	const char *enc = auth_field(input, "hmacEncoding", "hex");
	const char *prefix = auth_field(input, "hmacSignaturePrefix", "");
	const EVP_MD *md = !strcasecmp(alg, "sha1")	? EVP_sha1()
			   : !strcasecmp(alg, "sha512") ? EVP_sha512()
			   : !strcasecmp(alg, "sha256") ? EVP_sha256()
							: NULL;
	const char *got = app_req_header(r, header);
	if (!md || !got)
		return 0;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	static const unsigned char empty[1];
	HMAC(md, secret, (int)strlen(secret),
	     r->raw->body_len ? (const unsigned char *)r->raw->body : empty, r->raw->body_len, mac,
	     &mac_len);
	char sig[2 * EVP_MAX_MD_SIZE + 8];
	if (!strcasecmp(enc, "base64")) {
		EVP_EncodeBlock((unsigned char *)sig, mac, (int)mac_len);
	} else {
		for (unsigned i = 0; i < mac_len; i++)
			snprintf(sig + 2 * i, 3, "%02x", mac[i]);
	}
	char *want = fl_asprintf("%s%s", prefix, sig);
	while (*got == ' ')
		got++;
	size_t glen = strlen(got);
	while (glen && got[glen - 1] == ' ')
		glen--;
	/* Hex digests are compared without regard to case. */
	int ok;
	if (strcasecmp(enc, "base64") && glen == strlen(want)) {
		char *lower = fl_strndup(got, glen);
		size_t plen = strlen(prefix);
		for (size_t i = plen; i < glen; i++)
			lower[i] = (char)tolower((unsigned char)lower[i]);
		ok = same(lower, glen, want);
		fl_free(lower);
	} else {
		ok = same(got, glen, want);
	}
	fl_free(want);
	return ok;
}

/* 1 when the request passes the trigger's authentication (or it has none). */
static int authorized(const struct app_req *r, const json_t *version)
{
	const json_t *settings = json_object_get(json_object_get(version, "trigger"), "settings");
	const char *piece = json_string_value(json_object_get(settings, "pieceName"));
	if (!piece || !strstr(piece, "piece-webhook"))
		return 1;
	const json_t *input = json_object_get(settings, "input");
	const char *type = json_string_value(json_object_get(input, "authType"));
	if (!type || !*type || !strcasecmp(type, "none"))
		return 1;
	if (!strcasecmp(type, "basic"))
		return check_basic(r, input);
	if (!strcasecmp(type, "header"))
		return check_header(r, input);
	if (!strcasecmp(type, "hmac"))
		return check_hmac(r, input);
	return 0; /* an auth type we do not know lets nothing through */
}

/* ---- the trigger output ---- */

static int is_type(const char *ct, const char *want)
{
	if (!ct)
		return 0;
	while (*ct == ' ')
		ct++;
	size_t n = strlen(want);
	return !strncasecmp(ct, want, n) && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* The body as the trigger output shows it; NULL (with err) for invalid JSON. */
static json_t *parse_body(const struct app_req *r, struct fl_err *err)
{
	const char *b = r->raw->body;
	size_t len = r->raw->body_len;
	if (app_content_type_is_json(r->content_type)) {
		json_t *v;
		if (app_req_json(r, &v, err))
			return NULL;
		return v ? v : json_object();
	}
	if (!len)
		return json_object();
	if (is_type(r->content_type, "application/x-www-form-urlencoded")) {
		json_t *o = json_object();
		app_parse_query(b, len, o);
		return o;
	}
	return app_json_bytes(b, len);
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
	int ok = authorized(r, version);
	json_decref(version);
	if (!ok) {
		app_response_add_header(resp, "WWW-Authenticate", "Basic");
		app_reply_error(resp, 401, "the webhook's authentication failed");
		return;
	}
	json_t *body = parse_body(r, &err);
	if (!body) {
		app_reply_error(resp, 400, "%s", err.msg);
		return;
	}
	json_t *output = json_pack("{s:s, s:o, s:o, s:O, s:o}", "method",
				   r->raw->method ? r->raw->method : "GET", "headers",
				   app_req_headers_json(r), "body", body, "queryParams", r->query,
				   "rawBody",
				   r->raw->body_len ? app_json_bytes(r->raw->body, r->raw->body_len)
						    : json_string(""));
	if (!output) /* a method that is not UTF-8 */
		output = json_pack("{s:s, s:o, s:o, s:O}", "method", "GET", "headers", json_object(),
				   "body", json_object(), "queryParams", r->query);
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
