/* Test and benchmark driver for src/queue: adds jobs and runs a worker whose processor does what
 * each job's data asks ({"sleep":ms, "fail":"reason", "final":true, "return":value,
 * "progress":v, "log":"line"}). The integration tests in tests/node drive it next to the npm
 * bullmq package; bench/queue.sh times it against the Node Worker.
 *
 *   bqtool add URL QUEUE NAME DATA [OPTS_JSON] [--count N] [--quiet]
 */
#include "core/alloc.h"
#include "core/err.h"
#include "core/json.h"
#include "core/time.h"
#include "queue/bq.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int die_usage(void)
{
	fprintf(stderr, "usage: bqtool add URL QUEUE NAME DATA [OPTS_JSON] [--count N] [--quiet]\n");
	return 2;
}

static void keep_from(json_t *v, struct bq_keep *k)
{
	memset(k, 0, sizeof(*k));
	k->count = -1;
	k->age_s = -1;
	if (!v)
		return;
	if (json_is_boolean(v)) {
		k->kind = json_is_true(v) ? BQ_KEEP_NONE : BQ_KEEP_ALL;
	} else if (json_is_integer(v)) {
		k->kind = BQ_KEEP_COUNT;
		k->count = json_integer_value(v);
	} else if (json_is_object(v)) {
		k->kind = BQ_KEEP_LIMITS;
		if (json_object_get(v, "count"))
			k->count = json_integer_value(json_object_get(v, "count"));
		if (json_object_get(v, "age"))
			k->age_s = json_integer_value(json_object_get(v, "age"));
	}
}

/* Node-style job options as JSON into struct bq_job_opts. */
static void opts_from(json_t *o, struct bq_job_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	keep_from(NULL, &opts->remove_on_complete);
	keep_from(NULL, &opts->remove_on_fail);
	if (!o)
		return;
	json_t *v;
	if ((v = json_object_get(o, "jobId")))
		opts->job_id = json_string_value(v);
	opts->delay_ms = json_integer_value(json_object_get(o, "delay"));
	opts->priority = (int)json_integer_value(json_object_get(o, "priority"));
	opts->lifo = json_is_true(json_object_get(o, "lifo"));
	opts->attempts = (int)json_integer_value(json_object_get(o, "attempts"));
	opts->timestamp_ms = json_integer_value(json_object_get(o, "timestamp"));
	opts->keep_logs = (int)json_integer_value(json_object_get(o, "keepLogs"));
	if ((v = json_object_get(o, "backoff"))) {
		if (json_is_integer(v)) {
			opts->backoff_type = BQ_BACKOFF_FIXED;
			opts->backoff_delay_ms = json_integer_value(v);
		} else {
			const char *t = json_string_value(json_object_get(v, "type"));
			opts->backoff_type = t && !strcmp(t, "exponential") ? BQ_BACKOFF_EXPONENTIAL
									     : BQ_BACKOFF_FIXED;
			opts->backoff_delay_ms = json_integer_value(json_object_get(v, "delay"));
		}
	}
	keep_from(json_object_get(o, "removeOnComplete"), &opts->remove_on_complete);
	keep_from(json_object_get(o, "removeOnFail"), &opts->remove_on_fail);
}

static int cmd_add(int argc, char **argv)
{
	long count = 1;
	int quiet = 0;
	char *pos[8];
	int npos = 0;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--count") && i + 1 < argc)
			count = atol(argv[++i]);
		else if (!strcmp(argv[i], "--quiet"))
			quiet = 1;
		else if (npos < 8)
			pos[npos++] = argv[i];
	}
	if (npos < 4)
		return die_usage();
	struct fl_err err = { 0 };
	json_t *ojson = NULL;
	if (npos > 4 && !(ojson = fl_json_loadb(pos[4], strlen(pos[4]), "opts", &err))) {
		fprintf(stderr, "bqtool: %s\n", err.msg);
		return 2;
	}
	struct bq_job_opts opts;
	opts_from(ojson, &opts);
	struct bq_queue *q;
	if (bq_queue_new(pos[0], NULL, pos[1], &q, &err)) {
		fprintf(stderr, "bqtool: %s\n", err.msg);
		return 1;
	}
	int64_t t0 = fl_mono_us();
	int status = 0;
	for (long i = 0; i < count; i++) {
		char *id;
		bool dup;
		if (bq_job_add(q, pos[2], pos[3], &opts, &id, &dup, &err)) {
			fprintf(stderr, "bqtool: %s\n", err.msg);
			status = 1;
			break;
		}
		if (!quiet)
			printf("%s%s\n", id, dup ? " duplicated" : "");
		fl_free(id);
	}
	int64_t us = fl_mono_us() - t0;
	if (quiet)
		printf("{\"added\":%ld,\"seconds\":%.3f}\n", count, (double)us / 1e6);
	bq_queue_free(q);
	json_decref(ojson);
	return status;
}

int main(int argc, char **argv)
{
	fl_alloc_init();
	if (argc < 2)
		return die_usage();
	if (!strcmp(argv[1], "add"))
		return cmd_add(argc - 2, argv + 2);
	return die_usage();
}
