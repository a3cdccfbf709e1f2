/* The app role: see service.h. Each step of the start says what failed. */
#include "app/service.h"
#include "app/app.h"
#include "app/app_int.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "core/secret.h"
#include "queue/bq.h"
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

struct app_service {
	struct store *store;
	struct bq_queue *queue;
	struct app *app;
};

int app_resolve_secret(const struct fl_config *cfg, const char *name, char **out, int *created,
		       struct fl_err *err)
{
	*created = 0;
	const char *given = !strcmp(name, APP_API_KEY_FILE) ? cfg->api_key : cfg->jwt_secret;
	if (given) {
		*out = fl_strdup(given);
		return 0;
	}
	return fl_secret_load_or_create(cfg->config_path, name, out, created, err);
}

void app_service_stop(struct app_service *svc, int grace_ms)
{
	if (!svc)
		return;
	if (svc->app) {
		app_stop(svc->app, grace_ms);
		app_free(svc->app);
	}
	bq_queue_free(svc->queue);
	store_free(svc->store);
	fl_free(svc);
}

void app_service_handle(struct app_service *svc, const struct app_request *req,
			struct app_response *resp)
{
	app_handle(svc->app, req, resp);
	if (resp->waiter) {
		app_waiter_cancel(svc->app, resp->waiter);
		resp->waiter = NULL;
		app_response_release(resp);
		memset(resp, 0, sizeof *resp);
		app_reply_error(resp, 501, "a sync webhook needs an HTTP connection to wait on");
	}
}

void app_service_set_metrics_hook(struct app_service *svc,
				  void (*fn)(void *arg, struct fl_buf *out), void *arg)
{
	app_set_metrics_hook(svc->app, fn, arg);
}

int app_service_port(const struct app_service *svc)
{
	return app_port(svc->app);
}

struct app_service *app_service_start(const struct fl_config *cfg, const char *redis_url,
				      struct fl_err *err)
{
	struct app_service *svc = fl_calloc(1, sizeof *svc);
	char *api_key = NULL, *jwt = NULL, *db_path = NULL;
	int created = 0, rc;

	if (!redis_url) {
		fl_err_set(err, FL_ECONFIG,
			   "AP_REDIS_URL is not set: the app needs Redis (flowd serve starts one)");
		goto fail;
	}
	if (mkdir(cfg->config_path, 0700) && errno != EEXIST) {
		int e = errno;
		fl_err_set(err, -e, "cannot create AP_CONFIG_PATH '%s': %s", cfg->config_path,
			   strerror(e));
		goto fail;
	}
	if ((rc = app_resolve_secret(cfg, APP_API_KEY_FILE, &api_key, &created, err))) {
		fl_err_prefix(err, "API key");
		goto fail;
	}
	if (created) {
		printf("flowd: generated the API key %s (kept in %s/%s; set AP_API_KEY to choose "
		       "one)\n",
		       api_key, cfg->config_path, APP_API_KEY_FILE);
		fflush(stdout);
	}
	if ((rc = app_resolve_secret(cfg, APP_JWT_SECRET_FILE, &jwt, &created, err))) {
		fl_err_prefix(err, "JWT secret");
		goto fail;
	}

	struct store_opts so = { .backend = cfg->db_type == FL_DB_POSTGRES ? STORE_POSTGRES
									 : STORE_SQLITE,
				 .postgres_url = cfg->postgres_url };
	db_path = fl_asprintf("%s/%s", cfg->config_path, APP_SQLITE_FILE);
	so.sqlite_path = db_path;
	if (!(svc->store = store_open(&so, err))) {
		fl_err_prefix(err, "store");
		goto fail;
	}
	if ((rc = store_migrate(svc->store, err))) {
		fl_err_prefix(err, "migrations");
		goto fail;
	}
	if ((rc = bq_queue_new(redis_url, cfg->redis_prefix, cfg->queue_name, &svc->queue, err))) {
		fl_err_prefix(err, "queue");
		goto fail;
	}
	struct app_opts ao = { .cfg = cfg, .store = svc->store, .queue = svc->queue,
			       .api_key = api_key, .jwt_secret = jwt, .background = 1 };
	if (!(svc->app = app_new(&ao, err)))
		goto fail;
	if ((rc = app_listen(svc->app, err)))
		goto fail;
	fl_info("app", "listening on port %d (%s store, queue '%s')", app_port(svc->app),
		store_backend_name(svc->store), cfg->queue_name);
	fl_free(api_key);
	fl_free(jwt);
	fl_free(db_path);
	return svc;
fail:
	fl_free(api_key);
	fl_free(jwt);
	fl_free(db_path);
	app_service_stop(svc, 0);
	return NULL;
}
