/* The consumer side of the queue. Threads and what they own:
 *   slot i       its own connection; fetches, runs the processor, finishes with fetch-next in
 *                one script, so that a busy slot never waits on the marker; slots finishing at
 *                once share that call (finish_shared), sent by one of them;
 *   waiter       the blocking connection: BZPOPMIN on the marker while some slot is idle, and
 *                hands out "turns" to idle slots (a popped ready marker, a timeout, a due time);
 *   maintenance  renews every lock in flight in one call per tick and runs the stalled check.
 * All shared state sits under w->mu. Redis being away is never fatal: each connection retries
 * with backoff. A call whose reply was lost is sent again marked as a repeat, and the scripts
 * recognise their own earlier effect: a finish already recorded is not refused, and a job that
 * a lost fetch took under our token is handed to us rather than left to stall. */
#include "queue/bq_int.h"

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/time.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define COMPONENT "queue"
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 3000
#define FINISH_HEAD 6       /* finish.lua's arguments for the whole call */
#define FINISH_ARGS 10      /* and for each job */
#define FINISH_BATCH_MAX 32 /* jobs in one finish call */
#define FINISH_CALLS_MAX 2  /* finish calls in flight at once; the second waits for two jobs */

struct bq_slot;

/* A job in flight: the public view plus what the worker needs to finish it. */
struct bq_active {
	struct bq_job job;        /* first: bq_job_* functions get back here from &job */
	struct bq_slot *slot;
	char token[64];
	atomic_bool lost;
	bool lifo;
	struct bq_keep keep_complete, keep_fail;
	int64_t backoff_delay_ms;
	enum bq_backoff_type backoff_type;
	int keep_logs;
};

struct bq_slot {
	struct bq_worker *w;
	int index;
	pthread_t thread;
	bool started;
	struct bq_conn conn;
	struct bq_active active;  /* meaningful while busy */
	bool busy;                /* under w->mu */
	bool finishing;           /* under w->mu: the processor returned and the outcome is on its
				   * way to Redis, whose lock check alone decides whether it counts */
};

/* A finish waiting to be sent in a shared call (finish_shared). */
struct fin_req {
	struct bq_active *a;
	const char **av;          /* its FINISH_ARGS arguments */
	redisReply *reply;        /* this job's part of the reply, or NULL */
	int rc;
	bool done;
	struct fin_req *next;
};

struct bq_worker {
	struct bq_worker_opts o;
	char *prefix, *queue, *url, *worker_name, *kp, *marker_key;
	char **job_names;         /* NULL-terminated copy, or NULL */
	char token_base[37];
	atomic_uint_fast64_t token_seq;

	pthread_mutex_t mu;
	pthread_cond_t cv_slots;  /* idle slots wait here for a turn (monotonic clock) */
	pthread_cond_t cv_waiter; /* the waiter waits here for an idle slot */
	pthread_cond_t cv_idle;   /* stop waits here for busy slots (monotonic clock) */
	pthread_cond_t cv_maint;  /* the maintenance thread sleeps here (monotonic clock) */
	int idle, turns, busy;
	int in_transit;           /* slots between a turn and busy/idle: stop waits for these */
	int64_t next_due_ms;      /* wall ms of the next delayed job or rate-limit end, or 0 */
	atomic_bool stopping;     /* written under mu; slots also read it between Redis calls */
	bool maint_stop, stopped, hard_stop;

	struct bq_slot *slots;
	pthread_t waiter, maint;
	bool waiter_started, maint_started;
	pthread_mutex_t block_mu; /* guards block_conn.ctx against the interrupt at stop */
	struct bq_conn block_conn;
	struct bq_conn maint_conn;

	atomic_uint_fast64_t n_completed, n_failed, n_retried, n_lost, n_finish_calls;
	atomic_int n_handed_back; /* jobs slots gave back themselves while stopping */
	atomic_bool maint_connected;

	pthread_mutex_t fin_mu;   /* guards the fin_* fields */
	pthread_cond_t cv_fin;    /* finishes wait here for their call to come back */
	struct fin_req *fin_head, **fin_tail;
	int fin_calls;            /* shared finish calls in flight */
};

void bq_worker_opts_init(struct bq_worker_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->concurrency = 1;
	o->lock_duration_ms = 30000;
	o->stalled_interval_ms = 30000;
	o->max_stalled_count = 1;
	o->drain_delay_ms = 5000;
	o->remove_on_complete.count = o->remove_on_fail.count = -1;
	o->remove_on_complete.age_s = o->remove_on_fail.age_s = -1;
}

/* ---- small helpers ------------------------------------------------------------------------- */

static struct timespec abs_time(clockid_t clock, int64_t in_ms)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	if (in_ms < 0)
		in_ms = 0;
	ts.tv_sec += in_ms / 1000;
	ts.tv_nsec += (in_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}

static void init_cond(pthread_cond_t *cv, clockid_t clock)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, clock);
	pthread_cond_init(cv, &a);
	pthread_condattr_destroy(&a);
}

/* Sleeps ms unless the worker is stopping (then returns at once). Returns false when stopping. */
static bool pause_ms(struct bq_worker *w, int64_t ms, bool until_hard_stop)
{
	pthread_mutex_lock(&w->mu);
	struct timespec ts = abs_time(CLOCK_MONOTONIC, ms);
	bool stop = until_hard_stop ? w->hard_stop : w->stopping;
	if (!stop)
		pthread_cond_timedwait(&w->cv_slots, &w->mu, &ts);
	stop = until_hard_stop ? w->hard_stop : w->stopping;
	pthread_mutex_unlock(&w->mu);
	return !stop;
}

static int64_t next_backoff(int64_t ms)
{
	ms = ms ? ms * 2 : BACKOFF_MIN_MS;
	return ms > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms;
}

static void new_token(struct bq_worker *w, char out[64])
{
	uint64_t n = atomic_fetch_add(&w->token_seq, 1);
	snprintf(out, 64, "%s:%" PRIu64, w->token_base, n);
}

