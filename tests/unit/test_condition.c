/* Unit tests for src/engine/condition.c: every router operator of FLOWS.md §3, with the value
 * conversions (JSON text, JavaScript numbers, dates, loose list items) and OR-of-AND groups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "engine/condition.h"
#include "engine/flow.h"

#include <string.h>

/* Evaluates {"operator":op,"firstValue":a,"secondValue":b} with a and b as JSON texts (NULL:
 * absent), plus "caseSensitive" when cs >= 0. */
static int eval(const char *op, const char *a, const char *b, int cs)
{
	json_t *c = json_pack("{s:s}", "operator", op);
	if (a)
		json_object_set_new(c, "firstValue", json_loads(a, JSON_DECODE_ANY, NULL));
	if (b)
		json_object_set_new(c, "secondValue", json_loads(b, JSON_DECODE_ANY, NULL));
	if (cs >= 0)
		json_object_set_new(c, "caseSensitive", json_boolean(cs));
	assert_true(eng_flow_known_operator(op));
	int r = eng_condition_eval(c);
	json_decref(c);
	return r;
}

static void test_text(void **state)
{
	assert_true(eval("TEXT_CONTAINS", "\"Hello World\"", "\"world\"", -1));
	assert_false(eval("TEXT_CONTAINS", "\"Hello World\"", "\"world\"", 1));
	assert_true(eval("TEXT_CONTAINS", "\"Hello World\"", "\"World\"", 1));
	assert_false(eval("TEXT_DOES_NOT_CONTAIN", "\"Hello\"", "\"ELL\"", -1));
	assert_true(eval("TEXT_DOES_NOT_CONTAIN", "\"Hello\"", "\"ELL\"", 1));
	assert_true(eval("TEXT_EXACTLY_MATCHES", "\"abc\"", "\"ABC\"", -1));
	assert_false(eval("TEXT_EXACTLY_MATCHES", "\"abc\"", "\"ABC\"", 1));
	assert_true(eval("TEXT_DOES_NOT_EXACTLY_MATCH", "\"abc\"", "\"abd\"", -1));
	assert_false(eval("TEXT_DOES_NOT_EXACTLY_MATCH", "\"abc\"", "\"ABC\"", 0));
	assert_true(eval("TEXT_START_WITH", "\"flowd rocks\"", "\"FLOWD\"", -1));
	assert_false(eval("TEXT_START_WITH", "\"flowd rocks\"", "\"rocks\"", -1));
	assert_true(eval("TEXT_DOES_NOT_START_WITH", "\"flowd\"", "\"x\"", -1));
	assert_false(eval("TEXT_DOES_NOT_START_WITH", "\"flowd\"", "\"fl\"", -1));
	assert_true(eval("TEXT_ENDS_WITH", "\"report.PDF\"", "\".pdf\"", -1));
	assert_false(eval("TEXT_ENDS_WITH", "\"report.PDF\"", "\".pdf\"", 1));
	assert_false(eval("TEXT_ENDS_WITH", "\"a\"", "\"abc\"", -1));
	assert_true(eval("TEXT_DOES_NOT_END_WITH", "\"a.txt\"", "\".pdf\"", -1));
	assert_false(eval("TEXT_DOES_NOT_END_WITH", "\"a.txt\"", "\".TXT\"", -1));
	/* Values that are not strings are compared as JSON text. */
	assert_true(eval("TEXT_EXACTLY_MATCHES", "5", "\"5\"", -1));
	assert_true(eval("TEXT_CONTAINS", "{\"a\":1}", "\"\\\"a\\\":1\"", -1));
	assert_true(eval("TEXT_EXACTLY_MATCHES", "true", "\"TRUE\"", -1));
	assert_true(eval("TEXT_CONTAINS", "[1,2]", "\"1,2\"", -1));
	/* A missing value is "". */
	assert_true(eval("TEXT_EXACTLY_MATCHES", NULL, "\"\"", -1));
	assert_true(eval("TEXT_CONTAINS", "\"x\"", NULL, -1));
}

