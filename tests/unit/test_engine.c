/* Unit tests for the walker (src/engine/engine.c) on whole flows: code steps, loops, routers,
 * skip, continueOnFailure, retryOnFailure, responses, pauses and resumes, replay of persisted
 * steps, the log size limit, and runaway scripts. A recording host stands in for the worker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/json.h"
#include "core/time.h"
#include "engine/engine.h"
#include "engine/flow.h"
#include "httpsrv.h"

#include <stdlib.h>
#include <string.h>

static struct httpsrv *srv;
static struct eng_engine *engine;

/* --- flow building ------------------------------------------------------------------------ */

static json_t *J(const char *text)
{
	json_error_t je;
	json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
	if (!v)
		fail_msg("bad test JSON '%s': %s", text, je.text);
	return v;
}

static json_t *code(const char *name, const char *src, const char *input)
{
	return json_pack("{s:s, s:s, s:s, s:{s:o, s:{s:s, s:s}}}", "name", name, "displayName",
			 name, "type", "CODE", "settings", "input", J(input ? input : "{}"),
			 "sourceCode", "code", src, "packageJson", "{}");
}

static json_t *piece(const char *name, const char *piece_name, const char *action,
		     const char *input)
{
	char full[128];
	snprintf(full, sizeof full, "@activepieces/piece-%s", piece_name);
	return json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:s, s:o}}", "name", name, "displayName",
			 name, "type", "PIECE", "settings", "pieceName", full, "pieceVersion",
			 "0.1.0", "actionName", action, "input", J(input));
}

static json_t *mapper(const char *name, const char *mapping)
{
	char input[4096];
	snprintf(input, sizeof input, "{\"mapping\":%s}", mapping);
	return piece(name, "data-mapper", "advanced_mapping", input);
}

static json_t *loop(const char *name, const char *items, json_t *body)
{
	json_t *l = json_pack("{s:s, s:s, s:s, s:{s:s}}", "name", name, "displayName", name, "type",
			      "LOOP_ON_ITEMS", "settings", "items", items);
	if (body)
		json_object_set_new(l, "firstLoopAction", body);
	return l;
}

/* branches: JSON text of the branches array; children: one per branch (NULL: null). */
static json_t *router(const char *name, int all, const char *branches, int n, ...)
{
	json_t *children = json_array();
	va_list ap;
	va_start(ap, n);
	for (int i = 0; i < n; i++) {
		json_t *c = va_arg(ap, json_t *);
		json_array_append_new(children, c ? c : json_null());
	}
	va_end(ap);
	return json_pack("{s:s, s:s, s:s, s:{s:s, s:o}, s:o}", "name", name, "displayName", name,
			 "type", "ROUTER", "settings", "executionType",
			 all ? "EXECUTE_ALL_MATCH" : "EXECUTE_FIRST_MATCH", "branches", J(branches),
			 "children", children);
}

/* Links the steps with nextAction; returns the first. Takes ownership. */
static json_t *chain(json_t *first, ...)
{
	va_list ap;
	va_start(ap, first);
	json_t *prev = first;
	json_t *s;
	while ((s = va_arg(ap, json_t *))) {
		json_t *tail = prev;
		while (json_object_get(tail, "nextAction"))
			tail = json_object_get(tail, "nextAction");
		json_object_set_new(tail, "nextAction", s);
		prev = s;
	}
	va_end(ap);
	return first;
}

static json_t *with(json_t *step, const char *key, json_t *value)
{
	json_object_set_new(step, key, value);
	return step;
}

static json_t *error_handling(json_t *step, int cont, int retry)
{
	json_object_set_new(json_object_get(step, "settings"), "errorHandlingOptions",
			    json_pack("{s:{s:b}, s:{s:b}}", "continueOnFailure", "value", cont,
				      "retryOnFailure", "value", retry));
	return step;
}

static struct eng_flow *make_flow(json_t *first)
{
	json_t *doc = json_pack("{s:s, s:{s:s, s:s, s:s, s:{s:s, s:s, s:s, s:{}}}}", "displayName",
				"test", "trigger", "name", "trigger", "type", "PIECE_TRIGGER",
				"displayName", "Catch Webhook", "settings", "pieceName",
				"@activepieces/piece-webhook", "pieceVersion", "0.1.0", "triggerName",
				"catch_webhook", "input");
	if (first)
		json_object_set_new(json_object_get(doc, "trigger"), "nextAction", first);
	struct eng_flow *f;
	struct fl_err err = { 0 };
	if (eng_flow_parse(doc, 0, &f, &err))
		fail_msg("flow: %s", err.msg);
	json_decref(doc);
	return f;
}

/* --- the recording host ------------------------------------------------------------------- */

struct rec_host {
	json_t *events;    /* [{"path","pathJson","status","effects"}] */
	json_t *merged;    /* steps rebuilt with eng_steps_merge */
	json_t *responses;
	json_t *waitpoints;
	json_t *store;
	json_t *sleeps;    /* ms asked of sleep_ms */
	json_t *replayed;  /* paths the walker reused instead of running */
	int fail_at;       /* step_finished fails on this event number (1-based); 0: never */
	int fake_sleep;
};

static struct rec_host rh;

static int rh_finished(void *ctx, const struct eng_step_event *ev)
{
	/* Copies: what a worker receives is the record as it was when the step finished. */
	json_array_append_new(rh.events,
			      json_pack("{s:s, s:o, s:O, s:b}", "path", ev->path, "pathJson",
					json_deep_copy(ev->path_json), "status",
					json_object_get(ev->record, "status"), "effects", ev->effects));
	if (ev->console)
		json_object_set_new(json_array_get(rh.events, json_array_size(rh.events) - 1),
				    "console", json_string(ev->console));
	json_t *copy = json_deep_copy(ev->record);
	assert_int_equal(eng_steps_merge(rh.merged, ev->path_json, copy), 0);
	json_decref(copy);
	if (rh.fail_at && (int)json_array_size(rh.events) == rh.fail_at)
		return FL_ECONFLICT;
	return 0;
}