/* A fetched job as the scripts reply with it (lib.lua, job_reply): its id, then these fields of
 * its hash, each a string or nil. */
enum job_field {
	JF_NAME = 1,
	JF_DATA,
	JF_OPTS,
	JF_DEFA,
	JF_ATM,
	JF_ATS,
	JF_STC,
	JF_PRIORITY,
	JF_TIMESTAMP,
	JF_PROCESSED_ON,
	JF_COUNT_, /* elements in the reply */
};

/* The field's text, or NULL when the hash lacks it. */
static const char *job_str(const redisReply *job, enum job_field f)
{
	const redisReply *v = job->element[f];
	return v->type == REDIS_REPLY_STRING ? v->str : NULL;
}

static int64_t job_int(const redisReply *job, enum job_field f)
{
	const char *v = job_str(job, f);
	return v ? strtoll(v, NULL, 10) : 0;
}

/* ---- turns: how idle slots learn that there may be work ------------------------------------ */

/* Blocks an idle slot until it may try a fetch. Returns false when the worker is stopping. */
static bool wait_turn(struct bq_worker *w)
{
	pthread_mutex_lock(&w->mu);
	w->idle++;
	pthread_cond_signal(&w->cv_waiter);
	bool ok = false;
	for (;;) {
		if (w->stopping)
			break;
		if (w->turns > 0) {
			w->turns--;
			pthread_cond_signal(&w->cv_waiter);
			ok = true;
			break;
		}
		if (w->next_due_ms > 0) {
			int64_t now = fl_now_ms();
			if (now >= w->next_due_ms) {
				w->next_due_ms = 0;
				ok = true;
				break;
			}
			/* due times are wall clock (BullMQ's); the wait itself is monotonic, so that
			 * a clock stepped back cannot stretch it */
			struct timespec ts = abs_time(CLOCK_MONOTONIC, w->next_due_ms - now);
			pthread_cond_timedwait(&w->cv_slots, &w->mu, &ts);
		} else {
			pthread_cond_wait(&w->cv_slots, &w->mu);
		}
	}
	w->idle--;
	if (ok)
		w->in_transit++;
	pthread_mutex_unlock(&w->mu);
	return ok;
}

static void end_transit(struct bq_worker *w)
{
	pthread_mutex_lock(&w->mu);
	w->in_transit--;
	pthread_cond_broadcast(&w->cv_idle);
	pthread_mutex_unlock(&w->mu);
}

static void give_turn(struct bq_worker *w)
{
	pthread_mutex_lock(&w->mu);
	if (w->idle > w->turns) {
		w->turns++;
		pthread_cond_signal(&w->cv_slots);
	}
	pthread_mutex_unlock(&w->mu);
}

static void note_due(struct bq_worker *w, int64_t due_ms)
{
	if (due_ms <= 0)
		return;
	pthread_mutex_lock(&w->mu);
	if (!w->next_due_ms || due_ms < w->next_due_ms) {
		w->next_due_ms = due_ms;
		pthread_cond_broadcast(&w->cv_slots);
	}
	pthread_mutex_unlock(&w->mu);
}

/* ---- the waiter ---------------------------------------------------------------------------- */

static void *waiter_main(void *arg)
{
	struct bq_worker *w = arg;
	int64_t backoff = 0;
	for (;;) {
		pthread_mutex_lock(&w->mu);
		while (!w->stopping && (w->idle == 0 || w->turns > 0))
			pthread_cond_wait(&w->cv_waiter, &w->mu);
		bool stop = w->stopping;
		pthread_mutex_unlock(&w->mu);
		if (stop)
			break;

		struct fl_err err = { 0 };
		pthread_mutex_lock(&w->block_mu);
		int rc = w->stopping ? FL_EREDIS : bq_conn_ensure(&w->block_conn, &err);
		pthread_mutex_unlock(&w->block_mu);
		if (rc) {
			if (!w->stopping)
				fl_warn(COMPONENT, "queue '%s': %s; retrying", w->queue, err.msg);
			backoff = next_backoff(backoff);
			if (!pause_ms(w, backoff, false))
				break;
			continue;
		}
		char timeout[32];
		snprintf(timeout, sizeof(timeout), "%.3f", w->o.drain_delay_ms / 1000.0);
		const char *av[3] = { "BZPOPMIN", w->marker_key, timeout };
		/* Not bq_conn_cmd: on an I/O error that would free the context without block_mu,
		 * while interrupt_waiter may be reading its fd (or shut down a reused fd number).
		 * Only this thread sends on the context; it is freed under block_mu. */
		redisReply *r = redisCommandArgv(w->block_conn.ctx, 3, av, NULL);
		if (!r || r->type == REDIS_REPLY_ERROR) {
			if (w->stopping) {
				freeReplyObject(r);
				break;
			}
			fl_warn(COMPONENT, "queue '%s': waiting for jobs: %s; retrying", w->queue,
				r ? r->str
				  : w->block_conn.ctx->errstr[0] ? w->block_conn.ctx->errstr
								 : "connection closed");
			freeReplyObject(r);
			pthread_mutex_lock(&w->block_mu);
			bq_conn_drop(&w->block_conn);
			pthread_mutex_unlock(&w->block_mu);
			backoff = next_backoff(backoff);
			if (!pause_ms(w, backoff, false))
				break;
			/* after an outage, look for work rather than trust the marker */
			give_turn(w);
			continue;
		}
		backoff = 0;
		if (r->type == REDIS_REPLY_ARRAY && r->elements == 3) {
			double score = strtod(r->element[2]->str, NULL);
			int64_t now = fl_now_ms();
			if (!strcmp(r->element[1]->str, "0") || score <= (double)now)
				give_turn(w);
			else
				note_due(w, (int64_t)ceil(score));
		} else {
			/* timed out: try a fetch anyway, so a lost marker costs latency, not a hang */
			give_turn(w);
		}
		freeReplyObject(r);
	}
	return NULL;
}