static void test_number(void **state)
{
	assert_true(eval("NUMBER_IS_GREATER_THAN", "10", "9", -1));
	assert_false(eval("NUMBER_IS_GREATER_THAN", "9", "10", -1));
	assert_true(eval("NUMBER_IS_GREATER_THAN", "\"10\"", "\"9\"", -1)); /* not text order */
	assert_true(eval("NUMBER_IS_LESS_THAN", "\" 2.5 \"", "3", -1));
	assert_false(eval("NUMBER_IS_LESS_THAN", "3", "3", -1));
	assert_true(eval("NUMBER_IS_EQUAL_TO", "3", "\"3.0\"", -1));
	assert_true(eval("NUMBER_IS_EQUAL_TO", "\"0x10\"", "16", -1));
	assert_true(eval("NUMBER_IS_EQUAL_TO", "\"1e3\"", "1000", -1));
	assert_true(eval("NUMBER_IS_EQUAL_TO", "true", "1", -1));
	assert_true(eval("NUMBER_IS_EQUAL_TO", "\"\"", "0", -1));
	/* NaN compares false either way. */
	assert_false(eval("NUMBER_IS_EQUAL_TO", "\"abc\"", "\"abc\"", -1));
	assert_false(eval("NUMBER_IS_GREATER_THAN", "\"12abc\"", "1", -1));
	assert_false(eval("NUMBER_IS_LESS_THAN", "\"inf\"", "1", -1));
	assert_true(eval("NUMBER_IS_GREATER_THAN", "\"Infinity\"", "1e300", -1));
	assert_false(eval("NUMBER_IS_GREATER_THAN", "{}", "1", -1));
	assert_false(eval("NUMBER_IS_LESS_THAN", NULL, "1", -1));
}

static void test_boolean(void **state)
{
	assert_true(eval("BOOLEAN_IS_TRUE", "true", NULL, -1));
	assert_true(eval("BOOLEAN_IS_TRUE", "\"true\"", NULL, -1));
	assert_true(eval("BOOLEAN_IS_TRUE", "\"True\"", NULL, -1));
	assert_false(eval("BOOLEAN_IS_TRUE", "false", NULL, -1));
	assert_false(eval("BOOLEAN_IS_TRUE", "\"yes\"", NULL, -1));
	assert_false(eval("BOOLEAN_IS_TRUE", NULL, NULL, -1));
	assert_true(eval("BOOLEAN_IS_FALSE", "false", NULL, -1));
	assert_true(eval("BOOLEAN_IS_FALSE", "\"false\"", NULL, -1));
	assert_false(eval("BOOLEAN_IS_FALSE", "true", NULL, -1));
	assert_false(eval("BOOLEAN_IS_FALSE", "0", NULL, -1));
}

static void test_date(void **state)
{
	const char *a = "\"2024-01-01T00:00:00Z\"", *b = "\"2024-06-01T12:00:00.000Z\"";
	assert_true(eval("DATE_IS_BEFORE", a, b, -1));
	assert_false(eval("DATE_IS_BEFORE", b, a, -1));
	assert_true(eval("DATE_IS_AFTER", b, a, -1));
	assert_false(eval("DATE_IS_AFTER", a, a, -1));
	assert_true(eval("DATE_IS_EQUAL", a, "\"2024-01-01T01:00:00+01:00\"", -1));
	assert_true(eval("DATE_IS_EQUAL", "\"2024-01-01\"", a, -1));
	assert_false(eval("DATE_IS_EQUAL", a, b, -1));
	/* An invalid date makes the condition false, whatever the operator. */
	assert_false(eval("DATE_IS_BEFORE", "\"not a date\"", b, -1));
	assert_false(eval("DATE_IS_AFTER", "\"not a date\"", b, -1));
	assert_false(eval("DATE_IS_EQUAL", "\"2024-13-45\"", "\"2024-13-45\"", -1));
	assert_false(eval("DATE_IS_BEFORE", NULL, b, -1));
}

