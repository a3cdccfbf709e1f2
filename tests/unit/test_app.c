/* Unit tests for the app's pure helpers (app/app_int.h): the §5.4 steps object rebuilt from
 * step records keyed by path, schedule triggers turned into cron + zone + trigger output, and
 * the query and URL decoding every request goes through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "json_assert.h"

#include "app/app_int.h"
#include "core/alloc.h"
#include "core/codec.h"
#include "core/err.h"

#include <string.h>

static struct store_step rec(const char *path, const char *json)
{
	struct store_step s = { 0 };
	s.path = (char *)path;
	s.record = (char *)json;
	return s;
}

static void test_steps_flat_and_loops(void **state)
{
	struct store_step steps[] = {
		rec("trigger", "{\"status\":\"SUCCEEDED\",\"output\":{\"a\":1}}"),
		rec("loop_1[1].step_2", "{\"status\":\"SUCCEEDED\",\"output\":1}"),
		rec("loop_1[2].step_2", "{\"status\":\"SUCCEEDED\",\"output\":2}"),
		rec("loop_1[2].inner[1].step_3", "{\"status\":\"SUCCEEDED\",\"output\":3}"),
	};
	json_t *got = app_steps_assemble(steps, 4);
	assert_json_text(
	    got, "{\"trigger\":{\"status\":\"SUCCEEDED\",\"output\":{\"a\":1}},"
		 "\"loop_1\":{\"type\":\"LOOP_ON_ITEMS\",\"status\":\"RUNNING\",\"input\":{},"
		 "\"duration\":0,\"output\":{\"item\":null,\"index\":2,\"iterations\":["
		 "{\"step_2\":{\"status\":\"SUCCEEDED\",\"output\":1}},"
		 "{\"step_2\":{\"status\":\"SUCCEEDED\",\"output\":2},"
		 "\"inner\":{\"type\":\"LOOP_ON_ITEMS\",\"status\":\"RUNNING\",\"input\":{},"
		 "\"duration\":0,\"output\":{\"item\":null,\"index\":1,\"iterations\":["
		 "{\"step_3\":{\"status\":\"SUCCEEDED\",\"output\":3}}]}}}]}}}");
	json_decref(got);
}

static void test_steps_loop_record_after_body(void **state)
{
	/* The engine stores a loop's own record when it ends: it replaces the placeholder but
	 * keeps iterations it does not itself carry. */
	struct store_step steps[] = {
		rec("loop_1[1].s", "{\"output\":\"one\"}"),
		rec("loop_1[2].s", "{\"output\":\"two\"}"),
		rec("loop_1", "{\"type\":\"LOOP_ON_ITEMS\",\"status\":\"SUCCEEDED\","
			      "\"output\":{\"item\":8,\"index\":2,\"iterations\":[{\"s\":{\"output\":\"one\"}}]}}"),
	};
	json_t *got = app_steps_assemble(steps, 3);
	assert_json_text(
	    got, "{\"loop_1\":{\"type\":\"LOOP_ON_ITEMS\",\"status\":\"SUCCEEDED\","
		 "\"output\":{\"item\":8,\"index\":2,\"iterations\":[{\"s\":{\"output\":\"one\"}},"
		 "{\"s\":{\"output\":\"two\"}}]}}}");
	json_decref(got);
}

static void test_steps_malformed(void **state)
{
	struct store_step steps[] = {
		rec("a[x].b", "{}"), rec("[1].b", "{}"), rec("a[99999999].b", "{}"),
		rec("plain.child", "{}"), rec("ok", "not json"), rec("ok2", "[1]"),
		rec("a[1", "{}"),
	};
	json_t *got = app_steps_assemble(steps, 7);
	assert_json_text(got, "{}");
	json_decref(got);
}

static void schedule(const char *trigger, const char *input, const char *want_cron,
		     const char *want_tz, const char *want_output)
{
	char *doc = fl_asprintf(
		"{\"trigger\":{\"settings\":{\"pieceName\":\"@activepieces/piece-schedule\","
		"\"triggerName\":\"%s\",\"input\":%s}}}",
		trigger, input);
	json_t *v = json_loads(doc, 0, NULL);
	fl_free(doc);
	char *cron, *tz, *out;
	struct fl_err err = { 0 };
	int rc = app_flow_schedule(v, &cron, &tz, &out, &err);
	json_decref(v);
	if (!want_cron) {
		assert_int_equal(rc, FL_EINVAL);
		assert_non_null(strstr(err.msg, "trigger.settings."));
		return;
	}
	if (rc)
		fail_msg("%s: %s", trigger, err.msg);
	assert_string_equal(cron, want_cron);
	assert_string_equal(tz, want_tz);
	assert_string_equal(out, want_output);
	fl_free(cron);
	fl_free(tz);
	fl_free(out);
}

