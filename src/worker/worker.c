/* The worker: see worker.h. Each BullMQ slot thread runs one job at a time through
 * run_job(): start the delivery at the app, hand the operation to the slot's engine, relay the
 * engine's events (checkpoints are persisted at the app before the engine is acknowledged), post
 * the result, and only then let BullMQ finish the job. */
#include "worker/worker.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/secret.h"
#include "core/time.h"
#include "core/token.h"
#include "engine/proto.h"
#include "net/egress.h"
#include "net/policy.h"
#include "sandbox/host.h"
#include "sandbox/root.h"
#include "sandbox/sandbox.h"
#include "sandbox/zygote.h"
#include "queue/bq.h"
#include "worker/app_client.h"
#include "worker/engine_proc.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The file under AP_CONFIG_PATH where the app keeps a generated AP_JWT_SECRET. */
#define JWT_SECRET_FILE "jwt-secret"

/* Extra time the engine's own JavaScript limit gets beyond the flow timeout, so that a runaway
 * script is stopped by the worker's deadline (TIMEOUT) and not by the engine (a FAILED step). */
#define JS_LIMIT_SLACK_MS 5000

/* A Prometheus histogram of durations, in µs internally. */
#define WK_HIST_BUCKETS 11
static const int64_t hist_bounds_us[WK_HIST_BUCKETS] = { 500,   1000,  2000,   3000,   5000,  10000,
							  25000, 50000, 100000, 250000, 1000000 };
/* Checkpoints are a round trip to the app and a commit: a fraction of a millisecond. */
static const int64_t checkpoint_bounds_us[WK_HIST_BUCKETS] = { 50,   100,  200,   300,    500,   1000,
								2000, 5000, 10000, 50000, 250000 };

struct wk_hist {
	const int64_t *bounds; /* NULL: hist_bounds_us */
	atomic_ullong bucket[WK_HIST_BUCKETS + 1]; /* the last one: +Inf */
	atomic_ullong sum_us;
	atomic_ullong count;
};

static const int64_t *hist_bounds(const struct wk_hist *h)
{
	return h->bounds ? h->bounds : hist_bounds_us;
}

static void hist_add(struct wk_hist *h, int64_t us)
{
	const int64_t *bounds = hist_bounds(h);
	int i = 0;
	while (i < WK_HIST_BUCKETS && us > bounds[i])
		i++;
	atomic_fetch_add(&h->bucket[i], 1);
	atomic_fetch_add(&h->sum_us, (unsigned long long)(us > 0 ? us : 0));
	atomic_fetch_add(&h->count, 1);
}

static void hist_print(struct fl_buf *out, const char *name, const char *help,
		       const struct wk_hist *h)
{
	fl_buf_addf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	const int64_t *bounds = hist_bounds(h);
	unsigned long long cum = 0;
	for (int i = 0; i <= WK_HIST_BUCKETS; i++) {
		cum += atomic_load(&h->bucket[i]);
		if (i < WK_HIST_BUCKETS)
			fl_buf_addf(out, "%s_bucket{le=\"%g\"} %llu\n", name,
				    (double)bounds[i] / 1e6, cum);
		else
			fl_buf_addf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, cum);
	}
	fl_buf_addf(out, "%s_sum %.6f\n%s_count %llu\n", name,
		    (double)atomic_load(&h->sum_us) / 1e6, name,
		    (unsigned long long)atomic_load(&h->count));
}

struct slot {
	struct wk_worker *w;
	int index;
	struct wk_proc engine;
	pthread_mutex_t lock;       /* guards engine.pid against lock_lost's kill */
	atomic_int lost;            /* the running job's lock was lost */
	int netns_fd;               /* STRICT process sandboxes: this slot's empty netns, or -1 */
	/* Process modes: the engine was started and warmed up for the slot's next job while the
	 * slot was idle (prespawn_engine), taking what a fresh sandbox costs off the job's path;
	 * what that cost, for the job's log line. */
	int prespawned;
	int64_t prespawn_start_us, prespawn_warm_us;
	/* The flow version ids sent with their version to the slot's engine process, oldest
	 * first: as the engine keeps them (ENG_PROTO_FLOWS_KEPT), so that an operation for one of
	 * them need not carry the version again. Emptied whenever a new engine starts. */
	char flows_sent[ENG_PROTO_FLOWS_KEPT][64];
	int n_flows_sent;
};

struct wk_worker {
	const struct fl_config *cfg;
	char *app_url;
	char *jwt_secret;
	char *engine_exe;
	wk_app_local_fn app_local;
	void *app_local_arg;
	char worker_name[96];
	struct bq_worker *queue;
	/* Process-sandbox modes: what the host offers, what sandboxes see, the zygote that forks
	 * them with JavaScriptCore already loaded (one spawn at a time), and under STRICT the
	 * egress broker that is their only way out. */
	struct sb_host host;
	struct sb_root *root;
	struct sb_zygote *zygote;
	pthread_mutex_t zygote_lock;
	struct net_policy *policy;
	struct net_egress *egress;
	struct slot *slots;
	int n_slots;
	atomic_int stopping;        /* hard stop: abandon retries to the app */
	atomic_int stop_requested;  /* wk_worker_stop began: a job lost from now on was handed back */
	/* FLOWD_BENCH_NO_CHECKPOINT=1: engines wait for no checkpoint, so nothing is durable
	 * before a run ends. Only bench/durability.sh sets it, to measure what durability costs. */
	int no_checkpoint;
	/* metrics */
	atomic_int engines_running;
	atomic_int engines_peak;
	atomic_ullong engines_started;
	atomic_ullong runs_by_status[8];
	atomic_ullong jobs_rejected;
	/* From asking for a new engine to its ready line, and from a job asking for its engine
	 * to its first step finished (for a code step: JavaScriptCore's VM started if it was not,
	 * a context made, the step evaluated): what a sandbox mode adds to a job's path. */
	struct wk_hist engine_start;
	struct wk_hist first_step;
	struct wk_hist checkpoint;
};

static const char *const final_statuses[] = { "SUCCEEDED", "FAILED",  "PAUSED",
					       "TIMEOUT",   "INTERNAL_ERROR", "MEMORY_LIMIT_EXCEEDED",
					       "LOG_SIZE_EXCEEDED", NULL };

static void count_status(struct wk_worker *w, const char *status)
{
	for (int i = 0; final_statuses[i]; i++)
		if (!strcmp(final_statuses[i], status))
			atomic_fetch_add(&w->runs_by_status[i], 1);
}

