/* Unit tests for src/core: buffers, errors, config validation, ids, time parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/json.h"
#include "core/rand.h"
#include "core/time.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_buf(void **state)
{
	struct fl_buf b = FL_BUF_INIT;
	assert_string_equal(b.data, "");
	for (int i = 0; i < 1000; i++)
		fl_buf_addf(&b, "%d,", i);
	assert_int_equal(strncmp(b.data, "0,1,2,", 6), 0);
	assert_int_equal(b.len, strlen(b.data));
	fl_buf_reset(&b);
	fl_buf_add_json_escaped(&b, "a\"b\\\n\x01", 6);
	assert_string_equal(b.data, "a\\\"b\\\\\\n\\u0001");
	size_t len;
	char *s = fl_buf_detach(&b, &len);
	assert_int_equal(len, strlen(s));
	fl_free(s);
	assert_int_equal(b.len, 0);
}

static void test_err(void **state)
{
	struct fl_err err;
	assert_int_equal(fl_err_set(&err, FL_EINVAL, "bad '%s'", "x"), FL_EINVAL);
	fl_err_prefix(&err, "flow.json");
	assert_string_equal(err.msg, "flow.json: bad 'x'");
	assert_int_equal(fl_err_set(NULL, FL_EIO, "ignored"), FL_EIO);
	assert_string_equal(fl_strerror(-2), "No such file or directory");
	assert_string_equal(fl_strerror(FL_EDENIED), "denied by policy");
}

static void clear_env(void)
{
	static const char *vars[] = { "AP_CONTAINER_TYPE", "AP_PORT", "AP_DB_TYPE", "AP_POSTGRES_URL",
				      "AP_EXECUTION_MODE", "AP_WORKER_CONCURRENCY", "AP_APP_URL",
				      "AP_REDIS_URL", "AP_NETWORK_MODE", NULL };
	for (int i = 0; vars[i]; i++)
		unsetenv(vars[i]);
}

static void test_config_defaults(void **state)
{
	clear_env();
	struct fl_config cfg;
	struct fl_err err;
	assert_int_equal(fl_config_load(&cfg, &err), 0);
	assert_int_equal(cfg.container_type, FL_CONTAINER_WORKER_AND_APP);
	assert_int_equal(cfg.port, 8080);
	assert_int_equal(cfg.worker_concurrency, 5);
	assert_int_equal(cfg.execution_mode, FL_EXEC_UNSANDBOXED);
	assert_string_equal(cfg.queue_name, "workerJobs");
	assert_string_equal(cfg.redis_prefix, "bull");
	assert_string_equal(cfg.app_url, "http://127.0.0.1:8080");
	assert_string_equal(cfg.frontend_url, "http://localhost:8080");
	assert_null(cfg.redis_url);
	fl_config_release(&cfg);
}

static void test_config_rejects(void **state)
{
	struct fl_config cfg;
	struct fl_err err;
	clear_env();
	setenv("AP_EXECUTION_MODE", "SANDBOXED", 1);
	assert_int_equal(fl_config_load(&cfg, &err), FL_ECONFIG);
	assert_non_null(strstr(err.msg, "AP_EXECUTION_MODE"));
	assert_non_null(strstr(err.msg, "'SANDBOXED'"));
	assert_non_null(strstr(err.msg, "SANDBOX_CODE_AND_PROCESS"));
	clear_env();
	setenv("AP_WORKER_CONCURRENCY", "five", 1);
	assert_int_equal(fl_config_load(&cfg, &err), FL_ECONFIG);
	assert_non_null(strstr(err.msg, "AP_WORKER_CONCURRENCY"));
	clear_env();
	setenv("AP_WORKER_CONCURRENCY", "0", 1);
	assert_int_equal(fl_config_load(&cfg, &err), FL_ECONFIG);
	clear_env();
	setenv("AP_DB_TYPE", "POSTGRES", 1);
	assert_int_equal(fl_config_load(&cfg, &err), FL_ECONFIG);
	assert_non_null(strstr(err.msg, "AP_POSTGRES_URL"));
	clear_env();
	setenv("AP_CONTAINER_TYPE", "WORKER", 1);
	assert_int_equal(fl_config_load(&cfg, &err), FL_ECONFIG);
	assert_non_null(strstr(err.msg, "AP_APP_URL"));
	clear_env();
	setenv("AP_REDIS_URL", "localhost:6379", 1);
	assert_int_equal(fl_config_load(&cfg, &err), FL_ECONFIG);
	clear_env();
}

static void test_random_id(void **state)
{
	for (int i = 0; i < 200; i++) {
		char id[22];
		fl_random_id(id);
		assert_int_equal(strlen(id), 21);
		int letters = 0;
		for (int j = 0; j < 21; j++) {
			assert_true(isalnum((unsigned char)id[j]));
			letters += isalpha((unsigned char)id[j]) != 0;
		}
		assert_true(letters > 0);
	}
	char u[37];
	fl_uuid4(u);
	assert_int_equal(strlen(u), 36);
	assert_int_equal(u[14], '4');
}

static void test_iso8601(void **state)
{
	int64_t ms;
	assert_int_equal(fl_parse_iso8601("1970-01-01T00:00:01.500Z", &ms), 0);
	assert_int_equal(ms, 1500);
	assert_int_equal(fl_parse_iso8601("2026-11-28", &ms), 0);
	assert_int_equal(fl_parse_iso8601("2026-11-28T10:00:00+02:00", &ms), 0);
	int64_t utc;
	assert_int_equal(fl_parse_iso8601("2026-11-28T08:00:00Z", &utc), 0);
	assert_int_equal(ms, utc);
	assert_int_equal(fl_parse_iso8601("2026-02-31", &ms), FL_EINVAL);
	assert_int_equal(fl_parse_iso8601("yesterday", &ms), FL_EINVAL);
	char out[32];
	assert_string_equal(fl_iso8601(1500, out, sizeof out), "1970-01-01T00:00:01.500Z");
}

static void test_json_errors(void **state)
{
	struct fl_err err;
	assert_null(fl_json_load_file("/nonexistent/flow.json", &err));
	assert_string_equal(err.msg, "cannot open '/nonexistent/flow.json': No such file or directory");
	assert_null(fl_json_loadb("{\n \"a\": }", 9, "payload", &err));
	assert_non_null(strstr(err.msg, "payload is not valid JSON: 2:"));
}

static void expect_dump(const json_t *v, const char *want)
{
	char *got = fl_json_dump(v);
	assert_string_equal(got, want);
	assert_int_equal(fl_json_length(v), strlen(got));
	free(got);
}

static void expect_real(double d, const char *want)
{
	json_t *v = json_real(d);
	expect_dump(v, want);
	json_decref(v);
}

static void test_json_numbers(void **state)
{
	/* What JavaScript writes: the shortest digits that read back as the same double. */
	expect_real(5.4, "5.4");
	expect_real(3.0 + 2 + 0.4, "5.4");
	expect_real(6.4, "6.4");
	expect_real(0.1 + 0.2, "0.30000000000000004");
	expect_real(1e21, "1e+21");
	expect_real(1e20, "100000000000000000000");
	expect_real(123456789012345680000.0, "123456789012345680000");
	expect_real(1e-7, "1e-7");
	expect_real(1.5e-7, "1.5e-7");
	expect_real(0.000001, "0.000001");
	expect_real(-0.0, "0");
	expect_real(2.0, "2");
	expect_real(-123.456, "-123.456");
	expect_real(5e-324, "5e-324");
	expect_real(1.7976931348623157e308, "1.7976931348623157e+308");

	json_t *v = json_integer(42);
	expect_dump(v, "42");
	json_decref(v);
	v = json_integer(-9223372036854775807LL - 1);
	expect_dump(v, "-9223372036854775808");
	json_decref(v);
	v = json_integer(0);
	expect_dump(v, "0");
	json_decref(v);
	v = json_integer(9223372036854775807LL);
	expect_dump(v, "9223372036854775807");
	json_decref(v);
	v = json_integer(-7);
	expect_dump(v, "-7");
	json_decref(v);

	/* Every number read back parses to the very same double. */
	double samples[] = { 0.1, 1.0 / 3, 2.5e-300, 9007199254740993.0, 6.02214076e23, -1e-10 };
	for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
		v = json_real(samples[i]);
		char *text = fl_json_dump(v);
		assert_true(strtod(text, NULL) == samples[i]);
		free(text);
		json_decref(v);
	}

	/* The length without the text: escapes, keys, nesting, empty containers. */
	json_t *mixed = json_pack("{s:s, s:[i, f, n, b, {}, []], s:{s:s}}", "q\"\\\n\x01", "a\tb\x1f\x7f",
				  "list", -12, 0.25, 0, "nested", "k", "\b\f\r");
	char *text = fl_json_dump(mixed);
	assert_int_equal(fl_json_length(mixed), strlen(text));
	free(text);
	json_decref(mixed);

	char num[32];
	assert_string_equal(fl_json_format_number(NAN, num), "NaN");
	assert_string_equal(fl_json_format_number(-INFINITY, num), "-Infinity");
}