static void test_schedules(void **state)
{
	schedule("every_x_minutes", "{\"minutes\":15}", "*/15 * * * *", "UTC",
		 "{\"cron_expression\":\"*/15 * * * *\",\"timezone\":\"UTC\"}");
	schedule("every_hour", "{\"run_on_weekends\":true}", "0 * * * *", "UTC",
		 "{\"cron_expression\":\"0 * * * *\",\"timezone\":\"UTC\"}");
	schedule("every_day", "{\"hour_of_the_day\":\"7\",\"timezone\":\"Asia/Tokyo\"}",
		 "0 7 * * 1-5", "Asia/Tokyo",
		 "{\"cron_expression\":\"0 7 * * 1-5\",\"timezone\":\"Asia/Tokyo\"}");
	schedule("every_week", "{\"day_of_the_week\":0,\"hour_of_the_day\":23}", "0 23 * * 0", "UTC",
		 "{\"cron_expression\":\"0 23 * * 0\",\"timezone\":\"UTC\"}");
	schedule("every_month", "{\"day_of_the_month\":31,\"hour_of_the_day\":1}", "0 1 31 * *",
		 "UTC", "{\"cron_expression\":\"0 1 31 * *\",\"timezone\":\"UTC\"}");
	schedule("cron_expression", "{\"cronExpression\":\"5 4 * * sun\",\"timezone\":\"Europe/Paris\"}",
		 "5 4 * * sun", "Europe/Paris", "{}");
	schedule("every_x_minutes", "{\"minutes\":60}", NULL, NULL, NULL);
	schedule("every_day", "{\"hour_of_the_day\":\"x\"}", NULL, NULL, NULL);
	schedule("cron_expression", "{\"cronExpression\":\"* * *\"}", NULL, NULL, NULL);
	schedule("cron_expression", "{\"cronExpression\":\"* * * * *\",\"timezone\":\"Mars/Base\"}",
		 NULL, NULL, NULL);
	schedule("every_fortnight", "{}", NULL, NULL, NULL);

	/* Not a schedule: nothing, and no error. */
	json_t *v = json_loads("{\"trigger\":{\"settings\":{\"pieceName\":\"@activepieces/piece-webhook\"}}}",
			       0, NULL);
	char *cron = (char *)"x", *tz, *out;
	assert_int_equal(app_flow_schedule(v, &cron, &tz, &out, NULL), 0);
	assert_null(cron);
	json_decref(v);
}

static void test_query_and_decoding(void **state)
{
	json_t *q = json_object();
	const char *s = "a=1&b=two+words&c=%41%zz%4&&=skip&d&a=last&e=%C3%A9";
	fl_form_parse(s, strlen(s), q);
	assert_json_text(
	    q,
	    "{\"a\":\"last\",\"b\":\"two words\",\"c\":\"A%zz%4\",\"d\":\"\",\"e\":\"\\u00e9\"}");
	json_decref(q);
	char *d = fl_url_decode("x%2Fy+z%", 8, 0);
	assert_string_equal(d, "x/y+z%");
	fl_free(d);
	json_t *b = fl_json_bytes("\xff\xfe", 2);
	assert_string_equal(json_string_value(b), "//4=");
	json_decref(b);
	assert_true(app_content_type_is_json("application/json; charset=utf-8"));
	assert_true(app_content_type_is_json("Application/JSON"));
	assert_true(app_content_type_is_json("application/vnd.api+json"));
	assert_false(app_content_type_is_json("text/json-ish"));
	assert_false(app_content_type_is_json(NULL));
}

int main(void)
{
	fl_alloc_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_steps_flat_and_loops),
		cmocka_unit_test(test_steps_loop_record_after_body),
		cmocka_unit_test(test_steps_malformed),
		cmocka_unit_test(test_schedules),
		cmocka_unit_test(test_query_and_decoding),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