static void interrupt_waiter(struct bq_worker *w)
{
	pthread_mutex_lock(&w->block_mu);
	if (w->block_conn.ctx)
		shutdown(w->block_conn.ctx->fd, SHUT_RDWR);
	pthread_mutex_unlock(&w->block_mu);
}

/* ---- slots --------------------------------------------------------------------------------- */

/* A job reply: `owner` is what hiredis allocated, `job` the job array inside it (is_job). */
struct fetched {
	redisReply *owner;
	const redisReply *job;
};

static bool is_job(const redisReply *r)
{
	return r && r->type == REDIS_REPLY_ARRAY && r->elements == JF_COUNT_ &&
	       r->element[0]->type == REDIS_REPLY_STRING;
}

/* Nothing to fetch: remember when a delayed job or the rate limit is due. */
static void note_empty_fetch(struct bq_worker *w, const redisReply *r)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3)
		return;
	int64_t next = r->element[1]->type == REDIS_REPLY_INTEGER ? r->element[1]->integer : 0;
	int64_t ttl = r->element[2]->type == REDIS_REPLY_INTEGER ? r->element[2]->integer : 0;
	if (ttl > 0)
		note_due(w, fl_now_ms() + ttl);
	else if (next > 0)
		note_due(w, next);
}

/* One fetch, retried across connection failures. Returns false when stopping. */
static bool fetch(struct bq_slot *s, struct fetched *out, char token[64])
{
	struct bq_worker *w = s->w;
	int64_t backoff = 0;
	bool repeat = false;
	out->owner = NULL;
	out->job = NULL;
	new_token(w, token);
	for (;;) {
		if (w->stopping)
			return false;
		char now[24], lock_ms[16];
		snprintf(now, sizeof(now), "%" PRId64, fl_now_ms());
		snprintf(lock_ms, sizeof(lock_ms), "%d", w->o.lock_duration_ms);
		/* A repeat keeps the token: a job the lost call took is recognised by it. */
		const char *av[5] = { now, token, lock_ms, w->worker_name, repeat ? "1" : "0" };
		redisReply *r;
		struct fl_err err = { 0 };
		int rc = bq_conn_eval(&s->conn, BQ_LUA_FETCH, w->kp, 5, av, NULL, &r, &err);
		if (rc) {
			repeat = true;
			fl_warn(COMPONENT, "queue '%s' slot %d: fetch: %s; retrying", w->queue, s->index,
				err.msg);
			backoff = next_backoff(backoff);
			if (!pause_ms(w, backoff, false))
				return false;
			continue;
		}
		if (is_job(r)) {
			out->owner = r;
			out->job = r;
		} else {
			note_empty_fetch(w, r);
			freeReplyObject(r);
		}
		return true;
	}
}

static bool name_allowed(struct bq_worker *w, const char *name)
{
	if (!w->job_names)
		return true;
	for (char **n = w->job_names; *n; n++)
		if (!strcmp(*n, name))
			return true;
	return false;
}

/* Fills a->job from the fetched job. Returns NULL, or the reason to fail the job at once. */
static char *load_job(struct bq_worker *w, struct bq_active *a, const redisReply *job)
{
	struct bq_job *j = &a->job;
	memset(j, 0, sizeof(*j));
	j->id = job->element[0]->str;
	const char *name = job_str(job, JF_NAME);
	const char *data = job_str(job, JF_DATA);
	const char *opts = job_str(job, JF_OPTS);
	const char *defa = job_str(job, JF_DEFA);
	j->name = name ? name : "";
	j->data_text = data ? data : "";
	j->attempts_made = (int)job_int(job, JF_ATM);
	j->attempts_started = (int)job_int(job, JF_ATS);
	j->stalled_count = (int)job_int(job, JF_STC);
	j->priority = (int)job_int(job, JF_PRIORITY);
	j->timestamp_ms = job_int(job, JF_TIMESTAMP);
	j->processed_on_ms = job_int(job, JF_PROCESSED_ON);
	j->slot = a->slot->index;

	json_t *o = opts ? fl_json_loads(opts, 0, NULL) : NULL;
	if (!json_is_object(o)) {
		json_decref(o);
		o = json_object();
	}
	j->opts = o;
	j->attempts = (int)json_integer_value(json_object_get(o, "attempts"));
	a->lifo = json_is_true(json_object_get(o, "lifo"));
	a->keep_logs = (int)json_integer_value(json_object_get(o, "kl"));
	bq_keep_from_json(json_object_get(o, "removeOnComplete"), &a->keep_complete);
	bq_keep_from_json(json_object_get(o, "removeOnFail"), &a->keep_fail);
	bq_backoff_from_json(json_object_get(o, "backoff"), &a->backoff_type, &a->backoff_delay_ms);

	if (defa)
		return fl_strdup(defa);
	if (!name || !name_allowed(w, j->name))
		return fl_asprintf("unknown job name '%s'", j->name);
	if (!data)
		return fl_strdup("job has no data");
	json_error_t je;
	j->data = fl_json_loads(j->data_text, JSON_DECODE_ANY, &je);
	if (!j->data)
		return fl_asprintf("job data is not valid JSON: %d:%d: %s", je.line, je.column,
				   je.text);
	return NULL;
}

static void unload_job(struct bq_active *a)
{
	json_decref(a->job.data);
	json_decref(a->job.opts);
	a->job.data = a->job.opts = NULL;
}

/* Sends a finish or retry script on conn until Redis answers, or none of its jobs is ours any
 * more. A failure that may pass (a dropped connection, a server still loading its data after a
 * restart) is retried with backoff; giving up would leave a job active under a lock nobody
 * renews, and the stalled check would hand it to a second run. After the first failure the
 * call's repeat argument (*repeat) is set to "1": the script may have run without its reply
 * reaching us. */