/* fl_json_loads gives what json_loads gives, with flags 0 or JSON_DECODE_ANY: the same value, keys in the same
 * order, integers and reals apart, and NULL for the same texts. */
static void expect_loads_like_jansson_with(const char *text, size_t flags)
{
	json_t *want = json_loads(text, flags, NULL);
	json_t *got = fl_json_loads(text, flags, NULL);
	if (!want) {
		assert_null(got);
		return;
	}
	assert_non_null(got);
	assert_true(json_equal(want, got));
	char *a = fl_json_dump(want), *b = fl_json_dump(got);
	assert_string_equal(a, b);
	assert_int_equal(fl_json_length(got), strlen(b));
	free(a);
	free(b);
	json_decref(want);
	json_decref(got);
}

static void expect_loads_like_jansson(const char *text)
{
	expect_loads_like_jansson_with(text, 0);
	expect_loads_like_jansson_with(text, JSON_DECODE_ANY);
}

static void test_json_loads_fast(void **state)
{
	static const char *const texts[] = {
		("{\"type\":\"step_finished\",\"path\":\"a.b[0]\",\"record\":{\"status\":\"SUCCEEDED\","
		 "\"input\":{},\"output\":[1,-2,0,-0,true,false,null,\"\"],\"duration\":12},\"ack\":true}"),
		" { \"a\" : [ 1 , { } , [ ] ] , \"b\" : \"x\\\"y\\\\z\\/\\b\\f\\n\\r\\t\" } \r\n",
		"[]", "{}", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
		"{\"k\":1,\"k\":2,\"j\":3,\"k\":4}", "{\"\":\"\"}", "[\"\\u00e9\\u0001\", \"\xc3\xa9\"]",
		"[123456789012345678, -123456789012345678]", "[1234567890123456789]",
		"[9223372036854775807, -9223372036854775808]", "[9223372036854775808]",
		"[1.5, 1e3, 1E-3, -0.0, 2.]", "[01]", "[-]", "[- 1]", "[+1]", "[1,]", "{\"a\":1,}",
		"{\"a\" 1}", "{a:1}", "[tru]", "[truex]", "[nul]", "[\"a\tb\"]", "[\"\\x\"]",
		"[\"abc", "{\"a\":1", "[1] x", "[1] [2]", "\"top\"", "42", "true", "", "  ",
		"[\"\x7f\"]", "[\"\xff\"]", "{\"a\\nb\":{\"a\\nb\":1}}", "[1 2]", "[\"a\" \"b\"]",
	};
	for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
		expect_loads_like_jansson(texts[i]);

	/* jansson's own error, where and why. */
	json_error_t want_err, got_err;
	assert_null(json_loads("{\"a\":[1,]}", 0, &want_err));
	assert_null(fl_json_loads("{\"a\":[1,]}", 0, &got_err));
	assert_int_equal(want_err.line, got_err.line);
	assert_int_equal(want_err.column, got_err.column);
	assert_string_equal(want_err.text, got_err.text);

	/* Texts a byte or two away from an engine event, valid or not, the same way. */
	static const char alphabet[] = "{}[],:\"\\ \t\n0123456789-+.eEtrufalsn/bu\x01\x7f\xc3\xa9x";
	const char *base = texts[0];
	size_t len = strlen(base);
	unsigned seed = 12345;
	char buf[512];
	for (int round = 0; round < 20000; round++) {
		memcpy(buf, base, len + 1);
		size_t n = len;
		for (int edits = 1 + round % 2; edits > 0; edits--) {
			seed = seed * 1103515245u + 12345u;
			size_t at = (seed >> 8) % n;
			char c = alphabet[(seed >> 20) % (sizeof alphabet - 1)];
			switch ((seed >> 4) % 3) {
			case 0: buf[at] = c; break;
			case 1: memmove(buf + at, buf + at + 1, n - at); n--; break;
			default: memmove(buf + at + 1, buf + at, n - at + 1); buf[at] = c; n++;
			}
		}
		expect_loads_like_jansson(buf);
	}
}

