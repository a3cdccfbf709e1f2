/* The walker: see engine.h. A run walks the step tree depth-first. Each step's record goes into
 * the "level" it belongs to (the run's steps object, or one loop iteration's object), and each
 * SUCCEEDED output into the template scope under the step's name. A level of an earlier
 * delivery, when there is one, is walked alongside, so that completed steps are reused instead
 * of run again. */
#include "engine/engine.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"
#include "core/time.h"
#include "engine/condition.h"
#include "engine/flow.h"
#include "engine/js.h"
#include "engine/pieces/pieces.h"
#include "engine/template.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_LOG_LIMIT (10LL * 1024 * 1024)
#define DEFAULT_JS_LIMIT_MS 10000
#define DEFAULT_FRONTEND "http://localhost:8080"
#define RETRY_ATTEMPTS 4
/* How the record of a step that crossed the log size limit starts its errorMessage. */
#define LOG_LIMIT_MESSAGE "the run's steps exceed the log size limit"

struct eng_engine {
	struct js_runtime *js;
	const struct net_policy *policy;
};

struct run {
	struct eng_engine *e;
	const struct eng_flow *flow;
	const struct eng_run_opts *opts;
	const struct eng_host *host;
	const char *run_id;
	const char *flow_id;
	char *frontend;
	json_t *scope;          /* step name → output, as templates see it */
	int64_t log_bytes;
	int64_t log_limit;
	enum eng_status status; /* meaningful once the walk stops */
	json_t *failed_step;
	json_t *response;
	json_t *waitpoint;
	int resume_used;
	char approval_link_id[22]; /* set by create_approval_links for the next approval pause */
	struct fl_buf path;
	json_t *path_json;
	int64_t retry_base_ms;
	struct fl_buf console; /* what the running code step printed */
};

enum walk { WALK_ON, WALK_STOP };

const char *eng_status_name(enum eng_status status)
{
	switch (status) {
	case ENG_SUCCEEDED: return "SUCCEEDED";
	case ENG_FAILED: return "FAILED";
	case ENG_PAUSED: return "PAUSED";
	case ENG_TIMEOUT: return "TIMEOUT";
	case ENG_INTERNAL_ERROR: return "INTERNAL_ERROR";
	case ENG_LOG_SIZE_EXCEEDED: return "LOG_SIZE_EXCEEDED";
	}
	return "INTERNAL_ERROR";
}

int64_t eng_retry_base_ms(void)
{
	const char *v = getenv("FLOWD_RETRY_BASE_MS");
	if (v && *v) {
		char *end;
		long long ms = strtoll(v, &end, 10);
		if (!*end && ms >= 0)
			return ms;
	}
	return 4000;
}

struct eng_engine *eng_engine_new(const struct eng_engine_opts *opts)
{
	struct eng_engine *e = fl_calloc(1, sizeof *e);
	struct js_runtime_opts jo = {
		.time_limit_ms = opts && opts->js_time_limit_ms ? opts->js_time_limit_ms
								: DEFAULT_JS_LIMIT_MS,
		.policy = opts ? opts->policy : NULL,
	};
	e->js = js_runtime_new(&jo);
	e->policy = opts ? opts->policy : NULL;
	return e;
}

void eng_engine_idle(struct eng_engine *e)
{
	js_prepare_code_context(e->js);
}

void eng_engine_free(struct eng_engine *e)
{
	if (!e)
		return;
	js_runtime_free(e->js);
	fl_free(e);
}

/* The size of v's compact JSON text, computed without writing it: the log limit is checked
 * after every step, and dumping each record just to measure it would double a run's cost. Exact
 * except for escapes of control characters, which are counted as two bytes instead of six, and
 * reals, counted as 24 bytes at most. */
static int64_t json_size(const json_t *v)
{
	if (!v)
		return 4;
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		int64_t n = 2;
		const char *k;
		json_t *e;
		json_object_foreach((json_t *)v, k, e)
			n += (int64_t)strlen(k) + 4 + json_size(e);
		return json_object_size(v) ? n - 1 : n;
	}
	case JSON_ARRAY: {
		int64_t n = 2;
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e)
			n += json_size(e) + 1;
		return json_array_size(v) ? n - 1 : n;
	}
	case JSON_STRING: {
		const char *s = json_string_value(v);
		size_t len = json_string_length(v);
		int64_t n = (int64_t)len + 2;
		for (size_t i = 0; i < len; i++)
			if (s[i] == '"' || s[i] == '\\' || (unsigned char)s[i] < 0x20)
				n++;
		return n;
	}
	case JSON_INTEGER: {
		json_int_t x = json_integer_value(v);
		int64_t n = x < 0 ? 2 : 1;
		for (x = x < 0 ? -(x / 10) : x / 10; x; x /= 10)
			n++;
		return n;
	}
	case JSON_REAL: return 24;
	case JSON_TRUE:
	case JSON_NULL: return 4;
	case JSON_FALSE: return 5;
	}
	return 4;
}