static int send_until_answered(struct bq_worker *w, struct bq_conn *conn, enum bq_script script,
			       int argc, const char **av, int n_jobs, struct bq_active *const *jobs,
			       const char **repeat, redisReply **reply)
{
	int64_t backoff = 0;
	for (;;) {
		struct fl_err err = { 0 };
		int rc = bq_conn_eval(conn, script, w->kp, argc, av, NULL, reply, &err);
		if (!rc)
			return 0;
		bool again = conn->transient;
		if (n_jobs == 1)
			fl_warn(COMPONENT, "queue '%s' job '%s': cannot record the outcome: %s%s",
				w->queue, jobs[0]->job.id, err.msg, again ? "; retrying" : "");
		else
			fl_warn(COMPONENT,
				"queue '%s': cannot record the outcomes of %d jobs ('%s' first): %s%s",
				w->queue, n_jobs, jobs[0]->job.id, err.msg, again ? "; retrying" : "");
		if (!again)
			return rc; /* the same call would fail the same way; the jobs will stall */
		bool any_ours = false;
		for (int i = 0; i < n_jobs; i++)
			any_ours |= !atomic_load(&jobs[i]->lost);
		if (!any_ours)
			return rc; /* lost before they finished: the finish would be refused */
		*repeat = "1";
		backoff = next_backoff(backoff);
		if (!pause_ms(w, backoff, true))
			return rc;
	}
}

/* Sends one shared finish call for the requests at the head of the queue, on conn. */
static void send_finishes(struct bq_worker *w, struct bq_conn *conn, struct fin_req **reqs,
			  int n)
{
	const char *av[FINISH_HEAD + FINISH_BATCH_MAX * FINISH_ARGS];
	struct bq_active *jobs[FINISH_BATCH_MAX] = { 0 };
	char count[8], now[24], lock_ms[16];
	snprintf(count, sizeof(count), "%d", n);
	/* One time for the whole call, kept when it is sent again: a repeat recognises its first
	 * run by the finishedOn it wrote. */
	snprintf(now, sizeof(now), "%" PRId64, fl_now_ms());
	snprintf(lock_ms, sizeof(lock_ms), "%d", w->o.lock_duration_ms);
	av[0] = count;
	av[1] = now;
	av[2] = lock_ms;
	av[3] = w->worker_name;
	av[4] = w->stopping ? "0" : "1"; /* fetch the next jobs */
	av[5] = "0";                     /* not a repeat */
	for (int i = 0; i < n; i++) {
		memcpy(&av[FINISH_HEAD + i * FINISH_ARGS], reqs[i]->av, FINISH_ARGS * sizeof(*av));
		jobs[i] = reqs[i]->a;
	}
	redisReply *r = NULL;
	atomic_fetch_add(&w->n_finish_calls, 1);
	int rc = send_until_answered(w, conn, BQ_LUA_FINISH, FINISH_HEAD + n * FINISH_ARGS, av, n,
				     jobs, &av[5], &r);
	if (!rc && (r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)n)) {
		fl_warn(COMPONENT, "queue '%s': the finish script answered %d jobs with a reply of "
			"type %d", w->queue, n, r->type);
		rc = FL_EREDIS;
	}
	for (int i = 0; i < n; i++) {
		reqs[i]->rc = rc;
		if (!rc) {
			reqs[i]->reply = r->element[i];
			r->element[i] = NULL; /* now the request's own */
		}
	}
	freeReplyObject(r);
}

/* Records a job's outcome. Slots that finish while FINISH_CALLS_MAX calls are already on their
 * way queue up, and the next slot to send takes all of them in one call: under load Redis runs
 * one script per handful of jobs, not one per job, while a lone finish goes out at once. Returns
 * send_until_answered's code and, on success, the job's own reply. */
static int finish_shared(struct bq_slot *s, const char **av, redisReply **reply)
{
	struct bq_worker *w = s->w;
	struct fin_req req = { .a = &s->active, .av = av };
	pthread_mutex_lock(&w->fin_mu);
	*w->fin_tail = &req;
	w->fin_tail = &req.next;
	while (!req.done) {
		/* nothing queued, or a call is out and a second one would carry a single job */
		if (!w->fin_head || w->fin_calls >= FINISH_CALLS_MAX ||
		    (w->fin_calls > 0 && !w->fin_head->next)) {
			pthread_cond_wait(&w->cv_fin, &w->fin_mu);
			continue;
		}
		struct fin_req *batch[FINISH_BATCH_MAX];
		int n = 0;
		while (w->fin_head && n < FINISH_BATCH_MAX) {
			batch[n++] = w->fin_head;
			w->fin_head = w->fin_head->next;
		}
		if (!w->fin_head)
			w->fin_tail = &w->fin_head;
		w->fin_calls++;
		pthread_mutex_unlock(&w->fin_mu);
		send_finishes(w, &s->conn, batch, n);
		pthread_mutex_lock(&w->fin_mu);
		w->fin_calls--;
		for (int i = 0; i < n; i++)
			batch[i]->done = true;
		pthread_cond_broadcast(&w->cv_fin);
	}
	pthread_mutex_unlock(&w->fin_mu);
	*reply = req.reply;
	return req.rc;
}

static void count_refusal(struct bq_worker *w, const char *id, long long code)
{
	atomic_fetch_add(&w->n_lost, 1);
	fl_warn(COMPONENT, "queue '%s' job '%s': outcome refused (%s); another worker owns it",
		w->queue, id,
		code == -1   ? "job is gone"
		: code == -2 ? "lock missing"
		: code == -6 ? "lock taken"
			     : "job not active");
}

static void note_recorded_before(struct bq_worker *w, const char *id)
{
	fl_info(COMPONENT,
		"queue '%s' job '%s': the outcome had been recorded before its reply was lost",
		w->queue, id);
}

/* Runs one fetched job to its end. *next receives the job fetched by the finish, if any. */
static void run_job(struct bq_slot *s, const struct fetched *f, const char *token,
		    struct fetched *next, char next_token[64])
{
	struct bq_worker *w = s->w;
	struct bq_active *a = &s->active;
	next->owner = NULL;
	next->job = NULL;

	pthread_mutex_lock(&w->mu);
	a->slot = s;
	snprintf(a->token, sizeof(a->token), "%s", token);
	atomic_store(&a->lost, false);
	char *reject = load_job(w, a, f->job);
	s->busy = true;
	w->busy++;
	w->in_transit--;
	pthread_mutex_unlock(&w->mu);

