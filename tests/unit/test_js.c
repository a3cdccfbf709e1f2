/* Unit tests for src/engine/js.c and js_code.c: CODE steps on JavaScriptCore (values, async,
 * timers, failures, runaway scripts, the globals a step gets and the ones it must not get,
 * fetch against a local server with its Idempotency-Key). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/time.h"
#include "engine/js.h"
#include "net/policy.h"
#include "httpsrv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct js_runtime *rt;
static struct httpsrv *srv;

#define TIME_LIMIT_MS 300

static int64_t thread_cpu_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int setup(void **state)
{
	fl_alloc_init();
	struct js_runtime_opts opts = { .time_limit_ms = TIME_LIMIT_MS,
					.code_wall_limit_ms = 3000 };
	rt = js_runtime_new(&opts);
	srv = httpsrv_start();
	return srv ? 0 : -1;
}

static int teardown(void **state)
{
	httpsrv_stop(srv);
	js_runtime_free(rt);
	return 0;
}

struct result {
	int rc;
	char *out;          /* compact JSON, "undefined" for NULL */
	struct fl_err err;
	struct fl_buf console;
};

static struct result run_code(const char *code, const char *inputs_json,
			      const struct js_code_ctx *cctx)
{
	struct result r = { 0 };
	fl_buf_init(&r.console);
	json_t *inputs = json_loads(inputs_json ? inputs_json : "{}", JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	json_t *out = NULL;
	r.rc = js_run_code(rt, code, inputs, cctx, &out, &r.console, &r.err);
	json_decref(inputs);
	r.out = out ? json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("undefined");
	json_decref(out);
	return r;
}

static void result_release(struct result *r)
{
	free(r->out);
	fl_buf_release(&r->console);
}

#define assert_code(code, inputs, want)                                            \
	do {                                                                       \
		struct result r_ = run_code(code, inputs, NULL);                   \
		if (r_.rc)                                                         \
			fail_msg("%s: failed: %s", code, r_.err.msg);              \
		if (strcmp(r_.out, want) != 0)                                     \
			fail_msg("%s: got %s, want %s", code, r_.out, want);       \
		result_release(&r_);                                               \
	} while (0)

#define assert_code_fails(code, want_rc, want_text)                                    \
	do {                                                                           \
		struct result r_ = run_code(code, NULL, NULL);                         \
		if (r_.rc != (want_rc))                                                \
			fail_msg("%s: rc %d (%s), want %d", code, r_.rc, r_.err.msg,   \
				 want_rc);                                             \
		if (!strstr(r_.err.msg, want_text))                                    \
			fail_msg("%s: message '%s' lacks '%s'", code, r_.err.msg,      \
				 want_text);                                           \
		result_release(&r_);                                                   \
	} while (0)

static void test_values(void **state)
{
	assert_code("export const code = async (inputs) => { return { key: inputs.key }; };",
		    "{\"key\":3}", "{\"key\":3}");
	assert_code("export async function code(inputs) { return inputs.a + 1; }", "{\"a\":41}",
		    "42");
	assert_code("export const code = function (inputs) { return [1, 'two', null, true]; }",
		    NULL, "[1,\"two\",null,true]");
	assert_code("export const code = (inputs) => 'plain';", NULL, "\"plain\"");
	assert_code("export const code = async () => {};", NULL, "undefined");
	assert_code("export const code = async () => 0.1 + 0.2;", NULL, "0.30000000000000004");
	/* strings survive the trip both ways: NUL, accents, astral characters */
	assert_code("export const code = async (i) => [i.s, i.s.length, i.s.codePointAt(3)];",
		    "{\"s\":\"a\\u0000\u00e9\U0001F600\"}", "[\"a\\u0000\u00e9\U0001F600\",5,128512]");
	assert_code("export const code = async () => ({ d: new Date(0), u: undefined });", NULL,
		    "{\"d\":\"1970-01-01T00:00:00.000Z\"}");
	assert_code("const helper = (x) => x * 2;\nexport const code = async (i) => helper(i.n);",
		    "{\"n\":21}", "42");
	assert_code("// a comment with export const code in it\n"
		    "export const code = async () => 'export const x';", NULL,
		    "\"export const x\"");
}

static void test_async(void **state)
{
	assert_code("export const code = async () => {\n"
		    "  const v = await new Promise((r) => setTimeout(() => r(7), 10));\n"
		    "  const w = await Promise.all([1, Promise.resolve(2)]);\n"
		    "  return v + w[0] + w[1];\n"
		    "};",
		    NULL, "10");
}

static void test_timer_order(void **state)
{
	assert_code("export const code = async () => {\n"
		    "  const seen = [];\n"
		    "  setTimeout(() => seen.push('c30'), 30);\n"
		    "  setTimeout(() => seen.push('a0'), 0);\n"
		    "  setTimeout(() => seen.push('b10'), 10);\n"
		    "  setTimeout(() => seen.push('b10bis'), 10);\n"
		    "  setTimeout((x, y) => seen.push(x + y), 20, 'ar', 'gs');\n"
		    "  Promise.resolve().then(() => seen.push('micro'));\n"
		    "  queueMicrotask(() => seen.push('queued'));\n"
		    "  seen.push('sync');\n"
		    "  await new Promise((r) => setTimeout(r, 40));\n"
		    "  return seen;\n"
		    "};",
		    NULL, "[\"sync\",\"micro\",\"queued\",\"a0\",\"b10\",\"b10bis\",\"args\",\"c30\"]");
}

static void test_clear_timeout(void **state)
{
	assert_code("export const code = async () => {\n"
		    "  let fired = false, ticks = 0;\n"
		    "  const t = setTimeout(() => { fired = true; }, 5);\n"
		    "  clearTimeout(t);\n"
		    "  await new Promise((r) => {\n"
		    "    const i = setInterval(() => { if (++ticks === 3) { clearInterval(i); r(); } }, 2);\n"
		    "  });\n"
		    "  await new Promise((r) => setTimeout(r, 15));\n"
		    "  return { fired, ticks };\n"
		    "};",
		    NULL, "{\"fired\":false,\"ticks\":3}");
}

static void test_throw_with_console(void **state)
{
	struct result r = run_code("export const code = async () => {\n"
				   "  console.log('before', 1, { b: 2 });\n"
				   "  console.error('oops');\n"
				   "  throw new Error('boom');\n"
				   "};",
				   NULL, NULL);
	assert_int_equal(r.rc, FL_EJS);
	assert_non_null(strstr(r.err.msg, "Error: boom"));
	assert_non_null(strstr(r.err.msg, "before 1 {\"b\":2}"));
	assert_string_equal(r.console.data, "before 1 {\"b\":2}\noops\n");
	result_release(&r);
	/* a synchronous throw from a non-async function fails the same way */
	assert_code_fails("export const code = () => { null.x; };", FL_EJS, "TypeError");
	assert_code_fails("export const code = () => { throw { code: 7 }; };", FL_EJS,
			  "{\"code\":7}");
}

static void test_rejections(void **state)
{
	assert_code_fails("export const code = async () => { throw new TypeError('bad'); };",
			  FL_EJS, "TypeError: bad");
	assert_code_fails("export const code = () => Promise.reject('just text');", FL_EJS,
			  "just text");
	assert_code_fails("export const code = async () => {\n"
			  "  Promise.reject(new Error('lost'));\n"
			  "  await new Promise((r) => setTimeout(r, 5));\n"
			  "  return 1;\n"
			  "};",
			  FL_EJS, "unhandled promise rejection: Error: lost");
	/* a rejection that is handled is no failure */
	assert_code("export const code = async () => {\n"
		    "  const p = Promise.reject(new Error('x'));\n"
		    "  try { await p; } catch (e) { return e.message; }\n"
		    "};",
		    NULL, "\"x\"");
}

static void test_throw_in_timer(void **state)
{
	assert_code_fails("export const code = async () => {\n"
			  "  setTimeout(() => { throw new Error('tick'); }, 1);\n"
			  "  await new Promise((r) => setTimeout(r, 20));\n"
			  "  return 1;\n"
			  "};",
			  FL_EJS, "Error: tick");
}

static void test_runaway(void **state)
{
	static const char *const loops[] = {
		"export const code = async () => { while (true) {} };",
		"export const code = async () => { await null; while (true) {} };",
		"export const code = async () => {\n"
		"  await new Promise((r) => setTimeout(r, 1));\n"
		"  for (;;) {}\n"
		"};",
		"export const code = async () => { setTimeout(() => { while (true) {} }, 1);"
		"  await new Promise((r) => setTimeout(r, 50)); };",
		/* endless chains of promise jobs, each one short */
		"export const code = async () => { for (;;) await null; };",
		"export const code = async () => { let n = 0; for (;;) { n++; new Array(100).fill(n);"
		"  await Promise.resolve(n); } };",
		"export const code = async () => { setTimeout(async () => { for (;;) await null; }, 1);"
		"  await new Promise((r) => setTimeout(r, 5000)); };",
		"export const code = async () => { const f = () => Promise.resolve().then(f); f();"
		"  await new Promise((r) => setTimeout(r, 5000)); };",
	};
	for (size_t i = 0; i < sizeof loops / sizeof *loops; i++) {
		if (i >= 4 && getenv("FLOWD_JS_TOP_LEVEL_JOBS"))
			break; /* without nested draining, job chains run until the flow timeout */
		/* The limit is CPU time, so that a step waiting on a timer or a fetch does not use
		 * it up; on a loaded machine wall time stretches, CPU time does not. */
		int64_t c0 = thread_cpu_ms();
		struct result r = run_code(loops[i], NULL, NULL);
		int64_t took = thread_cpu_ms() - c0;
		if (r.rc != FL_ETIMEOUT)
			fail_msg("loop %zu: rc %d (%s)", i, r.rc, r.err.msg);
		if (!(took >= TIME_LIMIT_MS / 2 && took < 3 * TIME_LIMIT_MS))
			fail_msg("loop %zu stopped after %lld ms of CPU time", i, (long long)took);
		assert_non_null(strstr(r.err.msg, "time limit"));
		result_release(&r);
		/* the runtime keeps working after each one */
		assert_code("export const code = async () => 'alive';", NULL, "\"alive\"");
	}
	/* a runaway expression, too */
	json_t *out = NULL;
	assert_int_equal(js_eval(rt, "(() => { while (true) {} })()", NULL, &out, NULL),
			 FL_ETIMEOUT);
	assert_int_equal(js_eval(rt, "6 * 7", NULL, &out, NULL), 0);
	assert_int_equal(json_integer_value(out), 42);
	json_decref(out);
}

static void test_wall_limit(void **state)
{
	struct js_runtime_opts opts = { .time_limit_ms = 300, .code_wall_limit_ms = 100 };
	struct js_runtime *short_rt = js_runtime_new(&opts);
	json_t *out = NULL;
	struct fl_err err;
	int64_t t0 = fl_mono_ms();
	int rc = js_run_code(short_rt,
			     "export const code = async () => {\n"
			     "  await new Promise((r) => setTimeout(r, 10000));\n"
			     "};",
			     NULL, NULL, &out, NULL, &err);
	assert_int_equal(rc, FL_ETIMEOUT);
	assert_true(fl_mono_ms() - t0 < 1000);
	js_runtime_free(short_rt);
	assert_code_fails("export const code = () => new Promise(() => {});", FL_EJS,
			  "never settled");
}

static void test_no_host(void **state)
{
	assert_code("export const code = async () => [typeof require, typeof process, "
		    "typeof module, typeof Deno, typeof Bun];",
		    NULL, "[\"undefined\",\"undefined\",\"undefined\",\"undefined\",\"undefined\"]");
	assert_code_fails("export const code = async () => require('fs');", FL_EJS,
			  "require");
	assert_code_fails("export const code = async () => process.env;", FL_EJS, "process");
	assert_code_fails("import fs from 'fs';\nexport const code = async () => 1;", FL_EJS,
			  "import is not supported");
	assert_code_fails("export const notcode = async () => 1;", FL_EJS,
			  "export a function named code");
}

static void test_base64(void **state)
{
	assert_code("export const code = async () => [btoa('hello'), atob('aGVsbG8='), "
		    "atob('aGVsbG8'), atob(' aGVs\\nbG8= '), btoa(atob('AP8=')), "
		    "atob('AP8=').charCodeAt(1)];",
		    NULL, "[\"aGVsbG8=\",\"hello\",\"hello\",\"hello\",\"AP8=\",255]");
	assert_code_fails("export const code = async () => btoa('\\u0100');", FL_EJS,
			  "InvalidCharacterError");
	assert_code_fails("export const code = async () => atob('a!b');", FL_EJS,
			  "InvalidCharacterError");
}

static void test_crypto(void **state)
{
	assert_code("export const code = async () => {\n"
		    "  const a = crypto.randomUUID(), b = crypto.randomUUID();\n"
		    "  const re = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;\n"
		    "  const bytes = crypto.getRandomValues(new Uint8Array(32));\n"
		    "  return [re.test(a), re.test(b), a !== b, bytes.some((x) => x !== 0)];\n"
		    "};",
		    NULL, "[true,true,true,true]");
}

static void test_fresh_globals(void **state)
{
	assert_code("globalThis.leak = 1; var alsoLeak = 2;\n"
		    "export const code = async () => { globalThis.more = 3; return leak + alsoLeak; };",
		    NULL, "3");
	assert_code("export const code = async () => [typeof leak, typeof alsoLeak, typeof more];",
		    NULL, "[\"undefined\",\"undefined\",\"undefined\"]");
	/* even a step that failed leaves nothing behind */
	assert_code_fails("globalThis.leak2 = 1; export const code = () => { throw 1; };", FL_EJS,
			  "1");
	assert_code("export const code = async () => typeof leak2;", NULL, "\"undefined\"");
}

/* A context prepared while the engine waits is as fresh as one made on the step's path: the
 * step before leaves nothing in it, and preparing twice still gives each step its own. */
static void test_prepared_context(void **state)
{
	assert_code("globalThis.leak3 = 1; export const code = async () => leak3;", NULL, "1");
	js_prepare_code_context(rt);
	js_prepare_code_context(rt);
	assert_code("globalThis.leak4 = 2;\n"
		    "export const code = async (i) => [typeof leak3, i.n];", "{\"n\":7}",
		    "[\"undefined\",7]");
	assert_code("export const code = async () => typeof leak4;", NULL, "\"undefined\"");
	js_prepare_code_context(rt);
	assert_code_fails("export const code = () => { throw new Error('in a prepared one'); };",
			  FL_EJS, "Error: in a prepared one");
}

static void test_fetch(void **state)
{
	int count = 0;
	struct js_code_ctx cctx = { .run_id = "runABC", .step_path = "step_2",
				    .request_count = &count };
	char echo[128], notfound[128], code[2048];
	snprintf(echo, sizeof echo, "%s", httpsrv_url(srv, "/echo"));
	snprintf(notfound, sizeof notfound, "%s", httpsrv_url(srv, "/status/404"));
	snprintf(code, sizeof code,
		 "export const code = async () => {\n"
		 "  const a = await fetch('%s', { method: 'post', headers: { 'X-One': '1' },\n"
		 "                                body: JSON.stringify({ hi: 1 }) });\n"
		 "  const ja = await a.json();\n"
		 "  const b = await fetch('%s');\n"
		 "  const jb = await b.json();\n"
		 "  const c = await fetch('%s', { headers: [['Idempotency-Key', 'mine']] });\n"
		 "  const jc = await c.json();\n"
		 "  const key = (j) => (j.headers.find(([k]) => k.toLowerCase() === 'idempotency-key') || [])[1];\n"
		 "  const nf = await fetch('%s');\n"
		 "  return { status: a.status, ok: a.ok, type: a.headers.get('Content-Type'),\n"
		 "           method: ja.method, body: ja.body,\n"
		 "           one: (ja.headers.find(([k]) => k.toLowerCase() === 'x-one') || [])[1],\n"
		 "           keys: [key(ja), key(jb), key(jc)],\n"
		 "           nf: [nf.status, nf.ok, (await nf.text()).length > 0] };\n"
		 "};",
		 echo, echo, echo, notfound);
	struct result r = run_code(code, NULL, &cctx);
	if (r.rc)
		fail_msg("fetch: %s", r.err.msg);
	json_t *out = json_loads(r.out, 0, NULL);
	assert_non_null(out);
	assert_int_equal(json_integer_value(json_object_get(out, "status")), 200);
	assert_true(json_is_true(json_object_get(out, "ok")));
	assert_non_null(strstr(json_string_value(json_object_get(out, "type")), "json"));
	assert_string_equal(json_string_value(json_object_get(out, "method")), "POST");
	assert_string_equal(json_string_value(json_object_get(out, "body")), "{\"hi\":1}");
	assert_string_equal(json_string_value(json_object_get(out, "one")), "1");
	json_t *keys = json_object_get(out, "keys");
	assert_string_equal(json_string_value(json_array_get(keys, 0)), "runABC:step_2:1");
	assert_string_equal(json_string_value(json_array_get(keys, 1)), "runABC:step_2:2");
	assert_string_equal(json_string_value(json_array_get(keys, 2)), "mine");
	json_t *nf = json_object_get(out, "nf");
	assert_int_equal(json_integer_value(json_array_get(nf, 0)), 404);
	assert_true(json_is_false(json_array_get(nf, 1)));
	assert_int_equal(count, 4); /* every request counted, the user-keyed one included */
	json_decref(out);
	result_release(&r);

	/* bodies: bytes for arrayBuffer(), text read once */
	char binary[128], text[128];
	snprintf(binary, sizeof binary, "%s", httpsrv_url(srv, "/binary"));
	snprintf(text, sizeof text, "%s", httpsrv_url(srv, "/text"));
	snprintf(code, sizeof code,
		 "export const code = async () => {\n"
		 "  const b = new Uint8Array(await (await fetch('%s')).arrayBuffer());\n"
		 "  const t = await fetch('%s');\n"
		 "  const first = await t.text();\n"
		 "  let again = 'no error';\n"
		 "  try { await t.text(); } catch (e) { again = e.name; }\n"
		 "  return [b.length, b[0], b[255], first, again, t.bodyUsed];\n"
		 "};",
		 binary, text);
	r = run_code(code, NULL, NULL);
	if (r.rc)
		fail_msg("fetch bodies: %s", r.err.msg);
	assert_string_equal(r.out, "[256,0,255,\"hello\",\"TypeError\",true]");
	result_release(&r);

	/* a request the code started and did not wait for still goes out */
	httpsrv_reset(srv);
	snprintf(code, sizeof code,
		 "export const code = async () => { fetch('%s').then(() => { throw new Error('late'); });"
		 " return 'sent'; };", echo);
	r = run_code(code, NULL, NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "\"sent\"");
	assert_int_equal(httpsrv_hits(srv, "/echo"), 1);
	result_release(&r);

	/* a refused connection rejects with a TypeError the code can catch */
	assert_code("export const code = async () => {\n"
		    "  try { await fetch('http://127.0.0.1:1/'); return 'no'; }\n"
		    "  catch (e) { return e.name + ' ' + e.message.startsWith('fetch failed'); }\n"
		    "};",
		    NULL, "\"TypeError true\"");
	assert_code_fails("export const code = async () => fetch('file:///etc/passwd');", FL_EJS,
			  "only http and https");
}

/* fetch is subject to the network policy: STRICT refuses the loopback test server. */
static void test_fetch_policy(void **state)
{
	struct net_policy *strict = NULL;
	assert_int_equal(net_policy_new(FL_NET_STRICT, NULL, &strict, NULL), 0);
	struct js_runtime_opts opts = { .time_limit_ms = 1000, .policy = strict };
	struct js_runtime *strict_rt = js_runtime_new(&opts);
	char code[512];
	snprintf(code, sizeof code,
		 "export const code = async () => {\n"
		 "  try { await fetch('%s'); return 'reached'; }\n"
		 "  catch (e) { return e.name + ': ' + e.message; }\n"
		 "};",
		 httpsrv_url(srv, "/echo"));
	httpsrv_reset(srv);
	json_t *out = NULL;
	struct fl_err err;
	assert_int_equal(js_run_code(strict_rt, code, NULL, NULL, &out, NULL, &err), 0);
	const char *msg = json_string_value(out);
	assert_non_null(msg);
	if (strncmp(msg, "TypeError: fetch failed", 23) != 0)
		fail_msg("under STRICT: %s", msg);
	assert_int_equal(httpsrv_hits(srv, "/echo"), 0);
	json_decref(out);
	js_runtime_free(strict_rt);
	net_policy_free(strict);
}

static long rss_mb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = 0;
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, "VmRSS:", 6) == 0)
			sscanf(line + 6, "%ld", &kb);
	if (f)
		fclose(f);
	return kb / 1024;
}