static void rh_replayed(void *ctx, const struct eng_step *step, const char *path)
{
	json_array_append_new(rh.replayed, json_string(path));
}

static void rh_respond(void *ctx, const json_t *response)
{
	json_array_append(rh.responses, (json_t *)response);
}

static int rh_paused(void *ctx, const json_t *wp)
{
	json_array_append(rh.waitpoints, (json_t *)wp);
	return 0;
}

static int rh_get(void *ctx, const char *key, json_t **value, struct fl_err *err)
{
	json_t *v = json_object_get(rh.store, key);
	*value = v ? json_incref(v) : NULL;
	return 0;
}

static int rh_put(void *ctx, const char *key, const json_t *value, struct fl_err *err)
{
	json_object_set_new(rh.store, key, json_deep_copy(value));
	return 0;
}

static int rh_del(void *ctx, const char *key, struct fl_err *err)
{
	json_object_del(rh.store, key);
	return 0;
}

static void rh_sleep(void *ctx, int64_t ms)
{
	json_array_append_new(rh.sleeps, json_integer(ms));
	if (!rh.fake_sleep)
		fl_sleep_ms(ms);
}

static const struct eng_host host = {
	.step_finished = rh_finished,
	.step_replayed = rh_replayed,
	.respond = rh_respond,
	.paused = rh_paused,
	.store_get = rh_get,
	.store_put = rh_put,
	.store_delete = rh_del,
	.sleep_ms = rh_sleep,
};

static void rh_reset(void)
{
	json_decref(rh.events);
	json_decref(rh.merged);
	json_decref(rh.responses);
	json_decref(rh.waitpoints);
	json_decref(rh.sleeps);
	json_decref(rh.replayed);
	rh.replayed = json_array();
	rh.events = json_array();
	rh.merged = json_object();
	rh.responses = json_array();
	rh.waitpoints = json_array();
	rh.sleeps = json_array();
	rh.fail_at = 0;
	rh.fake_sleep = 0;
	if (!rh.store)
		rh.store = json_object();
	json_object_clear(rh.store);
}

struct opts {
	const char *payload;
	const json_t *replay;
	const json_t *resume;
	int64_t log_limit;
	int64_t deadline_ms;
};

/* Runs first (a chain of steps, owned) and returns the result; *status gets its status. */
static json_t *run_opts(json_t *first, const struct opts *o, enum eng_status *status)
{
	rh_reset();
	struct eng_flow *f = make_flow(first);
	json_t *payload = o && o->payload ? J(o->payload) : NULL;
	struct eng_run_opts ro = {
		.run_id = "RunTest0000000000000a",
		.flow_id = "flowT",
		.frontend_url = "https://ap.example.com/",
		.trigger_output = payload,
		.replay = o ? o->replay : NULL,
		.resume = o ? o->resume : NULL,
		.log_size_limit = o ? o->log_limit : 0,
		.deadline_ms = o ? o->deadline_ms : 0,
	};
	json_t *result;
	struct fl_err err = { 0 };
	enum eng_status st;
	if (eng_run(engine, f, &ro, &host, &result, &st, &err))
		fail_msg("eng_run: %s", err.msg);
	assert_string_equal(json_string_value(json_object_get(result, "status")),
			    eng_status_name(st));
	if (status)
		*status = st;
	json_decref(payload);
	eng_flow_free(f);
	return result;
}

static json_t *run(json_t *first, enum eng_status *status)
{
	return run_opts(first, NULL, status);
}

static const json_t *step(const json_t *result, const char *name)
{
	return json_object_get(json_object_get(result, "steps"), name);
}

static const json_t *output(const json_t *result, const char *name)
{
	return json_object_get(step(result, name), "output");
}

static const char *step_status(const json_t *result, const char *name)
{
	return json_string_value(json_object_get(step(result, name), "status"));
}

static void assert_json(const json_t *v, const char *want)
{
	json_t *w = J(want);
	if (!json_equal((json_t *)v, w)) {
		char *got = fl_json_dump(v);
		fail_msg("got %s, want %s", got ? got : "(null)", want);
	}
	json_decref(w);
}

/* --- code steps and templates ------------------------------------------------------------- */

#define ECHO "export const code = async (inputs) => inputs;"

