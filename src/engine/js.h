/* JavaScript on JavaScriptCore's C API: template expressions and CODE steps. One js_runtime per
 * engine process (a JSContextGroup with an execution-time limit); every evaluation and every code
 * step runs in a fresh global context, so nothing of one step's globals is visible to the next. */
#ifndef ENG_JS_H
#define ENG_JS_H

#include <jansson.h>
#include <stdint.h>

struct fl_buf;
struct fl_err;
struct net_policy;

struct js_runtime_opts {
	int64_t time_limit_ms;           /* per evaluation and per code step; 0: a default */
	const struct net_policy *policy; /* applied to fetch; NULL: unrestricted */
};

struct js_runtime;

struct js_runtime *js_runtime_new(const struct js_runtime_opts *opts);
void js_runtime_free(struct js_runtime *rt);

/* Evaluates the JavaScript expression expr with each member of scope (an object: step name →
 * output) bound as a global name. On success *out is a new reference to the value as JSON, or
 * NULL when the value is undefined (or a function, or a symbol). Returns FL_EJS when the
 * expression throws or fails to parse, FL_ETIMEOUT when it runs past the time limit. */
int js_eval(struct js_runtime *rt, const char *expr, const json_t *scope, json_t **out,
	    struct fl_err *err);

/* What a code step's fetch needs to stamp requests: Idempotency-Key: <run_id>:<step_path>:<n>,
 * with n counted from *request_count (incremented per request). */
struct js_code_ctx {
	const char *run_id;
	const char *step_path;
	int *request_count;
};

/* Runs a CODE step: source is a module exporting `code` (`export const code = async (inputs) =>
 * ...`), inputs its resolved input. Awaits the result, running timers and fetches. On success
 * *out is the returned value as JSON (NULL for undefined). console output is appended to
 * console (may be NULL). Returns FL_EJS with the error text when the code throws or rejects
 * (console output appended to the message), FL_ETIMEOUT past the time limit. */
int js_run_code(struct js_runtime *rt, const char *source, const json_t *inputs,
		const struct js_code_ctx *ctx, json_t **out, struct fl_buf *console,
		struct fl_err *err);

#endif
