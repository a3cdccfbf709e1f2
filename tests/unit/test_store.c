/* Unit tests for src/store: the same cases on SQLite (a WAL file in a temp dir) and on a real
 * PostgreSQL that the test starts itself (pg_harness.h). They cover the run state machine's
 * guards: superseded attempts, idempotent retries of a request, pause and resume races, and
 * once-only claims across two handles (two connections, as two app replicas would have). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/time.h"
#include "store/store.h"

#include "pg_harness.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct fixture {
	enum store_backend backend;
	char sqlite_path[256];
	struct store *s;
};

static struct pg_harness pg;
static int pg_started;
static char sqlite_dir[64];

static struct store *open_store(const struct fixture *f)
{
	struct store_opts o = { .backend = f->backend,
				.sqlite_path = f->sqlite_path,
				.postgres_url = pg.conninfo,
				.pool_size = 3 };
	struct fl_err err = { 0 };
	struct store *s = store_open(&o, &err);
	if (!s)
		fail_msg("store_open: %s", err.msg);
	return s;
}

static int setup_sqlite(void **state)
{
	static struct fixture f;
	f.backend = STORE_SQLITE;
	snprintf(sqlite_dir, sizeof sqlite_dir, "/tmp/flowd-store-XXXXXX");
	if (!mkdtemp(sqlite_dir))
		return -1;
	snprintf(f.sqlite_path, sizeof f.sqlite_path, "%s/flowd.db", sqlite_dir);
	f.s = open_store(&f);
	struct fl_err err = { 0 };
	if (store_migrate(f.s, &err)) {
		fprintf(stderr, "migrate: %s\n", err.msg);
		return -1;
	}
	*state = &f;
	return 0;
}

static int setup_postgres(void **state)
{
	static struct fixture f;
	f.backend = STORE_POSTGRES;
	if (!pg_started) {
		if (pg_harness_start(&pg))
			return -1;
		pg_started = 1;
	}
	f.s = open_store(&f);
	struct fl_err err = { 0 };
	if (store_migrate(f.s, &err)) {
		fprintf(stderr, "migrate: %s\n", err.msg);
		return -1;
	}
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	store_free(f->s);
	f->s = NULL;
	if (f->backend == STORE_SQLITE)
		pg_rmtree(sqlite_dir);
	return 0;
}

#define OK(expr)                                                          \
	do {                                                              \
		struct fl_err err_ = { 0 };                               \
		int rc_ = (expr);                                         \
		(void)err_;                                               \
		if (rc_)                                                  \
			fail_msg("%s: %d %s", #expr, rc_, err_.msg);      \
	} while (0)
/* The expressions below name `err` for their error out-parameter. */
#define E (&err_)

static struct fl_err err_;

static void new_id(char id[22])
{
	fl_random_id(id);
}

/* A flow with one version, and a QUEUED run of it whose job id is the run id. */
static void make_run(struct store *s, char run_id[22], char flow_id[22])
{
	char version_id[22];
	new_id(flow_id);
	new_id(version_id);
	new_id(run_id);
	struct store_flow f = { .id = flow_id, .display_name = "f", .version_id = version_id,
				.definition = "{\"displayName\":\"f\"}", .created_at = fl_now_ms() };
	assert_int_equal(store_flow_create(s, &f, E), 0);
	struct store_run r = { .id = run_id, .flow_id = flow_id, .flow_version_id = version_id,
			       .trigger_output = "{\"body\":1}", .job_id = run_id,
			       .created_at = fl_now_ms() };
	assert_int_equal(store_run_create(s, &r, E), 0);
}

