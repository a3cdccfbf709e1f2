/* Unit tests for src/engine/template.c: every rule of shared/FLOWS.md §2, the native path and
 * its agreement with JavaScript, and js_eval underneath. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"
#include "core/time.h"
#include "engine/js.h"
#include "engine/template.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct js_runtime *rt;
static json_t *scope;

static const char scope_json[] =
	"{\"trigger\":{\"items\":[5,\"a\"],\"price\":6.4,\"name\":\"Ada\",\"a b\":\"spaced\","
	"\"body\":{\"users\":[{\"name\":\"u1\",\"tags\":[\"x\"]},{\"name\":\"u2\",\"tags\":[\"y\",\"z\"]}]},"
	"\"uni\":\"\u00e9\U0001F600x\",\"nested\":{\"deep\":{\"er\":[null,{\"k\":true}]}},\"n\":null,\"int\":42,\"obj\":{\"b\":1,\"2\":2,\"a\":[1.5,\"q\\\"\"]}},"
	"\"step_1\":{\"body\":{\"items\":[{\"name\":\"first\"},{\"name\":\"second\"}]}},"
	"\"loop\":{\"item\":{\"id\":7},\"index\":2}}";

static int setup(void **state)
{
	fl_alloc_init();
	struct js_runtime_opts opts = { .time_limit_ms = 300 };
	rt = js_runtime_new(&opts);
	scope = json_loads(scope_json, 0, NULL);
	return scope ? 0 : -1;
}

static int teardown(void **state)
{
	json_decref(scope);
	js_runtime_free(rt);
	return 0;
}

/* Resolves the JSON text in and returns the result as compact JSON text (caller frees). */
static char *resolve_text(const char *in, int *rc_out)
{
	json_error_t je;
	json_t *v = json_loads(in, JSON_DECODE_ANY, &je);
	if (!v)
		fail_msg("bad test input %s: %s", in, je.text);
	json_t *out = NULL;
	struct fl_err err = { 0 };
	int rc = eng_tmpl_resolve(rt, v, scope, &out, &err);
	json_decref(v);
	if (rc_out)
		*rc_out = rc;
	if (rc)
		return NULL;
	char *s = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(out);
	return s;
}

#define assert_resolves(in, want)                                          \
	do {                                                               \
		char *got_ = resolve_text(in, NULL);                       \
		assert_non_null(got_);                                     \
		if (strcmp(got_, want) != 0)                               \
			fail_msg("%s: got %s, want %s", in, got_, want);   \
		free(got_);                                                \
	} while (0)

static void test_type_kept(void **state)
{
	assert_resolves("\"{{trigger.items}}\"", "[5,\"a\"]");
	assert_resolves("\"{{ trigger.int }}\"", "42");
	assert_resolves("\"{{trigger.n}}\"", "null");
	assert_resolves("\"{{trigger.nested.deep.er[1].k}}\"", "true");
	assert_resolves("\"{{ [4,5,6] }}\"", "[4,5,6]");
	assert_resolves("\"{{ {\\\"a\\\":1} }}\"", "{\"a\":1}");
	assert_resolves("\"{{ {\\\"a\\\":{\\\"b\\\":1}} }}\"", "{\"a\":{\"b\":1}}");
	assert_resolves("\"{{ 1 + 2 }}\"", "3");
	assert_resolves("\"{{ 'x' + 1 }}\"", "\"x1\"");
}

static void test_arithmetic(void **state)
{
	json_t *v = json_string("{{trigger.price + 2 - 3}}"), *out = NULL;
	assert_int_equal(eng_tmpl_resolve(rt, v, scope, &out, NULL), 0);
	assert_true(json_is_number(out));
	assert_true(fabs(json_number_value(out) - 5.4) < 1e-9);
	json_decref(out);
	json_decref(v);
	/* spliced, the number reads as JavaScript writes it */
	assert_resolves("\"p={{trigger.price + 2 - 3}}\"", "\"p=5.4\"");
	assert_resolves("\"p={{trigger.price}}\"", "\"p=6.4\"");
}

