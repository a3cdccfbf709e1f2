/* Test and benchmark driver for src/queue: adds jobs and runs a worker whose processor does what
 * each job's data asks ({"sleep":ms, "wait_file":path, "fail":"reason", "final":true,
 * "return":value, "progress":v, "log":"line"}; wait_file holds the job until the file exists,
 * so that a test decides when it ends). The integration tests in tests/node drive it next to the npm
 * bullmq package; bench/queue.sh times it against the Node Worker.
 *
 *   bqtool add URL QUEUE NAME DATA [OPTS_JSON] [--count N] [--quiet]
 *   bqtool work URL QUEUE [--concurrency N] [--lock-ms N] [--stalled-ms N] [--max-stalled N]
 *               [--names A,B] [--exit-after N] [--invocations FILE] [--grace-ms N]
 *               [--worker-name S] [--remove-on-complete JSON] [--remove-on-fail JSON]
 *
 * `work` prints "ready" once connected, and on exit (SIGTERM/SIGINT, or --exit-after jobs
 * finished) one JSON line: {"completed","failed","retried","lost","handed_back","seconds"},
 * seconds counted from the first job's start to the last finish.
 */
#include "core/alloc.h"
#include "core/err.h"
#include "core/json.h"
#include "core/time.h"
#include "queue/bq.h"