static void test_code_echo_number(void **state)
{
	enum eng_status st;
	json_t *r = run(code("step_1", ECHO, "{\"key\":\"{{ 1 + 2 }}\"}"), &st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_json(output(r, "step_1"), "{\"key\":3}");
	assert_true(json_is_integer(json_object_get(output(r, "step_1"), "key")) ||
		    json_is_real(json_object_get(output(r, "step_1"), "key")));
	assert_json(json_object_get(step(r, "step_1"), "input"), "{\"key\":3}");
	assert_string_equal(json_string_value(json_object_get(step(r, "step_1"), "type")), "CODE");
	assert_non_null(json_object_get(step(r, "step_1"), "duration"));
	assert_non_null(json_object_get(r, "duration"));
	assert_null(json_object_get(r, "failedStep"));
	/* The trigger has its record too. */
	assert_string_equal(json_string_value(json_object_get(step(r, "trigger"), "type")),
			    "PIECE_TRIGGER");
	json_decref(r);
}

static void test_templates_between_steps(void **state)
{
	struct opts o = { .payload = "{\"body\":{\"items\":[5,\"a\"],\"price\":6.4}}" };
	json_t *r = run_opts(
		chain(mapper("m", "{\"all\":\"{{trigger.body.items}}\",\"first\":"
				  "\"{{trigger.body.items[0]}}\",\"text\":\"items are "
				  "{{trigger.body.items}}\",\"nums\":[1,2,\"{{trigger.body.items[0]}}\"],"
				  "\"sum\":\"{{trigger.body.price + 2 - 3}}\",\"missing\":"
				  "\"{{nope.x}}\"}"),
		      code("c", ECHO, "{\"fromMapper\":\"{{m.first}}\",\"skipped\":\"{{s.x}}\"}"),
		      NULL),
		&o, NULL);
	assert_json(output(r, "m"), "{\"all\":[5,\"a\"],\"first\":5,\"text\":\"items are "
				    "[5,\\\"a\\\"]\",\"nums\":[1,2,5],\"sum\":5.4,\"missing\":\"\"}");
	assert_json(output(r, "c"), "{\"fromMapper\":5,\"skipped\":\"\"}");
	json_decref(r);
}

static void test_code_throw(void **state)
{
	enum eng_status st;
	json_t *r = run(chain(code("boom", "export const code = async () => { throw new "
					   "Error('it broke'); };",
				   NULL),
			      code("after", ECHO, NULL), NULL),
			&st);
	assert_int_equal(st, ENG_FAILED);
	assert_string_equal(step_status(r, "boom"), "FAILED");
	const json_t *fs = json_object_get(r, "failedStep");
	assert_string_equal(json_string_value(json_object_get(fs, "name")), "boom");
	assert_string_equal(json_string_value(json_object_get(fs, "displayName")), "boom");
	assert_non_null(strstr(json_string_value(json_object_get(fs, "message")), "it broke"));
	assert_non_null(strstr(json_string_value(json_object_get(step(r, "boom"), "errorMessage")),
			       "it broke"));
	assert_null(step(r, "after"));
	json_decref(r);

	/* With continueOnFailure the flow goes on, and the failed output is undefined. */
	r = run(chain(error_handling(code("boom", "export const code = async () => { throw new "
						  "Error('it broke'); };",
					  NULL),
				     1, 0),
		      code("after", ECHO, "{\"prev\":\"{{boom}}\"}"), NULL),
		&st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_string_equal(step_status(r, "boom"), "FAILED");
	assert_string_equal(step_status(r, "after"), "SUCCEEDED");
	assert_json(output(r, "after"), "{\"prev\":\"\"}");
	assert_null(json_object_get(r, "failedStep"));
	json_decref(r);
}

static void test_code_console(void **state)
{
	enum eng_status st;
	json_t *r = run(chain(code("log", "export const code = async () => { console.log('hi', 2); "
					  "return 1; };",
				   NULL),
			      mapper("m", "{}"), NULL),
			&st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_json(output(r, "log"), "1");
	/* The console output goes to the host with the step, not into the record. */
	assert_non_null(strstr(json_string_value(json_object_get(json_array_get(rh.events, 1),
								 "console")),
			       "hi 2"));
	assert_null(json_object_get(json_array_get(rh.events, 2), "console"));
	assert_null(json_object_get(step(r, "log"), "console"));
	json_decref(r);
}

static void test_code_unsupported(void **state)
{
	json_t *c = code("deps", ECHO, NULL);
	json_object_set_new(json_object_get(json_object_get(c, "settings"), "sourceCode"),
			    "packageJson", json_string("{\"dependencies\":{\"lodash\":\"4\"}}"));
	enum eng_status st;
	json_t *r = run(c, &st);
	assert_int_equal(st, ENG_FAILED);
	assert_non_null(strstr(json_string_value(json_object_get(json_object_get(r, "failedStep"),
								 "message")),
			       "packageJson dependencies are not supported"));
	json_decref(r);
}

static void test_runaway(void **state)
{
	int64_t t0 = fl_mono_ms();
	enum eng_status st;
	json_t *r = run(chain(code("spin", "export const code = async () => { while (true) {} };",
				   NULL),
			      code("after", ECHO, NULL), NULL),
			&st);
	assert_int_equal(st, ENG_FAILED);
	assert_string_equal(step_status(r, "spin"), "FAILED");
	assert_null(step(r, "after"));
	json_decref(r);
	/* And in a template: the step that needs it fails. */
	r = run(mapper("m", "{\"x\":\"{{ (() => { while (true) {} })() }}\"}"), &st);
	assert_int_equal(st, ENG_FAILED);
	assert_string_equal(step_status(r, "m"), "FAILED");
	json_decref(r);
	/* The engine's limit in this test is 300 ms a script: both stopped well within 5 s. */
	assert_true(fl_mono_ms() - t0 < 5000);
	/* The process survives and the engine still works. */
	r = run(code("ok", ECHO, "{\"a\":\"{{ 2 * 21 }}\"}"), &st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_json(output(r, "ok"), "{\"a\":42}");
	json_decref(r);
}

/* --- skip, pieces ------------------------------------------------------------------------- */

static void test_skip(void **state)
{
	enum eng_status st;
	json_t *r = run(chain(with(code("s", ECHO, "{\"a\":1}"), "skip", json_true()),
			      with(loop("l", "{{ [1,2] }}", code("body", ECHO, NULL)), "skip",
				   json_true()),
			      mapper("after", "{\"s\":\"{{s}}\"}"), NULL),
			&st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_null(step(r, "s"));
	assert_null(step(r, "l"));
	assert_null(step(r, "body"));
	assert_json(output(r, "after"), "{\"s\":\"\"}");
	/* trigger and after: the skipped steps were never reported. */
	assert_int_equal(json_array_size(rh.events), 2);
	json_decref(r);
}

static void test_unknown_piece(void **state)
{
	enum eng_status st;
	json_t *r = run(piece("p", "slack", "send_message", "{}"), &st);
	assert_int_equal(st, ENG_FAILED);
	assert_string_equal(json_string_value(json_object_get(json_object_get(r, "failedStep"),
							      "message")),
			    "piece @activepieces/piece-slack is not installed");
	json_decref(r);
	r = run(piece("p", "http", "send_carrier_pigeon", "{}"), &st);
	assert_string_equal(json_string_value(json_object_get(json_object_get(r, "failedStep"),
							      "message")),
			    "action send_carrier_pigeon not found in @activepieces/piece-http");
	json_decref(r);
}

/* --- loops -------------------------------------------------------------------------------- */

static void test_loop(void **state)
{
	enum eng_status st;
	json_t *r = run(chain(loop("loop", "{{ [4,5,6] }}",
				   mapper("body", "{\"item\":\"{{loop.item}}\",\"index\":"
						  "\"{{loop.index}}\"}")),
			      mapper("after", "{\"last\":\"{{loop.item}}\",\"n\":\"{{loop.index}}\"}"),
			      NULL),
			&st);
	assert_int_equal(st, ENG_SUCCEEDED);
	const json_t *out = output(r, "loop");
	assert_int_equal(json_array_size(json_object_get(out, "iterations")), 3);
	assert_int_equal(json_integer_value(json_object_get(out, "index")), 3);
	assert_int_equal(json_integer_value(json_object_get(out, "item")), 6);
	assert_json(json_object_get(json_object_get(
				json_array_get(json_object_get(out, "iterations"), 1), "body"),
				    "output"),
		    "{\"item\":5,\"index\":2}");
	assert_json(output(r, "after"), "{\"last\":6,\"n\":3}");
	/* Body steps are not top-level steps. */
	assert_null(step(r, "body"));
	assert_string_equal(json_string_value(json_object_get(step(r, "loop"), "type")),
			    "LOOP_ON_ITEMS");
	assert_json(json_object_get(step(r, "loop"), "input"), "{\"items\":[4,5,6]}");
	/* Events: trigger, body ×3 with their paths, loop, after. */
	assert_int_equal(json_array_size(rh.events), 6);
	assert_string_equal(json_string_value(json_object_get(json_array_get(rh.events, 2),
							      "path")),
			    "loop[2].body");
	assert_json(json_object_get(json_array_get(rh.events, 2), "pathJson"),
		    "[\"loop\",2,\"body\"]");
	/* The records merged from events are the run's steps. */
	assert_true(json_equal(rh.merged, json_object_get(r, "steps")));
	json_decref(r);
}

static void test_loop_failure_and_empty(void **state)
{
	enum eng_status st;
	json_t *r = run(chain(loop("loop", "{{ [4,5,6] }}", piece("bad", "http", "send_request",
								  "{\"url\":\"http://127.0.0.1:1/\"}")),
			      mapper("after", "{}"), NULL),
			&st);
	assert_int_equal(st, ENG_FAILED);
	assert_int_equal(json_array_size(json_object_get(output(r, "loop"), "iterations")), 1);
	assert_string_equal(step_status(r, "loop"), "FAILED");
	assert_string_equal(json_string_value(json_object_get(json_object_get(r, "failedStep"),
							      "name")),
			    "bad");
	assert_null(step(r, "after"));
	json_decref(r);

	r = run(chain(loop("loop", "{{ [] }}", mapper("body", "{}")), mapper("after", "{}"), NULL),
		&st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_int_equal(json_array_size(json_object_get(output(r, "loop"), "iterations")), 0);
	assert_string_equal(step_status(r, "after"), "SUCCEEDED");
	json_decref(r);

	r = run(loop("loop", "{{ \"abc\" }}", mapper("body", "{}")), &st);
	assert_int_equal(st, ENG_FAILED);
	assert_non_null(strstr(json_string_value(json_object_get(step(r, "loop"), "errorMessage")),
			       "must be an array, got string"));
	json_decref(r);

	/* Nested loops see their own items, and paths chain. */
	r = run(loop("outer", "{{ [1,2] }}",
		     loop("inner", "{{ [\"a\",\"b\"] }}",
			  mapper("m", "{\"o\":\"{{outer.item}}\",\"i\":\"{{inner.item}}\"}"))),
		&st);
	assert_int_equal(st, ENG_SUCCEEDED);
	const json_t *it = json_array_get(json_object_get(output(r, "outer"), "iterations"), 1);
	const json_t *inner_it =
		json_array_get(json_object_get(json_object_get(json_object_get(it, "inner"),
							       "output"),
					       "iterations"),
			       0);
	assert_json(json_object_get(json_object_get(inner_it, "m"), "output"),
		    "{\"o\":2,\"i\":\"a\"}");
	assert_string_equal(json_string_value(json_object_get(json_array_get(rh.events, 1),
							      "path")),
			    "outer[1].inner[1].m");
	assert_true(json_equal(rh.merged, json_object_get(r, "steps")));
	json_decref(r);
}

/* --- routers ------------------------------------------------------------------------------ */

#define COND(op, a, b)                                                                       \
	"{\"operator\":\"" op "\",\"firstValue\":\"" a "\",\"secondValue\":\"" b "\"}"

static const char *three_branches(const char *fallback_type)
{
	static char buf[1024];
	snprintf(buf, sizeof buf,
		 "[{\"branchName\":\"big\",\"branchType\":\"CONDITION\",\"conditions\":[[" COND(
			 "NUMBER_IS_GREATER_THAN", "{{trigger.n}}", "10") "]]},"
		 "{\"branchName\":\"even\",\"branchType\":\"CONDITION\",\"conditions\":[[" COND(
			 "TEXT_ENDS_WITH", "{{trigger.n}}", "2") "],[" COND("TEXT_ENDS_WITH",
									     "{{trigger.n}}",
									     "4") "]]},"
		 "{\"branchName\":\"other\",\"branchType\":\"%s\",\"conditions\":[]}]",
		 fallback_type);
	return buf;
}

static json_t *run_router(int all, const char *n, enum eng_status *st)
{
	char payload[64];
	snprintf(payload, sizeof payload, "{\"n\":%s}", n);
	struct opts o = { .payload = payload };
	return run_opts(chain(router("r", all, three_branches("FALLBACK"), 3, mapper("a", "{}"),
				     mapper("b", "{}"), mapper("c", "{}")),
			      mapper("after", "{}"), NULL),
			&o, st);
}

static void test_router(void **state)
{
	enum eng_status st;
	/* 12 matches both condition branches. FIRST_MATCH runs only the first. */
	json_t *r = run_router(0, "12", &st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_non_null(step(r, "a"));
	assert_null(step(r, "b"));
	assert_null(step(r, "c"));
	assert_non_null(step(r, "after"));
	assert_json(output(r, "r"), "{\"branches\":[{\"branchName\":\"big\",\"branchIndex\":1,"
				    "\"evaluation\":true},{\"branchName\":\"even\",\"branchIndex\":2,"
				    "\"evaluation\":false},{\"branchName\":\"other\",\"branchIndex\":"
				    "3,\"evaluation\":false}]}");
	json_decref(r);
	/* ALL_MATCH runs both, in order. */
	r = run_router(1, "12", &st);
	assert_non_null(step(r, "a"));
	assert_non_null(step(r, "b"));
	assert_null(step(r, "c"));
	json_decref(r);
	/* An OR group: 4 is even by its second group. */
	r = run_router(1, "4", &st);
	assert_null(step(r, "a"));
	assert_non_null(step(r, "b"));
	json_decref(r);
	/* No condition matches: the FALLBACK runs. */
	r = run_router(0, "7", &st);
	assert_null(step(r, "a"));
	assert_null(step(r, "b"));
	assert_non_null(step(r, "c"));
	assert_true(json_is_true(json_object_get(
		json_array_get(json_object_get(output(r, "r"), "branches"), 2), "evaluation")));
	json_decref(r);

	/* No match and no fallback: nothing runs, the flow goes on. A null child does nothing. */
	struct opts o = { .payload = "{\"n\":7}" };
	r = run_opts(chain(router("r", 0,
				  "[{\"branchName\":\"x\",\"branchType\":\"CONDITION\",\"conditions\":"
				  "[[" COND("TEXT_CONTAINS", "{{trigger.n}}", "9") "]]},{\"branchName\":"
				  "\"y\",\"branchType\":\"CONDITION\",\"conditions\":[[" COND(
					  "TEXT_CONTAINS", "{{trigger.n}}", "7") "]]}]",
				  2, mapper("a", "{}"), NULL),
			   mapper("after", "{}"), NULL),
		     &o, &st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_null(step(r, "a"));
	assert_non_null(step(r, "after"));
	json_decref(r);
}

static void test_router_in_loop_and_failure(void **state)
{
	enum eng_status st;
	/* Children inside a loop sit in the iteration, next to the router. */
	json_t *r = run(loop("l", "{{ [1, 20] }}",
			     router("r", 0,
				    "[{\"branchName\":\"big\",\"branchType\":\"CONDITION\","
				    "\"conditions\":[[" COND("NUMBER_IS_GREATER_THAN", "{{l.item}}",
							     "10") "]]},{\"branchName\":\"else\","
				    "\"branchType\":\"FALLBACK\"}]",
				    2, mapper("big", "{\"v\":\"{{l.item}}\"}"),
				    mapper("small", "{\"v\":\"{{l.item}}\"}"))),
			&st);
	assert_int_equal(st, ENG_SUCCEEDED);
	const json_t *iters = json_object_get(output(r, "l"), "iterations");
	assert_non_null(json_object_get(json_array_get(iters, 0), "small"));
	assert_null(json_object_get(json_array_get(iters, 0), "big"));
	assert_non_null(json_object_get(json_array_get(iters, 1), "big"));
	assert_string_equal(json_string_value(json_object_get(json_array_get(rh.events, 2), "path")),
			    "l[1].small");
	assert_true(json_equal(rh.merged, json_object_get(r, "steps")));
	json_decref(r);

	/* A failing child fails the flow. */
	r = run(chain(router("r", 0, "[{\"branchName\":\"x\",\"branchType\":\"FALLBACK\"}]", 1,
			     piece("bad", "data-mapper", "advanced_mapping", "{\"mapping\":5}")),
		      mapper("after", "{}"), NULL),
		&st);
	assert_int_equal(st, ENG_FAILED);
	assert_string_equal(step_status(r, "r"), "SUCCEEDED");
	assert_string_equal(step_status(r, "bad"), "FAILED");
	assert_null(step(r, "after"));
	json_decref(r);
}

/* --- responses, delays, approvals ----------------------------------------------------------- */

static void test_return_response(void **state)
{
	enum eng_status st;
	json_t *r = run(chain(piece("resp", "webhook", "return_response",
				    "{\"fields\":{\"status\":202,\"body\":{\"ok\":true}}}"),
			      mapper("after", "{}"), NULL),
			&st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_json(json_object_get(r, "response"), "{\"status\":202,\"headers\":{},\"body\":"
						    "{\"ok\":true}}");
	assert_null(step(r, "after"));
	assert_int_equal(json_array_size(rh.responses), 1);
	json_decref(r);

	/* respond: answers and goes on; the first response is the run's. */
	r = run(chain(piece("r1", "webhook", "return_response",
			    "{\"respond\":\"respond\",\"fields\":{\"body\":{\"n\":1}}}"),
		      piece("r2", "webhook", "return_response", "{\"fields\":{\"body\":{\"n\":2}}}"),
		      mapper("after", "{}"), NULL),
		&st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_json(json_object_get(json_object_get(r, "response"), "body"), "{\"n\":1}");
	assert_int_equal(json_array_size(rh.responses), 2);
	assert_non_null(step(r, "r2"));
	assert_null(step(r, "after"));
	json_decref(r);

	/* Inside a loop, stop ends the whole run. */
	r = run(chain(loop("l", "{{ [1,2,3] }}",
			   piece("resp", "webhook", "return_response", "{\"fields\":{\"body\":1}}")),
		      mapper("after", "{}"), NULL),
		&st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_int_equal(json_array_size(json_object_get(output(r, "l"), "iterations")), 1);
	assert_null(step(r, "after"));
	json_decref(r);
}

static void test_delay(void **state)
{
	enum eng_status st;
	int64_t t0 = fl_mono_ms();
	json_t *r = run(chain(piece("d", "delay", "delayFor", "{\"delayFor\":1}"),
			      mapper("after", "{}"), NULL),
			&st);
	int64_t took = fl_mono_ms() - t0;
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_true(took >= 1000 && took < 3000);
	assert_json(output(r, "d"), "{\"delayForInMs\":1000,\"success\":true}");
	json_decref(r);

	t0 = fl_mono_ms();
	r = run(chain(piece("d", "delay", "delayFor", "{\"delayFor\":60}"), mapper("after", "{}"),
		      NULL),
		&st);
	assert_true(fl_mono_ms() - t0 < 1000);
	assert_int_equal(st, ENG_PAUSED);
	assert_string_equal(step_status(r, "d"), "PAUSED");
	assert_json(output(r, "d"), "{}");
	assert_null(step(r, "after"));
	const json_t *wp = json_object_get(r, "waitpoint");
	assert_string_equal(json_string_value(json_object_get(wp, "type")), "DELAY");
	assert_true(json_integer_value(json_object_get(wp, "resumeAt")) > fl_now_ms() + 55000);
	assert_string_equal(json_string_value(json_object_get(wp, "stepName")), "d");
	const char *id = json_string_value(json_object_get(wp, "id"));
	char url[200];
	snprintf(url, sizeof url,
		 "https://ap.example.com/v1/flow-runs/RunTest0000000000000a/waitpoints/%s", id);
	assert_string_equal(json_string_value(json_object_get(wp, "resumeUrl")), url);
	assert_int_equal(json_array_size(rh.waitpoints), 1);
	assert_null(json_object_get(r, "failedStep"));

	/* The resume replays the paused run and goes on from the delay. */
	json_t *steps = json_deep_copy(json_object_get(r, "steps"));
	json_decref(r);
	json_t *resume = json_object();
	struct opts o = { .replay = steps, .resume = resume };
	r = run_opts(chain(piece("d", "delay", "delayFor", "{\"delayFor\":60}"),
			   mapper("after", "{}"), NULL),
		     &o, &st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_json(output(r, "d"), "{\"delayForInMs\":60000,\"success\":true}");
	assert_string_equal(step_status(r, "after"), "SUCCEEDED");
	json_decref(r);

	/* Delivered again while still paused (no resume): paused again, same waitpoint. */
	o.resume = NULL;
	r = run_opts(chain(piece("d", "delay", "delayFor", "{\"delayFor\":60}"),
			   mapper("after", "{}"), NULL),
		     &o, &st);
	assert_int_equal(st, ENG_PAUSED);
	assert_string_equal(json_string_value(json_object_get(json_object_get(r, "waitpoint"),
							      "id")),
			    json_string_value(json_object_get(
				    json_object_get(json_object_get(steps, "d"), "waitpoint"), "id")));
	json_decref(r);
	json_decref(resume);
	json_decref(steps);
}

static void test_approval(void **state)
{
	enum eng_status st;
	json_t *flow = chain(piece("links", "approval", "create_approval_links", "{}"),
			     piece("wait", "approval", "wait_for_approval", "{}"),
			     mapper("after", "{\"approved\":\"{{wait.approved}}\"}"), NULL);
	json_t *r = run(json_deep_copy(flow), &st);
	assert_int_equal(st, ENG_PAUSED);
	assert_string_equal(step_status(r, "wait"), "PAUSED");
	const json_t *wp = json_object_get(r, "waitpoint");
	assert_string_equal(json_string_value(json_object_get(wp, "type")), "WEBHOOK");
	/* The links sent out before the pause are the pause's own resume URL. */
	char want[256];
	snprintf(want, sizeof want, "%s?action=approve",
		 json_string_value(json_object_get(wp, "resumeUrl")));
	assert_string_equal(json_string_value(json_object_get(output(r, "links"), "approvalLink")),
			    want);

	json_t *steps = json_deep_copy(json_object_get(r, "steps"));
	json_decref(r);
	json_t *resume = J("{\"body\":{},\"headers\":{},\"queryParams\":{\"action\":\"approve\"}}");
	struct opts o = { .replay = steps, .resume = resume };
	r = run_opts(flow, &o, &st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_json(output(r, "wait"), "{\"approved\":true}");
	assert_json(output(r, "after"), "{\"approved\":true}");
	json_decref(r);
	json_decref(resume);
	json_decref(steps);
}

/* --- retries, replay, limits, host failures ------------------------------------------------ */

static void test_retry_on_failure(void **state)
{
	setenv("FLOWD_RETRY_BASE_MS", "10", 1);
	httpsrv_reset(srv);
	char input[256];
	snprintf(input, sizeof input, "{\"url\":\"%s\"}", httpsrv_url(srv, "/status/500"));
	enum eng_status st;
	json_t *r = run(error_handling(piece("h", "http", "send_request", input), 0, 1), &st);
	assert_int_equal(st, ENG_FAILED);
	/* 4 tries in all, waiting base, 2×base, 4×base between them. */
	assert_int_equal(httpsrv_hits(srv, "/status/500"), 4);
	assert_json(rh.sleeps, "[10,20,40]");
	json_decref(r);

	/* A step that recovers on its third try succeeds. */
	snprintf(input, sizeof input, "{\"url\":\"%s\"}", httpsrv_url(srv, "/flaky/retry/2"));
	r = run(error_handling(piece("h", "http", "send_request", input), 0, 1), &st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_json(rh.sleeps, "[10,20]");
	json_decref(r);
	unsetenv("FLOWD_RETRY_BASE_MS");
	assert_int_equal(eng_retry_base_ms(), 4000);
}

static void test_replay(void **state)
{
	httpsrv_reset(srv);
	char input[256];
	snprintf(input, sizeof input, "{\"url\":\"%s\"}", httpsrv_url(srv, "/echo"));
	json_t *flow = chain(piece("h", "http", "send_request", input),
			     loop("l", "{{ [1,2,3] }}", piece("hl", "http", "send_request", input)),
			     mapper("m", "{\"method\":\"{{h.body.method}}\"}"), NULL);
	enum eng_status st;
	json_t *r = run(json_deep_copy(flow), &st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_int_equal(httpsrv_hits(srv, "/echo"), 4);
	/* Idempotency keys carry the step path, iterations included. */
	const json_t *it3 = json_array_get(json_object_get(output(r, "l"), "iterations"), 2);
	const json_t *hdrs = json_object_get(json_object_get(json_object_get(json_object_get(it3,
											     "hl"),
									     "output"),
							     "body"),
					     "headers");
	size_t i;
	json_t *h;
	const char *key = NULL;
	json_array_foreach(hdrs, i, h)
		if (!strcasecmp(json_string_value(json_array_get(h, 0)), "Idempotency-Key"))
			key = json_string_value(json_array_get(h, 1));
	assert_string_equal(key, "RunTest0000000000000a:l[3].hl:1");
	/* Effects flags: http steps need a checkpoint, the mapper does not. */
	assert_true(json_is_true(json_object_get(json_array_get(rh.events, 1), "effects")));
	assert_true(json_is_false(json_object_get(json_array_get(rh.events, 6), "effects")));

	/* Replaying everything runs nothing again. */
	json_t *steps = json_deep_copy(json_object_get(r, "steps"));
	json_decref(r);
	struct opts o = { .replay = steps };
	r = run_opts(json_deep_copy(flow), &o, &st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_int_equal(httpsrv_hits(srv, "/echo"), 4);
	assert_json(output(r, "m"), "{\"method\":\"GET\"}");
	/* Nothing is reported as finished again, not even the trigger: every step says it was
	 * replayed instead, the loop as a whole. */
	assert_int_equal(json_array_size(rh.events), 0);
	assert_json(rh.replayed, "[\"trigger\",\"h\",\"l\",\"m\"]");
	json_decref(r);

	/* A crash in the middle of the loop: h and the first two iterations were persisted. */
	json_t *partial = json_deep_copy(steps);
	json_t *lrec = json_object_get(partial, "l");
	json_object_set_new(lrec, "status", json_string("RUNNING"));
	json_array_remove(json_object_get(json_object_get(lrec, "output"), "iterations"), 2);
	json_object_del(partial, "m");
	o.replay = partial;
	r = run_opts(flow, &o, &st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_int_equal(httpsrv_hits(srv, "/echo"), 5); /* only iteration 3 ran */
	assert_int_equal(json_array_size(json_object_get(output(r, "l"), "iterations")), 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(rh.events, 0), "path")),
			    "l[3].hl");
	/* The loop replays per iteration: its first two body steps are reused, the loop runs. */
	assert_json(rh.replayed, "[\"trigger\",\"h\",\"l[1].hl\",\"l[2].hl\"]");
	json_decref(r);
	json_decref(partial);
	json_decref(steps);
}

/* A router found in replay is not evaluated again: the branches it took stand, even where the
 * conditions would now say otherwise (a template that reads the clock, say). */
static void test_replay_router(void **state)
{
	enum eng_status st;
	json_t *r = run_router(0, "7", &st); /* n = 7: only the fallback, "other", is taken */
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_non_null(step(r, "c"));
	json_t *steps = json_pack("{s:O, s:O}", "trigger", step(r, "trigger"), "r", step(r, "r"));
	json_decref(r);
	/* The persisted evaluation says "big" was taken: a replay with n = 7 follows it. */
	json_t *evals = json_object_get(json_object_get(json_object_get(steps, "r"), "output"),
					"branches");
	json_object_set_new(json_array_get(evals, 0), "evaluation", json_true());
	json_object_set_new(json_array_get(evals, 2), "evaluation", json_false());
	struct opts o = { .payload = "{\"n\":7}", .replay = steps };
	r = run_opts(chain(router("r", 0, three_branches("FALLBACK"), 3, mapper("a", "{}"),
				  mapper("b", "{}"), mapper("c", "{}")),
			   mapper("after", "{}"), NULL),
		     &o, &st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_non_null(step(r, "a"));
	assert_null(step(r, "c"));
	assert_non_null(step(r, "after"));
	assert_json(rh.replayed, "[\"trigger\",\"r\"]");
	json_decref(r);
	json_decref(steps);
}

/* A persisted FAILED record is a finished step too: a redelivery replays the failure instead
 * of acting again, going on past a step that continues on failure and failing otherwise. */
static void test_replay_failure(void **state)
{
	httpsrv_reset(srv);
	char input[256];
	snprintf(input, sizeof input, "{\"url\":\"%s\"}", httpsrv_url(srv, "/status/500"));
	json_t *flow = chain(error_handling(piece("h", "http", "send_request", input), 1, 0),
			     mapper("m", "{\"after\":\"{{h}}\"}"), NULL);
	enum eng_status st;
	json_t *r = run(json_deep_copy(flow), &st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_string_equal(step_status(r, "h"), "FAILED");
	assert_int_equal(httpsrv_hits(srv, "/status/500"), 1);
	json_t *steps = json_deep_copy(json_object_get(r, "steps"));
	json_decref(r);
	json_object_del(steps, "m");
	struct opts o = { .replay = steps };
	r = run_opts(flow, &o, &st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_int_equal(httpsrv_hits(srv, "/status/500"), 1);
	assert_string_equal(step_status(r, "h"), "FAILED");
	/* The failed step's output is undefined to later steps, on replay as on the first run. */
	assert_json(output(r, "m"), "{\"after\":\"\"}");
	assert_json(rh.replayed, "[\"trigger\",\"h\"]");
	json_decref(r);
	json_decref(steps);

	/* Without continueOnFailure the replayed failure ends the run again, with its message. */
	flow = chain(piece("h", "http", "send_request", input), mapper("m", "{}"), NULL);
	r = run(json_deep_copy(flow), &st);
	assert_int_equal(st, ENG_FAILED);
	assert_int_equal(httpsrv_hits(srv, "/status/500"), 2);
	steps = json_deep_copy(json_object_get(r, "steps"));
	json_t *failed = json_deep_copy(json_object_get(r, "failedStep"));
	json_decref(r);
	o.replay = steps;
	r = run_opts(flow, &o, &st);
	assert_int_equal(st, ENG_FAILED);
	assert_int_equal(httpsrv_hits(srv, "/status/500"), 2);
	assert_true(json_equal(json_object_get(r, "failedStep"), failed));
	assert_null(step(r, "m"));
	assert_int_equal(json_array_size(rh.events), 0);
	json_decref(r);
	json_decref(steps);
	json_decref(failed);
}

static void test_log_size(void **state)
{
	char big[3000];
	memset(big, 'x', 2500);
	big[2500] = '\0';
	char mapping[3100];
	snprintf(mapping, sizeof mapping, "{\"big\":\"%s\"}", big);
	enum eng_status st;
	struct opts o = { .log_limit = 2000 };
	json_t *r = run_opts(chain(mapper("small", "{\"a\":1}"), mapper("huge", mapping),
				   mapper("after", "{}"), NULL),
			     &o, &st);
	assert_int_equal(st, ENG_LOG_SIZE_EXCEEDED);
	assert_string_equal(json_string_value(json_object_get(r, "status")), "LOG_SIZE_EXCEEDED");
	assert_string_equal(step_status(r, "small"), "SUCCEEDED");
	assert_string_equal(step_status(r, "huge"), "FAILED");
	assert_string_equal(json_string_value(json_object_get(json_object_get(r, "failedStep"),
							      "name")),
			    "huge");
	assert_null(step(r, "after"));
	char *dump = fl_json_dump(json_object_get(r, "steps"));
	assert_true(strlen(dump) < 2000);
	free(dump);
	json_decref(r);

	/* Loops count iteration by iteration. */
	r = run_opts(loop("l", "{{ [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20] }}",
			  mapper("m", "{\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
				      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}")),
		     &o, &st);
	assert_int_equal(st, ENG_LOG_SIZE_EXCEEDED);
	size_t n = json_array_size(json_object_get(output(r, "l"), "iterations"));
	assert_true(n > 3 && n < 20);
	json_decref(r);
}

static void test_host_refuses(void **state)
{
	/* The checkpoint of the second step fails (say, the lock was lost): the run stops. */
	rh_reset();
	struct eng_flow *f = make_flow(chain(mapper("a", "{}"), mapper("b", "{}"),
					     mapper("c", "{}"), NULL));
	rh.fail_at = 3;
	struct eng_run_opts ro = { .run_id = "r" };
	json_t *result;
	enum eng_status st;
	assert_int_equal(eng_run(engine, f, &ro, &host, &result, &st, NULL), 0);
	assert_int_equal(st, ENG_INTERNAL_ERROR);
	assert_null(step(result, "c"));
	json_decref(result);
	eng_flow_free(f);
}

static void test_deadline(void **state)
{
	enum eng_status st;
	struct opts o = { .deadline_ms = fl_mono_ms() + 300 };
	json_t *r = run_opts(chain(piece("d", "delay", "delayFor", "{\"delayFor\":0.5}"),
				   mapper("after", "{}"), NULL),
			     &o, &st);
	assert_int_equal(st, ENG_TIMEOUT);
	assert_string_equal(step_status(r, "d"), "SUCCEEDED");
	assert_null(step(r, "after"));
	json_decref(r);
}

static void test_store_in_flow(void **state)
{
	enum eng_status st;
	json_t *r = run(chain(piece("put", "store", "put", "{\"key\":\"k\",\"value\":\"v1\","
							   "\"store_scope\":\"RUN\"}"),
			      piece("get", "store", "get", "{\"key\":\"k\",\"store_scope\":\"RUN\"}"),
			      NULL),
			&st);
	assert_int_equal(st, ENG_SUCCEEDED);
	assert_json(output(r, "get"), "\"v1\"");
	assert_non_null(json_object_get(rh.store, "flow_flowT/run_RunTest0000000000000a/k"));
	json_decref(r);
}

static void test_steps_merge(void **state)
{
	json_t *steps = json_object();
	json_t *rec = J("{\"status\":\"SUCCEEDED\",\"output\":1}");
	json_t *path = J("[\"l\",2,\"s\"]");
	assert_int_equal(eng_steps_merge(steps, path, rec), 0);
	assert_int_equal(json_array_size(json_object_get(
				 json_object_get(json_object_get(steps, "l"), "output"),
				 "iterations")),
			 2);
	json_decref(path);
	path = J("[\"l\",2]");
	assert_int_equal(eng_steps_merge(steps, path, rec), FL_EINVAL);
	json_decref(path);
	path = J("[]");
	assert_int_equal(eng_steps_merge(steps, path, rec), FL_EINVAL);
	json_decref(path);
	path = J("[\"l\",0,\"s\"]");
	assert_int_equal(eng_steps_merge(steps, path, rec), FL_EINVAL);
	json_decref(path);
	json_decref(rec);
	json_decref(steps);
}

static int setup(void **state)
{
	srv = httpsrv_start();
	/* A short script limit, so that the runaway test is quick. */
	struct eng_engine_opts eo = { .js_time_limit_ms = 300 };
	engine = eng_engine_new(&eo);
	return 0;
}

static int teardown(void **state)
{
	eng_engine_free(engine);
	httpsrv_stop(srv);
	rh_reset();
	json_decref(rh.events);
	json_decref(rh.merged);
	json_decref(rh.responses);
	json_decref(rh.waitpoints);
	json_decref(rh.sleeps);
	json_decref(rh.store);
	return 0;
}

int main(int argc, char **argv)
{
	fl_alloc_init();
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_code_echo_number),
		cmocka_unit_test(test_templates_between_steps),
		cmocka_unit_test(test_code_throw),
		cmocka_unit_test(test_code_console),
		cmocka_unit_test(test_code_unsupported),
		cmocka_unit_test(test_runaway),
		cmocka_unit_test(test_skip),
		cmocka_unit_test(test_unknown_piece),
		cmocka_unit_test(test_loop),
		cmocka_unit_test(test_loop_failure_and_empty),
		cmocka_unit_test(test_router),
		cmocka_unit_test(test_router_in_loop_and_failure),
		cmocka_unit_test(test_return_response),
		cmocka_unit_test(test_delay),
		cmocka_unit_test(test_approval),
		cmocka_unit_test(test_retry_on_failure),
		cmocka_unit_test(test_replay),
		cmocka_unit_test(test_replay_failure),
		cmocka_unit_test(test_replay_router),
		cmocka_unit_test(test_log_size),
		cmocka_unit_test(test_host_refuses),
		cmocka_unit_test(test_deadline),
		cmocka_unit_test(test_store_in_flow),
		cmocka_unit_test(test_steps_merge),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