static int start(struct store *s, const char *run_id, const char *job_id, const char *delivery,
		 const char *type, int *attempt)
{
	struct store_start st = { .run_id = run_id, .job_id = job_id, .delivery = delivery,
				  .worker = "w1", .execution_type = type, .now = fl_now_ms() };
	struct store_run run;
	int rc = store_run_start(s, &st, &run, attempt, E);
	if (!rc) {
		assert_int_equal(run.status, STORE_RUN_RUNNING);
		assert_int_equal(run.attempt, *attempt);
		/* The run a start returns is the row as the start left it. */
		struct store_run now;
		assert_int_equal(store_run_get(s, run_id, &now, E), 0);
		assert_int_equal(run.status, now.status);
		assert_int_equal(run.start_time, now.start_time);
		assert_int_equal(run.updated_at, now.updated_at);
		assert_int_equal(run.synchronous, now.synchronous);
		assert_int_equal(run.retries, now.retries);
		assert_int_equal(run.requeues, now.requeues);
		const char *a[] = { run.id, run.flow_id, run.flow_version_id, run.trigger_output,
				    run.job_id, run.steps, run.failed_step, run.response,
				    run.waitpoint_id, run.resume_payload, run.retry_of };
		const char *b[] = { now.id, now.flow_id, now.flow_version_id, now.trigger_output,
				    now.job_id, now.steps, now.failed_step, now.response,
				    now.waitpoint_id, now.resume_payload, now.retry_of };
		for (size_t i = 0; i < sizeof a / sizeof *a; i++) {
			if (!a[i] || !b[i])
				assert_true(a[i] == b[i]);
			else
				assert_string_equal(a[i], b[i]);
		}
		store_run_release(&now);
		store_run_release(&run);
	}
	return rc;
}

static int put_step(struct store *s, const char *run_id, int attempt, const char *path,
		    const char *status)
{
	struct store_step st = { .path = (char *)path, .name = (char *)path, .type = "CODE",
				 .status = (char *)status, .record = "{\"output\":{\"ok\":1}}",
				 .duration_ms = 3 };
	return store_steps_put(s, run_id, attempt, &st, 1, fl_now_ms(), E);
}

static int finish(struct store *s, const char *run_id, int attempt, enum store_run_status status,
		  const struct store_pause *pause, struct store_job *job)
{
	struct store_finish f = { .run_id = run_id, .attempt = attempt, .status = status,
				  .steps = "{\"step_1\":{}}", .pause = pause, .now = fl_now_ms() };
	if (status == STORE_RUN_FAILED) {
		f.failed_step = "{\"name\":\"step_2\",\"displayName\":\"s\",\"message\":\"boom\"}";
		f.peak_memory_kb = 4321;
	}
	struct store_job local;
	int rc = store_run_finish(s, &f, job ? job : &local, E);
	if (!job && !rc)
		store_job_release(&local);
	return rc;
}

/* A pause on a webhook waitpoint with an engine-style id. */
static struct store_pause webhook_pause(char id[22], const char *path)
{
	new_id(id);
	struct store_pause p = { .waitpoint_id = id, .step_path = path,
				 .type = STORE_WAITPOINT_WEBHOOK };
	return p;
}

static void test_migrate_again(void **state)
{
	struct fixture *f = *state;
	OK(store_migrate(f->s, E));
	assert_int_equal(store_schema_version(f->s, E), 5);
	OK(store_ping(f->s, E));
}

