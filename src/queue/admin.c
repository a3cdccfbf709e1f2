/* The operator side of the queue: counts, listing, retry, clean, pause and resume, each the
 * same transition BullMQ's Queue performs, so that `flowd queue` and a Node dashboard agree. */
#include "queue/queue_int.h"
#include "queue/server.h"

#include "core/alloc.h"
#include "core/err.h"
#include "core/time.h"

#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

char *bq_embedded_redis_url(const char *config_path)
{
	/* A unix:// URL needs an absolute path, and the default AP_CONFIG_PATH is ./var. */
	const char *dir = config_path ? config_path : "./var";
	char abs_dir[PATH_MAX];
	if (realpath(dir, abs_dir))
		dir = abs_dir;
	return fl_asprintf("unix://%s/" BQ_SERVER_SUBDIR "/redis.sock", dir);
}

static const char *const states[] = { "waiting",   "active", "delayed", "prioritized",
				      "completed", "failed", "paused",  NULL };

bool bq_state_valid(const char *state)
{
	for (const char *const *s = states; *s; s++)
		if (!strcmp(*s, state))
			return true;
	return false;
}

static const char *state_key(const char *state)
{
	return !strcmp(state, "waiting") ? "wait" : state;
}

int bq_queue_counts(struct bq_queue *q, struct bq_counts *c, struct fl_err *err)
{
	const char *av[8] = { "active", "completed",   "delayed", "failed",
			      "paused", "prioritized", "wait",    "waiting-children" };
	int64_t *out[8] = { &c->active, &c->completed,   &c->delayed, &c->failed,
			    &c->paused, &c->prioritized, &c->waiting, &c->waiting_children };
	memset(c, 0, sizeof(*c));
	redisReply *r;
	int rc = bq_queue_eval(q, BQ_LUA_COUNTS, 8, av, NULL, &r, err);
	if (rc)
		return rc;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 8) {
		freeReplyObject(r);
		return fl_err_set(err, FL_EPROTO, "unexpected reply from the counts script");
	}
	for (int i = 0; i < 8; i++)
		*out[i] = r->element[i]->integer;
	freeReplyObject(r);
	return 0;
}

int bq_queue_is_paused(struct bq_queue *q, bool *paused, struct fl_err *err)
{
	char *key = fl_asprintf("%smeta", q->kp);
	const char *av[3] = { "HEXISTS", key, "paused" };
	redisReply *r;
	int rc = bq_queue_cmd(q, 3, av, NULL, &r, err);
	fl_free(key);
	if (rc)
		return rc;
	*paused = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
	freeReplyObject(r);
	return 0;
}

int bq_queue_pause(struct bq_queue *q, bool pause, struct fl_err *err)
{
	const char *av[1] = { pause ? "paused" : "resumed" };
	redisReply *r;
	int rc = bq_queue_eval(q, BQ_LUA_PAUSE, 1, av, NULL, &r, err);
	if (rc)
		return rc;
	freeReplyObject(r);
	return 0;
}

/* ---- jobs as JSON -------------------------------------------------------------------------- */

static json_t *parse_or_string(const char *s, json_t *fallback)
{
	json_t *v = s ? json_loads(s, JSON_DECODE_ANY, NULL) : NULL;
	if (v) {
		json_decref(fallback);
		return v;
	}
	if (s) {
		json_decref(fallback);
		return json_string(s);
	}
	return fallback;
}

