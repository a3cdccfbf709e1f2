/* The producer side of the queue: the queue handle, job options in BullMQ's JSON form, and
 * adding jobs. The operator commands (counts, list, retry, clean, pause) are in admin.c. */
#include "queue/bq_int.h"
#include "queue/queue_int.h"

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"
#include "core/time.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *bq_key_prefix(const char *prefix, const char *queue)
{
	return fl_asprintf("%s:%s:", prefix ? prefix : "bull", queue);
}

char *bq_client_name(const char *prefix, const char *queue)
{
	struct fl_buf b = FL_BUF_INIT;
	fl_buf_addf(&b, "%s:", prefix ? prefix : "bull");
	const unsigned char *s = (const unsigned char *)queue;
	size_t n = strlen(queue);
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)s[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		fl_buf_addch(&b, b64chars[(v >> 18) & 63]);
		fl_buf_addch(&b, b64chars[(v >> 12) & 63]);
		fl_buf_addch(&b, i + 1 < n ? b64chars[(v >> 6) & 63] : '=');
		fl_buf_addch(&b, i + 2 < n ? b64chars[v & 63] : '=');
	}
	return fl_buf_detach(&b, NULL);
}

int bq_check_job_id(const char *id, struct fl_err *err)
{
	if (!*id)
		return fl_err_set(err, FL_EINVAL, "job id is empty");
	if (strchr(id, ':'))
		return fl_err_set(err, FL_EINVAL, "job id '%s' contains ':'", id);
	/* BullMQ refuses an id that reads back as the same integer (String(parseInt(id)) === id) */
	const char *d = id[0] == '-' ? id + 1 : id;
	size_t n = strspn(d, "0123456789");
	if (n > 0 && !d[n] && (d[0] != '0' || (n == 1 && d == id)))
		return fl_err_set(err, FL_EINVAL, "job id '%s' is an integer; custom ids must not be",
				  id);
	return 0;
}

/* ---- options ------------------------------------------------------------------------------- */

static void keep_json(struct fl_buf *b, const char *field, const struct bq_keep *k)
{
	switch (k->kind) {
	case BQ_KEEP_DEFAULT:
		return;
	case BQ_KEEP_ALL:
		fl_buf_addf(b, ",\"%s\":false", field);
		return;
	case BQ_KEEP_NONE:
		fl_buf_addf(b, ",\"%s\":true", field);
		return;
	case BQ_KEEP_COUNT:
		fl_buf_addf(b, ",\"%s\":%" PRId64, field, k->count);
		return;
	case BQ_KEEP_LIMITS: {
		const char *sep = "";
		fl_buf_addf(b, ",\"%s\":{", field);
		if (k->count >= 0) {
			fl_buf_addf(b, "\"count\":%" PRId64, k->count);
			sep = ",";
		}
		if (k->age_s >= 0)
			fl_buf_addf(b, "%s\"age\":%" PRId64, sep, k->age_s);
		fl_buf_addch(b, '}');
		return;
	}
	}
}

void bq_opts_json(struct fl_buf *b, const struct bq_job_opts *o)
{
	fl_buf_addf(b, "{\"attempts\":%d", o->attempts);
	if (o->delay_ms > 0)
		fl_buf_addf(b, ",\"delay\":%" PRId64, o->delay_ms);
	if (o->priority > 0)
		fl_buf_addf(b, ",\"priority\":%d", o->priority);
	if (o->lifo)
		fl_buf_adds(b, ",\"lifo\":true");
	if (o->job_id) {
		fl_buf_adds(b, ",\"jobId\":\"");
		fl_buf_add_json_escaped(b, o->job_id, strlen(o->job_id));
		fl_buf_addch(b, '"');
	}
	if (o->backoff_type != BQ_BACKOFF_NONE)
		fl_buf_addf(b, ",\"backoff\":{\"type\":\"%s\",\"delay\":%" PRId64 "}",
			    o->backoff_type == BQ_BACKOFF_FIXED ? "fixed" : "exponential",
			    o->backoff_delay_ms);
	keep_json(b, "removeOnComplete", &o->remove_on_complete);
	keep_json(b, "removeOnFail", &o->remove_on_fail);
	if (o->keep_logs > 0)
		fl_buf_addf(b, ",\"kl\":%d", o->keep_logs);
	fl_buf_addch(b, '}');
}