static void test_flows(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	char ids[3][22], v1[22], v2[22];
	int64_t t = fl_now_ms() + 1000000; /* after anything the other tests create */
	for (int i = 0; i < 3; i++) {
		new_id(ids[i]);
		new_id(v1);
		struct store_flow f = { .id = ids[i], .display_name = "flow", .version_id = v1,
					.definition = "{\"v\":1}", .created_at = t + i };
		if (i == 2) {
			f.schedule_cron = "*/5 * * * *";
			f.schedule_tz = "UTC";
			f.schedule_output = "{}";
		}
		OK(store_flow_create(s, &f, E));
	}
	new_id(v2);
	struct store_flow upd = { .id = ids[0], .display_name = "renamed", .version_id = v2,
				  .definition = "{\"v\":2}", .updated_at = t + 10 };
	int number = 0;
	OK(store_flow_update(s, &upd, &number, E));
	assert_int_equal(number, 2);

	struct store_flow got;
	OK(store_flow_get(s, ids[0], &got, E));
	assert_string_equal(got.display_name, "renamed");
	assert_string_equal(got.version_id, v2);
	assert_string_equal(got.definition, "{\"v\":2}");
	assert_int_equal(got.version_number, 2);
	assert_null(got.schedule_cron);
	store_flow_release(&got);

	struct store_version ver;
	OK(store_version_get(s, v2, &ver, E));
	assert_int_equal(ver.number, 2);
	assert_string_equal(ver.flow_id, ids[0]);
	store_version_release(&ver);

	/* Pages of one, from a cursor just before our flows. */
	char cursor[64];
	snprintf(cursor, sizeof cursor, "%lld_0", (long long)(t - 1));
	struct store_flow *list;
	size_t n;
	char *next;
	OK(store_flow_list(s, cursor, 2, &list, &n, &next, E));
	assert_int_equal(n, 2);
	assert_string_equal(list[0].id, ids[0]);
	assert_string_equal(list[1].id, ids[1]);
	assert_non_null(next);
	store_flow_list_free(list, n);
	char *next2;
	OK(store_flow_list(s, next, 2, &list, &n, &next2, E));
	assert_int_equal(n, 1);
	assert_string_equal(list[0].id, ids[2]);
	assert_null(next2);
	store_flow_list_free(list, n);
	fl_free(next);

	OK(store_flow_list_scheduled(s, &list, &n, E));
	int found = 0;
	for (size_t i = 0; i < n; i++)
		found += !strcmp(list[i].id, ids[2]) && !strcmp(list[i].schedule_cron, "*/5 * * * *");
	assert_int_equal(found, 1);
	store_flow_list_free(list, n);

	OK(store_flow_delete(s, ids[1], t + 20, E));
	assert_int_equal(store_flow_get(s, ids[1], &got, E), FL_ENOTFOUND);
	assert_int_equal(store_flow_delete(s, ids[1], t + 20, E), FL_ENOTFOUND);
	assert_int_equal(store_flow_update(s, &(struct store_flow){ .id = ids[1],
								    .display_name = "x",
								    .version_id = "zz",
								    .definition = "{}" },
					   NULL, E),
			 FL_ENOTFOUND);
	assert_int_equal(store_flow_list(s, "garbage", 2, &list, &n, &next, E), FL_EINVAL);
}

static void test_run_lifecycle(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	char run_id[22], flow_id[22];
	make_run(s, run_id, flow_id);

	struct store_run run;
	OK(store_run_get(s, run_id, &run, E));
	assert_int_equal(run.status, STORE_RUN_QUEUED);
	assert_string_equal(run.trigger_output, "{\"body\":1}");
	assert_int_equal(run.attempt, 0);
	store_run_release(&run);

	int a1, again, a2;
	assert_int_equal(start(s, run_id, run_id, "d1", "BEGIN", &a1), 0);
	assert_int_equal(a1, 1);
	/* The same delivery retried: the same attempt. */
	assert_int_equal(start(s, run_id, run_id, "d1", "BEGIN", &again), 0);
	assert_int_equal(again, 1);
	assert_int_equal(put_step(s, run_id, a1, "step_1", "SUCCEEDED"), 0);
	assert_int_equal(put_step(s, run_id, a1, "step_1", "SUCCEEDED"), 0); /* idempotent */

	/* A redelivery (another worker after a stall) supersedes attempt 1. */
	assert_int_equal(start(s, run_id, run_id, "d2", "BEGIN", &a2), 0);
	assert_int_equal(a2, 2);
	assert_int_equal(put_step(s, run_id, a1, "step_2", "SUCCEEDED"), FL_ECONFLICT);
	/* Attempt 2 reused step_1: recorded for it, refused for the superseded attempt 1. */
	const char *const replayed[] = { "trigger", "step_1" };
	assert_int_equal(store_attempt_replayed(s, run_id, a1, replayed, 2, fl_now_ms(), E),
			 FL_ECONFLICT);
	OK(store_attempt_replayed(s, run_id, a2, replayed, 2, fl_now_ms(), E));
	OK(store_attempt_replayed(s, run_id, a2, replayed + 1, 1, fl_now_ms(), E)); /* again */
	int stored = 0;
	assert_int_equal(store_run_respond(s, run_id, a1, "{\"status\":200}", fl_now_ms(), &stored,
					   E),
			 FL_ECONFLICT);
	assert_int_equal(finish(s, run_id, a1, STORE_RUN_SUCCEEDED, NULL, NULL), FL_ECONFLICT);

	assert_int_equal(put_step(s, run_id, a2, "step_2", "SUCCEEDED"), 0);
	assert_int_equal(store_run_respond(s, run_id, a2, "{\"status\":201}", fl_now_ms(), &stored,
					   E),
			 0);
	assert_int_equal(stored, 1);
	assert_int_equal(store_run_respond(s, run_id, a2, "{\"status\":202}", fl_now_ms(), &stored,
					   E),
			 0);
	assert_int_equal(stored, 0); /* the first response counts */

	assert_int_equal(finish(s, run_id, a2, STORE_RUN_SUCCEEDED, NULL, NULL), 0);
	assert_int_equal(finish(s, run_id, a2, STORE_RUN_SUCCEEDED, NULL, NULL), 0); /* retried */
	assert_int_equal(finish(s, run_id, a2, STORE_RUN_FAILED, NULL, NULL), FL_ECONFLICT);
	assert_int_equal(start(s, run_id, run_id, "d3", "BEGIN", &a2), FL_ECONFLICT);

	OK(store_run_get(s, run_id, &run, E));
	assert_int_equal(run.status, STORE_RUN_SUCCEEDED);
	assert_string_equal(run.response, "{\"status\":201}");
	assert_string_equal(run.steps, "{\"step_1\":{}}");
	assert_true(run.finish_time >= run.start_time && run.start_time > 0);
	assert_int_equal(run.peak_memory_kb, 0); /* none reported */
	store_run_release(&run);

	struct store_step *steps;
	size_t n;
	OK(store_steps_list(s, run_id, &steps, &n, E));
	assert_int_equal(n, 2);
	assert_string_equal(steps[0].path, "step_1");
	assert_int_equal(steps[0].attempt, 1);
	assert_string_equal(steps[1].path, "step_2");
	assert_int_equal(steps[1].attempt, 2);
	assert_string_equal(steps[1].record, "{\"output\":{\"ok\":1}}");
	assert_int_equal(steps[1].duration_ms, 3);
	store_step_list_free(steps, n);

	struct store_attempt *att;
	OK(store_attempt_list(s, run_id, &att, &n, E));
	assert_int_equal(n, 2);
	assert_string_equal(att[0].status, "ABANDONED");
	assert_string_equal(att[0].worker, "w1");
	assert_string_equal(att[1].status, "SUCCEEDED");
	assert_int_equal(att[0].replayed, 0);
	assert_int_equal(att[1].replayed, 2);
	store_attempt_list_free(att, n);
	struct store_replay *rep;
	OK(store_replay_list(s, run_id, &rep, &n, E));
	assert_int_equal(n, 2);
	assert_int_equal(rep[0].attempt, 2);
	assert_string_equal(rep[0].path, "step_1");
	assert_string_equal(rep[1].path, "trigger");
	store_replay_list_free(rep, n);

	assert_int_equal(store_run_get(s, "nope", &run, E), FL_ENOTFOUND);
}