static void test_json_structure(void **state)
{
	/* Without reals, the text is byte for byte what jansson wrote before: compact, keys in
	 * stored order (numeric-looking ones included), the same escapes. */
	const char *doc = "{\"b\":1,\"10\":[],\"2\":{},\"a\":[1,-2,[3,{\"x\":null}],\"q\\\"\\\\\\/"
			  "\\b\\f\\n\\r\\t\\u0001\\u0000 \u00e9\u20ac\"],\"n\":null,\"t\":true,"
			  "\"f\":false,\"e\":\"\",\"o\":{\"k\":{\"k\":[{}]}}}";
	json_t *v = json_loads(doc, JSON_ALLOW_NUL, NULL);
	assert_non_null(v);
	char *want = json_dumps(v, JSON_COMPACT);
	expect_dump(v, want);
	free(want);
	want = json_dumps(v, JSON_INDENT(2));
	struct fl_buf b = FL_BUF_INIT;
	fl_json_write(&b, v, FL_JSON_INDENT);
	assert_string_equal(b.data, want);
	free(want);
	fl_buf_reset(&b);

	/* JavaScript's key order only when asked for (template text). */
	fl_json_write(&b, v, FL_JSON_JS_KEY_ORDER);
	assert_memory_equal(b.data, "{\"2\":{},\"10\":[],\"b\":1,\"a\":", 26);
	fl_buf_release(&b);
	json_decref(v);

	/* Scalars at the top, and the other control characters as JSON.stringify writes them. */
	v = json_string("tab\there\x1f\x7f");
	expect_dump(v, "\"tab\\there\\u001f\x7f\"");
	json_decref(v);
	v = json_pack("{s:[f,f,i]}", "price", 5.4, 0.1 + 0.2, (json_int_t)7);
	expect_dump(v, "{\"price\":[5.4,0.30000000000000004,7]}");
	json_decref(v);
}

int main(void)
{
	fl_alloc_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf),
		cmocka_unit_test(test_err),
		cmocka_unit_test(test_config_defaults),
		cmocka_unit_test(test_config_rejects),
		cmocka_unit_test(test_random_id),
		cmocka_unit_test(test_iso8601),
		cmocka_unit_test(test_json_errors),
		cmocka_unit_test(test_json_numbers),
		cmocka_unit_test(test_json_structure),
		cmocka_unit_test(test_json_loads_fast),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