static void sleep_ms(const struct run *r, int64_t ms)
{
	if (r->host->sleep_ms)
		r->host->sleep_ms(r->host->ctx, ms);
	else
		fl_sleep_ms(ms);
}

/* Path bookkeeping: the step path string and its JSON form move together. */
static size_t path_push_name(struct run *r, const char *name)
{
	size_t old = r->path.len;
	if (old)
		fl_buf_addch(&r->path, '.');
	fl_buf_adds(&r->path, name);
	json_array_append_new(r->path_json, json_string(name));
	return old;
}

static size_t path_push_index(struct run *r, size_t index)
{
	size_t old = r->path.len;
	fl_buf_addf(&r->path, "[%zu]", index);
	json_array_append_new(r->path_json, json_integer((json_int_t)index));
	return old;
}

static void path_pop(struct run *r, size_t old)
{
	r->path.len = old;
	r->path.data[old] = '\0';
	json_array_remove(r->path_json, json_array_size(r->path_json) - 1);
}

static json_t *new_record(const struct eng_step *s, const char *status, json_t *input,
			  json_t *output, int64_t duration_us, const char *error)
{
	json_t *rec = json_object();
	json_object_set_new(rec, "type", json_string(eng_step_type_name(s->type)));
	json_object_set_new(rec, "status", json_string(status));
	json_object_set_new(rec, "input", input ? input : json_object());
	json_object_set_new(rec, "output", output ? output : json_null());
	json_object_set_new(rec, "duration", json_integer(duration_us / 1000));
	if (error)
		json_object_set_new(rec, "errorMessage", json_string(error));
	return rec;
}

static const char *record_status(const json_t *rec)
{
	const char *s = json_string_value(json_object_get(rec, "status"));
	return s ? s : "";
}

static void set_failed_step(struct run *r, const struct eng_step *s, const char *message)
{
	if (r->failed_step)
		return;
	r->failed_step = json_pack("{s:s, s:s, s:s}", "name", s->name, "displayName",
				   s->display_name, "message", message ? message : "");
}

/* Reports a finished record to the host. Returns WALK_STOP when the host refuses. */
static enum walk report(struct run *r, const struct eng_step *s, const json_t *rec, int effects,
			int64_t duration_us)
{
	if (!r->host->step_finished)
		return WALK_ON;
	struct eng_step_event ev = {
		.step = s,
		.path = r->path.data,
		.path_json = r->path_json,
		.record = rec,
		.effects = effects,
		.duration_us = duration_us,
		.console = s->type == ENG_STEP_CODE && r->console.len ? r->console.data : NULL,
	};
	if (r->host->step_finished(r->host->ctx, &ev) < 0) {
		r->status = ENG_INTERNAL_ERROR;
		set_failed_step(r, s, "the step's result could not be persisted");
		return WALK_STOP;
	}
	return WALK_ON;
}

/* Counts size bytes of rec toward the log limit. When they would cross the limit, the record is
 * replaced by a FAILED one without its input and output (so that what is persisted stays under
 * the limit) and the run ends LOG_SIZE_EXCEEDED. A loop counts only its own part: its
 * iterations are counted as their steps come. */
static int over_log_limit(struct run *r, const struct eng_step *s, json_t **rec, int64_t size)
{
	size += (int64_t)strlen(s->name) + 4;
	if (r->log_bytes + size <= r->log_limit) {
		r->log_bytes += size;
		return 0;
	}
	char msg[200];
	snprintf(msg, sizeof msg, LOG_LIMIT_MESSAGE " of %lld bytes (AP_MAX_FLOW_RUN_LOG_SIZE_MB)",
		 (long long)r->log_limit);
	int64_t dur = json_integer_value(json_object_get(*rec, "duration")) * 1000;
	json_decref(*rec);
	*rec = new_record(s, "FAILED", NULL, NULL, dur, msg);
	r->status = ENG_LOG_SIZE_EXCEEDED;
	set_failed_step(r, s, msg);
	return 1;
}

