/* The worker's side of the app's /v1/engine API (app/engine_api.h): JSON requests carrying the
 * run's token, retried with backoff while the app is unreachable or answers 5xx, so that no
 * checkpoint or result is dropped while the app restarts. */
#ifndef WK_APP_CLIENT_H
#define WK_APP_CLIENT_H

#include <jansson.h>
#include <stdint.h>

struct fl_err;

/* Tells a retry loop to give up: the job's lock was lost or the worker is stopping hard.
 * Returns non-zero to stop. */
typedef int (*wk_give_up_fn)(void *arg);

/* An app in the same process (flowd serve), reached without a socket: handles method target
 * (path and query) with the given Authorization header value and body (NULL: none), as the app
 * would over HTTP. The body comes as the JSON value (borrowed), which the app reads as it is,
 * and body_len, the length of its compact JSON text, for the app's body limit: nothing writes
 * the text out. Returns 0 with
 * *status and either *reply_json (a JSON answer, a new reference) or *reply (a heap string of
 * *reply_len bytes, released with free(), or NULL), or a negative code, which is retried like a
 * failed connection. */
typedef int (*wk_app_local_fn)(void *arg, const char *method, const char *target,
			       const char *authorization, const json_t *body_json, size_t body_len, long *status, json_t **reply_json, char **reply,
			       size_t *reply_len);

struct wk_call {
	const char *base_url;   /* AP_APP_URL */
	const char *token;      /* the run's bearer token */
	wk_give_up_fn give_up;  /* may be NULL */
	void *give_up_arg;
	int64_t deadline_ms;    /* monotonic ms after which retries stop; 0: none */
	wk_app_local_fn local; /* set: the app is in this process, base_url is unused */
	void *local_arg;
};

/* Sends method path (with query) and body (NULL: none) as JSON. Retries connection failures and
 * 5xx answers with backoff (100 ms doubling to 5 s) until an answer below 500 arrives, give_up
 * says stop, or the deadline passes. On an answer returns 0 with *status and *reply (a new
 * reference to the parsed body, or NULL when it is not JSON; reply may be NULL). Returns
 * FL_ECONFLICT when given up, FL_ETIMEOUT past the deadline, with err set. */
int wk_app_call(const struct wk_call *c, const char *method, const char *path, const json_t *body,
		long *status, json_t **reply, struct fl_err *err);

#endif