void bq_keep_from_json(const json_t *v, struct bq_keep *k)
{
	memset(k, 0, sizeof(*k));
	k->count = -1;
	k->age_s = -1;
	if (!v || json_is_null(v))
		return;
	if (json_is_boolean(v)) {
		k->kind = json_is_true(v) ? BQ_KEEP_NONE : BQ_KEEP_ALL;
	} else if (json_is_number(v)) {
		k->kind = BQ_KEEP_COUNT;
		k->count = (int64_t)json_number_value(v);
	} else if (json_is_object(v)) {
		k->kind = BQ_KEEP_LIMITS;
		json_t *c = json_object_get(v, "count"), *a = json_object_get(v, "age");
		if (json_is_number(c))
			k->count = (int64_t)json_number_value(c);
		if (json_is_number(a))
			k->age_s = (int64_t)json_number_value(a);
	}
}

void bq_backoff_from_json(const json_t *v, enum bq_backoff_type *type, int64_t *delay_ms)
{
	*type = BQ_BACKOFF_NONE;
	*delay_ms = 0;
	if (json_is_number(v)) {
		*type = BQ_BACKOFF_FIXED;
		*delay_ms = (int64_t)json_number_value(v);
	} else if (json_is_object(v)) {
		const char *t = json_string_value(json_object_get(v, "type"));
		*type = t && !strcmp(t, "exponential") ? BQ_BACKOFF_EXPONENTIAL : BQ_BACKOFF_FIXED;
		*delay_ms = (int64_t)json_number_value(json_object_get(v, "delay"));
	}
	if (*delay_ms < 0)
		*delay_ms = 0;
}

int64_t bq_backoff_delay(enum bq_backoff_type type, int64_t delay_ms, int retry)
{
	switch (type) {
	case BQ_BACKOFF_NONE:
		return 0;
	case BQ_BACKOFF_FIXED:
		return delay_ms;
	case BQ_BACKOFF_EXPONENTIAL: {
		/* 2^(retry-1) * delay, as BullMQ's Backoffs.exponential; capped so that the product
		 * stays an int64 (a delay of centuries is as good as forever) */
		int n = retry < 1 ? 0 : retry - 1;
		double d = ldexp((double)delay_ms, n > 62 ? 62 : n);
		return d >= 9.0e18 ? (int64_t)9e18 : (int64_t)d;
	}
	}
	return 0;
}

/* BullMQ's getKeepJobs: the job's own option wins over the worker's; absent both, keep all. */
void bq_keep_resolve(const struct bq_keep *job, const struct bq_keep *worker, int64_t *count,
		     int64_t *age_s)
{
	const struct bq_keep *k = job && job->kind != BQ_KEEP_DEFAULT ? job : worker;
	*count = -1;
	*age_s = -1;
	if (!k)
		return;
	switch (k->kind) {
	case BQ_KEEP_DEFAULT:
	case BQ_KEEP_ALL:
		return;
	case BQ_KEEP_NONE:
		*count = 0;
		return;
	case BQ_KEEP_COUNT:
		/* {count: N} with N < 0 keeps everything in BullMQ too */
		*count = k->count < 0 ? -1 : k->count;
		return;
	case BQ_KEEP_LIMITS:
		*count = k->count < 0 ? -1 : k->count;
		*age_s = k->age_s;
		return;
	}
}

/* ---- handle -------------------------------------------------------------------------------- */

int bq_queue_new(const char *redis_url, const char *prefix, const char *name,
		 struct bq_queue **out, struct fl_err *err)
{
	*out = NULL;
	if (!name || !*name)
		return fl_err_set(err, FL_EINVAL, "queue name is empty");
	struct bq_queue *q = fl_calloc(1, sizeof(*q));
	int rc = bq_conn_init(&q->conn, redis_url, NULL, 10000, err);
	if (rc) {
		fl_free(q);
		return rc;
	}
	pthread_mutex_init(&q->mu, NULL);
	q->prefix = fl_strdup(prefix ? prefix : "bull");
	q->name = fl_strdup(name);
	q->kp = bq_key_prefix(q->prefix, q->name);
	bq_conn_check_server(&q->conn);
	*out = q;
	return 0;
}