static json_t *job_json(const char *id, const redisReply *hash)
{
	const char *f[16] = { 0 };
	static const char *const names[] = { "name",       "data",        "opts",      "progress",
					      "timestamp",  "delay",       "priority",  "processedOn",
					      "finishedOn", "atm",         "ats",       "stc",
					      "failedReason", "returnvalue", "stacktrace", NULL };
	for (size_t i = 0; i + 1 < hash->elements; i += 2)
		for (int n = 0; names[n]; n++)
			if (!strcmp(hash->element[i]->str, names[n]))
				f[n] = hash->element[i + 1]->str;
	json_t *j = json_object();
	json_object_set_new(j, "id", json_string(id));
	json_object_set_new(j, "name", json_string(f[0] ? f[0] : ""));
	json_object_set_new(j, "data", parse_or_string(f[1], json_object()));
	json_t *opts = parse_or_string(f[2], json_object());
	if (!json_is_object(opts)) {
		json_decref(opts);
		opts = json_object();
	}
	json_object_set_new(j, "opts", opts);
	json_object_set_new(j, "progress", parse_or_string(f[3], json_integer(0)));
	static const char *const nums[] = { "timestamp", "delay", "priority", "processedOn",
					    "finishedOn" };
	for (int n = 0; n < 5; n++)
		json_object_set_new(j, nums[n],
				    f[4 + n] ? json_integer(strtoll(f[4 + n], NULL, 10))
					     : (n < 3 ? json_integer(0) : json_null()));
	json_object_set_new(j, "attemptsMade", json_integer(f[9] ? strtoll(f[9], NULL, 10) : 0));
	json_object_set_new(j, "attemptsStarted", json_integer(f[10] ? strtoll(f[10], NULL, 10) : 0));
	json_object_set_new(j, "stalledCounter", json_integer(f[11] ? strtoll(f[11], NULL, 10) : 0));
	json_object_set_new(j, "failedReason", f[12] ? json_string(f[12]) : json_null());
	json_object_set_new(j, "returnvalue", parse_or_string(f[13], json_null()));
	json_object_set_new(j, "stacktrace", parse_or_string(f[14], json_array()));
	return j;
}

/* HGETALL of each id in one pipeline; appends the jobs that still exist to out. */
static int load_jobs(struct bq_queue *q, const redisReply *ids, bool reverse, json_t *out,
		     struct fl_err *err)
{
	pthread_mutex_lock(&q->mu);
	int rc = bq_conn_ensure(&q->conn, err);
	size_t n = ids->elements;
	for (size_t i = 0; !rc && i < n; i++) {
		char *key = fl_asprintf("%s%s", q->kp, ids->element[i]->str);
		const char *av[2] = { "HGETALL", key };
		if (redisAppendCommandArgv(q->conn.ctx, 2, av, NULL) != REDIS_OK) {
			/* the commands queued so far would answer the handle's next call */
			rc = fl_err_set(err, FL_EREDIS, "cannot queue the job reads: %s",
					q->conn.ctx->errstr);
			bq_conn_drop(&q->conn);
		}
		fl_free(key);
	}
	redisReply **replies = fl_calloc(n ? n : 1, sizeof(*replies));
	for (size_t i = 0; !rc && i < n; i++) {
		void *r = NULL;
		if (redisGetReply(q->conn.ctx, &r) != REDIS_OK) {
			rc = fl_err_set(err, FL_EREDIS, "lost Redis while listing jobs: %s",
					q->conn.ctx->errstr);
			bq_conn_drop(&q->conn);
			break;
		}
		replies[i] = r;
	}
	pthread_mutex_unlock(&q->mu);
	for (size_t k = 0; k < n; k++) {
		size_t i = reverse ? n - 1 - k : k;
		if (!rc && replies[i] && replies[i]->type == REDIS_REPLY_ARRAY &&
		    replies[i]->elements > 0)
			json_array_append_new(out, job_json(ids->element[i]->str, replies[i]));
		if (replies[i])
			freeReplyObject(replies[i]);
	}
	fl_free(replies);
	return rc;
}

