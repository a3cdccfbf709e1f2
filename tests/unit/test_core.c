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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