char *wk_jwt_secret(const struct fl_config *cfg, int create, struct fl_err *err)
{
	if (cfg->jwt_secret)
		return fl_strdup(cfg->jwt_secret);
	char *secret = NULL;
	int created;
	int rc = create ? fl_secret_load_or_create(cfg->config_path, JWT_SECRET_FILE, &secret,
						   &created, err)
			: fl_secret_read(cfg->config_path, JWT_SECRET_FILE, &secret, err);
	if (rc) {
		fl_err_prefix(err, "AP_JWT_SECRET is not set and the generated secret cannot be read");
		return NULL;
	}
	return secret;
}

/* ---- one job ------------------------------------------------------------------------------ */

struct job_run {
	struct slot *slot;
	const struct bq_job *job;
	const char *run_id;
	struct wk_call call;
	json_int_t attempt;
	char path[128];
	json_t *pending;  /* [{path, record}] not yet posted */
	json_t *replayed; /* [path] the engine reused and that were not posted yet */
	json_t *op;       /* the operation sent to the engine, kept to send it again */
	json_t *waitpoint;
	json_t *running;  /* paths of the steps started and not finished, innermost last */
	const json_t *flow_version; /* borrowed from the start context */
	int64_t engine_start_us; /* this job's engine was started for it: spawn to ready line; or -1 */
	int64_t engine_warm_us;  /* it was started and warmed up ahead of the job: the warm-up; or -1 */
	int64_t first_step_us;   /* job asked for an engine to its first step finished; else -1 */
	int64_t engine_cpu_ns;   /* the engine's CPU time for the operation, as it reported; or -1 */
};

static int give_up(void *arg)
{
	struct job_run *r = arg;
	return atomic_load(&r->slot->lost) || atomic_load(&r->slot->w->stopping) ||
	       bq_job_lock_lost(r->job);
}

