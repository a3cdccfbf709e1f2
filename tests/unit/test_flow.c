/* Unit tests for src/engine/flow.c: the shapes a flow may come in, the step tree built from them,
 * and validation errors that name the JSON path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/err.h"
#include "engine/flow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TRIGGER_HEAD                                                                         \
	"{\"name\":\"trigger\",\"type\":\"PIECE_TRIGGER\",\"displayName\":\"Catch Webhook\","  \
	"\"settings\":{\"pieceName\":\"@activepieces/piece-webhook\",\"pieceVersion\":\"0.1.0\"," \
	"\"triggerName\":\"catch_webhook\",\"input\":{}}"

static const char full_flow[] =
	"{\"displayName\":\"Full\",\"schemaVersion\":\"1\",\"trigger\":" TRIGGER_HEAD ","
	"\"nextAction\":{\"name\":\"step_1\",\"type\":\"CODE\",\"displayName\":\"Code\","
	"  \"settings\":{\"input\":{\"a\":\"{{trigger.body}}\"},\"sourceCode\":{\"code\":\"export "
	"const code = async (i) => i;\",\"packageJson\":\"{}\"},"
	"  \"errorHandlingOptions\":{\"continueOnFailure\":{\"value\":true},"
	"\"retryOnFailure\":{\"value\":false}}},"
	"\"nextAction\":{\"name\":\"loop\",\"type\":\"LOOP_ON_ITEMS\",\"displayName\":\"Loop\","
	"  \"settings\":{\"items\":\"{{ [1,2] }}\"},"
	"  \"firstLoopAction\":{\"name\":\"inner\",\"type\":\"PIECE\",\"skip\":true,"
	"    \"settings\":{\"pieceName\":\"@activepieces/piece-delay\",\"actionName\":\"delayFor\","
	"    \"input\":{\"delayFor\":1}}},"
	"  \"nextAction\":{\"name\":\"router\",\"type\":\"ROUTER\",\"displayName\":\"Router\","
	"    \"settings\":{\"executionType\":\"EXECUTE_ALL_MATCH\",\"branches\":["
	"      {\"branchName\":\"A\",\"branchType\":\"CONDITION\",\"conditions\":[[{\"operator\":"
	"\"TEXT_CONTAINS\",\"firstValue\":\"abc\",\"secondValue\":\"b\"}]]},"
	"      {\"branchName\":\"B\",\"branchType\":\"CONDITION\",\"conditions\":[[{\"operator\":"
	"\"EXISTS\",\"firstValue\":\"x\"}]]},"
	"      {\"branchName\":\"Otherwise\",\"branchType\":\"FALLBACK\"}]},"
	"    \"children\":[{\"name\":\"a1\",\"type\":\"CODE\",\"settings\":{\"sourceCode\":{\"code\":"
	"\"x\"}}}, null, {\"name\":\"f1\",\"type\":\"PIECE\",\"settings\":{\"pieceName\":\"p\","
	"\"actionName\":\"a\"}}],"
	"    \"nextAction\":{\"name\":\"last\",\"type\":\"CODE\",\"settings\":{\"sourceCode\":{"
	"\"code\":\"y\",\"packageJson\":\"{\\\"dependencies\\\":{\\\"lodash\\\":\\\"4\\\"}}\"}}}"
	"}}}}}";

static struct eng_flow *parse_ok(const char *text)
{
	json_error_t je;
	json_t *doc = json_loads(text, 0, &je);
	if (!doc)
		fail_msg("bad test JSON: %d:%d %s", je.line, je.column, je.text);
	struct eng_flow *f = NULL;
	struct fl_err err = { 0 };
	int rc = eng_flow_parse(doc, 0, &f, &err);
	if (rc)
		fail_msg("parse failed: %s", err.msg);
	json_decref(doc);
	return f;
}

/* Parses text, expects a failure, and returns the message (static). */
static const char *parse_err(const char *text, int flags)
{
	static struct fl_err err;
	json_t *doc = json_loads(text, 0, NULL);
	assert_non_null(doc);
	struct eng_flow *f = (void *)1;
	assert_int_equal(eng_flow_parse(doc, flags, &f, &err), FL_EINVAL);
	assert_null(f);
	json_decref(doc);
	return err.msg;
}