static void scope_set(struct run *r, const char *name, const json_t *output)
{
	if (output && !json_is_null(output))
		json_object_set(r->scope, name, (json_t *)output);
	else if (output)
		json_object_set_new(r->scope, name, json_null());
	else
		json_object_del(r->scope, name);
}

static enum walk walk_chain(struct run *r, const struct eng_step *s, json_t *level,
			    const json_t *replay);

/* Forgets the outputs of every step in the chain at s (a loop body), so that one iteration
 * does not see the last one's. */
static void scope_forget_chain(struct run *r, const struct eng_step *s)
{
	for (; s; s = s->next) {
		json_object_del(r->scope, s->name);
		scope_forget_chain(r, s->body);
		for (size_t i = 0; i < s->n_branches; i++)
			scope_forget_chain(r, s->children[i]);
	}
}

static int is_piece_action(const struct eng_step *s, const char *piece, const char *action)
{
	return s->type == ENG_STEP_PIECE && !strcmp(s->piece_name, piece) &&
	       !strcmp(s->action_name, action);
}

/* Waitpoint JSON for a pause of step s with ctx's request. */
static json_t *make_waitpoint(struct run *r, const struct eng_step *s, const char *id,
			      const json_t *pause)
{
	json_t *wp = json_deep_copy(pause);
	json_object_set_new(wp, "id", json_string(id));
	if (!json_object_get(wp, "type"))
		json_object_set_new(wp, "type", json_string("WEBHOOK"));
	json_object_set_new(wp, "stepName", json_string(s->name));
	json_object_set_new(wp, "stepPath", json_string(r->path.data));
	char *url = fl_asprintf("%s/v1/flow-runs/%s/waitpoints/%s", r->frontend, r->run_id, id);
	json_object_set_new(wp, "resumeUrl", json_string(url));
	fl_free(url);
	return wp;
}

static enum walk pause_run(struct run *r, const json_t *waitpoint)
{
	r->status = ENG_PAUSED;
	json_decref(r->waitpoint);
	r->waitpoint = json_incref((json_t *)waitpoint);
	if (r->host->paused && r->host->paused(r->host->ctx, waitpoint) < 0)
		r->status = ENG_INTERNAL_ERROR;
	return WALK_STOP;
}

/* The response of a return_response step, from its record, when it is replayed. */
static void replay_response(struct run *r, const struct eng_step *s, const json_t *rec,
			    int *stop)
{
	*stop = 0;
	if (!is_piece_action(s, "@activepieces/piece-webhook", "return_response"))
		return;
	const json_t *out = json_object_get(rec, "output");
	if (!r->response && out)
		r->response = json_incref((json_t *)out);
	const char *respond =
		json_string_value(json_object_get(json_object_get(rec, "input"), "respond"));
	*stop = !respond || strcmp(respond, "respond");
}

/* Runs the code or piece of s once. Returns 0 or a negative code with err set; *output may be
 * set either way. */
static int run_once(struct run *r, const struct eng_step *s, const struct pc_action *action,
		    struct pc_ctx *ctx, const json_t *input, json_t **output, struct fl_err *err)
{
	*output = NULL;
	if (s->type == ENG_STEP_CODE) {
		if (s->has_dependencies)
			return fl_err_set(err, FL_EUNSUPPORTED,
					  "packageJson dependencies are not supported: a code step "
					  "can use only what JavaScript itself provides");
		struct js_code_ctx jc = { .run_id = r->run_id,
					  .step_path = r->path.data,
					  .request_count = &ctx->request_count };
		/* A failure's message carries the console output already. */
		size_t before = r->console.len;
		int rc = js_run_code(r->e->js, s->code, input, &jc, output, &r->console, err);
		if (rc) {
			r->console.len = before;
			r->console.data[before] = '\0';
		}
		return rc;
	}
	return action->run(ctx, input, output, err);
}

/* Tells the host that the record of s (at the current path) was reused. */
static void report_replayed(struct run *r, const struct eng_step *s)
{
	if (r->host->step_replayed)
		r->host->step_replayed(r->host->ctx, s, r->path.data);
}

