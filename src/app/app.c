/* The app's life (new, listen, stop, free), the HTTP layer on libmicrohttpd, and the
 * background thread that sweeps sync waits, fires schedules and runs the reaper.
 *
 * libmicrohttpd runs a small pool of polling threads (epoll). A request is collected (raw target
 * from the URI callback, headers, body up to the route's limit) and handed to app_handle. A sync
 * webhook's connection is suspended while its run works, so that waiting calls cost no thread,
 * and resumed by the waiter's wake callback from whichever thread answers it. */
#include "app/app_int.h"
#include "app/engine_api.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "core/time.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BODY_LIMIT (5 * 1024 * 1024)
#define MAX_HEADERS 128
#define DRAIN_LIMIT (64ULL * 1024 * 1024)

/* ---- lifecycle ---- */

struct app *app_new(const struct app_opts *o, struct fl_err *err)
{
	if (!o->cfg || !o->store || !o->api_key || !o->jwt_secret) {
		fl_err_set(err, FL_EINVAL, "the app needs a config, a store and both secrets");
		return NULL;
	}
	struct app *a = fl_calloc(1, sizeof *a);
	a->cfg = o->cfg;
	a->store = o->store;
	a->queue = o->queue;
	a->api_key = fl_strdup(o->api_key);
	a->jwt_secret = fl_strdup(o->jwt_secret);
	a->http_threads = o->http_threads > 0 ? o->http_threads : 4;
	a->background = o->background;
	int64_t half_grace = app_reaper_grace_ms(o->cfg) / 2;
	a->reaper_interval_ms = o->reaper_interval_ms > 0 ? o->reaper_interval_ms
				: half_grace < 5000	  ? (int)half_grace
							  : 5000;
	a->schedule_interval_ms = o->schedule_interval_ms > 0 ? o->schedule_interval_ms : 500;
	a->body_limit = BODY_LIMIT;
	a->engine_body_limit = app_engine_body_limit(o->cfg->max_flow_run_log_size_mb);
	if (a->engine_body_limit < BODY_LIMIT)
		a->engine_body_limit = BODY_LIMIT;
	app_metrics_init(&a->metrics);
	pthread_mutex_init(&a->sync.mu, NULL);
	pthread_mutex_init(&a->sched_mu, NULL);
	pthread_mutex_init(&a->flow_mu, NULL);
	pthread_mutex_init(&a->bg_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->bg_cv, &ca);
	pthread_condattr_destroy(&ca);
	return a;
}

void app_free(struct app *a)
{
	if (!a)
		return;
	app_stop(a, 0);
	app_sync_abort_all(a);
	app_schedule_release(a);
	app_metrics_release(&a->metrics);
	pthread_mutex_destroy(&a->sync.mu);
	pthread_mutex_destroy(&a->sched_mu);
	for (int i = 0; i < APP_FLOW_CACHE; i++)
		json_decref(a->flows[i].version);
	pthread_mutex_destroy(&a->flow_mu);
	pthread_mutex_destroy(&a->bg_mu);
	pthread_cond_destroy(&a->bg_cv);
	fl_free(a->api_key);
	fl_free(a->jwt_secret);
	fl_free(a);
}

/* ---- background thread ---- */

static void *bg_main(void *arg)
{
	struct app *a = arg;
	int64_t next_sched = 0, next_reap = fl_mono_ms() + a->reaper_interval_ms;
	pthread_mutex_lock(&a->bg_mu);
	while (!a->stopping) {
		pthread_mutex_unlock(&a->bg_mu);
		int64_t now = fl_mono_ms();
		app_sync_sweep(a);
		if (now >= next_sched) {
			app_schedule_tick(a, fl_now_ms());
			next_sched = now + a->schedule_interval_ms;
		}
		if (now >= next_reap) {
			app_reap(a, fl_now_ms());
			next_reap = now + a->reaper_interval_ms;
		}
		pthread_mutex_lock(&a->bg_mu);
		if (a->stopping)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 100 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&a->bg_cv, &a->bg_mu, &ts);
	}
	pthread_mutex_unlock(&a->bg_mu);
	return NULL;
}

void app_bg_start(struct app *a)
{
	if (a->bg_started)
		return;
	a->stopping = 0;
	if (pthread_create(&a->bg_thread, NULL, bg_main, a) == 0)
		a->bg_started = 1;
	else
		fl_error("app", "cannot start the background thread");
}

void app_bg_stop(struct app *a)
{
	if (!a->bg_started)
		return;
	pthread_mutex_lock(&a->bg_mu);
	a->stopping = 1;
	pthread_cond_broadcast(&a->bg_cv);
	pthread_mutex_unlock(&a->bg_mu);
	pthread_join(a->bg_thread, NULL);
	a->bg_started = 0;
}

/* ---- HTTP layer ---- */

struct conn {
	char *target;
	int started;
	int too_large;
	size_t limit;
	struct fl_buf body;
	struct app_waiter *waiter;
};

struct header_vec {
	struct app_header h[MAX_HEADERS];
	size_t n;
};

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
				      const char *value)
{
	struct header_vec *v = cls;
	if (v->n < MAX_HEADERS && key) {
		v->h[v->n].name = key;
		v->h[v->n].value = value ? value : "";
		v->n++;
	}
	return MHD_YES;
}

static enum MHD_Result send_response(struct MHD_Connection *con, struct app_response *resp)
{
	struct MHD_Response *r;
	if (resp->body && resp->body_len && resp->status != 204 && resp->status != 304) {
		r = MHD_create_response_from_buffer_with_free_callback(resp->body_len, resp->body,
								       fl_free);
		resp->body = NULL;
	} else {
		r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	}
	if (!r) {
		app_response_release(resp);
		return MHD_NO;
	}
	if (resp->content_type && resp->status != 204)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
	for (size_t i = 0; i < resp->n_headers; i++)
		MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value);
	enum MHD_Result ret = MHD_queue_response(con, (unsigned)resp->status, r);
	MHD_destroy_response(r);
	app_response_release(resp);
	return ret;
}