static void test_run_list(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	char run_ids[5][22], flow_id[22];
	make_run(s, run_ids[0], flow_id);
	struct store_flow flow;
	OK(store_flow_get(s, flow_id, &flow, E));
	for (int i = 1; i < 5; i++) {
		new_id(run_ids[i]);
		struct store_run r = { .id = run_ids[i], .flow_id = flow_id,
				       .flow_version_id = flow.version_id, .trigger_output = "{}",
				       .job_id = run_ids[i], .created_at = fl_now_ms() + i };
		OK(store_run_create(s, &r, E));
	}
	store_flow_release(&flow);
	int a;
	assert_int_equal(start(s, run_ids[2], run_ids[2], NULL, "BEGIN", &a), 0);

	struct store_run_filter f = { .flow_id = flow_id, .limit = 3 };
	struct store_run *runs;
	size_t n;
	char *next;
	OK(store_run_list(s, &f, &runs, &n, &next, E));
	assert_int_equal(n, 3);
	assert_string_equal(runs[0].id, run_ids[4]); /* newest first */
	assert_string_equal(runs[2].id, run_ids[2]);
	assert_null(runs[0].trigger_output);
	assert_non_null(next);
	store_run_list_free(runs, n);
	f.cursor = next;
	char *next2;
	OK(store_run_list(s, &f, &runs, &n, &next2, E));
	assert_int_equal(n, 2);
	assert_string_equal(runs[1].id, run_ids[0]);
	assert_null(next2);
	store_run_list_free(runs, n);
	fl_free(next);

	struct store_run_filter g = { .flow_id = flow_id, .limit = 10, .n_statuses = 1,
				      .statuses = { STORE_RUN_RUNNING } };
	OK(store_run_list(s, &g, &runs, &n, &next, E));
	assert_int_equal(n, 1);
	assert_string_equal(runs[0].id, run_ids[2]);
	store_run_list_free(runs, n);

	int64_t counts[STORE_RUN_STATUS_COUNT];
	OK(store_run_count_by_status(s, counts, E));
	assert_true(counts[STORE_RUN_RUNNING] >= 1);
	assert_true(counts[STORE_RUN_QUEUED] >= 4);
}