static void test_full_tree(void **state)
{
	struct eng_flow *f = parse_ok(full_flow);
	assert_string_equal(f->display_name, "Full");
	assert_int_equal(f->n_steps, 8);
	const struct eng_step *t = f->trigger;
	assert_int_equal(t->type, ENG_STEP_TRIGGER);
	assert_string_equal(t->piece_name, "@activepieces/piece-webhook");
	assert_string_equal(t->action_name, "catch_webhook");
	assert_string_equal(t->display_name, "Catch Webhook");

	const struct eng_step *code = t->next;
	assert_int_equal(code->type, ENG_STEP_CODE);
	assert_true(code->continue_on_failure);
	assert_false(code->retry_on_failure);
	assert_false(code->has_dependencies);
	assert_non_null(strstr(code->code, "export const code"));
	assert_string_equal(json_string_value(json_object_get(code->input, "a")), "{{trigger.body}}");

	const struct eng_step *loop = code->next;
	assert_int_equal(loop->type, ENG_STEP_LOOP);
	assert_string_equal(loop->items, "{{ [1,2] }}");
	assert_non_null(loop->body);
	assert_string_equal(loop->body->name, "inner");
	assert_true(loop->body->skip);
	assert_ptr_equal(loop->body->parent, loop);
	assert_string_equal(loop->body->piece_version, "");
	assert_string_equal(loop->body->display_name, "inner");

	const struct eng_step *router = loop->next;
	assert_int_equal(router->type, ENG_STEP_ROUTER);
	assert_true(router->execute_all);
	assert_int_equal(router->n_branches, 3);
	assert_string_equal(router->branches[0].name, "A");
	assert_false(router->branches[0].fallback);
	assert_true(router->branches[2].fallback);
	assert_int_equal(json_array_size(router->branches[2].conditions), 0);
	assert_string_equal(router->children[0]->name, "a1");
	assert_null(router->children[1]);
	assert_string_equal(router->children[2]->name, "f1");
	assert_ptr_equal(router->children[2]->parent, router);
	assert_int_equal(json_object_size(router->children[2]->input), 0);

	const struct eng_step *last = router->next;
	assert_string_equal(last->name, "last");
	assert_true(last->has_dependencies);
	assert_null(last->next);
	assert_ptr_equal(eng_flow_find_step(f, "f1"), router->children[2]);
	assert_null(eng_flow_find_step(f, "nope"));
	assert_string_equal(eng_step_type_name(router->type), "ROUTER");
	eng_flow_free(f);
	eng_flow_free(NULL);
}

static void test_export_and_template(void **state)
{
	char buf[8192];
	snprintf(buf, sizeof buf, "{\"name\":\"x\",\"flows\":[%s,{\"nope\":1}]}", full_flow);
	struct eng_flow *f = parse_ok(buf);
	assert_int_equal(f->n_steps, 8);
	assert_non_null(json_object_get(f->version, "trigger"));
	eng_flow_free(f);

	snprintf(buf, sizeof buf, "{\"name\":\"x\",\"template\":%s}", full_flow);
	f = parse_ok(buf);
	assert_string_equal(f->display_name, "Full");
	eng_flow_free(f);

	/* Errors inside an export carry the export's part of the path. */
	assert_string_equal(parse_err("{\"name\":\"x\",\"flows\":[{\"displayName\":\"a\"}]}", 0),
			    "flows[0].trigger: is required");
	assert_string_equal(parse_err("{\"template\":{\"trigger\":[]}}", 0),
			    "template.trigger: expected an object, got array");
	assert_string_equal(parse_err("{\"flows\":[]}", 0), "flows: the export holds no flow");
	assert_string_equal(parse_err("{\"flows\":{}}", 0), "flows: expected an array, got object");
	assert_string_equal(parse_err("[1]", 0),
			    "(root): expected an object (a flow version or an export), got array");
}