static void test_splice(void **state)
{
	assert_resolves("\"items are {{trigger.items}}\"", "\"items are [5,\\\"a\\\"]\"");
	assert_resolves("\"hi {{trigger.name}}!\"", "\"hi Ada!\"");
	assert_resolves("\"{{trigger.name}}{{trigger.int}}\"", "\"Ada42\"");
	assert_resolves("\"a{{trigger.n}}b\"", "\"anullb\"");
	assert_resolves("\"x {{ {\\\"k\\\":[1,2]} }} y\"", "\"x {\\\"k\\\":[1,2]} y\"");
	assert_resolves("\"{{trigger.name}} and {{ trigger.name.toUpperCase() }}\"",
			"\"Ada and ADA\"");
	/* an unclosed {{ stays as it is */
	assert_resolves("\"a {{ b\"", "\"a {{ b\"");
	assert_resolves("\"plain\"", "\"plain\"");
}

static void test_undefined_and_throw(void **state)
{
	assert_resolves("\"{{}}\"", "\"\"");
	assert_resolves("\"{{   }}\"", "\"\"");
	assert_resolves("\"a{{}}b\"", "\"ab\"");
	assert_resolves("\"{{ trigger.missing }}\"", "\"\"");
	assert_resolves("\"{{ undefined }}\"", "\"\"");
	assert_resolves("\"{{ (() => { throw new Error('x') })() }}\"", "\"\"");
	assert_resolves("\"a{{ nosuchname.x }}b\"", "\"ab\"");
	assert_resolves("\"{{ trigger.n.x }}\"", "\"\"");
	assert_resolves("\"{{ this is not js }}\"", "\"\"");
	assert_resolves("\"{{ () => 1 }}\"", "\"\"");
}

static void test_nested(void **state)
{
	assert_resolves("{\"nums\":[1,2,\"{{trigger.items[0]}}\"]}", "{\"nums\":[1,2,5]}");
	assert_resolves("{\"a\":{\"b\":[{\"c\":\"{{trigger.name}}\"},true,null,3.5]},\"k\":\"v\"}",
			"{\"a\":{\"b\":[{\"c\":\"Ada\"},true,null,3.5]},\"k\":\"v\"}");
	/* keys are not templates */
	assert_resolves("{\"{{trigger.name}}\":1}", "{\"{{trigger.name}}\":1}");
}

static void test_skipped_step(void **state)
{
	/* step_9 never ran: it is undefined, not a ReferenceError */
	assert_resolves("\"{{ step_9 === undefined ? 'skipped' : 'ran' }}\"", "\"skipped\"");
	assert_resolves("\"{{ typeof step_9 }}\"", "\"undefined\"");
	assert_resolves("\"{{ step_9.body.x }}\"", "\"\"");
	assert_resolves("\"{{ step_9 }}\"", "\"\"");
	assert_resolves("\"{{ step_1 === undefined ? 'skipped' : 'ran' }}\"", "\"ran\"");
}

static void test_loop_scope(void **state)
{
	assert_resolves("\"{{loop.item.id}}\"", "7");
	assert_resolves("\"#{{loop.index}}\"", "\"#2\"");
	assert_resolves("\"{{loop.index * 10}}\"", "20");
}

static void test_flatten(void **state)
{
	assert_resolves("\"{{ flattenNestedKeys(trigger.body, ['users', 'name']) }}\"",
			"[\"u1\",\"u2\"]");
	assert_resolves("\"{{ flattenNestedKeys(trigger.body, ['users', 'tags']) }}\"",
			"[\"x\",\"y\",\"z\"]");
	assert_resolves("\"{{ flattenNestedKeys(trigger.body, ['nope']) }}\"", "[]");
	assert_resolves("\"{{ flattenNestedKeys(trigger, ['int']) }}\"", "[42]");
}

static void test_fast_path_forms(void **state)
{
	assert_resolves("\"{{step_1.body.items[0].name}}\"", "\"first\"");
	assert_resolves("\"{{ step_1['body'][\\\"items\\\"][1].name }}\"", "\"second\"");
	assert_resolves("\"{{trigger['a b']}}\"", "\"spaced\"");
	assert_resolves("\"{{trigger.items[7]}}\"", "\"\"");
	assert_resolves("\"{{trigger.items.length}}\"", "2");
	assert_resolves("\"{{trigger.name.length}}\"", "3");
	assert_resolves("\"{{trigger.body?.users?.[1]?.name}}\"", "\"u2\"");
	assert_resolves("\"{{trigger.obj.constructor.name}}\"", "\"Object\"");
	assert_resolves("\"{{Math.max(1, 3)}}\"", "3");
}

