/* Internals shared by the files of src/queue: one Redis connection with its script cache, and
 * the helpers that build BullMQ arguments. Not part of the module's API (bq.h). */
#ifndef BQ_INT_H
#define BQ_INT_H

#include "queue/bq.h"

#include <hiredis/hiredis.h>
#include <stddef.h>

struct fl_buf;

/* Our Lua scripts (src/queue/lua/<name>.lua). lib.lua is prepended to each of them. */
enum bq_script {
	BQ_LUA_ADD,
	BQ_LUA_FETCH,
	BQ_LUA_FINISH,
	BQ_LUA_RETRY,
	BQ_LUA_RELEASE,
	BQ_LUA_EXTEND_LOCKS,
	BQ_LUA_STALLED,
	BQ_LUA_PAUSE,
	BQ_LUA_COUNTS,
	BQ_LUA_RETRY_FAILED,
	BQ_LUA_CLEAN,
	BQ_LUA_PROGRESS,
	BQ_LUA_LOG,
	BQ_LUA_COUNT_, /* number of scripts */
};

/* The script's name, the file src/queue/lua/<name>.lua; NULL outside the enum. */
const char *bq_script_name(enum bq_script s);

/* How a connection runs the scripts: as Redis 7 functions (one library, loaded once per server,
 * so that a call runs no set-up code), or with EVALSHA where functions are missing or forbidden,
 * each call then running lib.lua's definitions first. */
enum bq_call_mode { BQ_CALL_UNKNOWN, BQ_CALL_FUNCTIONS, BQ_CALL_SCRIPTS };

/* One synchronous hiredis connection that reconnects on demand. Not thread-safe: each thread
 * owns its own. */
struct bq_conn {
	redisContext *ctx;   /* NULL while disconnected */
	struct bq_redis_addr addr;
	char *client_name;   /* CLIENT SETNAME after each connect, or NULL */
	int timeout_ms;      /* per command; 0 = none (blocking connections) */
	enum bq_call_mode mode; /* decided on the first script call after each connect */
	char sha[BQ_LUA_COUNT_][41]; /* BQ_CALL_SCRIPTS */
	bool loaded[BQ_LUA_COUNT_];
	bool transient;      /* the last command failed in a way that may pass if sent again:
			      * see bq_conn_cmd */
};

/* Parses url and connects. Returns 0 or FL_ECONFIG / FL_EREDIS. */
int bq_conn_init(struct bq_conn *c, const char *url, const char *client_name, int timeout_ms,
		 struct fl_err *err);
void bq_conn_release(struct bq_conn *c);
/* Connects if disconnected (AUTH, SELECT, CLIENT SETNAME). Returns 0 or FL_EREDIS. */
int bq_conn_ensure(struct bq_conn *c, struct fl_err *err);
/* Drops the connection; the next call reconnects. */
void bq_conn_drop(struct bq_conn *c);
/* Whether an error reply's text (without its leading '-') names a condition that passes: see
 * bq_conn_cmd. */
bool bq_reply_transient(const char *error_text);

/* Runs a command. Returns 0 and sets *reply (caller frees with freeReplyObject), or FL_EREDIS on
 * an I/O error (the connection is dropped) or on an error reply (err carries its text, *reply
 * the reply). After a failure c->transient tells whether sending the same command again may
 * succeed: true for I/O errors and for the replies of a server that is starting, busy or
 * failing over (LOADING, BUSY, TRYAGAIN, MASTERDOWN, CLUSTERDOWN, READONLY, OOM), false for an
 * error that the same command would get again. */
int bq_conn_cmd(struct bq_conn *c, int argc, const char **argv, const size_t *argvlen,
		redisReply **reply, struct fl_err *err);
/* Runs script with KEYS[1] = key prefix and the given ARGV, by FCALL or EVALSHA (see
 * bq_call_mode); loads the library or script on first use, and again when Redis has lost it.
 * Same returns as bq_conn_cmd. */
int bq_conn_eval(struct bq_conn *c, enum bq_script script, const char *key_prefix, int argc,
		 const char **argv, const size_t *argvlen, redisReply **reply, struct fl_err *err);

/* Logs a warning (once per process) when the server is older than 6.2 or its maxmemory-policy
 * is not noeviction. */
void bq_conn_check_server(struct bq_conn *c);

/* "<prefix>:<queue>:" */
char *bq_key_prefix(const char *prefix, const char *queue);
/* Client name BullMQ's getWorkers() recognises: "<prefix>:<base64(queue)>". */
char *bq_client_name(const char *prefix, const char *queue);

/* Appends the BullMQ opts JSON of o to b (attempts always present). */
void bq_opts_json(struct fl_buf *b, const struct bq_job_opts *o);
/* Reads removeOnComplete/removeOnFail from a parsed opts value (absent: BQ_KEEP_DEFAULT). */
void bq_keep_from_json(const json_t *v, struct bq_keep *k);
/* Reads opts.backoff in the forms BullMQ accepts: a number (a fixed delay in ms) or
 * {"type","delay"}, where a type other than "exponential" counts as fixed. Absent or null: no
 * backoff. A negative delay counts as 0. */
void bq_backoff_from_json(const json_t *v, enum bq_backoff_type *type, int64_t *delay_ms);
/* The delay in ms before the retry-th retry (1 after the first failure) with BullMQ's built-in
 * strategies: fixed waits delay_ms every time, exponential 2^(retry-1) * delay_ms. */
int64_t bq_backoff_delay(enum bq_backoff_type type, int64_t delay_ms, int retry);
/* Resolves job and worker retention into the finish script's (count, age) pair: count -1 keeps
 * all, 0 deletes the job; age -1 means no age limit. */
void bq_keep_resolve(const struct bq_keep *job, const struct bq_keep *worker, int64_t *count,
		     int64_t *age_s);

/* Validates a custom job id. Returns 0 or FL_EINVAL. */
int bq_check_job_id(const char *id, struct fl_err *err);

#endif