static void test_pause_resume(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	char run_id[22], flow_id[22], wp[22];
	make_run(s, run_id, flow_id);
	int a;
	assert_int_equal(start(s, run_id, run_id, "d1", "BEGIN", &a), 0);
	struct store_pause p = webhook_pause(wp, "approval");
	struct store_job job;
	assert_int_equal(finish(s, run_id, a, STORE_RUN_PAUSED, &p, &job), 0);
	assert_int_equal(job.needed, 0);
	assert_int_equal(finish(s, run_id, a, STORE_RUN_PAUSED, &p, &job), 0); /* retried post */
	assert_int_equal(finish(s, run_id, a, STORE_RUN_PAUSED, NULL, &job), 0);
	struct store_run run;
	OK(store_run_get(s, run_id, &run, E));
	assert_int_equal(run.status, STORE_RUN_PAUSED);
	assert_string_equal(run.waitpoint_id, wp);
	store_run_release(&run);
	struct store_waitpoint w;
	OK(store_waitpoint_get(s, wp, &w, E));
	assert_int_equal(w.state, STORE_WAITPOINT_OPEN);
	assert_string_equal(w.step_path, "approval");
	store_waitpoint_release(&w);

	/* A BEGIN redelivery of a paused run must not run. */
	int b;
	assert_int_equal(start(s, run_id, run_id, "d2", "BEGIN", &b), FL_ECONFLICT);

	enum store_resume_outcome out;
	assert_int_equal(store_waitpoint_resume(s, run_id, "unknown", "{}", fl_now_ms(), &out, &job,
						E),
			 FL_ENOTFOUND);
	assert_int_equal(store_waitpoint_resume(s, "norun", wp, "{}", fl_now_ms(), &out, &job, E),
			 FL_ENOTFOUND);
	assert_int_equal(store_waitpoint_resume(s, run_id, wp,
						"{\"queryParams\":{\"action\":\"approve\"}}",
						fl_now_ms(), &out, &job, E),
			 0);
	assert_int_equal(out, STORE_RESUME_ENQUEUE);
	assert_true(job.needed);
	assert_string_equal(job.execution_type, "RESUME");
	char want[64];
	snprintf(want, sizeof want, "%s_%s", run_id, wp);
	assert_string_equal(job.job_id, want);
	struct store_job job2;
	assert_int_equal(store_waitpoint_resume(s, run_id, wp, "{}", fl_now_ms(), &out, &job2, E),
			 FL_ECONFLICT);

	OK(store_run_get(s, run_id, &run, E));
	assert_int_equal(run.status, STORE_RUN_QUEUED);
	assert_string_equal(run.job_id, want);
	assert_string_equal(run.resume_payload, "{\"queryParams\":{\"action\":\"approve\"}}");
	assert_string_equal(run.waitpoint_id, wp);
	store_run_release(&run);

	/* The old job cannot start it; the resume job can. */
	assert_int_equal(start(s, run_id, run_id, "d3", "BEGIN", &b), FL_ECONFLICT);
	assert_int_equal(start(s, run_id, job.job_id, "d4", "RESUME", &b), 0);
	assert_int_equal(b, 2);
	store_job_release(&job);
	assert_int_equal(finish(s, run_id, b, STORE_RUN_SUCCEEDED, NULL, NULL), 0);
	OK(store_run_get(s, run_id, &run, E));
	assert_null(run.resume_payload);
	store_run_release(&run);
	assert_int_equal(store_waitpoint_resume(s, run_id, wp, "{}", fl_now_ms(), &out, &job2, E),
			 FL_ECONFLICT);
}