#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int die_usage(void)
{
	fprintf(stderr, "usage: bqtool add URL QUEUE NAME DATA [OPTS_JSON] [--count N] [--quiet]\n"
			"       bqtool work URL QUEUE [options]\n");
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


/* ---- work ---------------------------------------------------------------------------------- */

static int invocations_fd = -1;
static atomic_llong first_start_us;

static void process(void *arg, const struct bq_job *job, struct bq_result *res)
{
	long long zero = 0;
	atomic_compare_exchange_strong(&first_start_us, &zero, (long long)fl_mono_us());
	if (invocations_fd >= 0) {
		char line[512];
		int n = snprintf(line, sizeof(line), "%s %d %s\n", job->id, job->attempts_made,
				 job->name);
		if (write(invocations_fd, line, (size_t)n) < 0)
			perror("bqtool: invocations");
	}
	res->outcome = BQ_COMPLETED;
	json_t *d = job->data;
	if (!json_is_object(d))
		return;
	json_t *v;
	struct fl_err err = { 0 };
	if ((v = json_object_get(d, "progress"))) {
		char *p = fl_json_dump(v);
		if (bq_job_progress(job, p, &err))
			fprintf(stderr, "bqtool: progress: %s\n", err.msg);
		free(p);
	}
	if ((v = json_object_get(d, "log")) && json_is_string(v) &&
	    bq_job_log(job, json_string_value(v), &err) < 0)
		fprintf(stderr, "bqtool: log: %s\n", err.msg);
	if ((v = json_object_get(d, "sleep"))) {
		int64_t until = fl_mono_ms() + json_integer_value(v);
		while (fl_mono_ms() < until && !bq_job_lock_lost(job))
			fl_sleep_ms(5);
	}
	if ((v = json_object_get(d, "wait_file")) && json_is_string(v)) {
		int64_t until = fl_mono_ms() + 120000;
		while (access(json_string_value(v), F_OK) && fl_mono_ms() < until &&
		       !bq_job_lock_lost(job))
			fl_sleep_ms(5);
	}
	if ((v = json_object_get(d, "fail"))) {
		json_t *upto = json_object_get(d, "failUntilAttempt");
		if (!upto || job->attempts_made < json_integer_value(upto)) {
			res->outcome = json_is_true(json_object_get(d, "final")) ? BQ_FAILED_NO_RETRY
										  : BQ_FAILED;
			res->failed_reason = fl_strdup(json_is_string(v) ? json_string_value(v)
									 : "failed");
			return;
		}
	}
	if ((v = json_object_get(d, "return")))
		res->returnvalue = json_incref(v);
}

static int keep_arg(const char *s, struct bq_keep *k)
{
	json_t *v = json_loads(s, JSON_DECODE_ANY, NULL);
	if (!v)
		return -1;
	keep_from(v, k);
	json_decref(v);
	return 0;
}

static int cmd_work(int argc, char **argv)
{
	if (argc < 2)
		return die_usage();
	struct bq_worker_opts o;
	bq_worker_opts_init(&o);
	o.redis_url = argv[0];
	o.queue = argv[1];
	long exit_after = 0;
	int grace_ms = 0;
	char *names = NULL;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			return die_usage();
		i++;
		if (!strcmp(a, "--concurrency"))
			o.concurrency = atoi(v);
		else if (!strcmp(a, "--lock-ms"))
			o.lock_duration_ms = atoi(v);
		else if (!strcmp(a, "--stalled-ms"))
			o.stalled_interval_ms = atoi(v);
		else if (!strcmp(a, "--max-stalled"))
			o.max_stalled_count = atoi(v);
		else if (!strcmp(a, "--drain-ms"))
			o.drain_delay_ms = atoi(v);
		else if (!strcmp(a, "--names"))
			names = fl_strdup(v);
		else if (!strcmp(a, "--exit-after"))
			exit_after = atol(v);
		else if (!strcmp(a, "--grace-ms"))
			grace_ms = atoi(v);
		else if (!strcmp(a, "--worker-name"))
			o.worker_name = v;
		else if (!strcmp(a, "--remove-on-complete") && !keep_arg(v, &o.remove_on_complete))
			;
		else if (!strcmp(a, "--remove-on-fail") && !keep_arg(v, &o.remove_on_fail))
			;
		else if (!strcmp(a, "--invocations")) {
			invocations_fd = open(v, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
			if (invocations_fd < 0) {
				perror(v);
				return 2;
			}
		} else
			return die_usage();
	}
	const char *name_list[64] = { 0 };
	if (names) {
		int n = 0;
		for (char *t = strtok(names, ","); t && n < 63; t = strtok(NULL, ","))
			name_list[n++] = t;
		o.job_names = name_list;
	}
	o.process = process;

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	struct fl_err err = { 0 };
	struct bq_worker *w;
	if (bq_worker_new(&o, &w, &err)) {
		fprintf(stderr, "bqtool: %s\n", err.msg);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	struct bq_worker_stats st;
	struct timespec tick = { 0, 2000000 };
	for (;;) {
		int sig = sigtimedwait(&set, NULL, &tick);
		if (sig == SIGTERM || sig == SIGINT)
			break;
		if (exit_after > 0) {
			bq_worker_get_stats(w, &st);
			if ((long)(st.completed + st.failed) >= exit_after)
				break;
		}
	}
	int64_t end_us = fl_mono_us();
	int handed = bq_worker_stop(w, grace_ms);
	/* A processor told that its job was handed back or lost returns within a few ms here;
	 * wait for it, so that the stats printed count its job. */
	int64_t until = fl_mono_ms() + 10000;
	for (;;) {
		bq_worker_get_stats(w, &st);
		if (st.busy == 0 || fl_mono_ms() >= until)
			break;
		fl_sleep_ms(2);
	}
	bq_worker_free(w);
	long long start = atomic_load(&first_start_us);
	printf("{\"completed\":%llu,\"failed\":%llu,\"retried\":%llu,\"lost\":%llu,"
	       "\"handed_back\":%d,\"seconds\":%.4f}\n",
	       (unsigned long long)st.completed, (unsigned long long)st.failed,
	       (unsigned long long)st.retried, (unsigned long long)st.lost, handed,
	       start ? (double)(end_us - start) / 1e6 : 0.0);
	fl_free(names);
	return 0;
}

int main(int argc, char **argv)
{
	fl_alloc_init();
	if (argc < 2)
		return die_usage();
	if (!strcmp(argv[1], "add"))
		return cmd_add(argc - 2, argv + 2);
	if (!strcmp(argv[1], "work"))
		return cmd_work(argc - 2, argv + 2);
	return die_usage();
}