/* A FAILED record found in replay: the step acted and failed before, and whatever it did then
 * stands. Running it again would repeat its effects, so the failure is replayed instead: the
 * flow goes on past a step that continues on failure, and ends FAILED (or LOG_SIZE_EXCEEDED, if
 * that is why the record failed) otherwise. FROM_FAILED_STEP retries drop such records first,
 * which is how a failed step gets another chance. */
static enum walk replay_failure(struct run *r, const struct eng_step *s, json_t *level,
				const json_t *replayed)
{
	json_object_set(level, s->name, (json_t *)replayed);
	json_object_del(r->scope, s->name);
	r->log_bytes += json_size(replayed) + (int64_t)strlen(s->name) + 4;
	report_replayed(r, s);
	if (s->continue_on_failure)
		return WALK_ON;
	const char *msg = json_string_value(json_object_get(replayed, "errorMessage"));
	r->status = msg && !strncmp(msg, LOG_LIMIT_MESSAGE, strlen(LOG_LIMIT_MESSAGE))
			    ? ENG_LOG_SIZE_EXCEEDED
			    : ENG_FAILED;
	set_failed_step(r, s, msg);
	return WALK_STOP;
}

static enum walk run_action(struct run *r, const struct eng_step *s, json_t *level,
			    const json_t *replayed)
{
	const char *rstatus = record_status(replayed);
	if (replayed && !strcmp(rstatus, "FAILED"))
		return replay_failure(r, s, level, replayed);
	if (replayed && !strcmp(rstatus, "SUCCEEDED")) {
		json_object_set(level, s->name, (json_t *)replayed);
		scope_set(r, s->name, json_object_get(replayed, "output"));
		r->log_bytes += json_size(replayed) + (int64_t)strlen(s->name) + 4;
		report_replayed(r, s);
		if (is_piece_action(s, "@activepieces/piece-approval", "create_approval_links"))
			pc_waitpoint_id(r->run_id, r->path.data, r->approval_link_id);
		if (is_piece_action(s, "@activepieces/piece-approval", "wait_for_approval"))
			r->approval_link_id[0] = '\0';
		int stop;
		replay_response(r, s, replayed, &stop);
		if (stop) {
			r->status = ENG_SUCCEEDED;
			return WALK_STOP;
		}
		return WALK_ON;
	}
	const json_t *resume = NULL;
	if (replayed && !strcmp(rstatus, "PAUSED")) {
		if (!r->opts->resume || r->resume_used) {
			/* Delivered again while still paused: pause on the same waitpoint. */
			json_object_set(level, s->name, (json_t *)replayed);
			const json_t *wp = json_object_get(replayed, "waitpoint");
			if (wp)
				return pause_run(r, wp);
		} else {
			resume = r->opts->resume;
			r->resume_used = 1;
		}
	}

	if (r->host->step_started)
		r->host->step_started(r->host->ctx, s, r->path.data);
	fl_buf_reset(&r->console);
	int64_t t0 = fl_mono_us();
	struct fl_err err = { 0 };
	const struct pc_action *action = NULL;
	json_t *input = NULL, *output = NULL;
	int effects = s->type == ENG_STEP_CODE;
	int rc = eng_tmpl_resolve(r->e->js, s->input, r->scope, &input, &err);
	if (!rc && s->type == ENG_STEP_PIECE) {
		rc = pc_find_action(s->piece_name, s->action_name, &action, &err);
		if (action)
			effects = action->effects;
	}

	/* Only approvals and pauses need the waitpoint id, and it costs a hash: compute it then. */
	char wp_id[22] = "";
	if (action && !strcmp(s->piece_name, "@activepieces/piece-approval"))
		pc_waitpoint_id(r->run_id, r->path.data, wp_id);
	int approval_wait = is_piece_action(s, "@activepieces/piece-approval", "wait_for_approval");
	if (approval_wait && r->approval_link_id[0])
		memcpy(wp_id, r->approval_link_id, sizeof wp_id);
	struct pc_ctx ctx = {
		.run_id = r->run_id,
		.flow_id = r->flow_id,
		.step_name = s->name,
		.step_path = r->path.data,
		.frontend_url = r->frontend,
		.waitpoint_id = wp_id,
		.host = r->host,
		.policy = r->e->policy,
		.resume = resume,
		.paused_record = resume ? replayed : NULL,
	};
	if (!rc) {
		int attempts = s->retry_on_failure ? RETRY_ATTEMPTS : 1;
		int64_t wait = r->retry_base_ms;
		for (int attempt = 1;; attempt++) {
			fl_err_clear(&err);
			rc = run_once(r, s, action, &ctx, input, &output, &err);
			if (!rc || ctx.pause || attempt >= attempts)
				break;
			json_decref(output);
			output = NULL;
			sleep_ms(r, wait);
			wait *= 2;
		}
	}
	int64_t dur = fl_mono_us() - t0;

	json_t *rec;
	enum walk next = WALK_ON;
	if (!rc && ctx.pause) {
		rec = new_record(s, "PAUSED", input, output ? output : json_object(), dur, NULL);
		if (!wp_id[0])
			pc_waitpoint_id(r->run_id, r->path.data, wp_id);
		json_t *wp = make_waitpoint(r, s, wp_id, ctx.pause);
		json_object_set(rec, "waitpoint", wp);
		if (approval_wait)
			r->approval_link_id[0] = '\0';
		json_object_set(level, s->name, rec);
		if (over_log_limit(r, s, &rec, json_size(rec))) {
			json_object_set(level, s->name, rec);
			report(r, s, rec, 1, dur);
		} else if (report(r, s, rec, 1, dur) == WALK_ON) {
			pause_run(r, wp);
		}
		json_decref(wp);
		json_decref(rec);
		json_decref(ctx.pause);
		json_decref(ctx.response);
		return WALK_STOP;
	}
	if (!rc) {
		if (ctx.made_approval_links)
			memcpy(r->approval_link_id, wp_id, sizeof wp_id);
		if (approval_wait)
			r->approval_link_id[0] = '\0';
		rec = new_record(s, "SUCCEEDED", input, json_incref(output), dur, NULL);
	} else {
		if (!err.msg[0])
			fl_err_set(&err, rc, "%s", fl_strerror(rc));
		/* The record keeps what the step produced (an http error object, say); the scope
		 * does not: a failed step's output is undefined to later steps. */
		rec = new_record(s, "FAILED", input, output, dur, err.msg);
		output = NULL;
	}
	if (over_log_limit(r, s, &rec, json_size(rec))) {
		json_object_set(level, s->name, rec);
		report(r, s, rec, effects, dur);
		json_decref(rec);
		json_decref(output);
		json_decref(ctx.response);
		return WALK_STOP;
	}
	json_object_set(level, s->name, rec);
	if (!rc) {
		scope_set(r, s->name, output ? output : NULL);
	} else {
		json_object_del(r->scope, s->name);
		if (!s->continue_on_failure) {
			r->status = ENG_FAILED;
			set_failed_step(r, s, err.msg);
			next = WALK_STOP;
		}
	}
	if (ctx.response) {
		if (!r->response)
			r->response = json_incref(ctx.response);
		if (r->host->respond)
			r->host->respond(r->host->ctx, ctx.response);
		json_decref(ctx.response);
	}
	if (report(r, s, rec, effects, dur) == WALK_STOP)
		next = WALK_STOP;
	else if (!rc && ctx.stop) {
		r->status = ENG_SUCCEEDED;
		next = WALK_STOP;
	}
	json_decref(rec);
	json_decref(output);
	fl_buf_reset(&r->console);
	return next;
}