static void test_resume_before_pause(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	char run_id[22], flow_id[22], wp[22];
	make_run(s, run_id, flow_id);
	int a;
	assert_int_equal(start(s, run_id, run_id, "d1", "BEGIN", &a), 0);
	struct store_pause p = webhook_pause(wp, "approval");
	/* The call arrives while the run is still RUNNING, for a waitpoint the app has not seen:
	 * kept, not lost. */
	enum store_resume_outcome out;
	struct store_job job;
	assert_int_equal(store_waitpoint_resume(s, run_id, wp, "{\"body\":\"early\"}", fl_now_ms(),
						&out, &job, E),
			 0);
	assert_int_equal(out, STORE_RESUME_KEPT);
	assert_false(job.needed);
	assert_int_equal(store_waitpoint_resume(s, run_id, wp, "{}", fl_now_ms(), &out, &job, E),
			 FL_ECONFLICT);
	/* The pause then lands and goes straight back to the queue. */
	assert_int_equal(finish(s, run_id, a, STORE_RUN_PAUSED, &p, &job), 0);
	assert_true(job.needed);
	assert_int_equal(job.delay_ms, 0);
	struct store_run run;
	OK(store_run_get(s, run_id, &run, E));
	assert_int_equal(run.status, STORE_RUN_QUEUED);
	assert_string_equal(run.resume_payload, "{\"body\":\"early\"}");
	assert_string_equal(run.job_id, job.job_id);
	store_run_release(&run);
	store_job_release(&job);
	struct store_waitpoint w;
	OK(store_waitpoint_get(s, wp, &w, E));
	assert_int_equal(w.state, STORE_WAITPOINT_USED);
	assert_string_equal(w.step_path, "approval");
	store_waitpoint_release(&w);

	/* A pause on another waitpoint is not resumed by an early call to a different one. */
	int b;
	struct store_run r2;
	OK(store_run_get(s, run_id, &r2, E));
	assert_int_equal(start(s, run_id, r2.job_id, "d2", "RESUME", &b), 0);
	store_run_release(&r2);
	char other[22], stray[22];
	new_id(stray);
	assert_int_equal(store_waitpoint_resume(s, run_id, stray, "{}", fl_now_ms(), &out, &job, E),
			 0);
	struct store_pause p2 = webhook_pause(other, "approval_2");
	assert_int_equal(finish(s, run_id, b, STORE_RUN_PAUSED, &p2, &job), 0);
	assert_false(job.needed);
	OK(store_run_get(s, run_id, &r2, E));
	assert_int_equal(r2.status, STORE_RUN_PAUSED);
	store_run_release(&r2);
	assert_int_equal(store_waitpoint_resume(s, run_id, stray, "{}", fl_now_ms(), &out, &job, E),
			 FL_ECONFLICT);
}

static void test_delay(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	char run_id[22], flow_id[22], wp[22];
	make_run(s, run_id, flow_id);
	int a;
	assert_int_equal(start(s, run_id, run_id, "d1", "BEGIN", &a), 0);
	int64_t now = fl_now_ms();
	new_id(wp);
	struct store_pause p = { .waitpoint_id = wp, .step_path = "wait",
				 .type = STORE_WAITPOINT_DELAY, .resume_at = now + 60000 };
	struct store_job job;
	assert_int_equal(finish(s, run_id, a, STORE_RUN_PAUSED, &p, &job), 0);
	assert_true(job.needed);
	assert_true(job.delay_ms > 50000 && job.delay_ms <= 60000);
	char want[64];
	snprintf(want, sizeof want, "%s_%s", run_id, wp);
	assert_string_equal(job.job_id, want);

	enum store_resume_outcome out;
	struct store_job job2;
	assert_int_equal(store_waitpoint_resume(s, run_id, wp, "{}", fl_now_ms(), &out, &job2, E),
			 FL_EINVAL);
	/* The delayed job fires: its start consumes the waitpoint. */
	int b, c;
	assert_int_equal(start(s, run_id, job.job_id, "d2", "RESUME", &b), 0);
	assert_int_equal(b, 2);
	struct store_waitpoint w;
	OK(store_waitpoint_get(s, wp, &w, E));
	assert_int_equal(w.state, STORE_WAITPOINT_USED);
	assert_int_equal(w.type, STORE_WAITPOINT_DELAY);
	assert_int_equal(w.resume_at, now + 60000);
	store_waitpoint_release(&w);
	/* Its redelivery after a crash may run again. */
	assert_int_equal(start(s, run_id, job.job_id, "d3", "RESUME", &c), 0);
	assert_int_equal(c, 3);
	store_job_release(&job);
}

