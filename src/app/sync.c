/* Sync webhook waits. A /sync call registers a waiter for its run before the job is enqueued;
 * the waiter is answered by the first of: the run's response (posted by a worker to this app),
 * the run ending without one (204), the timeout (504 {"runId"}). The HTTP layer suspends the
 * connection meanwhile, so a waiting call holds no thread. A worker may post to another app
 * replica, so waiters also look in the store about once a second. */
#include "app/app_int.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "core/time.h"

#include <string.h>

#define POLL_MS 1000

struct app_waiter *app_sync_wait(struct app *a, const char *run_id, int64_t timeout_ms)
{
	struct app_waiter *w = fl_calloc(1, sizeof *w);
	snprintf(w->run_id, sizeof w->run_id, "%s", run_id);
	int64_t now = fl_mono_ms();
	w->deadline_ms = now + timeout_ms;
	w->next_poll_ms = now + POLL_MS;
	pthread_mutex_lock(&a->sync.mu);
	w->next = a->sync.list;
	a->sync.list = w;
	w->registered = 1;
	a->sync.count++;
	pthread_mutex_unlock(&a->sync.mu);
	return w;
}

/* Unlinks w; the caller holds the lock. */
static void unlink_waiter(struct app *a, struct app_waiter *w)
{
	if (!w->registered)
		return;
	for (struct app_waiter **p = &a->sync.list; *p; p = &(*p)->next) {
		if (*p == w) {
			*p = w->next;
			break;
		}
	}
	w->registered = 0;
	a->sync.count--;
}

/* Marks w answered and returns it if its wake must be called after unlocking. */
static struct app_waiter *complete(struct app *a, struct app_waiter *w)
{
	w->done = 1;
	unlink_waiter(a, w);
	return w->armed ? w : NULL;
}

static void wake_all(struct app_waiter **woken, int n)
{
	for (int i = 0; i < n; i++)
		woken[i]->wake(woken[i]->wake_ctx);
}

void app_sync_notify(struct app *a, const char *run_id, const json_t *response, int final)
{
	if (!response && !final)
		return;
	struct app_waiter *woken[64];
	int n = 0;
	pthread_mutex_lock(&a->sync.mu);
	struct app_waiter *w = a->sync.list;
	while (w) {
		struct app_waiter *next = w->next;
		if (!w->done && !strcmp(w->run_id, run_id) && n < 64) {
			if (response)
				app_reply_flow_response(&w->resp, response);
			else
				app_reply_json(&w->resp, 204, NULL);
			struct app_waiter *x = complete(a, w);
			if (x)
				woken[n++] = x;
		}
		w = next;
	}
	pthread_mutex_unlock(&a->sync.mu);
	wake_all(woken, n);
}

void app_sync_sweep(struct app *a)
{
	int64_t now = fl_mono_ms();
	struct app_waiter *woken[64];
	int n = 0;
	char (*poll)[64] = NULL;
	int n_poll = 0, cap = 0;
	pthread_mutex_lock(&a->sync.mu);
	struct app_waiter *w = a->sync.list;
	while (w) {
		struct app_waiter *next = w->next;
		if (now >= w->deadline_ms && n < 64) {
			app_reply_json(&w->resp, 504, json_pack("{s:s}", "runId", w->run_id));
			struct app_waiter *x = complete(a, w);
			if (x)
				woken[n++] = x;
		} else if (now >= w->next_poll_ms) {
			w->next_poll_ms = now + POLL_MS;
			if (n_poll == cap) {
				cap = cap ? cap * 2 : 16;
				poll = fl_realloc(poll, (size_t)cap * sizeof *poll);
			}
			memcpy(poll[n_poll++], w->run_id, 64);
		}
		w = next;
	}
	pthread_mutex_unlock(&a->sync.mu);
	wake_all(woken, n);

	/* Outside the lock: answers that reached another replica are in the store. */
	for (int i = 0; i < n_poll; i++) {
		struct store_run run;
		if (store_run_get(a->store, poll[i], &run, NULL))
			continue;
		json_t *response = run.response ? json_loads(run.response, 0, NULL) : NULL;
		if (response || store_run_status_is_final(run.status))
			app_sync_notify(a, run.id, response, store_run_status_is_final(run.status));
		json_decref(response);
		store_run_release(&run);
	}
	fl_free(poll);
}

void app_sync_abort_all(struct app *a)
{
	for (;;) {
		struct app_waiter *woken[64];
		int n = 0;
		pthread_mutex_lock(&a->sync.mu);
		struct app_waiter *w = a->sync.list;
		while (w && n < 64) {
			struct app_waiter *next = w->next;
			app_reply_error(&w->resp, 503, "the app is shutting down");
			struct app_waiter *x = complete(a, w);
			if (x)
				woken[n++] = x;
			w = next;
		}
		int more = a->sync.list != NULL;
		pthread_mutex_unlock(&a->sync.mu);
		wake_all(woken, n);
		if (!more)
			break;
	}
}

int app_waiter_arm(struct app *a, struct app_waiter *w, void (*wake)(void *ctx), void *ctx)
{
	pthread_mutex_lock(&a->sync.mu);
	int ready = w->done;
	if (!ready) {
		w->armed = 1;
		w->wake = wake;
		w->wake_ctx = ctx;
	}
	pthread_mutex_unlock(&a->sync.mu);
	return ready;
}

void app_waiter_take(struct app *a, struct app_waiter *w, struct app_response *resp)
{
	*resp = w->resp;
	app_metrics_http(&a->metrics, resp->status);
	fl_free(w);
}

void app_waiter_cancel(struct app *a, struct app_waiter *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&a->sync.mu);
	unlink_waiter(a, w);
	pthread_mutex_unlock(&a->sync.mu);
	app_response_release(&w->resp);
	fl_free(w);
}