/* The native path and JavaScript must agree: the same expression wrapped so that the native
 * path cannot take it ("(expr)") goes through JavaScriptCore. */
static void test_fast_path_agrees(void **state)
{
	static const char *const exprs[] = {
		"trigger",
		"trigger.items",
		"trigger.items[1]",
		"trigger.price",
		"trigger.obj",
		"trigger.nested.deep",
		"trigger.nested.deep.er[0]",
		"trigger['a b']",
		"step_1.body.items[1]",
		"trigger.missing",
		"trigger.n.x",
		"step_9.a.b",
		"loop.item",
		"trigger.items.length",
		"trigger.name.length",
		"trigger.body.users[1].tags.length",
		"trigger.uni.length",
		"trigger.items.length.x",
	};
	for (size_t i = 0; i < sizeof exprs / sizeof *exprs; i++) {
		char native_v[256], js_v[256], native_t[256], js_t[256];
		snprintf(native_v, sizeof native_v, "\"{{%s}}\"", exprs[i]);
		snprintf(js_v, sizeof js_v, "\"{{(%s)}}\"", exprs[i]);
		snprintf(native_t, sizeof native_t, "\"<{{%s}}>\"", exprs[i]);
		snprintf(js_t, sizeof js_t, "\"<{{(%s)}}>\"", exprs[i]);
		char *a = resolve_text(native_v, NULL), *b = resolve_text(js_v, NULL);
		char *c = resolve_text(native_t, NULL), *d = resolve_text(js_t, NULL);
		assert_non_null(a);
		assert_non_null(b);
		/* values compare as JSON values: JavaScript lists index-like keys first */
		json_t *ja = json_loads(a, JSON_DECODE_ANY, NULL);
		json_t *jb = json_loads(b, JSON_DECODE_ANY, NULL);
		if (!json_equal(ja, jb))
			fail_msg("%s: native %s, javascript %s", exprs[i], a, b);
		json_decref(ja);
		json_decref(jb);
		if (strcmp(c, d) != 0)
			fail_msg("%s spliced: native %s, javascript %s", exprs[i], c, d);
		free(a);
		free(b);
		free(c);
		free(d);
	}
}

static void test_fresh_globals(void **state)
{
	/* a global set by one resolution is gone in the next */
	assert_resolves("\"{{ (globalThis.leak = 1, 2) }}\"", "2");
	assert_resolves("\"{{ typeof leak }}\"", "\"undefined\"");
	/* within one input the expressions share a context, and see the scope unchanged */
	assert_resolves("[\"{{ (trigger.items.push(9), trigger.items.length) }}\",\"{{trigger.items}}\"]",
			"[3,[5,\"a\"]]");
	assert_resolves("\"{{trigger.items}}\"", "[5,\"a\"]");
}

static void test_runaway(void **state)
{
	/* the limit is CPU time: wall time stretches on a loaded machine */
	struct timespec c0, c1;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
	int rc = 0;
	char *s = resolve_text("\"{{ (() => { while (true) {} })() }}\"", &rc);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
	int64_t took = (c1.tv_sec - c0.tv_sec) * 1000 + (c1.tv_nsec - c0.tv_nsec) / 1000000;
	assert_null(s);
	assert_int_equal(rc, FL_ETIMEOUT);
	assert_true(took < 900);
	/* a loop started from a promise reaction is stopped as well */
	s = resolve_text("\"{{ (Promise.resolve().then(() => { while (true) {} }), 1) }}\"", &rc);
	assert_null(s);
	assert_int_equal(rc, FL_ETIMEOUT);
	/* and an endless chain of promise jobs (only with nested draining) */
	if (!getenv("FLOWD_JS_TOP_LEVEL_JOBS")) {
		s = resolve_text("\"{{ ((async () => { for (;;) await null; })(), 1) }}\"", &rc);
		assert_null(s);
		assert_int_equal(rc, FL_ETIMEOUT);
	}
	/* and the runtime still works */
	assert_resolves("\"{{ 40 + 2 }}\"", "42");
	assert_resolves("\"{{ trigger.name }}!\"", "\"Ada!\"");
}