void bq_queue_free(struct bq_queue *q)
{
	if (!q)
		return;
	bq_conn_release(&q->conn);
	pthread_mutex_destroy(&q->mu);
	fl_free(q->prefix);
	fl_free(q->name);
	fl_free(q->kp);
	fl_free(q);
}

int bq_queue_eval(struct bq_queue *q, enum bq_script s, int argc, const char **argv,
		  const size_t *argvlen, redisReply **reply, struct fl_err *err)
{
	pthread_mutex_lock(&q->mu);
	int rc = bq_conn_eval(&q->conn, s, q->kp, argc, argv, argvlen, reply, err);
	pthread_mutex_unlock(&q->mu);
	return rc;
}

int bq_queue_cmd(struct bq_queue *q, int argc, const char **argv, const size_t *argvlen,
		 redisReply **reply, struct fl_err *err)
{
	pthread_mutex_lock(&q->mu);
	int rc = bq_conn_cmd(&q->conn, argc, argv, argvlen, reply, err);
	pthread_mutex_unlock(&q->mu);
	if (rc && *reply) {
		freeReplyObject(*reply);
		*reply = NULL;
	}
	return rc;
}

/* ---- add ----------------------------------------------------------------------------------- */

int bq_job_add(struct bq_queue *q, const char *name, const char *data,
	       const struct bq_job_opts *opts, char **job_id, bool *duplicated, struct fl_err *err)
{
	static const struct bq_job_opts no_opts;
	if (job_id)
		*job_id = NULL;
	if (duplicated)
		*duplicated = false;
	if (!opts)
		opts = &no_opts;
	if (!name || !*name)
		return fl_err_set(err, FL_EINVAL, "job name is empty");
	if (!data)
		data = "{}";
	json_error_t je;
	json_t *parsed = fl_json_loads(data, JSON_DECODE_ANY, &je);
	if (!parsed)
		return fl_err_set(err, FL_EINVAL, "job data is not valid JSON: %d:%d: %s", je.line,
				  je.column, je.text);
	json_decref(parsed);
	if (opts->job_id && bq_check_job_id(opts->job_id, err))
		return FL_EINVAL;
	if (opts->priority < 0 || opts->priority > 2097151)
		return fl_err_set(err, FL_EINVAL, "priority %d is outside 0..2097151",
				  opts->priority);
	if (opts->delay_ms < 0 || opts->attempts < 0 || opts->backoff_delay_ms < 0)
		return fl_err_set(err, FL_EINVAL, "delay, attempts and backoff must not be negative");
	if (opts->lifo && opts->priority > 0)
		return fl_err_set(err, FL_EINVAL, "a job cannot be both lifo and prioritized");

	struct fl_buf o = FL_BUF_INIT;
	bq_opts_json(&o, opts);
	char ts[24], delay[24], prio[16];
	snprintf(ts, sizeof(ts), "%" PRId64, opts->timestamp_ms ? opts->timestamp_ms : fl_now_ms());
	snprintf(delay, sizeof(delay), "%" PRId64, opts->delay_ms);
	snprintf(prio, sizeof(prio), "%d", opts->priority);
	const char *av[8] = { opts->job_id ? opts->job_id : "", name, data, o.data, ts, delay, prio,
			      opts->lifo ? "1" : "0" };
	redisReply *r;
	int rc = bq_queue_eval(q, BQ_LUA_ADD, 8, av, NULL, &r, err);
	fl_buf_release(&o);
	if (rc)
		return rc;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING) {
		freeReplyObject(r);
		return fl_err_set(err, FL_EPROTO, "unexpected reply from the add script");
	}
	if (job_id)
		*job_id = fl_strndup(r->element[0]->str, r->element[0]->len);
	if (duplicated)
		*duplicated = r->element[1]->integer == 1;
	freeReplyObject(r);
	return 0;
}
