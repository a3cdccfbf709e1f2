/* Configuration from AP_* environment variables (shared/DESIGN.md §2). Every value is validated at
 * start: a bad value is an error that names the variable and what it accepts, never a silent
 * fallback to the default. */
#ifndef FL_CONFIG_H
#define FL_CONFIG_H

#include <stdint.h>

struct fl_err;

enum fl_container_type { FL_CONTAINER_WORKER_AND_APP, FL_CONTAINER_APP, FL_CONTAINER_WORKER };
enum fl_db_type { FL_DB_SQLITE3, FL_DB_POSTGRES };
enum fl_execution_mode {
	FL_EXEC_UNSANDBOXED,
	FL_EXEC_SANDBOX_CODE_ONLY,
	FL_EXEC_SANDBOX_PROCESS,
	FL_EXEC_SANDBOX_CODE_AND_PROCESS,
};
enum fl_network_mode { FL_NET_UNRESTRICTED, FL_NET_STRICT };

struct fl_config {
	enum fl_container_type container_type;
	int port;
	char *config_path;
	enum fl_db_type db_type;
	char *postgres_url;   /* NULL unless set */
	char *redis_url;      /* NULL: embedded redis-server */
	char *queue_name;
	char *redis_prefix;
	int worker_concurrency;
	enum fl_execution_mode execution_mode;
	enum fl_network_mode network_mode;
	char *ssrf_allow_list; /* NULL unless set; comma-separated IPs/CIDRs */
	int lock_duration_s;
	int stalled_interval_s;
	int flow_timeout_s;
	int64_t sandbox_memory_limit_kb;
	int max_flow_run_log_size_mb;
	int webhook_timeout_s;
	char *api_key;        /* NULL: generated under config_path */
	char *jwt_secret;     /* NULL: generated under config_path */
	char *frontend_url;
	char *app_url;        /* NULL only in WORKER mode before validation fails */
	int log_level;        /* enum fl_log_level */
	int log_pretty;
};

/* Reads and validates every AP_* variable through getenv. On error, returns FL_ECONFIG with a
 * message naming the variable, its value and what is allowed; cfg is then released. */
int fl_config_load(struct fl_config *cfg, struct fl_err *err);
/* Frees the strings owned by cfg. */
void fl_config_release(struct fl_config *cfg);
/* Applies AP_LOG_LEVEL/AP_LOG_PRETTY to the logger alone, for commands that need no full config.
 * Returns 0 or FL_ECONFIG. */
int fl_config_setup_logging(struct fl_err *err);

const char *fl_container_type_name(enum fl_container_type t);
const char *fl_execution_mode_name(enum fl_execution_mode m);
const char *fl_network_mode_name(enum fl_network_mode m);
const char *fl_db_type_name(enum fl_db_type t);

#endif
