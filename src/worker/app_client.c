/* Requests to the app with retry: see app_client.h. */
#include "worker/app_client.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/time.h"
#include "net/http.h"

#include <stdlib.h>
#include <string.h>

/* A local reply is a plain heap string; an HTTP one belongs to net/http.h. */
static void release_response(const struct wk_call *c, struct net_http_response *resp)
{
	if (c->local)
		free(resp->body);
	else
		net_http_response_release(resp);
}

int wk_app_call(const struct wk_call *c, const char *method, const char *path, const json_t *body,
		long *status, json_t **reply, struct fl_err *err)
{
	char *url = c->local ? NULL : fl_asprintf("%s%s", c->base_url, path);
	size_t token_len = strlen(c->token);
	char *auth = fl_malloc(sizeof "Bearer " + token_len);
	memcpy(auth, "Bearer ", 7);
	memcpy(auth + 7, c->token, token_len + 1);
	/* The app in this process reads the value itself: only its length is needed. */
	char *text = body && !c->local ? fl_json_dump(body) : NULL;
	size_t body_len = text ? strlen(text) : body ? fl_json_length(body) : 0;
	struct net_header headers[] = {
		{ "Authorization", auth },
		{ "Content-Type", "application/json" },
		{ "Accept", "application/json" },
	};
	struct net_http_request req = {
		.method = method,
		.url = url,
		.headers = headers,
		.n_headers = body ? 3 : 2,
		.body = text,
		.body_len = body_len,
		.timeout_ms = 30000,
	};
	if (!body) {
		headers[1] = headers[2];
	}
	int64_t backoff = 100;
	int attempt = 0, rc;
	struct fl_err e;
	for (;;) {
		struct net_http_response resp = { 0 };
		json_t *reply_json = NULL;
		if (c->local) {
			char *body_out = NULL;
			size_t body_out_len = 0;
			rc = c->local(c->local_arg, method, path, auth, body, body_len,
				      &resp.status, &reply_json, &body_out, &body_out_len);
			if (rc)
				fl_err_set(&e, rc, "the app in this process failed the request");
			resp.body = body_out;
			resp.body_len = body_out_len;
		} else {
			rc = net_http_do(&req, &resp, &e);
		}
		/* As json_loadb without JSON_DECODE_ANY reads a text answer: only an object or an
		 * array. */
		if (reply_json && !json_is_object(reply_json) && !json_is_array(reply_json)) {
			json_decref(reply_json);
			reply_json = NULL;
		}
		if (rc == 0 && resp.status < 500) {
			*status = resp.status;
			if (reply && reply_json)
				*reply = reply_json;
			else if (reply)
				*reply = resp.body_len ? json_loadb(resp.body, resp.body_len, 0, NULL) : NULL;
			else
				json_decref(reply_json);
			release_response(c, &resp);
			break;
		}
		json_decref(reply_json);
		if (rc == 0) {
			fl_err_set(&e, FL_EIO, "app answered %ld", resp.status);
			release_response(c, &resp);
		}
		attempt++;
		if (attempt == 1 || attempt % 10 == 0)
			fl_warn("worker", "%s %s failed (try %d), retrying: %s", method, path, attempt, e.msg);
		if (c->give_up && c->give_up(c->give_up_arg)) {
			rc = fl_err_set(err, FL_ECONFLICT, "%s %s abandoned: the job is no longer ours",
					method, path);
			break;
		}
		if (c->deadline_ms && fl_mono_ms() + backoff > c->deadline_ms) {
			rc = fl_err_set(err, FL_ETIMEOUT, "%s %s: the app did not answer in time: %s",
					method, path, e.msg);
			break;
		}
		/* Sleep in slices so that a lost lock is noticed quickly. */
		for (int64_t slept = 0; slept < backoff; slept += 50) {
			if (c->give_up && c->give_up(c->give_up_arg))
				break;
			fl_sleep_ms(50);
		}
		backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
	}
	if (attempt && rc == 0)
		fl_info("worker", "%s %s went through after %d retries", method, path, attempt);
	fl_free(url);
	fl_free(auth);
	free(text);
	return rc;
}