static void test_path_errors(void **state)
{
	/* The example of FLOWS.md §1. */
	assert_string_equal(
		parse_err("{\"displayName\":\"x\",\"trigger\":" TRIGGER_HEAD ",\"nextAction\":{"
			  "\"name\":\"l\",\"type\":\"LOOP_ON_ITEMS\",\"settings\":{\"items\":[1]}}}}",
			  0),
		"trigger.nextAction.settings.items: expected a string, got array");
	assert_string_equal(
		parse_err("{\"trigger\":" TRIGGER_HEAD ",\"nextAction\":{\"name\":\"a\",\"type\":"
			  "\"CODE\",\"settings\":{\"sourceCode\":{}},\"nextAction\":{}}}}",
			  0),
		"trigger.nextAction.settings.sourceCode.code: is required");
	assert_string_equal(
		parse_err("{\"trigger\":" TRIGGER_HEAD ",\"nextAction\":{\"name\":\"a\",\"type\":"
			  "\"PIECE\",\"settings\":{\"pieceName\":\"p\",\"actionName\":\"b\"},"
			  "\"nextAction\":{\"name\":\"b\",\"type\":\"BOGUS\"}}}}",
			  0),
		"trigger.nextAction.nextAction.type: expected CODE, PIECE, LOOP_ON_ITEMS or ROUTER, "
		"got 'BOGUS'");
	assert_string_equal(
		parse_err("{\"trigger\":" TRIGGER_HEAD ",\"nextAction\":{\"name\":\"a\",\"type\":"
			  "\"PIECE\",\"settings\":{\"pieceName\":\"p\",\"actionName\":\"b\",\"input\":"
			  "\"x\"}}}}",
			  0),
		"trigger.nextAction.settings.input: expected an object, got string");
	assert_string_equal(
		parse_err("{\"trigger\":" TRIGGER_HEAD ",\"nextAction\":{\"name\":\"a\",\"type\":"
			  "\"PIECE\",\"skip\":\"yes\",\"settings\":{}}}}",
			  0),
		"trigger.nextAction.skip: expected a boolean, got string");
	assert_string_equal(
		parse_err("{\"trigger\":" TRIGGER_HEAD ",\"nextAction\":{\"name\":\"a\",\"type\":"
			  "\"CODE\",\"settings\":{\"sourceCode\":{\"code\":\"\"},"
			  "\"errorHandlingOptions\":{\"retryOnFailure\":{\"value\":1}}}}}}",
			  0),
		"trigger.nextAction.settings.errorHandlingOptions.retryOnFailure.value: expected a "
		"boolean, got number");
	assert_string_equal(parse_err("{\"trigger\":{\"name\":\"trigger\",\"type\":\"PIECE_TRIGGER\","
				      "\"settings\":{\"pieceName\":\"p\"}}}",
				      0),
			    "trigger.settings.triggerName: is required");
	assert_string_equal(parse_err("{\"trigger\":{\"name\":\"trigger\",\"type\":\"X\"}}", 0),
			    "trigger.type: expected PIECE_TRIGGER or EMPTY, got 'X'");
	assert_string_equal(
		parse_err("{\"trigger\":" TRIGGER_HEAD ",\"nextAction\":{\"name\":\"\",\"type\":"
			  "\"CODE\",\"settings\":{}}}}",
			  0),
		"trigger.nextAction.name: must not be empty");
	assert_string_equal(
		parse_err("{\"trigger\":" TRIGGER_HEAD ",\"nextAction\":7}}", 0),
		"trigger.nextAction: expected an object (an action), got number");
}