static void test_list(void **state)
{
	assert_true(eval("LIST_CONTAINS", "[1,2,3]", "2", -1));
	assert_true(eval("LIST_CONTAINS", "[1,2,3]", "\"2\"", -1)); /* loose */
	assert_true(eval("LIST_CONTAINS", "[\"A\",\"b\"]", "\"a\"", -1));
	assert_false(eval("LIST_CONTAINS", "[\"A\",\"b\"]", "\"a\"", 1));
	assert_false(eval("LIST_CONTAINS", "[1,2,3]", "4", -1));
	assert_true(eval("LIST_CONTAINS", "\"[1,2]\"", "1", -1)); /* a list as JSON text */
	assert_false(eval("LIST_CONTAINS", "\"abc\"", "\"a\"", -1));
	assert_true(eval("LIST_DOES_NOT_CONTAIN", "[1,2,3]", "4", -1));
	assert_false(eval("LIST_DOES_NOT_CONTAIN", "[1,2,3]", "\"3\"", -1));
	assert_true(eval("LIST_IS_EMPTY", "[]", NULL, -1));
	assert_true(eval("LIST_IS_EMPTY", NULL, NULL, -1));
	assert_true(eval("LIST_IS_EMPTY", "\"\"", NULL, -1));
	assert_false(eval("LIST_IS_EMPTY", "[0]", NULL, -1));
	assert_true(eval("LIST_IS_NOT_EMPTY", "[0]", NULL, -1));
	assert_false(eval("LIST_IS_NOT_EMPTY", "[]", NULL, -1));
	assert_false(eval("LIST_IS_NOT_EMPTY", "\"abc\"", NULL, -1));
}

static void test_exists(void **state)
{
	assert_true(eval("EXISTS", "\"x\"", NULL, -1));
	assert_true(eval("EXISTS", "0", NULL, -1));
	assert_true(eval("EXISTS", "false", NULL, -1));
	assert_true(eval("EXISTS", "[]", NULL, -1));
	assert_false(eval("EXISTS", "\"\"", NULL, -1));
	assert_false(eval("EXISTS", "null", NULL, -1));
	assert_false(eval("EXISTS", NULL, NULL, -1));
	assert_true(eval("DOES_NOT_EXIST", NULL, NULL, -1));
	assert_true(eval("DOES_NOT_EXIST", "null", NULL, -1));
	assert_true(eval("DOES_NOT_EXIST", "\"\"", NULL, -1));
	assert_false(eval("DOES_NOT_EXIST", "0", NULL, -1));
}

static void test_groups(void **state)
{
	json_t *t = json_pack("{s:s}", "operator", "EXISTS");
	json_object_set_new(t, "firstValue", json_string("x"));
	json_t *f = json_pack("{s:s}", "operator", "DOES_NOT_EXIST");
	json_object_set_new(f, "firstValue", json_string("x"));
	json_t *g = json_pack("[[O,O],[O]]", t, f, f); /* (t AND f) OR f */
	assert_false(eng_conditions_eval(g));
	json_decref(g);
	g = json_pack("[[O,O],[O,O]]", t, f, t, t); /* (t AND f) OR (t AND t) */
	assert_true(eng_conditions_eval(g));
	json_decref(g);
	g = json_pack("[[],[]]");
	assert_false(eng_conditions_eval(g));
	json_decref(g);
	g = json_array();
	assert_false(eng_conditions_eval(g));
	json_decref(g);
	json_t *unknown = json_pack("{s:s}", "operator", "NOPE");
	assert_false(eng_condition_eval(unknown));
	json_decref(unknown);
	json_decref(t);
	json_decref(f);
}

int main(void)
{
	fl_alloc_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text),   cmocka_unit_test(test_number),
		cmocka_unit_test(test_boolean), cmocka_unit_test(test_date),
		cmocka_unit_test(test_list),   cmocka_unit_test(test_exists),
		cmocka_unit_test(test_groups),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