int bq_queue_list(struct bq_queue *q, const char *state, int64_t offset, int64_t limit,
		  json_t **jobs, struct fl_err *err)
{
	*jobs = NULL;
	/* The NULL test also tells GCC under -fsanitize that state is not NULL below. */
	if (!state || !bq_state_valid(state))
		return fl_err_set(err, FL_EINVAL,
				  "unknown state '%s'; expected waiting, active, delayed, "
				  "prioritized, completed, failed or paused",
				  state ? state : "(none)");
	if (offset < 0)
		offset = 0;
	if (limit <= 0)
		limit = 100;
	char *key = fl_asprintf("%s%s", q->kp, state_key(state));
	char a1[24], a2[24];
	const char *cmd;
	bool list = !strcmp(state, "waiting") || !strcmp(state, "active") ||
		    !strcmp(state, "paused");
	bool reverse = false;
	if (list) {
		/* the head of a BullMQ list is its right end */
		cmd = "LRANGE";
		snprintf(a1, sizeof(a1), "%" PRId64, -(offset + limit));
		snprintf(a2, sizeof(a2), "%" PRId64, -(offset + 1));
		reverse = true;
	} else {
		cmd = !strcmp(state, "completed") || !strcmp(state, "failed") ? "ZREVRANGE" : "ZRANGE";
		snprintf(a1, sizeof(a1), "%" PRId64, offset);
		snprintf(a2, sizeof(a2), "%" PRId64, offset + limit - 1);
	}
	const char *av[4] = { cmd, key, a1, a2 };
	redisReply *r;
	int rc = bq_queue_cmd(q, 4, av, NULL, &r, err);
	fl_free(key);
	if (rc)
		return rc;
	json_t *out = json_array();
	if (r->type == REDIS_REPLY_ARRAY)
		rc = load_jobs(q, r, reverse, out, err);
	freeReplyObject(r);
	if (rc) {
		json_decref(out);
		return rc;
	}
	*jobs = out;
	return 0;
}

int bq_job_get(struct bq_queue *q, const char *id, json_t **job, struct fl_err *err)
{
	*job = NULL;
	char *key = fl_asprintf("%s%s", q->kp, id);
	const char *av[2] = { "HGETALL", key };
	redisReply *r;
	int rc = bq_queue_cmd(q, 2, av, NULL, &r, err);
	fl_free(key);
	if (rc)
		return rc;
	if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
		freeReplyObject(r);
		return fl_err_set(err, FL_ENOTFOUND, "job '%s' does not exist", id);
	}
	*job = job_json(id, r);
	freeReplyObject(r);
	return 0;
}

int bq_queue_retry_failed(struct bq_queue *q, int64_t max, int64_t *moved, struct fl_err *err)
{
	char count[24], now[24];
	snprintf(count, sizeof(count), "%" PRId64, max > 0 ? max : (int64_t)1 << 40);
	snprintf(now, sizeof(now), "%" PRId64, fl_now_ms());
	const char *av[3] = { count, now, "failed" };
	redisReply *r;
	int rc = bq_queue_eval(q, BQ_LUA_RETRY_FAILED, 3, av, NULL, &r, err);
	if (rc)
		return rc;
	*moved = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
	freeReplyObject(r);
	return 0;
}

int bq_queue_clean(struct bq_queue *q, const char *state, int64_t grace_ms, int64_t limit,
		   int64_t *removed, struct fl_err *err)
{
	*removed = 0;
	if (!bq_state_valid(state) || !strcmp(state, "active"))
		return fl_err_set(err, FL_EINVAL,
				  "cannot clean state '%s'; expected waiting, delayed, prioritized, "
				  "completed, failed or paused",
				  state);
	char cutoff[24], lim[24];
	snprintf(cutoff, sizeof(cutoff), "%" PRId64, fl_now_ms() - (grace_ms > 0 ? grace_ms : 0));
	snprintf(lim, sizeof(lim), "%" PRId64, limit > 0 ? limit : 0);
	const char *av[3] = { state_key(state), cutoff, lim };
	redisReply *r;
	int rc = bq_queue_eval(q, BQ_LUA_CLEAN, 3, av, NULL, &r, err);
	if (rc)
		return rc;
	*removed = r->type == REDIS_REPLY_ARRAY ? (int64_t)r->elements : 0;
	freeReplyObject(r);
	return 0;
}
