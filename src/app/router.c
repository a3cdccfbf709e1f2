/* app_handle: one request in, one response out. Splits the target into decoded path segments
 * and a query object, picks the handler by the first segments, and applies the route's
 * authentication (the management API key; the engine token is checked by the engine handlers,
 * which know the run). No socket code here, so the fuzz target drives exactly this. */
#include "app/app_int.h"
#include "app/engine_api.h"
#include "core/alloc.h"
#include "core/codec.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"

#include <openssl/crypto.h>
#include <string.h>
#include <strings.h>

#define MAX_TARGET 8192

size_t app_body_limit(const struct app *a, const char *target)
{
	if (target && !strncmp(target, "/v1/engine/", 11))
		return a->engine_body_limit;
	return a->body_limit;
}

static void req_release(struct app_req *r)
{
	fl_free(r->path);
	for (int i = 0; i < r->n_segs; i++)
		fl_free(r->segs[i]);
	json_decref(r->query);
}

/* Splits target; returns 0, or -1 for a target we refuse to route (too long, too deep). */
static int req_parse(struct app_req *r, const struct app_request *raw)
{
	memset(r, 0, sizeof *r);
	r->raw = raw;
	r->query = json_object();
	const char *t = raw->target ? raw->target : "/";
	size_t len = strnlen(t, MAX_TARGET + 1);
	if (len > MAX_TARGET)
		return -1;
	size_t plen = strcspn(t, "?#");
	if (t[plen] == '?') {
		size_t qlen = strcspn(t + plen + 1, "#");
		fl_form_parse(t + plen + 1, qlen, r->query);
	}
	r->path = fl_strndup(t, plen);
	const char *p = t;
	const char *end = t + plen;
	while (p < end) {
		while (p < end && *p == '/')
			p++;
		if (p >= end)
			break;
		const char *s = p;
		while (p < end && *p != '/')
			p++;
		if (r->n_segs == (int)(sizeof r->segs / sizeof r->segs[0]))
			return -1;
		r->segs[r->n_segs++] = fl_url_decode(s, (size_t)(p - s), 0);
	}
	r->content_type = app_req_header(r, "content-type");
	return 0;
}

static int seg_is(const struct app_req *r, int i, const char *s)
{
	return i < r->n_segs && !strcmp(r->segs[i], s);
}

static int api_key_ok(const struct app *a, const struct app_req *r)
{
	const char *h = app_req_header(r, "authorization");
	if (!h || strncasecmp(h, "Bearer ", 7))
		return 0;
	const char *key = h + 7;
	while (*key == ' ')
		key++;
	size_t n = strlen(key), want = strlen(a->api_key);
	return n == want && !CRYPTO_memcmp(key, a->api_key, n);
}

static void health(struct app *a, struct app_response *resp)
{
	struct fl_err err = { 0 };
	if (store_ping(a->store, &err)) {
		app_reply_error(resp, 503, "store unavailable: %s", err.msg);
		return;
	}
	app_reply_json(resp, 200,
		       json_pack("{s:s, s:s}", "status", "ok", "store", store_backend_name(a->store)));
}

void app_handle(struct app *a, const struct app_request *raw, struct app_response *resp)
{
	memset(resp, 0, sizeof *resp);
	resp->keep_json = raw->json_reply;
	struct app_req r;
	const char *method = raw->method ? raw->method : "GET";
	if (req_parse(&r, raw)) {
		app_reply_error(resp, 414, "request target is too long or too deep");
		goto out;
	}
	if (raw->body_too_large || raw->body_len > app_body_limit(a, raw->target)) {
		app_reply_error(resp, 413, "request body is larger than %zu bytes",
				app_body_limit(a, raw->target));
		goto out;
	}

	if (seg_is(&r, 0, "metrics") && r.n_segs == 1) {
		if (strcmp(method, "GET") && strcmp(method, "HEAD"))
			app_reply_error(resp, 405, "method %s not allowed", method);
		else
			app_metrics_render(a, resp);
		goto out;
	}
	if (!seg_is(&r, 0, "v1")) {
		app_reply_error(resp, 404, "no route for '%s'", r.path);
		goto out;
	}
	if (seg_is(&r, 1, "health") && r.n_segs == 2) {
		health(a, resp);
		goto out;
	}
	if (seg_is(&r, 1, "webhooks") && (r.n_segs == 3 || (r.n_segs == 4 && seg_is(&r, 3, "sync")))) {
		app_api_webhook(a, &r, resp);
		goto out;
	}
	if (seg_is(&r, 1, "flow-runs") && r.n_segs >= 5 && seg_is(&r, 3, "waitpoints") &&
	    (r.n_segs == 5 || (r.n_segs == 6 && seg_is(&r, 5, "sync")))) {
		app_api_waitpoint(a, &r, resp);
		goto out;
	}
	if (seg_is(&r, 1, "engine")) {
		app_api_engine(a, &r, resp);
		goto out;
	}
	if (seg_is(&r, 1, "flows") || seg_is(&r, 1, "flow-runs")) {
		if (!api_key_ok(a, &r)) {
			app_response_add_header(resp, "WWW-Authenticate", "Bearer");
			app_reply_error(resp, 401, "missing or wrong API key");
			goto out;
		}
		if (seg_is(&r, 1, "flows"))
			app_api_flows(a, &r, resp);
		else
			app_api_runs(a, &r, resp);
		goto out;
	}
	app_reply_error(resp, 404, "no route for '%s'", r.path);
out:
	if (!resp->waiter)
		app_metrics_http(&a->metrics, resp->status);
	req_release(&r);
}