/* A step that failed before it could run (a template past its time limit): FAILED, and the run
 * with it. */
static enum walk fail_step(struct run *r, const struct eng_step *s, json_t *level, json_t *input,
			   const char *message, int64_t dur)
{
	json_t *rec = new_record(s, "FAILED", input, NULL, dur, message);
	over_log_limit(r, s, &rec, json_size(rec));
	json_object_set(level, s->name, rec);
	if (r->status != ENG_LOG_SIZE_EXCEEDED) {
		r->status = ENG_FAILED;
		set_failed_step(r, s, message);
	}
	report(r, s, rec, 0, dur);
	json_decref(rec);
	return WALK_STOP;
}

static enum walk run_loop(struct run *r, const struct eng_step *s, json_t *level,
			  const json_t *replayed)
{
	if (replayed && !strcmp(record_status(replayed), "SUCCEEDED")) {
		json_object_set(level, s->name, (json_t *)replayed);
		scope_set(r, s->name, json_object_get(replayed, "output"));
		r->log_bytes += json_size(replayed) + (int64_t)strlen(s->name) + 4;
		report_replayed(r, s);
		return WALK_ON;
	}
	if (r->host->step_started)
		r->host->step_started(r->host->ctx, s, r->path.data);
	int64_t t0 = fl_mono_us();
	struct fl_err err = { 0 };
	json_t *items_tmpl = json_string(s->items), *items = NULL;
	int rc = eng_tmpl_resolve(r->e->js, items_tmpl, r->scope, &items, &err);
	json_decref(items_tmpl);
	json_t *input = json_object();
	json_object_set(input, "items", items ? items : json_null());
	if (rc) {
		json_decref(items);
		return fail_step(r, s, level, input, err.msg, fl_mono_us() - t0);
	}
	if (!json_is_array(items)) {
		char msg[160];
		snprintf(msg, sizeof msg, "the loop's items must be an array, got %s",
			 fl_json_type_name(items));
		json_decref(items);
		return fail_step(r, s, level, input, msg, fl_mono_us() - t0);
	}

	json_t *iterations = json_array();
	json_t *output = json_pack("{s:n, s:i, s:o}", "item", "index", 0, "iterations", iterations);
	json_t *rec = new_record(s, "RUNNING", input, output, 0, NULL);
	json_object_set(level, s->name, rec);
	const json_t *replay_iters =
		json_object_get(json_object_get(replayed, "output"), "iterations");
	int64_t own = json_size(input) + 80;
	if (over_log_limit(r, s, &rec, own)) {
		json_object_set(level, s->name, rec);
		report(r, s, rec, 0, fl_mono_us() - t0);
		json_decref(rec);
		json_decref(items);
		return WALK_STOP;
	}

	enum walk w = WALK_ON;
	size_t i;
	json_t *item;
	json_array_foreach(items, i, item)
	{
		json_t *iter = json_object();
		json_array_append_new(iterations, iter);
		json_object_set(output, "item", item);
		json_object_set_new(output, "index", json_integer((json_int_t)i + 1));
		json_object_set_new(r->scope, s->name,
				    json_pack("{s:O, s:i}", "item", item, "index", (int)i + 1));
		scope_forget_chain(r, s->body);
		r->log_bytes += json_size(item) + 8;
		size_t old = path_push_index(r, i + 1);
		w = walk_chain(r, s->body, iter, json_array_get(replay_iters, i));
		path_pop(r, old);
		if (w == WALK_STOP)
			break;
	}
	scope_forget_chain(r, s->body);
	json_decref(items);

	const char *status = "SUCCEEDED";
	if (w == WALK_STOP && r->status == ENG_PAUSED)
		status = "PAUSED";
	else if (w == WALK_STOP && r->status != ENG_SUCCEEDED)
		status = "FAILED";
	json_object_set_new(rec, "status", json_string(status));
	int64_t dur = fl_mono_us() - t0;
	json_object_set_new(rec, "duration", json_integer(dur / 1000));
	if (!strcmp(status, "FAILED") && r->failed_step)
		json_object_set(rec, "errorMessage", json_object_get(r->failed_step, "message"));
	if (!strcmp(status, "SUCCEEDED"))
		scope_set(r, s->name, output);
	else
		json_object_del(r->scope, s->name);
	if (report(r, s, rec, 0, dur) == WALK_STOP)
		w = WALK_STOP;
	json_decref(rec);
	return w;
}

