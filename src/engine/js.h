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
	/* CPU time of one evaluation (an expression with the promise jobs it queues) or of one
	 * whole code step (its body, timers and promise jobs together). Past it the script is
	 * stopped and the evaluation or step fails with FL_ETIMEOUT; waiting on a timer or a
	 * fetch uses none of it. 0: 10 s. (Where JavaScriptCore does not export
	 * VM::drainMicrotasks the limit applies to each callback and promise job separately,
	 * and an endless chain of promise jobs is stopped only by the flow timeout.) */
	int64_t time_limit_ms;
	/* Wall time of a whole code step, timers and fetches included. 0: 600 s. */
	int64_t code_wall_limit_ms;
	const struct net_policy *policy; /* applied to fetch; NULL: unrestricted */
};

struct js_runtime;

/* Cheap: the JavaScriptCore VM (milliseconds to create, and threads) is started on the first
 * evaluation or code step, so a flow that never needs JavaScript never pays for it. */
struct js_runtime *js_runtime_new(const struct js_runtime_opts *opts);
void js_runtime_free(struct js_runtime *rt);

/* For idle moments (waiting for a checkpoint's ack, or for the next operation): once the VM
 * runs, creates the global context that the next code step will take, so that the step does
 * not wait for it (a fresh context costs about 0.2 ms). Nothing runs in it before that step,
 * so it is as fresh as one created on the step's path. Does nothing before the VM starts, or
 * when such a context is already waiting. */
void js_prepare_code_context(struct js_runtime *rt);

/* Evaluates the JavaScript expression expr with each member of scope (an object: step name →
 * output) bound as a global name. On success *out is a new reference to the value as JSON, or
 * NULL when the value is undefined (or a function, or a symbol). Returns FL_EJS when the
 * expression throws or fails to parse, FL_ETIMEOUT when it runs past the time limit. */
int js_eval(struct js_runtime *rt, const char *expr, const json_t *scope, json_t **out,
	    struct fl_err *err);

/* A fresh global context in which several expressions are evaluated with one scope, e.g. all
 * the templates of one step's input: nothing of it is visible to any other session. The
 * context is created on the first evaluation, so a session that ends up evaluating nothing
 * costs nothing. Scope members are converted to JavaScript only when an expression names them.
 * A name of the form step_<n> that is not in scope (a skipped or not yet run step) is
 * undefined rather than a ReferenceError. scope is borrowed and must outlive the session. */
struct js_session;

struct js_session *js_session_new(struct js_runtime *rt, const json_t *scope);
void js_session_free(struct js_session *s);

/* Evaluates the expression expr[0..len) as js_eval does. */
int js_session_eval(struct js_session *s, const char *expr, size_t len, json_t **out,
		    struct fl_err *err);

/* Evaluates expr[0..len) and appends its value to out as template text: a string as it is,
 * undefined (or a function, a symbol) as nothing, anything else as JSON.stringify writes it.
 * Returns 0, FL_EJS when it throws (nothing appended), or FL_ETIMEOUT. */
int js_session_eval_text(struct js_session *s, const char *expr, size_t len, struct fl_buf *out,
			 struct fl_err *err);

/* What a code step's fetch needs to stamp requests: Idempotency-Key: <run_id>:<step_path>:<n>,
 * with n counted from *request_count (incremented per request). */
struct js_code_ctx {
	const char *run_id;
	const char *step_path;
	int *request_count;
};

/* Runs a CODE step: source is a module exporting `code` (`export const code = async (inputs) =>
 * ...`, `export async function code`, `export default ...`), inputs its resolved input. It runs
 * in a fresh global context with console, setTimeout/setInterval and their clear functions,
 * fetch, queueMicrotask, atob/btoa and crypto (randomUUID, getRandomValues), and no require,
 * process or file system; an import fails the step. Awaits the result, running timers and
 * fetches. On success *out is the returned value as JSON (NULL for undefined). console output
 * is appended to console (may be NULL). Returns FL_EJS with the error text ("Error: boom") when
 * the code throws or rejects, leaves a promise rejection unhandled, throws in a timer, or waits
 * on a promise nothing can settle (console output appended to the message after a newline);
 * FL_ETIMEOUT past time_limit_ms or code_wall_limit_ms. fetch(url, {method, headers, body,
 * redirect}) resolves to {status, ok, statusText, url, redirected, headers.get/has/forEach,
 * text(), json(), arrayBuffer()}; a network error or a refused address rejects with a
 * TypeError. */
int js_run_code(struct js_runtime *rt, const char *source, const json_t *inputs,
		const struct js_code_ctx *ctx, json_t **out, struct fl_buf *console,
		struct fl_err *err);

#endif