static void fail_no_retry(struct bq_result *result, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void fail_no_retry(struct bq_result *result, const char *fmt, ...)
{
	struct fl_buf b = FL_BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	fl_buf_vaddf(&b, fmt, ap);
	va_end(ap);
	result->outcome = BQ_FAILED_NO_RETRY;
	result->failed_reason = fl_buf_detach(&b, NULL);
}

/* Posts to /v1/engine/runs/<id>/<what>. Returns the HTTP status, or a negative code when the
 * call was abandoned (lost lock, hard stop). */
static long post(struct job_run *r, const char *what, json_t *body_take, json_t **reply,
		 struct fl_err *err)
{
	char path[192];
	snprintf(path, sizeof path, "/v1/engine/runs/%s/%s", r->run_id, what);
	long status = 0;
	int rc = wk_app_call(&r->call, "POST", path, body_take, &status, reply, err);
	json_decref(body_take);
	return rc ? rc : status;
}

static int process_sandbox(enum fl_execution_mode m)
{
	return m == FL_EXEC_SANDBOX_PROCESS || m == FL_EXEC_SANDBOX_CODE_AND_PROCESS;
}

/* Starts the slot's engine as the execution mode says. Called with s->lock held. */
static int spawn_engine(struct slot *s, struct fl_err *err)
{
	struct wk_worker *w = s->w;
	const struct fl_config *cfg = w->cfg;
	char level[64], pretty[64], egress_env[64] = "";
	snprintf(level, sizeof level, "AP_LOG_LEVEL=%s",
		 (const char *[]){ "debug", "info", "warn", "error", "fatal" }[cfg->log_level]);
	snprintf(pretty, sizeof pretty, "AP_LOG_PRETTY=%s", cfg->log_pretty ? "true" : "false");
	char *envp[] = { "LANG=C.UTF-8", "PATH=/usr/bin:/bin", level, pretty, egress_env, NULL };
	if (!process_sandbox(cfg->execution_mode)) {
		char *argv[] = { w->engine_exe, "engine",
				 cfg->execution_mode == FL_EXEC_SANDBOX_CODE_ONLY ? "--code-only" : NULL,
				 NULL };
		envp[4] = NULL;
		return wk_proc_spawn(&s->engine, argv, envp, cfg->sandbox_memory_limit_kb, err);
	}
	struct sb_opts o;
	sb_opts_init(&o, &w->host, w->root);
	o.limits.memory_bytes = cfg->sandbox_memory_limit_kb * 1024;
	o.envp = envp;
	if (cfg->execution_mode == FL_EXEC_SANDBOX_CODE_AND_PROCESS)
		o.flags |= SB_CODE_FILTER;
	int egress_fd = -1;
	if (w->egress) {
		/* STRICT: no network but the broker's connection, which becomes fd 3. */
		o.flags |= SB_NET | SB_DENY_INET;
		o.netns_fd = s->netns_fd;
		int rc = net_egress_open_client(w->egress, &egress_fd, err);
		if (rc)
			return rc;
		snprintf(egress_env, sizeof egress_env, "%s=3", NET_EGRESS_FD_ENV);
	} else {
		envp[4] = NULL;
	}
	char *argv[] = { w->engine_exe, "engine", NULL };
	pthread_mutex_lock(&w->zygote_lock);
	int rc = wk_proc_spawn_sandboxed(&s->engine, &o, w->zygote, argv, egress_fd, err);
	pthread_mutex_unlock(&w->zygote_lock);
	if (egress_fd >= 0)
		close(egress_fd);
	return rc;
}

/* Starts the slot's engine and waits for its ready line; *start_us is how long that took. */
static int start_engine(struct slot *s, int64_t *start_us, struct fl_err *err)
{
	struct wk_worker *w = s->w;
	int64_t t0 = fl_mono_us();
	pthread_mutex_lock(&s->lock);
	int rc = spawn_engine(s, err);
	pthread_mutex_unlock(&s->lock);
	s->n_flows_sent = 0;
	if (rc)
		return rc;
	int running = atomic_fetch_add(&w->engines_running, 1) + 1;
	int peak = atomic_load(&w->engines_peak);
	while (running > peak && !atomic_compare_exchange_weak(&w->engines_peak, &peak, running))
		;
	atomic_fetch_add(&w->engines_started, 1);
	char *line = NULL;
	rc = wk_proc_recv(&s->engine, fl_mono_ms() + 10000, &line);
	json_t *ready = rc ? NULL : fl_json_loads(line, 0, NULL);
	fl_free(line);
	const char *type = json_string_value(json_object_get(ready, "type"));
	if (!type || strcmp(type, "ready")) {
		json_decref(ready);
		return fl_err_set(err, FL_EPROTO, "engine did not start (no ready line)");
	}
	json_decref(ready);
	*start_us = fl_mono_us() - t0;
	hist_add(&w->engine_start, *start_us);
	return 0;
}

static int ensure_engine(struct job_run *r, struct fl_err *err)
{
	struct slot *s = r->slot;
	if (wk_proc_alive(&s->engine)) {
		if (s->prespawned) {
			r->engine_start_us = s->prespawn_start_us;
			r->engine_warm_us = s->prespawn_warm_us;
			s->prespawned = 0;
		}
		return 0;
	}
	return start_engine(s, &r->engine_start_us, err);
}

static void drop_engine(struct slot *s, int kill_first, struct wk_exit *ex)
{
	pthread_mutex_lock(&s->lock);
	int had = wk_proc_alive(&s->engine);
	wk_proc_finish(&s->engine, kill_first, ex);
	pthread_mutex_unlock(&s->lock);
	if (had)
		atomic_fetch_sub(&s->w->engines_running, 1);
}

/* What the engine waits for after a checkpoint or a pause, written as fl_json_write would. */
static const char ack_line[] = "{\"type\":\"ack\",\"ok\":true}";

static int ack_engine(struct slot *s)
{
	return wk_proc_send(&s->engine, ack_line, sizeof ack_line - 1);
}

static int reply_engine(struct slot *s, json_t *msg_take)
{
	char *text = fl_json_dump(msg_take);
	json_decref(msg_take);
	int rc = wk_proc_send(&s->engine, text, strlen(text));
	free(text);
	return rc;
}

/* The store piece: relayed to the app's /v1/engine/store. */
static void relay_store(struct job_run *r, json_t *ev)
{
	const char *op = json_string_value(json_object_get(ev, "op"));
	const char *key = json_string_value(json_object_get(ev, "key"));
	json_t *answer = json_pack("{ss}", "type", "store_result");
	if (!op || !key) {
		json_object_set_new(answer, "error", json_string("store request without op or key"));
		reply_engine(r->slot, answer);
		return;
	}
	char *escaped = curl_easy_escape(NULL, key, 0);
	char path[512];
	snprintf(path, sizeof path, "/v1/engine/store?key=%s", escaped ? escaped : "");
	curl_free(escaped);
	const char *method = !strcmp(op, "get") ? "GET" : !strcmp(op, "put") ? "PUT" : "DELETE";
	json_t *body = !strcmp(op, "put") ? json_pack("{sO}", "value", json_object_get(ev, "value"))
					  : NULL;
	if (body && !json_object_get(body, "value"))
		json_object_set_new(body, "value", json_null());
	long status = 0;
	json_t *reply = NULL;
	struct fl_err err;
	int rc = wk_app_call(&r->call, method, path, body, &status, &reply, &err);
	json_decref(body);
	if (rc) {
		json_object_set_new(answer, "error", json_string(err.msg));
	} else if (!strcmp(op, "get")) {
		json_object_set_new(answer, "found", json_boolean(status == 200));
		if (status == 200)
			json_object_set(answer, "value", json_object_get(reply, "value"));
		else if (status != 404)
			json_object_set_new(answer, "error", json_sprintf("store answered %ld", status));
	} else if (status >= 300) {
		const char *msg = json_string_value(json_object_get(reply, "error"));
		json_object_set_new(answer, "error",
				    json_sprintf("store %s failed: %s", op, msg ? msg : "app refused"));
	}
	json_decref(reply);
	reply_engine(r->slot, answer);
}

/* Posts the records kept so far; 0, or the HTTP status / negative code that stopped it. */
static long flush_steps(struct job_run *r, struct fl_err *err)
{
	if (!json_array_size(r->pending))
		return 0;
	json_t *body = json_pack("{sIsO}", "attempt", r->attempt, "steps", r->pending);
	if (json_array_size(r->replayed))
		json_object_set(body, "replayed", r->replayed);
	long st = post(r, "steps", body, NULL, err);
	if (st >= 200 && st < 300) {
		json_array_clear(r->pending);
		json_array_clear(r->replayed);
		return 0;
	}
	return st;
}

/* Posts the result and decides the job's fate. */
static void finish_run(struct job_run *r, json_t *result_take, struct bq_result *out)
{
	/* Copied: result_take is gone once posted. */
	char status[32];
	snprintf(status, sizeof status, "%s",
		 json_string_value(json_object_get(result_take, "status")) ?: "INTERNAL_ERROR");
	struct wk_worker *w = r->slot->w;
	int retryable = !strcmp(status, "INTERNAL_ERROR") &&
			r->job->attempts_made + 1 < r->job->attempts;
	json_object_set_new(result_take, "attempt", json_integer(r->attempt));
	if (json_array_size(r->pending))
		json_object_set(result_take, "records", r->pending);
	if (json_array_size(r->replayed))
		json_object_set(result_take, "replayed", r->replayed);
	if (retryable)
		json_object_set_new(result_take, "final", json_false());
	if (r->waitpoint && !json_object_get(result_take, "waitpoint"))
		json_object_set(result_take, "waitpoint", r->waitpoint);
	struct fl_err err;
	json_t *reply = NULL;
	long st = post(r, "result", result_take, &reply, &err);
	if (st < 0) {
		out->outcome = BQ_FAILED;
		out->failed_reason = fl_asprintf("result not delivered: %s", err.msg);
	} else if (st == 409) {
		/* A later delivery owns the run: this attempt's job finishes quietly. */
		out->outcome = BQ_COMPLETED;
		out->returnvalue = json_pack("{ss}", "superseded", r->run_id);
	} else if (st >= 300) {
		const char *msg = json_string_value(json_object_get(reply, "error"));
		out->outcome = BQ_FAILED_NO_RETRY;
		out->failed_reason = fl_asprintf("app refused the result (%ld): %s", st,
						 msg ? msg : "no reason given");
	} else if (retryable) {
		out->outcome = BQ_FAILED;
		out->failed_reason = fl_asprintf("engine failed: %s", status);
	} else {
		out->outcome = BQ_COMPLETED;
		out->returnvalue = json_pack("{ssss}", "runId", r->run_id, "status", status);
	}
	count_status(w, status);
	json_decref(reply);
	/* The fields are built only for a log that shows them: below info, each run would pay
	 * for a line nobody reads. */
	if (!fl_log_enabled(FL_LOG_INFO))
		return;
	json_t *fields = json_pack("{sssssIsi}", "runId", r->run_id, "status", status, "attempt",
				   r->attempt, "slot", r->slot->index);
	if (r->engine_start_us >= 0)
		json_object_set_new(fields, "engineStartUs", json_integer(r->engine_start_us));
	if (r->engine_warm_us >= 0)
		json_object_set_new(fields, "engineWarmUs", json_integer(r->engine_warm_us));
	if (r->first_step_us >= 0)
		json_object_set_new(fields, "firstStepDoneUs", json_integer(r->first_step_us));
	if (r->engine_cpu_ns >= 0)
		json_object_set_new(fields, "engineCpuNs", json_integer(r->engine_cpu_ns));
	fl_log_fields(FL_LOG_INFO, "worker", fields, "run finished");
}

/* The displayName of the step called name anywhere in the flow version (also inside an export
 * or a template wrapper), or "". */
static const char *display_name_of(const json_t *v, const char *name, int depth)
{
	if (depth > 64)
		return NULL;
	if (json_is_object(v)) {
		const char *n = json_string_value(json_object_get(v, "name"));
		const char *d = json_string_value(json_object_get(v, "displayName"));
		if (n && d && !strcmp(n, name))
			return d;
		const char *key;
		json_t *child;
		json_object_foreach((json_t *)v, key, child) {
			const char *found = display_name_of(child, name, depth + 1);
			if (found)
				return found;
		}
	} else if (json_is_array(v)) {
		size_t i;
		json_t *child;
		json_array_foreach(v, i, child) {
			const char *found = display_name_of(child, name, depth + 1);
			if (found)
				return found;
		}
	}
	return NULL;
}

/* A result the worker decides (the engine died, broke the protocol, or was stopped). Its
 * failedStep names the step that was running, so that the run record says where and why. */
static json_t *status_result(struct job_run *r, const char *status, const char *message)
{
	json_t *res = json_pack("{ss}", "status", status);
	if (!message)
		return res;
	json_object_set_new(res, "error", json_string(message));
	const char *path = json_string_value(json_array_get(r->running,
							    json_array_size(r->running) - 1));
	const char *name = "";
	if (path) {
		const char *dot = strrchr(path, '.');
		name = dot ? dot + 1 : path;
	}
	char step[128];
	snprintf(step, sizeof step, "%.*s", (int)strcspn(name, "["), name);
	const char *display = step[0] ? display_name_of(r->flow_version, step, 0) : NULL;
	json_object_set_new(res, "failedStep",
			    json_pack("{s:s, s:s, s:s}", "name", step, "displayName",
				      display ? display : "", "message", message));
	return res;
}

/* Keeps r->running in step with the engine's step_started / step_finished events. */
static void track_step(struct job_run *r, const char *type, const json_t *ev)
{
	const json_t *path = json_object_get(ev, "path");
	if (!json_is_string(path))
		return;
	if (!strcmp(type, "step_started")) {
		json_array_append(r->running, (json_t *)path);
		return;
	}
	for (size_t i = json_array_size(r->running); i-- > 0;) {
		if (json_equal(json_array_get(r->running, i), path)) {
			json_array_remove(r->running, i);
			break;
		}
	}
}

/* A run operation without its flow: the limits and network every run of this worker gets. The
 * engine keeps its JavaScript VM across operations whose limits and network are the same. */
static json_t *run_op(struct wk_worker *w, const char *run_id, json_int_t attempt,
		      json_int_t log_size_bytes)
{
	int64_t timeout_ms = (int64_t)w->cfg->flow_timeout_s * 1000;
	json_t *op = json_pack("{sssssIs{sIsIsI}}", "type", "run", "runId", run_id, "attempt",
			       attempt, "limits", "logSizeBytes", log_size_bytes, "jsTimeMs",
			       (json_int_t)(timeout_ms + JS_LIMIT_SLACK_MS), "timeoutMs",
			       (json_int_t)timeout_ms);
	json_t *net = json_pack("{ss}", "mode", fl_network_mode_name(w->cfg->network_mode));
	if (w->cfg->ssrf_allow_list)
		json_object_set_new(net, "allowList", json_string(w->cfg->ssrf_allow_list));
	json_object_set_new(op, "network", net);
	return op;
}

/* The warm-up: a webhook and one code step that does nothing. Running it starts the engine's
 * JavaScriptCore VM and compiles what a code step uses, which in a fresh process costs many
 * times what the job's own first step then costs. It touches no app and no network. */
static const char warm_flow[] =
	"{\"displayName\":\"warm-up\",\"trigger\":{\"name\":\"trigger\",\"type\":\"PIECE_TRIGGER\","
	"\"valid\":true,\"displayName\":\"warm-up\",\"settings\":{\"pieceName\":"
	"\"@activepieces/piece-webhook\",\"pieceVersion\":\"0.1.0\",\"triggerName\":"
	"\"catch_webhook\",\"input\":{}},\"nextAction\":{\"name\":\"warm\",\"type\":\"CODE\","
	"\"valid\":true,\"displayName\":\"warm-up\",\"settings\":{\"input\":{\"n\":1},"
	"\"sourceCode\":{\"code\":\"export const code = async (inputs) => "
	"({ n: inputs.n + 1 });\",\"packageJson\":\"{}\"}}}}}";

static int warm_engine(struct slot *s, struct fl_err *err)
{
	json_t *op = run_op(s->w, "warmup", 0, 1 << 20);
	json_object_set_new(op, "flowId", json_string("warmup"));
	json_object_set_new(op, "flowVersion", json_loads(warm_flow, 0, NULL));
	json_object_set_new(op, "triggerOutput", json_object());
	json_object_set_new(op, "flags", json_pack("{s:b}", "noCheckpoint", 1));
	if (reply_engine(s, op))
		return fl_err_set(err, FL_EIO, "the engine went away before its warm-up");
	int64_t deadline = fl_mono_ms() + 10000;
	for (;;) {
		char *line = NULL;
		int rc = wk_proc_recv(&s->engine, deadline, &line);
		if (rc)
			return fl_err_set(err, rc, "the engine's warm-up did not finish: %s",
					  fl_strerror(rc));
		json_t *ev = fl_json_loads(line, 0, NULL);
		fl_free(line);
		const char *type = json_string_value(json_object_get(ev, "type"));
		if (type && !strcmp(type, "finished")) {
			const char *status = json_string_value(json_object_get(ev, "status"));
			rc = status && !strcmp(status, "SUCCEEDED")
				     ? 0
				     : fl_err_set(err, FL_EPROTO, "the engine's warm-up ended %s",
						  status ? status : "without a status");
			json_decref(ev);
			return rc;
		}
		json_decref(ev);
	}
}

/* Process modes, after a job: starts and warms up the slot's next engine now, while the slot
 * has nothing to do, in a sandbox as fresh as the job would have made (nothing of the previous
 * job is in it). A failure costs only speed: the next job starts its engine itself. */
static void prespawn_engine(struct slot *s)
{
	struct wk_worker *w = s->w;
	if (!process_sandbox(w->cfg->execution_mode) || atomic_load(&w->stopping) ||
	    wk_proc_alive(&s->engine))
		return;
	struct fl_err err;
	int64_t start_us = 0;
	int rc = start_engine(s, &start_us, &err);
	int64_t t0 = fl_mono_us();
	if (!rc)
		rc = warm_engine(s, &err);
	if (rc) {
		fl_warn("worker", "slot %d: cannot start an engine ahead of the next job: %s",
			s->index, err.msg);
		drop_engine(s, 1, NULL);
		return;
	}
	s->prespawned = 1;
	s->prespawn_start_us = start_us;
	s->prespawn_warm_us = fl_mono_us() - t0;
}

/* Gives op the run's flow version unless the slot's engine keeps it already (it got it with
 * its id before), and counts it as sent when it goes. Called before each send of op: a new
 * engine keeps nothing. */
static void with_flow(struct slot *s, json_t *op, const json_t *ctx)
{
	const char *id = json_string_value(json_object_get(ctx, "flowVersionId"));
	if (!id || !*id || strlen(id) >= sizeof s->flows_sent[0]) {
		json_object_set(op, "flowVersion", json_object_get(ctx, "flowVersion"));
		return;
	}
	json_object_set_new(op, "flowVersionId", json_string(id));
	for (int i = 0; i < s->n_flows_sent; i++) {
		if (!strcmp(s->flows_sent[i], id)) {
			json_object_del(op, "flowVersion");
			return;
		}
	}
	json_object_set(op, "flowVersion", json_object_get(ctx, "flowVersion"));
	if (s->n_flows_sent == ENG_PROTO_FLOWS_KEPT) {
		memmove(s->flows_sent[0], s->flows_sent[1],
			(ENG_PROTO_FLOWS_KEPT - 1) * sizeof s->flows_sent[0]);
		s->n_flows_sent--;
	}
	snprintf(s->flows_sent[s->n_flows_sent++], sizeof s->flows_sent[0], "%s", id);
}

/* Drives the engine through one operation. Returns the result to post (a new object) or NULL
 * when the job was lost and nothing more may be posted. */
static json_t *drive_engine(struct job_run *r, json_t *ctx, int64_t deadline)
{
	struct slot *s = r->slot;
	struct wk_worker *w = s->w;
	struct fl_err err;
	int64_t asked_us = fl_mono_us();
	if (ensure_engine(r, &err)) {
		fl_error("worker", "run '%s': %s", r->run_id, err.msg);
		drop_engine(s, 1, NULL);
		return status_result(r, "INTERNAL_ERROR", err.msg);
	}
	snprintf(s->engine.run_id, sizeof s->engine.run_id, "%s", r->run_id);
	r->flow_version = json_object_get(ctx, "flowVersion");
	json_t *resume = json_object_get(ctx, "resume");
	json_t *op = run_op(w, r->run_id, r->attempt,
			    json_integer_value(json_object_get(ctx, "logSizeLimitBytes")));
	static const char *const from_ctx[] = { "flowId", "triggerOutput", "steps", "frontendUrl",
						NULL };
	for (int i = 0; from_ctx[i]; i++) {
		json_t *v = json_object_get(ctx, from_ctx[i]);
		if (v && !json_is_null(v))
			json_object_set(op, from_ctx[i], v);
	}
	if (!r->flow_version || json_is_null(r->flow_version)) {
		json_decref(op);
		return status_result(r, "INTERNAL_ERROR", "the app's run context has no flowVersion");
	}
	if (json_is_object(resume))
		json_object_set(op, "resume", json_object_get(resume, "payload"));
	json_t *flags = json_object();
	if (w->no_checkpoint)
		json_object_set_new(flags, "noCheckpoint", json_true());
	/* A process-mode engine serves one job: nothing is worth preparing after it. */
	if (process_sandbox(w->cfg->execution_mode))
		json_object_set_new(flags, "last", json_true());
	if (json_object_size(flags))
		json_object_set_new(op, "flags", flags);
	else
		json_decref(flags);
	wk_proc_peak_reset(&s->engine);
	r->op = op;
	/* Whether the engine said anything about this operation yet: until it does, it has
	 * started no step, so nothing of the run has happened. */
	int heard = 0, restarted = 0;
	with_flow(s, op, ctx);
	int sent = reply_engine(s, json_incref(op));
	for (;;) {
		char *line = NULL;
		int rc = sent ? sent : wk_proc_recv(&s->engine, deadline, &line);
		sent = 0;
		if (rc) {
			struct wk_exit ex;
			drop_engine(s, 1, &ex);
			if (!heard && !restarted && rc != FL_ETIMEOUT && rc != FL_ELIMIT &&
			    !ex.memory_exceeded && !give_up(r)) {
				/* A kept engine that died while idle (killed, out of memory between
				 * jobs) refuses the operation, or dies before it starts on it: a
				 * fresh engine takes the operation, so that the death does not cost
				 * the job one of its attempts. Once only: an operation that kills
				 * engines by itself ends the attempt. */
				restarted = 1;
				fl_warn("worker", "run '%s': the slot's engine died before it started the "
					"run; a fresh one runs it", r->run_id);
				if (ensure_engine(r, &err)) {
					drop_engine(s, 1, NULL);
					return status_result(r, "INTERNAL_ERROR", err.msg);
				}
				snprintf(s->engine.run_id, sizeof s->engine.run_id, "%s", r->run_id);
				with_flow(s, op, ctx);
				sent = reply_engine(s, json_incref(op));
				continue;
			}
			if (give_up(r))
				return NULL;
			json_t *res;
			if (rc == FL_ETIMEOUT) {
				res = status_result(r, "TIMEOUT", "the flow ran past AP_FLOW_TIMEOUT_SECONDS");
			} else if (rc == FL_ELIMIT || ex.memory_exceeded) {
				res = status_result(r, "MEMORY_LIMIT_EXCEEDED",
						    "the engine ran past AP_SANDBOX_MEMORY_LIMIT");
			} else {
				char why[128];
				if (ex.signal)
					snprintf(why, sizeof why, "the engine was killed by signal %d",
						 ex.signal);
				else
					snprintf(why, sizeof why, "the engine exited with code %d", ex.code);
				fl_error("worker", "run '%s': %s", r->run_id, why);
				res = status_result(r, "INTERNAL_ERROR", why);
			}
			if (ex.peak_memory_kb > 0)
				json_object_set_new(res, "peakMemoryKb", json_integer(ex.peak_memory_kb));
			return res;
		}
		json_t *ev = fl_json_loads(line, 0, NULL);
		fl_free(line);
		heard = 1;
		const char *type = json_string_value(json_object_get(ev, "type"));
		if (!type) {
			json_decref(ev);
			drop_engine(s, 1, NULL);
			return status_result(r, "INTERNAL_ERROR", "the engine spoke something that is not "
							       "its protocol");
		}
		if (!strcmp(type, "step_started")) {
			track_step(r, type, ev);
		} else if (!strcmp(type, "step_finished")) {
			/* The trigger's record comes without a start: the first step that ran is the
			 * first that finishes with one. */
			if (r->first_step_us < 0 && json_array_size(r->running)) {
				r->first_step_us = fl_mono_us() - asked_us;
				hist_add(&w->first_step, r->first_step_us);
			}
			track_step(r, type, ev);
			json_array_append_new(r->pending,
					      json_pack("{sOsO}", "path", json_object_get(ev, "path"),
							"record", json_object_get(ev, "record")));
			if (json_is_true(json_object_get(ev, "ack"))) {
				int64_t t0 = fl_mono_us();
				long st = flush_steps(r, &err);
				if (st) {
					json_decref(ev);
					drop_engine(s, 1, NULL);
					if (st < 0 || st == 409)
						return NULL;
					return status_result(r, "INTERNAL_ERROR", "the app refused a checkpoint");
				}
				ack_engine(s);
				hist_add(&w->checkpoint, fl_mono_us() - t0);
			}
		} else if (!strcmp(type, "step_replayed")) {
			json_t *path = json_object_get(ev, "path");
			if (json_is_string(path))
				json_array_append(r->replayed, path);
		} else if (!strcmp(type, "respond")) {
			json_t *body = json_pack("{sIsO}", "attempt", r->attempt, "response",
						 json_object_get(ev, "response"));
			post(r, "response", body, NULL, &err);
		} else if (!strcmp(type, "paused")) {
			json_decref(r->waitpoint);
			r->waitpoint = json_incref(json_object_get(ev, "waitpoint"));
			ack_engine(s);
		} else if (!strcmp(type, "store")) {
			relay_store(r, ev);
		} else if (!strcmp(type, "finished")) {
			json_t *cpu = json_object_get(ev, "cpuNs");
			if (json_is_integer(cpu))
				r->engine_cpu_ns = json_integer_value(cpu);
			json_t *res = json_object_get(ev, "result");
			res = json_is_object(res) ? json_incref(res)
						  : status_result(r, json_string_value(json_object_get(
									  ev, "status")) ?: "INTERNAL_ERROR",
								  json_string_value(json_object_get(ev, "error")));
			json_decref(ev);
			int64_t peak = wk_proc_peak_kb(&s->engine);
			if (peak > 0 && !json_object_get(res, "peakMemoryKb"))
				json_object_set_new(res, "peakMemoryKb", json_integer(peak));
			return res;
		}
		json_decref(ev);
	}
}

/* A stopping worker handed the job back to the queue and killed its engine: the attempt ends
 * (the engine died, so INTERNAL_ERROR) and the run goes back to QUEUED, not RUNNING with nobody
 * running it, until the next delivery replays it. Best effort, briefly: if the app does not
 * answer, the next delivery's start supersedes the attempt anyway. */
static void handed_back(struct job_run *r)
{
	struct wk_call call = r->call;
	call.give_up = NULL;
	call.deadline_ms = fl_mono_ms() + 2000;
	json_t *body = json_pack("{s:s, s:I, s:b, s:O}", "status", "INTERNAL_ERROR", "attempt",
				 (json_int_t)r->attempt, "final", 0, "records", r->pending);
	char path[192];
	snprintf(path, sizeof path, "/v1/engine/runs/%s/result", r->run_id);
	long status = 0;
	struct fl_err err;
	if (wk_app_call(&call, "POST", path, body, &status, NULL, &err))
		fl_warn("worker", "run '%s': could not tell the app it was handed back: %s",
			r->run_id, err.msg);
	json_decref(body);
	fl_info("worker", "run '%s': handed back to the queue at stop; its next delivery replays it",
		r->run_id);
}

static void process(void *arg, const struct bq_job *job, struct bq_result *result)
{
	struct wk_worker *w = arg;
	struct slot *s = &w->slots[job->slot];
	atomic_store(&s->lost, 0);
	const json_t *data = job->data;
	json_int_t schema = json_integer_value(json_object_get(data, "schemaVersion"));
	const char *run_id = json_string_value(json_object_get(data, "runId"));
	const char *exec_type = json_string_value(json_object_get(data, "executionType"));
	if (!json_is_object(data) || schema != 1 || !run_id || !*run_id ||
	    strlen(run_id) > FL_TOKEN_RUN_ID_MAX || !exec_type ||
	    (strcmp(exec_type, "BEGIN") && strcmp(exec_type, "RESUME"))) {
		atomic_fetch_add(&w->jobs_rejected, 1);
		fail_no_retry(result,
			      "job data is not a flow run: expected {\"schemaVersion\":1,\"runId\","
			      "\"executionType\":\"BEGIN\"|\"RESUME\",...}");
		return;
	}
	int64_t deadline = fl_mono_ms() + (int64_t)w->cfg->flow_timeout_s * 1000;
	int64_t now_s = fl_now_ms() / 1000;
	char *token = fl_token_sign(w->jwt_secret, run_id, now_s,
				    now_s + w->cfg->flow_timeout_s + 3600);
	struct job_run r = {
		.slot = s,
		.job = job,
		.run_id = run_id,
		.pending = json_array(),
		.replayed = json_array(),
		.running = json_array(),
		.engine_start_us = -1,
		.engine_warm_us = -1,
		.first_step_us = -1,
		.engine_cpu_ns = -1,
	};
	r.call = (struct wk_call){ .base_url = w->app_url, .token = token, .give_up = give_up,
				   .local = w->app_local, .local_arg = w->app_local_arg,
				   .give_up_arg = &r };
	char delivery[256];
	snprintf(delivery, sizeof delivery, "%s:%d", job->id, job->attempts_started);
	json_t *start = json_pack("{ssssssss}", "jobId", job->id, "delivery", delivery, "workerId",
				  w->worker_name, "executionType", exec_type);
	json_t *ctx = NULL;
	struct fl_err err;
	long st = post(&r, "start", start, &ctx, &err);
	if (st < 0) {
		result->outcome = BQ_FAILED;
		result->failed_reason = fl_asprintf("cannot start the run at the app: %s", err.msg);
	} else if (st == 404) {
		fail_no_retry(result, "run '%s' is unknown to the app", run_id);
	} else if (st == 409) {
		result->outcome = BQ_COMPLETED;
		result->returnvalue = json_pack("{sssO?}", "skipped", run_id, "status",
						json_object_get(ctx, "status"));
	} else if (st >= 300 || !json_is_object(ctx)) {
		const char *msg = json_string_value(json_object_get(ctx, "error"));
		fail_no_retry(result, "the app refused to start run '%s' (%ld): %s", run_id, st,
			      msg ? msg : "no reason given");
	} else {
		r.attempt = json_integer_value(json_object_get(ctx, "attempt"));
		if (fl_log_enabled(FL_LOG_INFO))
			fl_log_fields(FL_LOG_INFO, "worker",
				      json_pack("{sssssIsi}", "runId", run_id, "jobId", job->id,
						"attempt", r.attempt, "slot", s->index),
				      "run started");
		json_t *res = drive_engine(&r, ctx, deadline);
		if (res) {
			finish_run(&r, res, result);
		} else if (atomic_load(&w->stop_requested)) {
			/* Not w->stopping: that is set once the hand-back is over, and the slot may
			 * see its engine die before then. */
			result->outcome = BQ_FAILED;
			result->failed_reason = fl_asprintf("worker stopped while running '%s'", run_id);
			handed_back(&r);
		} else {
			result->outcome = BQ_FAILED;
			result->failed_reason = fl_asprintf("lock lost while running '%s'", run_id);
			fl_warn("worker", "run '%s': job lost mid-run; its next delivery replays it",
				run_id);
		}
		/* Fresh engines per job are for the sandbox modes; a plain one is kept. */
		if (process_sandbox(w->cfg->execution_mode)) {
			drop_engine(s, 1, NULL);
			prespawn_engine(s);
		}
	}
	json_decref(ctx);
	json_decref(r.pending);
	json_decref(r.replayed);
	json_decref(r.running);
	json_decref(r.op);
	json_decref(r.waitpoint);
	fl_free(token);
}

static void lock_lost(void *arg, const struct bq_job *job)
{
	struct wk_worker *w = arg;
	struct slot *s = &w->slots[job->slot];
	atomic_store(&s->lost, 1);
	/* The engine may be running a step that nobody will acknowledge: stop it now. */
	pthread_mutex_lock(&s->lock);
	wk_proc_kill(&s->engine);
	pthread_mutex_unlock(&s->lock);
	fl_warn("worker", "job '%s' lost its lock: stopping its engine", job->id);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

/* Refuses a mode the host cannot provide (never runs it unsandboxed), and prepares what the
 * process-sandbox modes share: the root, the zygote, the egress broker and one empty network
 * namespace per slot. */
static int setup_sandboxing(struct wk_worker *w, struct fl_err *err)
{
	const struct fl_config *cfg = w->cfg;
	if (cfg->execution_mode == FL_EXEC_UNSANDBOXED)
		return 0;
	int rc = sb_host_probe(&w->host, SB_PROBE_MOVE_SELF, err);
	if (!rc)
		rc = sb_host_check(&w->host, cfg->execution_mode, cfg->network_mode, err);
	if (rc)
		return rc;
	if (!process_sandbox(cfg->execution_mode))
		return 0;
	w->root = sb_root_new();
	if ((rc = sb_root_add_exec(w->root, w->engine_exe, err)) ||
	    (rc = sb_root_add_net_files(w->root, err)))
		return rc;
	char *argv[] = { w->engine_exe, "engine", "--zygote", NULL };
	if ((rc = sb_zygote_new(argv, &w->host, w->root, &w->zygote, err))) {
		fl_err_prefix(err, "cannot start the sandbox zygote");
		return rc;
	}
	if (cfg->network_mode == FL_NET_STRICT) {
		if ((rc = net_egress_new(w->policy, 0, &w->egress, err)))
			return rc;
		for (int i = 0; i < w->n_slots; i++)
			if ((rc = sb_netns_new(&w->slots[i].netns_fd, err)))
				return rc;
	}
	/* The first jobs find their engines started and warm, as the later ones will. */
	for (int i = 0; i < w->n_slots; i++)
		prespawn_engine(&w->slots[i]);
	fl_info("worker", "sandboxes ready: %s%s", fl_execution_mode_name(cfg->execution_mode),
		w->egress ? ", network only through the egress broker" : "");
	return 0;
}

int wk_worker_new(const struct wk_worker_opts *o, struct wk_worker **out, struct fl_err *err)
{
	const struct fl_config *cfg = o->cfg;
	/* A bad AP_SSRF_ALLOW_LIST entry stops the worker at start, not its first flow. */
	struct net_policy *policy;
	int prc = net_policy_from_config(cfg, &policy, err);
	if (prc)
		return prc;
	char *policy_line = net_policy_describe(policy);
	fl_info("worker", "%s", policy_line);
	fl_free(policy_line);
	struct wk_worker *w = fl_calloc(1, sizeof *w);
	w->checkpoint.bounds = checkpoint_bounds_us;
	w->cfg = cfg;
	w->policy = policy;
	pthread_mutex_init(&w->zygote_lock, NULL);
	w->app_url = fl_strdup(cfg->app_url);
	size_t n = strlen(w->app_url);
	while (n && w->app_url[n - 1] == '/')
		w->app_url[--n] = '\0';
	w->jwt_secret = fl_strdup(o->jwt_secret);
	w->app_local = o->app_local;
	w->app_local_arg = o->app_local_arg;
	if (o->engine_exe) {
		w->engine_exe = fl_strdup(o->engine_exe);
	} else {
		char exe[PATH_MAX];
		ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
		if (len <= 0) {
			fl_err_set(err, -errno, "cannot find our own binary: %s", strerror(errno));
			wk_worker_free(w);
			return err ? err->code : FL_EIO;
		}
		exe[len] = '\0';
		w->engine_exe = fl_strdup(exe);
	}
	char host[64] = "localhost";
	gethostname(host, sizeof host - 1);
	snprintf(w->worker_name, sizeof w->worker_name, "%s:%d", host, (int)getpid());
	const char *nc = getenv("FLOWD_BENCH_NO_CHECKPOINT");
	w->no_checkpoint = nc && !strcmp(nc, "1");
	if (w->no_checkpoint)
		fl_warn("worker", "FLOWD_BENCH_NO_CHECKPOINT=1: steps are not checkpointed, a worker "
			"that dies loses its runs' progress; this is for benchmarks only");
	w->n_slots = cfg->worker_concurrency;
	w->slots = fl_calloc((size_t)w->n_slots, sizeof *w->slots);
	for (int i = 0; i < w->n_slots; i++) {
		w->slots[i].w = w;
		w->slots[i].index = i;
		w->slots[i].netns_fd = -1;
		pthread_mutex_init(&w->slots[i].lock, NULL);
	}
	int rc = setup_sandboxing(w, err);
	if (rc) {
		wk_worker_free(w);
		return rc;
	}
	static const char *const names[] = { "EXECUTE_FLOW", NULL };
	struct bq_worker_opts qo;
	bq_worker_opts_init(&qo);
	qo.redis_url = o->redis_url;
	qo.prefix = cfg->redis_prefix;
	qo.queue = cfg->queue_name;
	qo.worker_name = w->worker_name;
	qo.concurrency = cfg->worker_concurrency;
	qo.lock_duration_ms = cfg->lock_duration_s * 1000;
	qo.stalled_interval_ms = cfg->stalled_interval_s * 1000;
	qo.max_stalled_count = 3;
	qo.job_names = names;
	qo.remove_on_complete.kind = BQ_KEEP_NONE;
	qo.remove_on_fail.kind = BQ_KEEP_LIMITS;
	qo.remove_on_fail.count = -1;
	qo.remove_on_fail.age_s = 7 * 24 * 3600;
	qo.process = process;
	qo.lock_lost = lock_lost;
	qo.arg = w;
	rc = bq_worker_new(&qo, &w->queue, err);
	if (rc) {
		wk_worker_free(w);
		return rc;
	}
	fl_log_fields(FL_LOG_INFO, "worker",
		      json_pack("{sssissssssss}", "worker", w->worker_name, "concurrency",
				cfg->worker_concurrency, "executionMode",
				fl_execution_mode_name(cfg->execution_mode), "networkMode",
				fl_network_mode_name(cfg->network_mode), "queue", cfg->queue_name,
				"app", w->app_url),
		      "worker started");
	*out = w;
	return 0;
}

int wk_worker_stop(struct wk_worker *w, int grace_ms)
{
	if (!w || !w->queue)
		return 0;
	atomic_store(&w->stop_requested, 1);
	int handed_back = bq_worker_stop(w->queue, grace_ms);
	/* Jobs handed back are no longer ours: their engines stop, their slots return. */
	atomic_store(&w->stopping, 1);
	for (int i = 0; i < w->n_slots; i++) {
		pthread_mutex_lock(&w->slots[i].lock);
		wk_proc_kill(&w->slots[i].engine);
		pthread_mutex_unlock(&w->slots[i].lock);
	}
	return handed_back;
}

void wk_worker_free(struct wk_worker *w)
{
	if (!w)
		return;
	if (w->queue) {
		atomic_store(&w->stopping, 1);
		for (int i = 0; i < w->n_slots; i++) {
			pthread_mutex_lock(&w->slots[i].lock);
			wk_proc_kill(&w->slots[i].engine);
			pthread_mutex_unlock(&w->slots[i].lock);
		}
		bq_worker_free(w->queue);
	}
	for (int i = 0; i < w->n_slots; i++) {
		wk_proc_finish(&w->slots[i].engine, 1, NULL);
		if (w->slots[i].netns_fd >= 0)
			close(w->slots[i].netns_fd);
		pthread_mutex_destroy(&w->slots[i].lock);
	}
	sb_zygote_free(w->zygote);
	sb_root_free(w->root);
	net_egress_free(w->egress);
	net_policy_free(w->policy);
	pthread_mutex_destroy(&w->zygote_lock);
	fl_free(w->slots);
	fl_free(w->app_url);
	fl_free(w->jwt_secret);
	fl_free(w->engine_exe);
	fl_free(w);
}

int wk_worker_healthy(struct wk_worker *w)
{
	struct bq_worker_stats st = { 0 };
	bq_worker_get_stats(w->queue, &st);
	return st.connected;
}

void wk_worker_metrics(struct wk_worker *w, struct fl_buf *out)
{
	struct bq_worker_stats st = { 0 };
	if (w->queue)
		bq_worker_get_stats(w->queue, &st);
	fl_buf_addf(out,
		    "# HELP flowd_worker_slots Job slots of this worker (AP_WORKER_CONCURRENCY).\n"
		    "# TYPE flowd_worker_slots gauge\nflowd_worker_slots %d\n"
		    "# HELP flowd_worker_slots_busy Slots running a job now.\n"
		    "# TYPE flowd_worker_slots_busy gauge\nflowd_worker_slots_busy %d\n"
		    "# HELP flowd_worker_engines Engine processes alive now.\n"
		    "# TYPE flowd_worker_engines gauge\nflowd_worker_engines %d\n"
		    "# HELP flowd_worker_engines_peak Most engine processes alive at once.\n"
		    "# TYPE flowd_worker_engines_peak gauge\nflowd_worker_engines_peak %d\n"
		    "# HELP flowd_worker_engines_started_total Engine processes started.\n"
		    "# TYPE flowd_worker_engines_started_total counter\n"
		    "flowd_worker_engines_started_total %llu\n"
		    "# HELP flowd_worker_jobs_total Jobs finished, by outcome at the queue.\n"
		    "# TYPE flowd_worker_jobs_total counter\n"
		    "flowd_worker_jobs_total{outcome=\"completed\"} %llu\n"
		    "flowd_worker_jobs_total{outcome=\"failed\"} %llu\n"
		    "flowd_worker_jobs_total{outcome=\"retried\"} %llu\n"
		    "flowd_worker_jobs_total{outcome=\"lost\"} %llu\n"
		    "flowd_worker_jobs_total{outcome=\"rejected\"} %llu\n"
		    "# HELP flowd_worker_redis_connected Whether the worker reaches Redis.\n"
		    "# TYPE flowd_worker_redis_connected gauge\nflowd_worker_redis_connected %d\n"
		    "# HELP flowd_worker_runs_total Runs this worker finished, by status.\n"
		    "# TYPE flowd_worker_runs_total counter\n",
		    w->n_slots, st.busy, atomic_load(&w->engines_running),
		    atomic_load(&w->engines_peak), (unsigned long long)atomic_load(&w->engines_started),
		    (unsigned long long)st.completed, (unsigned long long)st.failed,
		    (unsigned long long)st.retried, (unsigned long long)st.lost,
		    (unsigned long long)atomic_load(&w->jobs_rejected), st.connected ? 1 : 0);
	for (int i = 0; final_statuses[i]; i++)
		fl_buf_addf(out, "flowd_worker_runs_total{status=\"%s\"} %llu\n", final_statuses[i],
			    (unsigned long long)atomic_load(&w->runs_by_status[i]));
	hist_print(out, "flowd_worker_engine_start_seconds",
		   "From asking for a new engine to its ready line (the sandbox set up).",
		   &w->engine_start);
	hist_print(out, "flowd_worker_first_step_done_seconds",
		   "From a job asking for its engine to its first step finished.", &w->first_step);
	hist_print(out, "flowd_worker_checkpoint_seconds",
		   "From a step's record reaching the worker to the engine's ack: the app has "
		   "committed it.",
		   &w->checkpoint);
}