static enum MHD_Result send_error(struct app *a, struct MHD_Connection *con, int status,
				  const char *msg)
{
	struct app_response resp;
	memset(&resp, 0, sizeof resp);
	app_reply_error(&resp, status, "%s", msg);
	app_metrics_http(&a->metrics, status);
	return send_response(con, &resp);
}

static void wake(void *ctx)
{
	MHD_resume_connection(ctx);
}

static void *uri_log(void *cls, const char *uri, struct MHD_Connection *con)
{
	struct conn *c = fl_calloc(1, sizeof *c);
	c->target = fl_strdup(uri ? uri : "/");
	fl_buf_init(&c->body);
	return c;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct app *a = cls;
	struct conn *c = *con_cls;
	if (!c) {
		c = uri_log(cls, url, con);
		*con_cls = c;
	}
	if (!c->started) {
		c->started = 1;
		c->limit = app_body_limit(a, c->target);
		const char *cl = MHD_lookup_connection_value(con, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_CONTENT_LENGTH);
		unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0;
		if (declared > c->limit) {
			c->too_large = 1;
			/* A client that waits for 100-continue has sent nothing yet, and one that
			 * declares a huge body is not worth reading: refuse at once (the connection
			 * then closes). Other clients are sending already and would see a broken
			 * pipe instead of the answer, so their body is read and dropped first. */
			const char *expect = MHD_lookup_connection_value(con, MHD_HEADER_KIND,
									 MHD_HTTP_HEADER_EXPECT);
			if (expect || declared > DRAIN_LIMIT) {
				char msg[96];
				snprintf(msg, sizeof msg, "request body is larger than %zu bytes",
					 c->limit);
				return send_error(a, con, 413, msg);
			}
		}
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (!c->too_large) {
			if (c->body.len + *upload_data_size > c->limit) {
				c->too_large = 1;
				fl_buf_release(&c->body);
			} else {
				fl_buf_add(&c->body, upload_data, *upload_data_size);
			}
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (c->waiter) {
		/* Resumed: the sync answer is ready. */
		struct app_response resp;
		app_waiter_take(a, c->waiter, &resp);
		c->waiter = NULL;
		return send_response(con, &resp);
	}

	struct header_vec hv;
	hv.n = 0;
	MHD_get_connection_values(con, MHD_HEADER_KIND, collect_header, &hv);
	struct app_request req = { .method = method,
				   .target = c->target,
				   .headers = hv.h,
				   .n_headers = hv.n,
				   .body = c->body.data,
				   .body_len = c->body.len,
				   .body_too_large = c->too_large };
	struct app_response resp;
	app_handle(a, &req, &resp);
	if (resp.waiter) {
		c->waiter = resp.waiter;
		resp.waiter = NULL;
		app_response_release(&resp);
		/* Suspend first, then arm: a wake can only resume a suspended connection. */
		MHD_suspend_connection(con);
		if (app_waiter_arm(a, c->waiter, wake, con))
			MHD_resume_connection(con);
		return MHD_YES;
	}
	return send_response(con, &resp);
}

static void on_completed(void *cls, struct MHD_Connection *con, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct app *a = cls;
	struct conn *c = *con_cls;
	if (!c)
		return;
	if (c->waiter)
		app_waiter_cancel(a, c->waiter);
	fl_buf_release(&c->body);
	fl_free(c->target);
	fl_free(c);
	*con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof msg, fmt, ap);
	size_t n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		msg[--n] = '\0';
	fl_debug("http", "%s", msg);
}

int app_listen(struct app *a, struct fl_err *err)
{
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
			 MHD_USE_ERROR_LOG;
	a->daemon = MHD_start_daemon(
		flags, (uint16_t)a->cfg->port, NULL, NULL, on_request, a,
		MHD_OPTION_THREAD_POOL_SIZE, (unsigned)a->http_threads,
		MHD_OPTION_URI_LOG_CALLBACK, uri_log, a, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
		a, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)(128 * 1024), MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
	if (!a->daemon)
		return fl_err_set(err, -EADDRINUSE, "cannot listen on port %d: %s", a->cfg->port,
				  strerror(errno ? errno : EADDRINUSE));
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(a->daemon, MHD_DAEMON_INFO_BIND_PORT);
	a->port = info ? info->port : a->cfg->port;
	if (a->background)
		app_bg_start(a);
	return 0;
}

int app_port(const struct app *a)
{
	return a->port;
}

void app_stop(struct app *a, int grace_ms)
{
	if (a->daemon) {
		MHD_socket s = MHD_quiesce_daemon(a->daemon);
		if (s != MHD_INVALID_SOCKET)
			close(s);
		/* Sync calls in flight get the grace period to be answered by their runs. */
		int64_t end = fl_mono_ms() + grace_ms;
		for (;;) {
			pthread_mutex_lock(&a->sync.mu);
			int waiting = a->sync.count;
			pthread_mutex_unlock(&a->sync.mu);
			if (!waiting || fl_mono_ms() >= end)
				break;
			fl_sleep_ms(50);
		}
	}
	app_bg_stop(a);
	app_sync_abort_all(a);
	if (a->daemon) {
		/* Let the resumed connections send their answers before the threads go. */
		fl_sleep_ms(100);
		MHD_stop_daemon(a->daemon);
		a->daemon = NULL;
	}
}