/* Released contexts must be collected: a context kept alive by a GC root of its own (as an
 * unhandled-rejection callback created in it would be) costs over 100 KB a step. */
static void test_contexts_collected(void **state)
{
#ifdef __SANITIZE_ADDRESS__
	skip(); /* ASan's quarantine holds freed memory: RSS says nothing there */
#endif
	json_t *inputs = json_loads("{\"n\":[1,2,3]}", 0, NULL);
	long before = 0;
	for (int i = 0; i < 1200; i++) {
		if (i == 200)
			before = rss_mb();
		json_t *out = NULL;
		assert_int_equal(js_run_code(rt,
					     "export const code = async (i) => {\n"
					     "  await new Promise((r) => setTimeout(r, 0));\n"
					     "  return i.n.map((x) => ({ x }));\n"
					     "};",
					     inputs, NULL, &out, NULL, NULL),
				 0);
		json_decref(out);
	}
	json_decref(inputs);
	long grown = rss_mb() - before;
	if (grown > 40)
		fail_msg("1000 code steps grew the process by %ld MB", grown);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_async),
		cmocka_unit_test(test_timer_order),
		cmocka_unit_test(test_clear_timeout),
		cmocka_unit_test(test_throw_with_console),
		cmocka_unit_test(test_rejections),
		cmocka_unit_test(test_throw_in_timer),
		cmocka_unit_test(test_runaway),
		cmocka_unit_test(test_wall_limit),
		cmocka_unit_test(test_no_host),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_crypto),
		cmocka_unit_test(test_fresh_globals),
		cmocka_unit_test(test_prepared_context),
		cmocka_unit_test(test_fetch),
		cmocka_unit_test(test_fetch_policy),
		cmocka_unit_test(test_contexts_collected),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