static void test_js_eval(void **state)
{
	json_t *out = NULL;
	struct fl_err err = { 0 };
	assert_int_equal(js_eval(rt, "trigger.items.map(x => typeof x)", scope, &out, &err), 0);
	char *s = json_dumps(out, JSON_COMPACT);
	assert_string_equal(s, "[\"number\",\"string\"]");
	free(s);
	json_decref(out);
	assert_int_equal(js_eval(rt, "undefined", scope, &out, &err), 0);
	assert_null(out);
	assert_int_equal(js_eval(rt, "nope.x", scope, &out, &err), FL_EJS);
	assert_non_null(strstr(err.msg, "nope"));
	assert_int_equal(js_eval(rt, "(", scope, &out, &err), FL_EJS);
	assert_int_equal(js_eval(rt, "({a: 1n})", scope, &out, &err), FL_EJS);
	assert_int_equal(js_eval(rt, "2**60", NULL, &out, &err), 0);
	assert_true(json_is_number(out));
	json_decref(out);
	assert_int_equal(js_eval(rt, "[1e21, 0.1, -0]", NULL, &out, &err), 0);
	s = json_dumps(out, JSON_COMPACT);
	json_decref(out);
	assert_non_null(s);
	free(s);
}

static void test_format_number(void **state)
{
	char b[32];
	assert_string_equal(fl_json_format_number(5.4, b), "5.4");
	assert_string_equal(fl_json_format_number(0.1 + 0.2, b), "0.30000000000000004");
	assert_string_equal(fl_json_format_number(1e21, b), "1e+21");
	assert_string_equal(fl_json_format_number(1e20, b), "100000000000000000000");
	assert_string_equal(fl_json_format_number(1.5e-7, b), "1.5e-7");
	assert_string_equal(fl_json_format_number(0.000001, b), "0.000001");
	assert_string_equal(fl_json_format_number(-0.0, b), "0");
	assert_string_equal(fl_json_format_number(-123.456, b), "-123.456");
	assert_string_equal(fl_json_format_number(3, b), "3");
	assert_string_equal(fl_json_format_number(NAN, b), "NaN");

	json_t *v = json_loads("{\"b\":1,\"10\":0,\"2\":2,\"a\":[1.5,6.4,\"q\\\"\\b\\u0001\u00e9\"],"
			       "\"n\":null,\"t\":true}", 0, NULL);
	assert_non_null(v);
	struct fl_buf out = FL_BUF_INIT;
	fl_json_write(&out, v, FL_JSON_JS_KEY_ORDER);
	assert_string_equal(out.data, "{\"2\":2,\"10\":0,\"b\":1,\"a\":[1.5,6.4,\"q\\\"\\b\\u0001\u00e9\"],"
				      "\"n\":null,\"t\":true}");
	fl_buf_release(&out);
	json_decref(v);
}

static void test_without_runtime(void **state)
{
	json_t *v = json_loads("[\"{{trigger.name}}\",\"{{ 1 + 1 }}\",\"a{{ 1 + 1 }}b\"]", 0, NULL);
	json_t *out = NULL;
	assert_int_equal(eng_tmpl_resolve(NULL, v, scope, &out, NULL), 0);
	char *s = json_dumps(out, JSON_COMPACT);
	assert_string_equal(s, "[\"Ada\",\"\",\"ab\"]");
	free(s);
	json_decref(out);
	json_decref(v);
}

static void test_has_templates(void **state)
{
	json_t *v = json_loads("{\"a\":[1,{\"b\":\"x {{y}}\"}]}", 0, NULL);
	assert_true(eng_tmpl_has_templates(v));
	json_decref(v);
	v = json_loads("{\"a\":[1,{\"b\":\"x {y}\"}]}", 0, NULL);
	assert_false(eng_tmpl_has_templates(v));
	json_decref(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_type_kept),
		cmocka_unit_test(test_arithmetic),
		cmocka_unit_test(test_splice),
		cmocka_unit_test(test_undefined_and_throw),
		cmocka_unit_test(test_nested),
		cmocka_unit_test(test_skipped_step),
		cmocka_unit_test(test_loop_scope),
		cmocka_unit_test(test_flatten),
		cmocka_unit_test(test_fast_path_forms),
		cmocka_unit_test(test_fast_path_agrees),
		cmocka_unit_test(test_fresh_globals),
		cmocka_unit_test(test_runaway),
		cmocka_unit_test(test_js_eval),
		cmocka_unit_test(test_format_number),
		cmocka_unit_test(test_without_runtime),
		cmocka_unit_test(test_has_templates),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