	struct bq_result res = { .outcome = BQ_FAILED_NO_RETRY };
	if (reject) {
		res.failed_reason = reject;
		fl_warn(COMPONENT, "queue '%s' job '%s' failed without running: %s", w->queue,
			a->job.id, reject);
	} else {
		w->o.process(w->o.arg, &a->job, &res);
	}
	/* Under w->mu, so that a job is either being finished or marked lost (by a renewal, or
	 * handed back by bq_worker_stop), never both: a finish racing a hand-back could record
	 * an outcome for a job that is already queued for another run. */
	pthread_mutex_lock(&w->mu);
	bool lost = atomic_load(&a->lost);
	s->finishing = !lost;
	pthread_mutex_unlock(&w->mu);

	bool completed = res.outcome == BQ_COMPLETED;
	bool retry = res.outcome == BQ_FAILED && a->job.attempts_made + 1 < a->job.attempts;
	char atm_after[16]; /* attempts made, this one included: what either script records */
	snprintf(atm_after, sizeof(atm_after), "%d", a->job.attempts_made + 1);
	redisReply *r = NULL;
	int rc;
	if (lost) {
		/* the lock is gone: Redis would refuse the outcome (-2/-6) */
		atomic_fetch_add(&w->n_lost, 1);
		fl_warn(COMPONENT, "queue '%s' job '%s': outcome not recorded: the lock was lost",
			w->queue, a->job.id);
	} else if (retry) {
		char now[24], delay[24];
		snprintf(now, sizeof(now), "%" PRId64, fl_now_ms());
		snprintf(delay, sizeof(delay), "%" PRId64,
			 bq_backoff_delay(a->backoff_type, a->backoff_delay_ms,
					  a->job.attempts_made + 1));
		const char *av[9] = { a->job.id, a->token, now, delay,
				      res.failed_reason ? res.failed_reason : "", "[]",
				      a->lifo ? "1" : "0", "0", atm_after };
		rc = send_until_answered(w, &s->conn, BQ_LUA_RETRY, 9, av, 1, &a, &av[7], &r);
		if (!rc) {
			if (r->type == REDIS_REPLY_INTEGER && r->integer < 0) {
				count_refusal(w, a->job.id, r->integer);
			} else {
				atomic_fetch_add(&w->n_retried, 1);
				if (r->type == REDIS_REPLY_INTEGER && r->integer == 1)
					note_recorded_before(w, a->job.id);
			}
		}
	} else {
		char *value;
		if (completed)
			value = res.returnvalue ? fl_json_dump(res.returnvalue)
						: NULL;
		else
			value = NULL;
		int64_t count, age;
		bq_keep_resolve(completed ? &a->keep_complete : &a->keep_fail,
				completed ? &w->o.remove_on_complete : &w->o.remove_on_fail, &count,
				&age);
		char cnt[24], agebuf[24], attempts[16];
		snprintf(cnt, sizeof(cnt), "%" PRId64, count);
		snprintf(agebuf, sizeof(agebuf), "%" PRId64, age);
		snprintf(attempts, sizeof(attempts), "%d", a->job.attempts);
		new_token(w, next_token);
		const char *av[FINISH_ARGS] = {
			a->job.id,
			a->token,
			completed ? "completed" : "failed",
			completed ? (value ? value : "null")
				  : (res.failed_reason ? res.failed_reason : ""),
			"[]",
			cnt,
			agebuf,
			attempts,
			next_token,
			atm_after,
		};
		rc = finish_shared(s, av, &r);
		free(value);
		if (!rc && r->type == REDIS_REPLY_ARRAY && r->elements >= 1) {
			long long code = r->element[0]->integer;
			if (code < 0) {
				count_refusal(w, a->job.id, code);
			} else {
				atomic_fetch_add(completed ? &w->n_completed : &w->n_failed, 1);
				if (code == 1)
					note_recorded_before(w, a->job.id);
				if (r->elements == 2 && is_job(r->element[1])) {
					next->owner = r;
					next->job = r->element[1];
					r = NULL;
				} else if (r->elements == 2) {
					note_empty_fetch(w, r->element[1]);
				}
			}
		}
	}
	freeReplyObject(r);
	json_decref(res.returnvalue);
	fl_free(res.failed_reason);

	pthread_mutex_lock(&w->mu);
	unload_job(a);
	s->busy = false;
	s->finishing = false;
	w->busy--;
	if (next->owner)
		w->in_transit++;
	pthread_cond_broadcast(&w->cv_idle);
	pthread_mutex_unlock(&w->mu);
}

static void *slot_main(void *arg)
{
	struct bq_slot *s = arg;
	struct bq_worker *w = s->w;
	struct fetched cur = { 0 };
	char token[64], next_token[64];
	for (;;) {
		if (cur.owner && w->stopping)
			break;
		if (!cur.owner) {
			if (!wait_turn(w))
				break;
			if (!fetch(s, &cur, token)) {
				end_transit(w);
				break;
			}
			if (!cur.owner) {
				end_transit(w);
				continue;
			}
			give_turn(w); /* there may be more: let another idle slot look */
		}
		struct fetched next;
		run_job(s, &cur, token, &next, next_token);
		freeReplyObject(cur.owner);
		cur = next;
		memcpy(token, next_token, sizeof(token));
	}
	if (cur.owner) {
		/* fetched by a finish just as the worker stopped: give it back now */
		const char *av[2] = { cur.job->element[0]->str, token };
		redisReply *r;
		if (!bq_conn_eval(&s->conn, BQ_LUA_RELEASE, w->kp, 2, av, NULL, &r, NULL)) {
			if (r->type == REDIS_REPLY_ARRAY && r->elements == 1)
				atomic_fetch_add(&w->n_handed_back, 1);
			freeReplyObject(r);
		}
		freeReplyObject(cur.owner);
		end_transit(w);
	}
	return NULL;
}

/* ---- maintenance: lock renewal and the stalled check --------------------------------------- */

