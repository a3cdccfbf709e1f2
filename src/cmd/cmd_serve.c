/* flowd serve, flowd app and flowd worker. `serve` runs the roles AP_CONTAINER_TYPE picks (by
 * default the app and a worker in one process tree), starting a private redis-server when
 * AP_REDIS_URL is unset; `app` and `worker` are one role alone, with AP_REDIS_URL required. Both stop gracefully on SIGTERM or SIGINT:
 * no new job is fetched, running jobs get the grace period, and the rest go back to the queue. */
#include "app/app.h"
#include "app/service.h"
#include "cmd/cmd.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "queue/server.h"
#include "worker/health.h"
#include "worker/worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Seconds a stopping worker gives its running jobs before handing them back. */
#define DEFAULT_GRACE_S 25

struct serve_opts {
	int grace_s;
};

static int parse_opts(const char *cmd, int argc, char **argv, int has_worker,
		      struct serve_opts *o)
{
	o->grace_s = DEFAULT_GRACE_S;
	for (int i = 1; i < argc; i++) {
		if (has_worker && !strcmp(argv[i], "--grace") && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end || v < 0 || v > 3600) {
				fprintf(stderr, "flowd %s: --grace takes seconds from 0 to 3600, not '%s'\n",
					cmd, argv[i]);
				return 2;
			}
			o->grace_s = (int)v;
		} else {
			fprintf(stderr, "flowd %s: unexpected argument '%s'; see 'flowd help %s'\n", cmd,
				argv[i], cmd);
			return 2;
		}
	}
	return 0;
}

/* GET /metrics of the app also shows the worker that runs in the same process. */
static void worker_metrics(void *arg, struct fl_buf *out)
{
	wk_worker_metrics(arg, out);
}

/* The worker's requests to the app in the same process: app_handle without a socket, and
 * without writing out and parsing again the JSON that both sides hold as values. The token is
 * checked as it is over HTTP. */
static int app_local_call(void *arg, const char *method, const char *target,
			  const char *authorization, const json_t *body_json, size_t body_len,
			  long *status, json_t **reply_json, char **reply,
			  size_t *reply_len)
{
	struct app_header headers[] = { { "Authorization", authorization },
					{ "Content-Type", "application/json" } };
	struct app_request req = { .method = method,
				   .target = target,
				   .headers = headers,
				   .n_headers = body_json ? 2 : 1,
				   .body_len = body_len,
				   .body_json = body_json,
				   .json_reply = 1 };
	struct app_response resp;
	app_service_handle(arg, &req, &resp);
	*status = resp.status;
	*reply_json = resp.json;
	*reply = resp.body;
	*reply_len = resp.body ? resp.body_len : 0;
	resp.json = NULL;
	resp.body = NULL;
	app_response_release(&resp);
	return 0;
}

static int run_roles(const char *cmd, struct fl_config *cfg, const struct serve_opts *o)
{
	int want_app = cfg->container_type != FL_CONTAINER_WORKER;
	int want_worker = cfg->container_type != FL_CONTAINER_APP;
	struct fl_err err = { 0 };
	struct bq_server redis = { 0 };
	struct app_service *app = NULL;
	struct wk_worker *worker = NULL;
	struct wk_health *health = NULL;
	char *secret = NULL;
	int status = 1;

	/* Blocked before any thread exists, so that only sigwait below takes them. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	const char *redis_url = cfg->redis_url;
	if (!redis_url) {
		if (cfg->container_type != FL_CONTAINER_WORKER_AND_APP) {
			fprintf(stderr, "flowd %s: AP_REDIS_URL is required for the %s role alone\n", cmd,
				want_app ? "app" : "worker");
			return 2;
		}
		if (mkdir(cfg->config_path, 0700) && errno != EEXIST) {
			fprintf(stderr, "flowd %s: cannot create AP_CONFIG_PATH '%s': %s\n", cmd,
				cfg->config_path, strerror(errno));
			return 1;
		}
		char *dir = fl_asprintf("%s/" BQ_SERVER_SUBDIR, cfg->config_path);
		int rc = bq_server_start(&redis, dir, &err);
		fl_free(dir);
		if (rc) {
			fprintf(stderr, "flowd %s: cannot start the embedded redis-server: %s\n", cmd,
				err.msg);
			return 1;
		}
		redis_url = redis.url;
	}
	if (want_app && !(app = app_service_start(cfg, redis_url, &err))) {
		fprintf(stderr, "flowd %s: %s\n", cmd, err.msg);
		goto out;
	}
	if (want_worker) {
		secret = wk_jwt_secret(cfg, 0, &err);
		if (!secret) {
			fprintf(stderr, "flowd %s: %s\n", cmd, err.msg);
			goto out;
		}
		struct wk_worker_opts wo = { .cfg = cfg, .redis_url = redis_url, .jwt_secret = secret };
		if (app) {
			wo.app_local = app_local_call;
			wo.app_local_arg = app;
		}
		if (wk_worker_new(&wo, &worker, &err)) {
			fprintf(stderr, "flowd %s: %s\n", cmd, err.msg);
			goto out;
		}
		if (!want_app && !(health = wk_health_start(worker, cfg->port, &err))) {
			fprintf(stderr, "flowd %s: %s\n", cmd, err.msg);
			goto out;
		}
		if (app)
			app_service_set_metrics_hook(app, worker_metrics, worker);
	}
	fl_info(cmd, "flowd %s ready (%s)", cmd, fl_container_type_name(cfg->container_type));
	int sig = 0;
	sigwait(&set, &sig);
	fl_info(cmd, "received %s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	status = 0;
out:
	if (worker) {
		int back = wk_worker_stop(worker, o->grace_s * 1000);
		if (back)
			fl_info(cmd, "handed %d unfinished jobs back to the queue", back);
	}
	wk_health_stop(health);
	if (app)
		app_service_set_metrics_hook(app, NULL, NULL);
	wk_worker_free(worker);
	if (app) {
		/* Sync webhook callers get up to their own timeout, at most 10 s, to be answered. */
		int grace = cfg->webhook_timeout_s * 1000;
		app_service_stop(app, grace > 10000 ? 10000 : grace);
	}
	bq_server_stop(&redis);
	fl_free(secret);
	fl_info(cmd, "stopped");
	return status;
}

static int start(const char *cmd, int argc, char **argv, int forced_type)
{
	struct serve_opts o;
	int rc = parse_opts(cmd, argc, argv, forced_type != FL_CONTAINER_APP, &o);
	if (rc)
		return rc;
	struct fl_config cfg;
	struct fl_err err = { 0 };
	if (forced_type >= 0)
		setenv("AP_CONTAINER_TYPE", fl_container_type_name(forced_type), 1);
	if (fl_config_load(&cfg, &err)) {
		fprintf(stderr, "flowd %s: %s\n", cmd, err.msg);
		return 2;
	}
	fl_log_setup((enum fl_log_level)cfg.log_level, cfg.log_pretty);
	rc = run_roles(cmd, &cfg, &o);
	fl_config_release(&cfg);
	return rc;
}

int cmd_serve(int argc, char **argv)
{
	return start("serve", argc, argv, -1);
}

int cmd_app(int argc, char **argv)
{
	return start("app", argc, argv, FL_CONTAINER_APP);
}

int cmd_worker(int argc, char **argv)
{
	return start("worker", argc, argv, FL_CONTAINER_WORKER);
}