static void test_router_errors(void **state)
{
#define ROUTER(settings, children)                                                          \
	"{\"trigger\":" TRIGGER_HEAD ",\"nextAction\":{\"name\":\"r\",\"type\":\"ROUTER\","   \
	"\"settings\":" settings ",\"children\":" children "}}}"
	assert_string_equal(
		parse_err(ROUTER("{\"executionType\":\"SOMETIMES\",\"branches\":[]}", "[]"), 0),
		"trigger.nextAction.settings.executionType: expected EXECUTE_FIRST_MATCH or "
		"EXECUTE_ALL_MATCH, got 'SOMETIMES'");
	assert_string_equal(
		parse_err(ROUTER("{\"executionType\":\"EXECUTE_FIRST_MATCH\",\"branches\":[{"
				 "\"branchName\":\"a\",\"branchType\":\"CONDITION\",\"conditions\":"
				 "[[{\"operator\":\"TEXT_CONTAINS\"},{\"operator\":\"NOPE\"}]]}]}",
				 "[null]"),
			  0),
		"trigger.nextAction.settings.branches[0].conditions[0][1].operator: unknown operator "
		"'NOPE'");
	assert_string_equal(
		parse_err(ROUTER("{\"executionType\":\"EXECUTE_FIRST_MATCH\",\"branches\":[{"
				 "\"branchName\":\"a\",\"branchType\":\"CONDITION\"}]}",
				 "[null]"),
			  0),
		"trigger.nextAction.settings.branches[0].conditions: is required");
	assert_string_equal(
		parse_err(ROUTER("{\"executionType\":\"EXECUTE_FIRST_MATCH\",\"branches\":[{"
				 "\"branchName\":\"a\",\"branchType\":\"ELSE\"}]}",
				 "[null]"),
			  0),
		"trigger.nextAction.settings.branches[0].branchType: expected CONDITION or FALLBACK, "
		"got 'ELSE'");
	assert_string_equal(
		parse_err(ROUTER("{\"executionType\":\"EXECUTE_FIRST_MATCH\",\"branches\":[{"
				 "\"branchName\":\"a\",\"branchType\":\"FALLBACK\"}]}",
				 "[null,null]"),
			  0),
		"trigger.nextAction.children: expected 1 entries, one per branch, got 2");
	assert_string_equal(
		parse_err(ROUTER("{\"executionType\":\"EXECUTE_FIRST_MATCH\",\"branches\":[{"
				 "\"branchName\":\"a\",\"branchType\":\"FALLBACK\"}]}",
				 "[{\"name\":\"c\",\"type\":\"CODE\",\"settings\":{}}]"),
			  0),
		"trigger.nextAction.children[0].settings.sourceCode: is required");
	assert_string_equal(
		parse_err(ROUTER("{\"executionType\":\"EXECUTE_FIRST_MATCH\",\"branches\":[{"
				 "\"branchName\":\"a\",\"branchType\":\"CONDITION\",\"conditions\":"
				 "[{}]}]}",
				 "[null]"),
			  0),
		"trigger.nextAction.settings.branches[0].conditions[0]: expected an array, got object");
	for (int i = 0; i < 22; i++)
		assert_true(eng_flow_known_operator("TEXT_CONTAINS"));
	assert_false(eng_flow_known_operator("text_contains"));
}

static void test_empty_trigger(void **state)
{
	const char *empty = "{\"displayName\":\"draft\",\"trigger\":{\"name\":\"trigger\","
			    "\"type\":\"EMPTY\",\"settings\":{}}}";
	const char *msg = parse_err(empty, 0);
	assert_non_null(strstr(msg, "trigger: the trigger is EMPTY"));
	json_t *doc = json_loads(empty, 0, NULL);
	struct eng_flow *f;
	assert_int_equal(eng_flow_parse(doc, ENG_FLOW_ALLOW_EMPTY, &f, NULL), 0);
	assert_int_equal(f->n_steps, 1);
	eng_flow_free(f);
	json_decref(doc);
}

