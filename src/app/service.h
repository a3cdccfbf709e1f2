/* The app role as a whole, for `flowd app` and for `flowd serve` (which runs it next to a
 * worker): secrets, store, migrations, queue connection and the HTTP server, started in that
 * order and stopped in reverse. */
#ifndef APP_SERVICE_H
#define APP_SERVICE_H

struct fl_buf;
struct fl_config;
struct fl_err;

/* Files under AP_CONFIG_PATH holding the generated secrets (core/secret.h). Workers read the
 * same jwt-secret file when AP_JWT_SECRET is unset; the CLI clients read api-key. */
#define APP_API_KEY_FILE "api-key"
#define APP_JWT_SECRET_FILE "jwt-secret"
#define APP_SQLITE_FILE "flowd.db"

struct app_service;

/* Starts the app for cfg, taking Redis from redis_url (AP_REDIS_URL, or the embedded server's
 * URL that `flowd serve` started; required). A generated API key is printed once, to stdout.
 * Before the first thread starts, the caller blocks the signals it wants to wait for, so that
 * no server thread takes them. Returns NULL with err set when a step fails; err names it. */
struct app_service *app_service_start(const struct fl_config *cfg, const char *redis_url,
				      struct fl_err *err);
/* Handles one request in this process exactly as the HTTP layer would hand it to the app
 * (app_handle, app.h). flowd serve's worker reaches the app this way, without a socket. A sync
 * webhook (which needs a connection to wait on) is answered 501. resp is released with
 * app_response_release. */
struct app_request;
struct app_response;
void app_service_handle(struct app_service *svc, const struct app_request *req,
			struct app_response *resp);

/* See app_set_metrics_hook (app.h). */
void app_service_set_metrics_hook(struct app_service *svc,
				  void (*fn)(void *arg, struct fl_buf *out), void *arg);
/* The port the app listens on. */
int app_service_port(const struct app_service *svc);
/* Graceful stop (see app_stop), then frees everything. NULL is a no-op. */
void app_service_stop(struct app_service *svc, int grace_ms);

/* The API key and JWT secret as the app resolves them: the AP_* value, else the file under
 * AP_CONFIG_PATH, created when missing (*created set to 1 then). Heap strings. */
int app_resolve_secret(const struct fl_config *cfg, const char *name, char **out, int *created,
		       struct fl_err *err);

#endif