struct lock_ref {
	char id[256];
	char token[64];
};

/* Collects (id, token) of every job in flight whose lock we still believe we hold, under w->mu.
 * Jobs whose outcome is being recorded are left out unless with_finishing. */
static int collect_locks(struct bq_worker *w, struct lock_ref *refs, bool with_finishing)
{
	int n = 0;
	for (int i = 0; i < w->o.concurrency; i++) {
		struct bq_slot *s = &w->slots[i];
		if (!s->busy || atomic_load(&s->active.lost) || (s->finishing && !with_finishing))
			continue;
		snprintf(refs[n].id, sizeof(refs[n].id), "%s", s->active.job.id);
		snprintf(refs[n].token, sizeof(refs[n].token), "%s", s->active.token);
		n++;
	}
	return n;
}

/* Marks the job with this id and token lost, under w->mu. A job whose outcome is on its way is
 * not: its finish may be what removed the lock a renewal found missing, and the finish's own
 * lock check gives the verdict (count_refusal). */
static void mark_lost(struct bq_worker *w, const char *id, const char *token)
{
	for (int i = 0; i < w->o.concurrency; i++) {
		struct bq_slot *s = &w->slots[i];
		if (!s->busy || s->finishing || strcmp(s->active.token, token) ||
		    strcmp(s->active.job.id, id))
			continue;
		if (atomic_exchange(&s->active.lost, true))
			return;
		fl_warn(COMPONENT, "queue '%s' job '%s': lock lost", w->queue, id);
		if (w->o.lock_lost)
			w->o.lock_lost(w->o.arg, &s->active.job);
	}
}

static int renew_locks(struct bq_worker *w, struct lock_ref *refs, const char **av)
{
	/* A job being finished keeps its lock renewed: that finish may be waiting out an outage. */
	pthread_mutex_lock(&w->mu);
	int n = collect_locks(w, refs, true);
	pthread_mutex_unlock(&w->mu);
	if (n == 0)
		return 0;
	char lock_ms[16];
	snprintf(lock_ms, sizeof(lock_ms), "%d", w->o.lock_duration_ms);
	av[0] = lock_ms;
	for (int i = 0; i < n; i++) {
		av[1 + 2 * i] = refs[i].id;
		av[2 + 2 * i] = refs[i].token;
	}
	redisReply *r;
	struct fl_err err = { 0 };
	int rc = bq_conn_eval(&w->maint_conn, BQ_LUA_EXTEND_LOCKS, w->kp, 1 + 2 * n, av, NULL, &r,
			      &err);
	if (rc) {
		fl_warn(COMPONENT, "queue '%s': lock renewal: %s", w->queue, err.msg);
		return rc;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
		pthread_mutex_lock(&w->mu);
		for (size_t i = 0; i < r->elements; i++)
			for (int j = 0; j < n; j++)
				if (!strcmp(refs[j].id, r->element[i]->str))
					mark_lost(w, refs[j].id, refs[j].token);
		pthread_mutex_unlock(&w->mu);
	}
	freeReplyObject(r);
	return 0;
}

static int check_stalled(struct bq_worker *w)
{
	char now[24], max[16], interval[16];
	snprintf(now, sizeof(now), "%" PRId64, fl_now_ms());
	snprintf(max, sizeof(max), "%d", w->o.max_stalled_count);
	snprintf(interval, sizeof(interval), "%d", w->o.stalled_interval_ms);
	const char *av[3] = { now, max, interval };
	redisReply *r;
	struct fl_err err = { 0 };
	int rc = bq_conn_eval(&w->maint_conn, BQ_LUA_STALLED, w->kp, 3, av, NULL, &r, &err);
	if (rc) {
		fl_warn(COMPONENT, "queue '%s': stalled check: %s", w->queue, err.msg);
		return rc;
	}
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
		fl_warn(COMPONENT, "queue '%s' job '%s' stalled: moved back to wait", w->queue,
			r->element[i]->str);
	freeReplyObject(r);
	return 0;
}