static enum walk run_router(struct run *r, const struct eng_step *s, json_t *level,
			    const json_t *replay_level, size_t prefix_len)
{
	const json_t *replayed = json_object_get(replay_level, s->name);
	json_t *rec = NULL;
	int64_t t0 = fl_mono_us(), dur = 0;
	if (replayed && !strcmp(record_status(replayed), "SUCCEEDED")) {
		rec = json_incref((json_t *)replayed);
		json_object_set(level, s->name, rec);
		r->log_bytes += json_size(rec) + (int64_t)strlen(s->name) + 4;
		report_replayed(r, s);
	} else {
		if (r->host->step_started)
			r->host->step_started(r->host->ctx, s, r->path.data);
		struct fl_err err = { 0 };
		json_t *branches = NULL;
		int rc = eng_tmpl_resolve(r->e->js, json_object_get(s->settings, "branches"),
					  r->scope, &branches, &err);
		json_t *input = json_pack("{s:s, s:o}", "executionType",
					  s->execute_all ? "EXECUTE_ALL_MATCH" : "EXECUTE_FIRST_MATCH",
					  "branches", branches ? branches : json_array());
		if (rc)
			return fail_step(r, s, level, input, err.msg, fl_mono_us() - t0);
		json_t *out_branches = json_array();
		int any = 0;
		for (size_t i = 0; i < s->n_branches; i++) {
			int hit = 0;
			if (!s->branches[i].fallback) {
				const json_t *b = json_array_get(branches, i);
				hit = eng_conditions_eval(json_object_get(b, "conditions"));
				if (hit && !s->execute_all && any)
					hit = 0; /* only the first match counts */
				any |= hit;
			}
			json_array_append_new(out_branches,
					      json_pack("{s:s, s:i, s:b}", "branchName",
							s->branches[i].name, "branchIndex",
							(int)i + 1, "evaluation", hit));
		}
		/* FALLBACK is taken when no condition branch is; with FIRST_MATCH only the
		 * first fallback. */
		for (size_t i = 0; i < s->n_branches && !any; i++) {
			if (!s->branches[i].fallback)
				continue;
			json_object_set_new(json_array_get(out_branches, i), "evaluation",
					    json_true());
			if (!s->execute_all)
				break;
		}
		dur = fl_mono_us() - t0;
		rec = new_record(s, "SUCCEEDED", input, json_pack("{s:o}", "branches", out_branches),
				 dur, NULL);
		json_object_set(level, s->name, rec);
		if (over_log_limit(r, s, &rec, json_size(rec))) {
			json_object_set(level, s->name, rec);
			report(r, s, rec, 0, dur);
			json_decref(rec);
			return WALK_STOP;
		}
		if (report(r, s, rec, 0, dur) == WALK_STOP) {
			json_decref(rec);
			return WALK_STOP;
		}
	}
	const json_t *out = json_object_get(rec, "output");
	scope_set(r, s->name, out);
	const json_t *evals = json_object_get(out, "branches");
	enum walk w = WALK_ON;
	/* Children sit at the router's level, as in Activepieces: their records go next to the
	 * router's, and their paths do not contain the router's name. */
	path_pop(r, prefix_len);
	for (size_t i = 0; i < s->n_branches && w == WALK_ON; i++) {
		if (json_is_true(json_object_get(json_array_get(evals, i), "evaluation")))
			w = walk_chain(r, s->children[i], level, replay_level);
	}
	path_push_name(r, s->name);
	json_decref(rec);
	return w;
}