static void test_cancel_and_retry(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	char run_id[22], flow_id[22];
	make_run(s, run_id, flow_id);
	int a;
	assert_int_equal(start(s, run_id, run_id, NULL, "BEGIN", &a), 0);
	assert_int_equal(store_run_cancel(s, run_id, fl_now_ms(), E), FL_ECONFLICT);
	struct store_job job;
	assert_int_equal(store_run_retry_from_failed(s, run_id, fl_now_ms(), &job, E),
			 FL_ECONFLICT);
	for (int i = 1; i <= 3; i++) {
		char path[16];
		snprintf(path, sizeof path, "step_%d", i);
		assert_int_equal(put_step(s, run_id, a, path, "SUCCEEDED"), 0);
	}
	assert_int_equal(put_step(s, run_id, a, "step_4", "FAILED"), 0);
	assert_int_equal(finish(s, run_id, a, STORE_RUN_FAILED, NULL, NULL), 0);
	struct store_run run;
	OK(store_run_get(s, run_id, &run, E));
	assert_int_equal(run.peak_memory_kb, 4321);
	store_run_release(&run);

	assert_int_equal(store_run_retry_from_failed(s, run_id, fl_now_ms(), &job, E), 0);
	char want[64];
	snprintf(want, sizeof want, "%s_retry1", run_id);
	assert_string_equal(job.job_id, want);
	assert_string_equal(job.execution_type, "BEGIN");
	struct store_step *steps;
	size_t n;
	OK(store_steps_list(s, run_id, &steps, &n, E));
	assert_int_equal(n, 3);
	assert_string_equal(steps[2].path, "step_3");
	store_step_list_free(steps, n);
	OK(store_run_get(s, run_id, &run, E));
	assert_int_equal(run.status, STORE_RUN_QUEUED);
	assert_null(run.failed_step);
	assert_int_equal(run.peak_memory_kb, 0); /* the retry's attempt has not measured yet */
	assert_int_equal(run.retries, 1);
	store_run_release(&run);

	int b;
	assert_int_equal(start(s, run_id, run_id, NULL, "BEGIN", &b), FL_ECONFLICT);
	assert_int_equal(start(s, run_id, job.job_id, NULL, "BEGIN", &b), 0);
	assert_int_equal(b, 2);
	store_job_release(&job);

	char run2[22], flow2[22];
	make_run(s, run2, flow2);
	OK(store_run_cancel(s, run2, fl_now_ms(), E));
	assert_int_equal(start(s, run2, run2, NULL, "BEGIN", &b), FL_ECONFLICT);
	assert_int_equal(store_run_cancel(s, run2, fl_now_ms(), E), FL_ECONFLICT);
	assert_int_equal(store_run_cancel(s, "missing", fl_now_ms(), E), FL_ENOTFOUND);
}

static void test_abandon(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	char run_id[22], flow_id[22];
	make_run(s, run_id, flow_id);
	int a;
	assert_int_equal(start(s, run_id, run_id, NULL, "BEGIN", &a), 0);
	struct store_run *runs;
	size_t n;
	OK(store_run_list_stale(s, STORE_RUN_RUNNING, fl_now_ms() + 1, 1000, &runs, &n, E));
	int found = 0;
	for (size_t i = 0; i < n; i++)
		found += !strcmp(runs[i].id, run_id);
	assert_int_equal(found, 1);
	store_run_list_free(runs, n);
	assert_int_equal(store_run_abandon(s, run_id, STORE_RUN_RUNNING, a + 1,
					   STORE_RUN_INTERNAL_ERROR, "lost", fl_now_ms(), E),
			 FL_ECONFLICT);
	OK(store_run_abandon(s, run_id, STORE_RUN_RUNNING, a, STORE_RUN_TIMEOUT, "took too long",
			     fl_now_ms(), E));
	struct store_run run;
	OK(store_run_get(s, run_id, &run, E));
	assert_int_equal(run.status, STORE_RUN_TIMEOUT);
	assert_non_null(strstr(run.failed_step, "took too long"));
	store_run_release(&run);
	/* A late result from that attempt is refused. */
	assert_int_equal(finish(s, run_id, a, STORE_RUN_SUCCEEDED, NULL, NULL), FL_ECONFLICT);
}

