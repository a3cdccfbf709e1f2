/* Benchmark (a) of issue 2: microseconds per run of a 4-step native flow (webhook → data mapper
 * with 5 templates → router → return_response), run in one process on one engine, the way a
 * reused UNSANDBOXED engine runs jobs. Prints the median and p99 over many runs, with and
 * without parsing the flow JSON each time. Writes the flow to argv[1] when given, so that
 * engine.sh can time the same flow through `flowd run`. */
#include "core/alloc.h"
#include "core/err.h"
#include "core/json.h"
#include "core/time.h"
#include "engine/engine.h"
#include "engine/flow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char flow_text[] =
	"{\"displayName\":\"bench\",\"trigger\":{\"name\":\"trigger\",\"type\":\"PIECE_TRIGGER\","
	"\"settings\":{\"pieceName\":\"@activepieces/piece-webhook\",\"pieceVersion\":\"0.1.0\","
	"\"triggerName\":\"catch_webhook\",\"input\":{}},\"nextAction\":{\"name\":\"map\",\"type"
	"\":\"PIECE\",\"displayName\":\"Map\",\"settings\":{\"pieceName\":\"@activepieces/piece-d"
	"ata-mapper\",\"pieceVersion\":\"0.1.0\",\"actionName\":\"advanced_mapping\",\"input\":{"
	"\"mapping\":{\"name\":\"{{trigger.body.name}}\",\"first\":\"{{trigger.body.items[0].sku}"
	"}\",\"qty\":\"{{trigger.body.items[0].qty}}\",\"method\":\"{{trigger.method}}\",\"source"
	"\":\"{{trigger.queryParams.source}}\"}}},\"nextAction\":{\"name\":\"route\",\"type\":\"R"
	"OUTER\",\"displayName\":\"Route\",\"settings\":{\"executionType\":\"EXECUTE_FIRST_MATCH"
	"\",\"branches\":[{\"branchName\":\"bulk\",\"branchType\":\"CONDITION\",\"conditions\":[["
	"{\"operator\":\"NUMBER_IS_GREATER_THAN\",\"firstValue\":\"{{map.qty}}\",\"secondValue\":"
	"\"10\"}]]},{\"branchName\":\"other\",\"branchType\":\"FALLBACK\",\"conditions\":[]}]},\""
	"children\":[null,null],\"nextAction\":{\"name\":\"reply\",\"type\":\"PIECE\",\"displayNa"
	"me\":\"Reply\",\"settings\":{\"pieceName\":\"@activepieces/piece-webhook\",\"pieceVersio"
	"n\":\"0.1.0\",\"actionName\":\"return_response\",\"input\":{\"responseType\":\"json\",\""
	"respond\":\"stop\",\"fields\":{\"status\":200,\"headers\":{},\"body\":{\"ok\":true,\"ord"
	"er\":\"{{map}}\"}}}}}}}}}";

static const char payload_text[] =
	"{\"method\":\"POST\",\"headers\":{\"content-type\":\"application/json\",\"user-agent\":"
	"\"bench/1.0\"},\"queryParams\":{\"source\":\"web\"},\"body\":{\"name\":\"Ada\",\"items\":["
	"{\"sku\":\"A-1\",\"qty\":12},{\"sku\":\"B-2\",\"qty\":1}]}}";

static int cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *what, int64_t *t, int n)
{
	qsort(t, (size_t)n, sizeof *t, cmp);
	printf("%-44s median %6.1f µs   p99 %6.1f µs   (%d runs)\n", what, (double)t[n / 2],
	       (double)t[n * 99 / 100], n);
}

int main(int argc, char **argv)
{
	fl_alloc_init();
	int runs = getenv("ENGINE_BENCH_RUNS") ? atoi(getenv("ENGINE_BENCH_RUNS")) : 5000;
	if (runs < 100)
		runs = 100;
	json_t *doc = json_loads(flow_text, 0, NULL);
	json_t *payload = json_loads(payload_text, 0, NULL);
	if (argc > 2) {
		json_dump_file(doc, argv[1], JSON_INDENT(2));
		json_dump_file(payload, argv[2], JSON_INDENT(2));
	}
	struct fl_err err = { 0 };
	struct eng_flow *flow;
	if (eng_flow_parse(doc, 0, &flow, &err)) {
		fprintf(stderr, "bench_engine: %s\n", err.msg);
		return 1;
	}
	struct eng_engine *engine = eng_engine_new(NULL);
	struct eng_host host = { 0 };
	struct eng_run_opts opts = { .run_id = "BenchRun0000000000001", .trigger_output = payload };
	int64_t *t = fl_malloc(sizeof *t * (size_t)runs);

	/* Check once that the flow does what it should, then warm up. */
	json_t *result;
	enum eng_status st;
	if (eng_run(engine, flow, &opts, &host, &result, &st, &err) || st != ENG_SUCCEEDED ||
	    json_integer_value(json_object_get(json_object_get(result, "response"), "status")) !=
		    200 ||
	    !json_equal(json_object_get(json_object_get(json_object_get(json_object_get(result,
											 "steps"),
								 "map"),
						 "output"),
				 "first"),
			json_string("A-1"))) {
		fprintf(stderr, "bench_engine: the flow did not run as expected: %s\n",
			fl_json_dump(result));
		return 1;
	}
	json_decref(result);
	for (int i = 0; i < runs / 10; i++) {
		eng_run(engine, flow, &opts, &host, &result, &st, &err);
		json_decref(result);
	}

	for (int i = 0; i < runs; i++) {
		int64_t t0 = fl_mono_us();
		eng_run(engine, flow, &opts, &host, &result, &st, &err);
		json_decref(result);
		t[i] = fl_mono_us() - t0;
	}
	report("4-step native flow, parsed once", t, runs);
	int64_t median = t[runs / 2];

	for (int i = 0; i < runs; i++) {
		int64_t t0 = fl_mono_us();
		struct eng_flow *f;
		eng_flow_parse(doc, 0, &f, &err);
		eng_run(engine, f, &opts, &host, &result, &st, &err);
		json_decref(result);
		eng_flow_free(f);
		t[i] = fl_mono_us() - t0;
	}
	report("4-step native flow, parsed every run", t, runs);
	printf("target ≤ 200 µs per run: median is %.2f× the target (%s)\n", (double)median / 200,
	       median <= 200 ? "met" : "NOT met");
	/* Machine-readable line for engine.sh. */
	fprintf(stderr, "median_us=%lld\n", (long long)median);
	fl_free(t);
	eng_engine_free(engine);
	eng_flow_free(flow);
	json_decref(doc);
	json_decref(payload);
	return 0;
}