static void test_duplicates(void **state)
{
	assert_string_equal(
		parse_err("{\"trigger\":" TRIGGER_HEAD ",\"nextAction\":{\"name\":\"a\",\"type\":"
			  "\"CODE\",\"settings\":{\"sourceCode\":{\"code\":\"\"}},\"nextAction\":{"
			  "\"name\":\"a\",\"type\":\"CODE\",\"settings\":{\"sourceCode\":{\"code\":"
			  "\"\"}}}}}}",
			  0),
		"trigger.nextAction.nextAction.name: duplicate step name 'a'");
	/* Inside a loop body, and against the trigger's own name. */
	assert_string_equal(
		parse_err("{\"trigger\":" TRIGGER_HEAD ",\"nextAction\":{\"name\":\"l\",\"type\":"
			  "\"LOOP_ON_ITEMS\",\"settings\":{\"items\":\"\"},\"firstLoopAction\":{"
			  "\"name\":\"x\",\"type\":\"CODE\",\"settings\":{\"sourceCode\":{\"code\":"
			  "\"\"}},\"nextAction\":{\"name\":\"trigger\",\"type\":\"CODE\",\"settings\":"
			  "{\"sourceCode\":{\"code\":\"\"}}}}}}}",
			  0),
		"trigger.nextAction.firstLoopAction.nextAction.name: duplicate step name 'trigger'");
	assert_string_equal(
		parse_err(ROUTER("{\"executionType\":\"EXECUTE_FIRST_MATCH\",\"branches\":[{"
				 "\"branchName\":\"a\",\"branchType\":\"FALLBACK\"},{\"branchName\":"
				 "\"b\",\"branchType\":\"FALLBACK\"}]}",
				 "[null,{\"name\":\"r\",\"type\":\"CODE\",\"settings\":{\"sourceCode\":"
				 "{\"code\":\"\"}}}]"),
			  0),
		"trigger.nextAction.children[1].name: duplicate step name 'r'");
}

static void test_deep_nesting(void **state)
{
	/* 70 nested loops: refused with a message, not a crash. */
	char *buf = fl_malloc(64 * 1024);
	size_t n = (size_t)sprintf(buf, "{\"trigger\":" TRIGGER_HEAD ",\"nextAction\":");
	for (int i = 0; i < 70; i++)
		n += (size_t)sprintf(buf + n, "{\"name\":\"l%d\",\"type\":\"LOOP_ON_ITEMS\","
					      "\"settings\":{\"items\":\"\"},\"firstLoopAction\":",
				     i);
	n += (size_t)sprintf(buf + n, "null");
	for (int i = 0; i < 70; i++)
		buf[n++] = '}';
	sprintf(buf + n, "}}");
	const char *msg = parse_err(buf, 0);
	assert_non_null(strstr(msg, "nested more than 64 levels"));
	fl_free(buf);
}

static void test_load_file(void **state)
{
	struct eng_flow *f;
	struct fl_err err = { 0 };
	assert_true(eng_flow_load_file("/nonexistent/flow.json", 0, &f, &err) < 0);
	assert_string_equal(err.msg, "cannot open '/nonexistent/flow.json': No such file or "
				     "directory");

	char path[] = "/tmp/test_flow_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *fp = fdopen(fd, "w");
	fputs("{\n  \"trigger\": {,\n}", fp);
	fclose(fp);
	assert_int_equal(eng_flow_load_file(path, 0, &f, &err), FL_EINVAL);
	char want[256];
	snprintf(want, sizeof want, "'%s': 2:15:", path);
	assert_memory_equal(err.msg, want, strlen(want));

	fp = fopen(path, "w");
	fputs("{\"trigger\":{\"name\":\"trigger\",\"type\":\"PIECE_TRIGGER\"}}", fp);
	fclose(fp);
	assert_int_equal(eng_flow_load_file(path, 0, &f, &err), FL_EINVAL);
	snprintf(want, sizeof want, "'%s': trigger.settings: is required", path);
	assert_string_equal(err.msg, want);

	fp = fopen(path, "w");
	fputs(full_flow, fp);
	fclose(fp);
	assert_int_equal(eng_flow_load_file(path, 0, &f, &err), 0);
	assert_int_equal(f->n_steps, 8);
	eng_flow_free(f);
	unlink(path);
}

int main(void)
{
	fl_alloc_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_tree),
		cmocka_unit_test(test_export_and_template),
		cmocka_unit_test(test_path_errors),
		cmocka_unit_test(test_router_errors),
		cmocka_unit_test(test_empty_trigger),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_load_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
