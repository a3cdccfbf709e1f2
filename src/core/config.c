/* AP_* configuration: see config.h. The table of enum values doubles as the text of the error
 * message, so the allowed values that an operator is told are always the ones we accept. */
#include "core/config.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const char *const container_names[] = { "WORKER_AND_APP", "APP", "WORKER", NULL };
static const char *const db_names[] = { "SQLITE3", "POSTGRES", NULL };
static const char *const exec_names[] = { "UNSANDBOXED", "SANDBOX_CODE_ONLY", "SANDBOX_PROCESS",
					  "SANDBOX_CODE_AND_PROCESS", NULL };
static const char *const net_names[] = { "UNRESTRICTED", "STRICT", NULL };
static const char *const log_names[] = { "debug", "info", "warn", "error", "fatal", NULL };
static const char *const bool_names[] = { "false", "true", NULL };

const char *fl_container_type_name(enum fl_container_type t) { return container_names[t]; }
const char *fl_execution_mode_name(enum fl_execution_mode m) { return exec_names[m]; }
const char *fl_network_mode_name(enum fl_network_mode m) { return net_names[m]; }
const char *fl_db_type_name(enum fl_db_type t) { return db_names[t]; }

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

static int get_enum(const char *name, const char *const *names, int def, int *out,
		    struct fl_err *err)
{
	const char *v = env(name);
	if (!v) {
		*out = def;
		return 0;
	}
	for (int i = 0; names[i]; i++) {
		if (!strcmp(v, names[i])) {
			*out = i;
			return 0;
		}
	}
	char allowed[256] = "";
	for (int i = 0; names[i]; i++) {
		if (i)
			strncat(allowed, ", ", sizeof allowed - strlen(allowed) - 1);
		strncat(allowed, names[i], sizeof allowed - strlen(allowed) - 1);
	}
	return fl_err_set(err, FL_ECONFIG, "invalid %s '%s': expected one of %s", name, v, allowed);
}

static int get_int(const char *name, long long def, long long min, long long max, long long *out,
		   struct fl_err *err)
{
	const char *v = env(name);
	if (!v) {
		*out = def;
		return 0;
	}
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (errno || *end || end == v || n < min || n > max)
		return fl_err_set(err, FL_ECONFIG, "invalid %s '%s': expected an integer from %lld to %lld",
				  name, v, min, max);
	*out = n;
	return 0;
}

static char *get_str(const char *name, const char *def)
{
	const char *v = env(name);
	return v ? fl_strdup(v) : def ? fl_strdup(def) : NULL;
}

static int check_url(const char *name, const char *v, struct fl_err *err)
{
	if (v && strncmp(v, "http://", 7) && strncmp(v, "https://", 8))
		return fl_err_set(err, FL_ECONFIG, "invalid %s '%s': expected an http:// or https:// URL",
				  name, v);
	return 0;
}

int fl_config_setup_logging(struct fl_err *err)
{
	int level, pretty;
	int rc = get_enum("AP_LOG_LEVEL", log_names, FL_LOG_INFO, &level, err);
	if (!rc)
		rc = get_enum("AP_LOG_PRETTY", bool_names, 0, &pretty, err);
	if (!rc)
		fl_log_setup((enum fl_log_level)level, pretty);
	return rc;
}

