/* GET /metrics in the Prometheus text format: runs by status (from the store), queue depth by
 * state (from Redis), the latency of the steps workers report, HTTP responses by code, and a
 * few counters of what the app itself started. */
#include "app/app_int.h"
#include "core/alloc.h"
#include "core/err.h"
#include "queue/bq.h"

#include <string.h>

static const double step_bounds[APP_STEP_BUCKETS] = { 0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
						      0.25,  0.5,   1,    2.5,   5,    10 };

void app_metrics_init(struct app_metrics *m)
{
	memset(m, 0, sizeof *m);
	pthread_mutex_init(&m->mu, NULL);
	pthread_mutex_init(&m->hook_mu, NULL);
}

void app_metrics_release(struct app_metrics *m)
{
	pthread_mutex_destroy(&m->mu);
	pthread_mutex_destroy(&m->hook_mu);
}

void app_set_metrics_hook(struct app *a, void (*fn)(void *arg, struct fl_buf *out), void *arg)
{
	pthread_mutex_lock(&a->metrics.hook_mu);
	a->metrics.hook = fn;
	a->metrics.hook_arg = arg;
	pthread_mutex_unlock(&a->metrics.hook_mu);
}

void app_metrics_http(struct app_metrics *m, int status)
{
	if (status < 100 || status >= APP_HTTP_CODES)
		return;
	pthread_mutex_lock(&m->mu);
	m->http[status]++;
	pthread_mutex_unlock(&m->mu);
}

void app_metrics_step(struct app_metrics *m, double seconds)
{
	if (seconds < 0)
		seconds = 0;
	pthread_mutex_lock(&m->mu);
	for (int i = 0; i < APP_STEP_BUCKETS; i++)
		if (seconds <= step_bounds[i])
			m->step_buckets[i]++;
	m->step_count++;
	m->step_sum_s += seconds;
	pthread_mutex_unlock(&m->mu);
}

void app_metrics_count(struct app_metrics *m, uint64_t *counter)
{
	pthread_mutex_lock(&m->mu);
	(*counter)++;
	pthread_mutex_unlock(&m->mu);
}

void app_metrics_render(struct app *a, struct app_response *resp)
{
	struct fl_buf b = FL_BUF_INIT;
	int64_t counts[STORE_RUN_STATUS_COUNT];
	struct fl_err err = { 0 };
	fl_buf_adds(&b, "# HELP flowd_runs Runs in the store by status.\n# TYPE flowd_runs gauge\n");
	if (!store_run_count_by_status(a->store, counts, &err))
		for (int i = 0; i < STORE_RUN_STATUS_COUNT; i++)
			fl_buf_addf(&b, "flowd_runs{status=\"%s\"} %lld\n",
				    store_run_status_name((enum store_run_status)i),
				    (long long)counts[i]);

	struct bq_counts q;
	fl_buf_adds(&b, "# HELP flowd_queue_jobs Jobs in the BullMQ queue by state.\n"
			"# TYPE flowd_queue_jobs gauge\n");
	if (a->queue && !bq_queue_counts(a->queue, &q, &err)) {
		const struct {
			const char *name;
			int64_t v;
		} states[] = { { "waiting", q.waiting },     { "active", q.active },
			       { "delayed", q.delayed },     { "prioritized", q.prioritized },
			       { "completed", q.completed }, { "failed", q.failed },
			       { "paused", q.paused } };
		for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
			fl_buf_addf(&b, "flowd_queue_jobs{state=\"%s\"} %lld\n", states[i].name,
				    (long long)states[i].v);
		fl_buf_addf(&b,
			    "# HELP flowd_queue_depth Jobs waiting to run (waiting + prioritized).\n"
			    "# TYPE flowd_queue_depth gauge\nflowd_queue_depth %lld\n",
			    (long long)(q.waiting + q.prioritized + q.paused));
	}

	pthread_mutex_lock(&a->metrics.mu);
	struct app_metrics m = a->metrics;
	pthread_mutex_unlock(&a->metrics.mu);

	fl_buf_adds(&b, "# HELP flowd_step_duration_seconds Duration of the steps workers report.\n"
			"# TYPE flowd_step_duration_seconds histogram\n");
	for (int i = 0; i < APP_STEP_BUCKETS; i++)
		fl_buf_addf(&b, "flowd_step_duration_seconds_bucket{le=\"%g\"} %llu\n", step_bounds[i],
			    (unsigned long long)m.step_buckets[i]);
	fl_buf_addf(&b,
		    "flowd_step_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
		    "flowd_step_duration_seconds_sum %.6f\nflowd_step_duration_seconds_count %llu\n",
		    (unsigned long long)m.step_count, m.step_sum_s, (unsigned long long)m.step_count);

	fl_buf_adds(&b, "# HELP flowd_http_responses_total HTTP responses of the app by status code.\n"
			"# TYPE flowd_http_responses_total counter\n");
	for (int i = 100; i < APP_HTTP_CODES; i++)
		if (m.http[i])
			fl_buf_addf(&b, "flowd_http_responses_total{code=\"%d\"} %llu\n", i,
				    (unsigned long long)m.http[i]);

	static const char *const origins[] = { "webhook", "schedule", "retry", "resume" };
	fl_buf_adds(&b, "# HELP flowd_runs_enqueued_total Jobs the app enqueued, by origin.\n"
			"# TYPE flowd_runs_enqueued_total counter\n");
	for (int i = 0; i < 4; i++)
		fl_buf_addf(&b, "flowd_runs_enqueued_total{origin=\"%s\"} %llu\n", origins[i],
			    (unsigned long long)m.runs_created[i]);
	fl_buf_addf(&b,
		    "# HELP flowd_reaper_runs_total Runs the reaper finalised or re-enqueued.\n"
		    "# TYPE flowd_reaper_runs_total counter\n"
		    "flowd_reaper_runs_total{action=\"finalised\"} %llu\n"
		    "flowd_reaper_runs_total{action=\"requeued\"} %llu\n",
		    (unsigned long long)m.reaped, (unsigned long long)m.requeued);
	pthread_mutex_lock(&a->sync.mu);
	int waiting = a->sync.count;
	pthread_mutex_unlock(&a->sync.mu);
	fl_buf_addf(&b,
		    "# HELP flowd_sync_waiters Sync webhook calls waiting for their run.\n"
		    "# TYPE flowd_sync_waiters gauge\nflowd_sync_waiters %d\n",
		    waiting);

	pthread_mutex_lock(&a->metrics.hook_mu);
	if (a->metrics.hook)
		a->metrics.hook(a->metrics.hook_arg, &b);
	pthread_mutex_unlock(&a->metrics.hook_mu);

	size_t len;
	resp->status = 200;
	resp->body = fl_buf_detach(&b, &len);
	resp->body_len = len;
	resp->content_type = fl_strdup("text/plain; version=0.0.4; charset=utf-8");
}