static enum walk walk_chain(struct run *r, const struct eng_step *s, json_t *level,
			    const json_t *replay)
{
	for (; s; s = s->next) {
		if (s->skip)
			continue;
		if (r->opts->deadline_ms && fl_mono_ms() > r->opts->deadline_ms) {
			r->status = ENG_TIMEOUT;
			return WALK_STOP;
		}
		size_t old = path_push_name(r, s->name);
		const json_t *rep = json_object_get(replay, s->name);
		enum walk w = WALK_ON;
		switch (s->type) {
		case ENG_STEP_CODE:
		case ENG_STEP_PIECE: w = run_action(r, s, level, rep); break;
		case ENG_STEP_LOOP: w = run_loop(r, s, level, rep); break;
		case ENG_STEP_ROUTER: w = run_router(r, s, level, replay, old); break;
		case ENG_STEP_TRIGGER: break;
		}
		path_pop(r, old);
		if (w == WALK_STOP)
			return WALK_STOP;
	}
	return WALK_ON;
}

int eng_run(struct eng_engine *e, const struct eng_flow *flow, const struct eng_run_opts *opts,
	    const struct eng_host *host, json_t **result, enum eng_status *status,
	    struct fl_err *err)
{
	static const struct eng_host no_host;
	*result = NULL;
	if (!flow->trigger || !flow->trigger->piece_name || !*flow->trigger->piece_name)
		return fl_err_set(err, FL_EINVAL, "the flow has no trigger to run");
	if (!e->js)
		return fl_err_set(err, FL_EUNSUPPORTED, "the JavaScript runtime is not available");
	int64_t t0 = fl_mono_us();
	struct run r = {
		.e = e,
		.flow = flow,
		.opts = opts,
		.host = host ? host : &no_host,
		.run_id = opts->run_id ? opts->run_id : "local",
		.flow_id = opts->flow_id ? opts->flow_id : "local",
		.scope = json_object(),
		.log_limit = opts->log_size_limit > 0 ? opts->log_size_limit : DEFAULT_LOG_LIMIT,
		.status = ENG_SUCCEEDED,
		.path = FL_BUF_INIT,
		.path_json = json_array(),
		.console = FL_BUF_INIT,
		.retry_base_ms = eng_retry_base_ms(),
	};
	const char *fe = opts->frontend_url && *opts->frontend_url ? opts->frontend_url
								    : DEFAULT_FRONTEND;
	size_t fe_len = strlen(fe);
	while (fe_len && fe[fe_len - 1] == '/')
		fe_len--;
	r.frontend = fl_strndup(fe, fe_len);