static void *maint_main(void *arg)
{
	struct bq_worker *w = arg;
	struct lock_ref *refs = fl_calloc((size_t)w->o.concurrency, sizeof(*refs));
	const char **av = fl_calloc((size_t)w->o.concurrency * 2 + 1, sizeof(*av));
	int64_t next_renew = fl_mono_ms() + w->o.lock_renew_ms;
	int64_t next_stalled = fl_mono_ms();
	bool stalled_on = w->o.stalled_interval_ms > 0;
	for (;;) {
		pthread_mutex_lock(&w->mu);
		int64_t now;
		for (;;) {
			now = fl_mono_ms();
			int64_t due = next_renew;
			if (stalled_on && next_stalled < due)
				due = next_stalled;
			if (w->maint_stop || now >= due)
				break;
			struct timespec ts = abs_time(CLOCK_MONOTONIC, due - now);
			pthread_cond_timedwait(&w->cv_maint, &w->mu, &ts);
		}
		bool stop = w->maint_stop;
		pthread_mutex_unlock(&w->mu);
		if (stop)
			break;
		if (now >= next_renew) {
			int rc = renew_locks(w, refs, av);
			/* a failed renewal is retried soon: the lock may still be saved */
			next_renew = now + (rc ? (w->o.lock_renew_ms < 1000 ? w->o.lock_renew_ms : 1000)
					       : w->o.lock_renew_ms);
			atomic_store(&w->maint_connected, rc == 0);
		}
		if (stalled_on && now >= next_stalled) {
			int rc = check_stalled(w);
			next_stalled = now + (rc ? 1000 : w->o.stalled_interval_ms);
			atomic_store(&w->maint_connected, rc == 0);
		}
	}
	fl_free(refs);
	fl_free(av);
	return NULL;
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

static void free_worker(struct bq_worker *w)
{
	for (int i = 0; w->slots && i < w->o.concurrency; i++)
		bq_conn_release(&w->slots[i].conn);
	fl_free(w->slots);
	bq_conn_release(&w->block_conn);
	bq_conn_release(&w->maint_conn);
	for (char **n = w->job_names; n && *n; n++)
		fl_free(*n);
	fl_free(w->job_names);
	fl_free(w->prefix);
	fl_free(w->queue);
	fl_free(w->url);
	fl_free(w->worker_name);
	fl_free(w->kp);
	fl_free(w->marker_key);
	pthread_mutex_destroy(&w->mu);
	pthread_mutex_destroy(&w->block_mu);
	pthread_cond_destroy(&w->cv_slots);
	pthread_cond_destroy(&w->cv_waiter);
	pthread_cond_destroy(&w->cv_idle);
	pthread_cond_destroy(&w->cv_maint);
	pthread_mutex_destroy(&w->fin_mu);
	pthread_cond_destroy(&w->cv_fin);
	fl_free(w);
}

int bq_worker_new(const struct bq_worker_opts *opts, struct bq_worker **out, struct fl_err *err)
{
	*out = NULL;
	if (!opts->queue || !*opts->queue || !opts->process)
		return fl_err_set(err, FL_EINVAL, "a worker needs a queue name and a processor");
	if (opts->concurrency < 1 || opts->concurrency > 10000)
		return fl_err_set(err, FL_EINVAL, "worker concurrency %d is outside 1..10000",
				  opts->concurrency);
	if (opts->lock_duration_ms < 100)
		return fl_err_set(err, FL_EINVAL, "lock duration %d ms is under 100 ms",
				  opts->lock_duration_ms);
	if (opts->max_stalled_count < 0)
		return fl_err_set(err, FL_EINVAL, "max stalled count must not be negative");

	struct bq_worker *w = fl_calloc(1, sizeof(*w));
	w->o = *opts;
	if (w->o.lock_renew_ms <= 0 || w->o.lock_renew_ms > w->o.lock_duration_ms / 2)
		w->o.lock_renew_ms = w->o.lock_duration_ms / 2;
	if (w->o.drain_delay_ms <= 0 || w->o.drain_delay_ms > 10000)
		w->o.drain_delay_ms = w->o.drain_delay_ms <= 0 ? 5000 : 10000;
	w->prefix = fl_strdup(opts->prefix ? opts->prefix : "bull");
	w->queue = fl_strdup(opts->queue);
	w->url = fl_strdup(opts->redis_url ? opts->redis_url : "");
	w->worker_name = fl_strdup(opts->worker_name ? opts->worker_name : "");
	w->o.prefix = w->prefix;
	w->o.queue = w->queue;
	w->o.redis_url = w->url;
	w->o.worker_name = w->worker_name;
	if (opts->job_names) {
		size_t n = 0;
		while (opts->job_names[n])
			n++;
		w->job_names = fl_calloc(n + 1, sizeof(char *));
		for (size_t i = 0; i < n; i++)
			w->job_names[i] = fl_strdup(opts->job_names[i]);
	}
	w->o.job_names = NULL;
	w->kp = bq_key_prefix(w->prefix, w->queue);
	w->marker_key = fl_asprintf("%smarker", w->kp);
	fl_uuid4(w->token_base);
	pthread_mutex_init(&w->mu, NULL);
	pthread_mutex_init(&w->block_mu, NULL);
	pthread_mutex_init(&w->fin_mu, NULL);
	pthread_cond_init(&w->cv_fin, NULL);
	w->fin_tail = &w->fin_head;
	init_cond(&w->cv_slots, CLOCK_MONOTONIC);
	init_cond(&w->cv_waiter, CLOCK_REALTIME);
	init_cond(&w->cv_idle, CLOCK_MONOTONIC);
	init_cond(&w->cv_maint, CLOCK_MONOTONIC);
	w->slots = fl_calloc((size_t)w->o.concurrency, sizeof(*w->slots));

	char *client = bq_client_name(w->prefix, w->queue);
	int rc = bq_conn_init(&w->block_conn, w->url, client, w->o.drain_delay_ms + 10000, err);
	fl_free(client);
	if (!rc)
		rc = bq_conn_init(&w->maint_conn, w->url, NULL, 10000, err);
	for (int i = 0; !rc && i < w->o.concurrency; i++) {
		w->slots[i].w = w;
		w->slots[i].index = i;
		rc = bq_conn_init(&w->slots[i].conn, w->url, NULL, 10000, err);
	}
	if (rc) {
		free_worker(w);
		return rc;
	}
	bq_conn_check_server(&w->maint_conn);
	atomic_store(&w->maint_connected, true);

	w->turns = 1; /* look for work at once */
	rc = pthread_create(&w->maint, NULL, maint_main, w);
	w->maint_started = rc == 0;
	if (!rc) {
		rc = pthread_create(&w->waiter, NULL, waiter_main, w);
		w->waiter_started = rc == 0;
	}
	for (int i = 0; !rc && i < w->o.concurrency; i++) {
		rc = pthread_create(&w->slots[i].thread, NULL, slot_main, &w->slots[i]);
		w->slots[i].started = rc == 0;
	}
	if (rc) {
		fl_err_set(err, -rc, "cannot start worker threads: %s", strerror(rc));
		bq_worker_free(w);
		return -rc;
	}
	*out = w;
	return 0;
}

int bq_worker_stop(struct bq_worker *w, int grace_ms)
{
	pthread_mutex_lock(&w->mu);
	if (w->stopped) {
		pthread_mutex_unlock(&w->mu);
		return 0;
	}
	w->stopping = true;
	pthread_cond_broadcast(&w->cv_slots);
	pthread_cond_broadcast(&w->cv_waiter);
	pthread_mutex_unlock(&w->mu);
	interrupt_waiter(w);

	pthread_mutex_lock(&w->mu);
	int64_t deadline = fl_mono_ms() + (grace_ms > 0 ? grace_ms : 0);
	while (w->busy > 0 && fl_mono_ms() < deadline) {
		struct timespec ts = abs_time(CLOCK_MONOTONIC, deadline - fl_mono_ms());
		pthread_cond_timedwait(&w->cv_idle, &w->mu, &ts);
	}
	/* A slot that fetched just as the stop began either starts it (busy) or gives it back
	 * itself; wait for that, a Redis round trip at most, so the count below is whole. */
	int64_t transit_deadline = fl_mono_ms() + 15000;
	while (w->in_transit > 0 && fl_mono_ms() < transit_deadline) {
		struct timespec ts = abs_time(CLOCK_MONOTONIC, 100);
		pthread_cond_timedwait(&w->cv_idle, &w->mu, &ts);
	}
	w->maint_stop = true;
	pthread_cond_broadcast(&w->cv_maint);
	pthread_mutex_unlock(&w->mu);
	if (w->maint_started) {
		pthread_join(w->maint, NULL);
		w->maint_started = false;
	}
	/* maint_conn is ours from here on */

	/* Jobs still running are handed back now; their own finish will be refused. A job whose
	 * processor has returned is not: its outcome is being recorded, and handing it back would
	 * run it a second time. */
	pthread_mutex_lock(&w->mu);
	struct lock_ref *refs = fl_calloc((size_t)w->o.concurrency, sizeof(*refs));
	int n = collect_locks(w, refs, false);
	for (int i = 0; i < n; i++)
		mark_lost(w, refs[i].id, refs[i].token);
	pthread_mutex_unlock(&w->mu);
	int handed = 0;
	if (n > 0) {
		const char **av = fl_calloc((size_t)n * 2, sizeof(*av));
		for (int i = 0; i < n; i++) {
			av[2 * i] = refs[i].id;
			av[2 * i + 1] = refs[i].token;
		}
		redisReply *r = NULL;
		struct fl_err err = { 0 };
		if (bq_conn_eval(&w->maint_conn, BQ_LUA_RELEASE, w->kp, 2 * n, av, NULL, &r, &err))
			fl_warn(COMPONENT,
				"queue '%s': cannot hand %d jobs back: %s; they return after their "
				"locks expire",
				w->queue, n, err.msg);
		else if (r->type == REDIS_REPLY_ARRAY)
			handed = (int)r->elements;
		freeReplyObject(r);
		fl_free(av);
		if (handed)
			fl_info(COMPONENT, "queue '%s': handed %d unfinished jobs back to wait",
				w->queue, handed);
	}
	fl_free(refs);
	/* Outcomes on their way take a Redis round trip; wait for them so that the stats and the
	 * count returned are whole. Past the lock duration they would be refused anyway, and a
	 * Redis that stays away must not hold the stop for long. */
	pthread_mutex_lock(&w->mu);
	int64_t finish_deadline =
		fl_mono_ms() + (w->o.lock_duration_ms < 15000 ? w->o.lock_duration_ms : 15000);
	while (fl_mono_ms() < finish_deadline) {
		bool finishing = false;
		for (int i = 0; i < w->o.concurrency; i++)
			finishing |= w->slots[i].busy && w->slots[i].finishing;
		if (!finishing)
			break;
		struct timespec ts = abs_time(CLOCK_MONOTONIC, 100);
		pthread_cond_timedwait(&w->cv_idle, &w->mu, &ts);
	}
	w->stopped = true;
	pthread_mutex_unlock(&w->mu);
	return handed + atomic_load(&w->n_handed_back);
}

void bq_worker_free(struct bq_worker *w)
{
	if (!w)
		return;
	bq_worker_stop(w, 0);
	pthread_mutex_lock(&w->mu);
	w->hard_stop = true;
	pthread_cond_broadcast(&w->cv_slots);
	pthread_mutex_unlock(&w->mu);
	for (int i = 0; i < w->o.concurrency; i++)
		if (w->slots[i].started)
			pthread_join(w->slots[i].thread, NULL);
	if (w->waiter_started)
		pthread_join(w->waiter, NULL);
	free_worker(w);
}

void bq_worker_get_stats(struct bq_worker *w, struct bq_worker_stats *st)
{
	st->completed = atomic_load(&w->n_completed);
	st->finish_calls = atomic_load(&w->n_finish_calls);
	st->failed = atomic_load(&w->n_failed);
	st->retried = atomic_load(&w->n_retried);
	st->lost = atomic_load(&w->n_lost);
	pthread_mutex_lock(&w->mu);
	st->busy = w->busy;
	pthread_mutex_unlock(&w->mu);
	st->connected = atomic_load(&w->maint_connected);
}

/* ---- calls from inside the processor ------------------------------------------------------- */

static struct bq_active *active_of(const struct bq_job *job)
{
	return (struct bq_active *)((char *)job - offsetof(struct bq_active, job));
}

bool bq_job_lock_lost(const struct bq_job *job)
{
	return atomic_load(&active_of(job)->lost);
}

static int job_script(const struct bq_job *job, enum bq_script script, int argc,
		      const char **av, struct fl_err *err)
{
	struct bq_active *a = active_of(job);
	struct bq_slot *s = a->slot;
	redisReply *r;
	int rc = bq_conn_eval(&s->conn, script, s->w->kp, argc, av, NULL, &r, err);
	if (rc)
		return rc;
	long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
	freeReplyObject(r);
	if (v < 0)
		return fl_err_set(err, FL_ENOTFOUND, "job '%s' no longer exists", job->id);
	return 0;
}

int bq_job_progress(const struct bq_job *job, const char *progress, struct fl_err *err)
{
	json_error_t je;
	json_t *v = json_loads(progress, JSON_DECODE_ANY, &je);
	if (!v)
		return fl_err_set(err, FL_EINVAL, "progress is not valid JSON: %s", je.text);
	json_decref(v);
	const char *av[2] = { job->id, progress };
	return job_script(job, BQ_LUA_PROGRESS, 2, av, err);
}

int bq_job_log(const struct bq_job *job, const char *line, struct fl_err *err)
{
	char keep[16];
	snprintf(keep, sizeof(keep), "%d", active_of(job)->keep_logs);
	const char *av[3] = { job->id, line, keep };
	return job_script(job, BQ_LUA_LOG, 3, av, err);
}