int fl_config_load(struct fl_config *cfg, struct fl_err *err)
{
	memset(cfg, 0, sizeof *cfg);
	int e;
	long long n;
	int rc = 0;
#define ENUM(var, names, def, field)                                   \
	do {                                                           \
		if ((rc = get_enum(var, names, def, &e, err)))         \
			goto fail;                                     \
		cfg->field = e;                                        \
	} while (0)
#define INT(var, def, min, max, field)                                 \
	do {                                                           \
		if ((rc = get_int(var, def, min, max, &n, err)))       \
			goto fail;                                     \
		cfg->field = n;                                        \
	} while (0)

	ENUM("AP_CONTAINER_TYPE", container_names, FL_CONTAINER_WORKER_AND_APP, container_type);
	INT("AP_PORT", 8080, 0, 65535, port);
	ENUM("AP_DB_TYPE", db_names, FL_DB_SQLITE3, db_type);
	INT("AP_WORKER_CONCURRENCY", 5, 1, 1000, worker_concurrency);
	ENUM("AP_EXECUTION_MODE", exec_names, FL_EXEC_UNSANDBOXED, execution_mode);
	ENUM("AP_NETWORK_MODE", net_names, FL_NET_UNRESTRICTED, network_mode);
	INT("AP_WORKER_LOCK_DURATION_SECONDS", 30, 1, 86400, lock_duration_s);
	INT("AP_WORKER_STALLED_INTERVAL_SECONDS", 30, 1, 86400, stalled_interval_s);
	INT("AP_FLOW_TIMEOUT_SECONDS", 600, 1, 7 * 86400, flow_timeout_s);
	INT("AP_SANDBOX_MEMORY_LIMIT", 1048576, 16384, (long long)1 << 40, sandbox_memory_limit_kb);
	INT("AP_MAX_FLOW_RUN_LOG_SIZE_MB", 10, 1, 4096, max_flow_run_log_size_mb);
	INT("AP_WEBHOOK_TIMEOUT_SECONDS", 30, 1, 3600, webhook_timeout_s);
	ENUM("AP_LOG_LEVEL", log_names, FL_LOG_INFO, log_level);
	ENUM("AP_LOG_PRETTY", bool_names, 0, log_pretty);
#undef ENUM
#undef INT

	cfg->config_path = get_str("AP_CONFIG_PATH", "./var");
	cfg->postgres_url = get_str("AP_POSTGRES_URL", NULL);
	cfg->redis_url = get_str("AP_REDIS_URL", NULL);
	cfg->queue_name = get_str("AP_QUEUE_NAME", "workerJobs");
	cfg->redis_prefix = get_str("AP_REDIS_PREFIX", "bull");
	cfg->ssrf_allow_list = get_str("AP_SSRF_ALLOW_LIST", NULL);
	cfg->api_key = get_str("AP_API_KEY", NULL);
	cfg->jwt_secret = get_str("AP_JWT_SECRET", NULL);

	char def_url[64];
	snprintf(def_url, sizeof def_url, "http://localhost:%d", cfg->port);
	cfg->frontend_url = get_str("AP_FRONTEND_URL", def_url);
	snprintf(def_url, sizeof def_url, "http://127.0.0.1:%d", cfg->port);
	cfg->app_url = get_str("AP_APP_URL",
			       cfg->container_type == FL_CONTAINER_WORKER ? NULL : def_url);

	if ((rc = check_url("AP_FRONTEND_URL", cfg->frontend_url, err)) ||
	    (rc = check_url("AP_APP_URL", cfg->app_url, err)))
		goto fail;
	if (cfg->db_type == FL_DB_POSTGRES && !cfg->postgres_url) {
		rc = fl_err_set(err, FL_ECONFIG, "AP_DB_TYPE is POSTGRES but AP_POSTGRES_URL is not set");
		goto fail;
	}
	if (cfg->container_type == FL_CONTAINER_WORKER && !cfg->app_url) {
		rc = fl_err_set(err, FL_ECONFIG,
				"AP_CONTAINER_TYPE is WORKER but AP_APP_URL is not set: workers must know "
				"where the app is");
		goto fail;
	}
	if (cfg->redis_url && strncmp(cfg->redis_url, "redis://", 8) &&
	    strncmp(cfg->redis_url, "unix://", 7)) {
		rc = fl_err_set(err, FL_ECONFIG,
				"invalid AP_REDIS_URL '%s': expected redis://[:password@]host:port[/db] or "
				"unix:///path",
				cfg->redis_url);
		goto fail;
	}
	return 0;
fail:
	fl_config_release(cfg);
	return rc;
}

void fl_config_release(struct fl_config *cfg)
{
	fl_free(cfg->config_path);
	fl_free(cfg->postgres_url);
	fl_free(cfg->redis_url);
	fl_free(cfg->queue_name);
	fl_free(cfg->redis_prefix);
	fl_free(cfg->ssrf_allow_list);
	fl_free(cfg->api_key);
	fl_free(cfg->jwt_secret);
	fl_free(cfg->frontend_url);
	fl_free(cfg->app_url);
	memset(cfg, 0, sizeof *cfg);
}