	json_t *steps = json_object();
	const struct eng_step *t = flow->trigger;
	json_t *trigger_out = pc_trigger_output(t->piece_name, t->action_name, t->input,
						opts->trigger_output);
	const json_t *replayed_trigger = json_object_get(opts->replay, t->name);
	json_t *trec = new_record(t, "SUCCEEDED", json_deep_copy(t->input),
				  json_incref(trigger_out), 0, NULL);
	json_object_set(steps, t->name, trec);
	scope_set(&r, t->name, trigger_out);
	size_t old = path_push_name(&r, t->name);
	enum walk w = WALK_ON;
	if (over_log_limit(&r, t, &trec, json_size(trec))) {
		json_object_set(steps, t->name, trec);
		w = WALK_STOP;
	}
	if (replayed_trigger)
		report_replayed(&r, t);
	else if (report(&r, t, trec, 0, 0) == WALK_STOP)
		w = WALK_STOP;
	path_pop(&r, old);
	json_decref(trec);
	json_decref(trigger_out);

	if (w == WALK_ON)
		w = walk_chain(&r, t->next, steps, opts->replay);
	if (w == WALK_ON)
		r.status = ENG_SUCCEEDED;

	json_t *res = json_object();
	json_object_set_new(res, "status", json_string(eng_status_name(r.status)));
	json_object_set_new(res, "steps", steps);
	if (r.failed_step && r.status != ENG_SUCCEEDED && r.status != ENG_PAUSED)
		json_object_set(res, "failedStep", r.failed_step);
	if (r.response)
		json_object_set(res, "response", r.response);
	if (r.waitpoint && r.status == ENG_PAUSED)
		json_object_set(res, "waitpoint", r.waitpoint);
	json_object_set_new(res, "duration", json_integer((fl_mono_us() - t0) / 1000));

	json_decref(r.scope);
	json_decref(r.failed_step);
	json_decref(r.response);
	json_decref(r.waitpoint);
	json_decref(r.path_json);
	fl_buf_release(&r.path);
	fl_buf_release(&r.console);
	fl_free(r.frontend);
	*result = res;
	if (status)
		*status = r.status;
	return 0;
}

int eng_steps_merge(json_t *steps, const json_t *path, const json_t *record)
{
	size_t n = json_array_size(path);
	if (!json_is_object(steps) || !n || !json_is_string(json_array_get(path, n - 1)))
		return FL_EINVAL;
	json_t *level = steps;
	for (size_t i = 0; i + 1 < n; i += 2) {
		const json_t *name = json_array_get(path, i);
		const json_t *index = json_array_get(path, i + 1);
		if (!json_is_string(name) || !json_is_integer(index) || json_integer_value(index) < 1)
			return FL_EINVAL;
		json_t *loop = json_object_get(level, json_string_value(name));
		if (!json_is_object(loop)) {
			loop = json_pack("{s:s, s:s, s:{}, s:{s:n, s:i, s:[]}, s:i}", "type",
					 "LOOP_ON_ITEMS", "status", "RUNNING", "input", "output",
					 "item", "index", 0, "iterations", "duration", 0);
			json_object_set_new(level, json_string_value(name), loop);
		}
		json_t *out = json_object_get(loop, "output");
		if (!json_is_object(out)) {
			out = json_pack("{s:n, s:i, s:[]}", "item", "index", 0, "iterations");
			json_object_set_new(loop, "output", out);
		}
		json_t *iters = json_object_get(out, "iterations");
		if (!json_is_array(iters)) {
			iters = json_array();
			json_object_set_new(out, "iterations", iters);
		}
		size_t want = (size_t)json_integer_value(index);
		while (json_array_size(iters) < want)
			json_array_append_new(iters, json_object());
		json_object_set(out, "index", (json_t *)index);
		level = json_array_get(iters, want - 1);
		if (!json_is_object(level))
			return FL_EINVAL;
	}
	if (n % 2 == 0)
		return FL_EINVAL;
	json_object_set(level, json_string_value(json_array_get(path, n - 1)), (json_t *)record);
	return 0;
}