static void test_kv(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	char key[64], *v = NULL;
	snprintf(key, sizeof key, "flow_x/run_%d/k", rand());
	assert_int_equal(store_kv_get(s, key, &v, E), FL_ENOTFOUND);
	OK(store_kv_put(s, key, "[1,2]", fl_now_ms(), E));
	OK(store_kv_put(s, key, "\"two\"", fl_now_ms(), E));
	OK(store_kv_get(s, key, &v, E));
	assert_string_equal(v, "\"two\"");
	fl_free(v);
	int deleted;
	OK(store_kv_delete(s, key, &deleted, E));
	assert_int_equal(deleted, 1);
	OK(store_kv_delete(s, key, &deleted, E));
	assert_int_equal(deleted, 0);
}

/* Two handles race: on each contested thing exactly one wins. */
struct racer {
	struct store *s;
	const char *flow_id;
	const char *version_id;
	const char *run_id;
	const char *waitpoint_id;
	int claims;
	int resumes;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	struct fl_err err;
	for (int tick = 0; tick < 20; tick++) {
		char run_id[22];
		fl_random_id(run_id);
		struct store_run run = { .id = run_id, .flow_id = (char *)r->flow_id,
					 .flow_version_id = (char *)r->version_id, .trigger_output = "{}",
					 .job_id = run_id, .created_at = fl_now_ms() };
		if (!store_schedule_claim(r->s, r->flow_id, 1000 + tick, &run, &err))
			r->claims++;
	}
	enum store_resume_outcome out;
	struct store_job job;
	if (!store_waitpoint_resume(r->s, r->run_id, r->waitpoint_id, "{}", fl_now_ms(), &out, &job,
				    &err)) {
		r->resumes++;
		store_job_release(&job);
	}
	return NULL;
}

static void test_races(void **state)
{
	struct fixture *f = *state;
	char run_id[22], flow_id[22], wp[22];
	make_run(f->s, run_id, flow_id);
	struct store_flow flow;
	OK(store_flow_get(f->s, flow_id, &flow, E));
	int a;
	assert_int_equal(start(f->s, run_id, run_id, NULL, "BEGIN", &a), 0);
	struct store_pause p = webhook_pause(wp, "approval");
	assert_int_equal(finish(f->s, run_id, a, STORE_RUN_PAUSED, &p, NULL), 0);

	struct racer r[2];
	pthread_t th[2];
	for (int i = 0; i < 2; i++) {
		r[i] = (struct racer){ .s = i ? open_store(f) : f->s, .flow_id = flow_id,
				       .version_id = flow.version_id, .run_id = run_id,
				       .waitpoint_id = wp };
		pthread_create(&th[i], NULL, race, &r[i]);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	store_free(r[1].s);
	assert_int_equal(r[0].claims + r[1].claims, 20);
	assert_int_equal(r[0].resumes + r[1].resumes, 1);
	int64_t last;
	OK(store_schedule_last_tick(f->s, flow_id, &last, E));
	assert_int_equal(last, 1019);
	struct store_run_filter filter = { .flow_id = flow_id, .limit = 100 };
	struct store_run *runs;
	size_t n;
	char *next;
	OK(store_run_list(f->s, &filter, &runs, &n, &next, E));
	assert_int_equal(n, 21); /* the paused run and one per tick */
	store_run_list_free(runs, n);
	OK(store_schedule_prune(f->s, 1010, E));
	store_flow_release(&flow);
}

int main(void)
{
	fl_log_setup(FL_LOG_WARN, 0);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_migrate_again),
		cmocka_unit_test(test_flows),
		cmocka_unit_test(test_run_lifecycle),
		cmocka_unit_test(test_run_list),
		cmocka_unit_test(test_pause_resume),
		cmocka_unit_test(test_resume_before_pause),
		cmocka_unit_test(test_delay),
		cmocka_unit_test(test_cancel_and_retry),
		cmocka_unit_test(test_abandon),
		cmocka_unit_test(test_kv),
		cmocka_unit_test(test_races),
	};
	int failed = cmocka_run_group_tests_name("store-sqlite", tests, setup_sqlite, teardown);
	failed += cmocka_run_group_tests_name("store-postgres", tests, setup_postgres, teardown);
	if (pg_started)
		pg_harness_stop(&pg);
	return failed ? 1 : 0;
}
