/* The pipe host of the walker: see proto.h for the protocol. Each host callback becomes an
 * event line on out; the ones that need an answer (acks, store results) block on the next line
 * of in. */
#include "engine/proto.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/time.h"
#include "engine/engine.h"
#include "engine/flow.h"
#include "net/policy.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef FLOWD_VERSION
#define FLOWD_VERSION "0.1.0"
#endif

/* The engine of the last operation, kept while its settings stay the same. */
/* A flow version that came with its id: the flow parsed from it, or why it was not one. */
struct kept_flow {
	char *id;
	struct eng_flow *flow; /* NULL: error says why */
	char *error;
};

struct engine_cache {
	struct eng_engine *engine;
	struct net_policy *policy;
	int64_t js_ms;
	char *net_key; /* "<mode>|<allow list>" the policy was built from */
	/* The last ENG_PROTO_FLOWS_KEPT versions sent with an id, oldest first. */
	struct kept_flow flows[ENG_PROTO_FLOWS_KEPT];
	int n_flows;
};

struct pipe_host {
	FILE *in, *out;
	struct eng_engine *engine; /* of the operation running; idles while an answer is awaited */
	const char *run_id;
	int ack_all;
	int ack_none;    /* flags.noCheckpoint: never wait for an ack (not durable) */
	int last;        /* flags.last: no operation follows this one */
	int broken;      /* out failed, or in broke the protocol: stop */
	int bad_input;
	char *line;
	size_t line_cap;
};

/* Writes one event line. Takes ownership of ev. */
static int emit(struct pipe_host *h, json_t *ev)
{
	if (h->run_id && !json_object_get(ev, "runId"))
		json_object_set_new(ev, "runId", json_string(h->run_id));
	struct fl_buf b = FL_BUF_INIT;
	fl_json_dump_buf(&b, ev);
	fl_buf_addch(&b, '\n');
	json_decref(ev);
	int rc = fwrite(b.data, 1, b.len, h->out) == b.len && fflush(h->out) == 0 ? 0 : -1;
	fl_buf_release(&b);
	if (rc)
		h->broken = 1;
	return rc;
}

/* Reads the next message of the worker. Returns a new object, or NULL at EOF or on garbage
 * (h->bad_input says which). */
static json_t *read_message(struct pipe_host *h)
{
	for (;;) {
		ssize_t n = getline(&h->line, &h->line_cap, h->in);
		if (n < 0)
			return NULL;
		while (n && (h->line[n - 1] == '\n' || h->line[n - 1] == '\r'))
			h->line[--n] = '\0';
		if (!n)
			continue;
		json_error_t je;
		/* The direct parser reads what a worker writes faster, to the same value; a line
		 * with a NUL inside goes to json_loadb, which sees all of it. */
		json_t *m = strlen(h->line) == (size_t)n ? fl_json_loads(h->line, 0, &je)
							 : json_loadb(h->line, (size_t)n, 0, &je);
		if (!json_is_object(m) || !json_is_string(json_object_get(m, "type"))) {
			fl_error("engine", "protocol: a line of input is not a message: %d:%d: %s",
				 je.line, je.column, m ? "expected an object with a type" : je.text);
			json_decref(m);
			h->bad_input = 1;
			return NULL;
		}
		return m;
	}
}

static const char *msg_type(const json_t *m)
{
	return json_string_value(json_object_get(m, "type"));
}

/* Waits for a message of type want. Returns it, or NULL (and marks the host broken). */
static json_t *expect(struct pipe_host *h, const char *want)
{
	if (h->broken)
		return NULL;
	json_t *m = read_message(h);
	if (!m) {
		if (!h->bad_input)
			fl_error("engine", "protocol: input closed while waiting for '%s'", want);
		h->broken = 1;
		return NULL;
	}
	if (strcmp(msg_type(m), want)) {
		fl_error("engine", "protocol: expected '%s', got '%s'", want, msg_type(m));
		json_decref(m);
		h->bad_input = h->broken = 1;
		return NULL;
	}
	return m;
}

static int wait_ack(struct pipe_host *h)
{
	if (h->engine)
		eng_engine_idle(h->engine);
	json_t *m = expect(h, "ack");
	if (!m)
		return FL_EPROTO;
	const json_t *ok = json_object_get(m, "ok");
	int rc = 0;
	if (ok && json_is_false(ok)) {
		const char *e = json_string_value(json_object_get(m, "error"));
		fl_warn("engine", "worker refused a checkpoint: %s", e ? e : "no reason given");
		rc = FL_ECONFLICT;
	}
	json_decref(m);
	return rc;
}

static void on_started(void *ctx, const struct eng_step *step, const char *path)
{
	struct pipe_host *h = ctx;
	if (!h->broken)
		emit(h, json_pack("{s:s, s:s, s:s}", "type", "step_started", "name", step->name,
				  "path", path));
}

static void on_replayed(void *ctx, const struct eng_step *step, const char *path)
{
	struct pipe_host *h = ctx;
	if (!h->broken)
		emit(h, json_pack("{s:s, s:s, s:s}", "type", "step_replayed", "name", step->name,
				  "path", path));
}

static int on_finished(void *ctx, const struct eng_step_event *ev)
{
	struct pipe_host *h = ctx;
	if (h->broken)
		return FL_EIO;
	int ack = (ev->effects || h->ack_all) && !h->ack_none;
	json_t *m = json_pack("{s:s, s:s, s:s, s:O, s:O, s:b, s:b}", "type", "step_finished",
			      "name", ev->step->name, "path", ev->path, "pathJson", ev->path_json,
			      "record", ev->record, "effects", ev->effects, "ack", ack);
	if (ev->console)
		json_object_set_new(m, "console", json_string(ev->console));
	if (emit(h, m))
		return FL_EIO;
	return ack ? wait_ack(h) : 0;
}

static void on_respond(void *ctx, const json_t *response)
{
	struct pipe_host *h = ctx;
	if (!h->broken)
		emit(h, json_pack("{s:s, s:O}", "type", "respond", "response", response));
}

static int on_paused(void *ctx, const json_t *waitpoint)
{
	struct pipe_host *h = ctx;
	if (h->broken)
		return FL_EIO;
	if (emit(h, json_pack("{s:s, s:O, s:b}", "type", "paused", "waitpoint", waitpoint, "ack",
			      1)))
		return FL_EIO;
	return wait_ack(h);
}

/* One store request and its answer. */
static int store_call(struct pipe_host *h, const char *op, const char *key, const json_t *value,
		      json_t **result, struct fl_err *err)
{
	if (h->broken)
		return fl_err_set(err, FL_EIO, "the worker went away");
	json_t *m = json_pack("{s:s, s:s, s:s}", "type", "store", "op", op, "key", key);
	if (value)
		json_object_set(m, "value", (json_t *)value);
	if (emit(h, m))
		return fl_err_set(err, FL_EIO, "the worker went away");
	json_t *r = expect(h, "store_result");
	if (!r)
		return fl_err_set(err, FL_EPROTO, "the worker did not answer a store request");
	const char *e = json_string_value(json_object_get(r, "error"));
	int rc = 0;
	if (e) {
		rc = fl_err_set(err, FL_EDB, "%s", e);
	} else if (result) {
		const json_t *v = json_object_get(r, "value");
		*result = json_is_true(json_object_get(r, "found")) && v ? json_incref((json_t *)v)
									   : NULL;
	}
	json_decref(r);
	return rc;
}

static int on_store_get(void *ctx, const char *key, json_t **value, struct fl_err *err)
{
	*value = NULL;
	return store_call(ctx, "get", key, NULL, value, err);
}

static int on_store_put(void *ctx, const char *key, const json_t *value, struct fl_err *err)
{
	return store_call(ctx, "put", key, value, NULL, err);
}

static int on_store_delete(void *ctx, const char *key, struct fl_err *err)
{
	return store_call(ctx, "delete", key, NULL, NULL, err);
}

static int64_t limit_of(const json_t *limits, const char *key)
{
	const json_t *v = json_object_get(limits, key);
	return json_is_integer(v) && json_integer_value(v) > 0 ? json_integer_value(v) : 0;
}

/* The engine for an operation: the cached one, or a new one when the JS time limit or the
 * network settings differ. The network comes from the operation's "network", else from
 * AP_NETWORK_MODE and AP_SSRF_ALLOW_LIST in the environment. Returns 0 or FL_ECONFIG. */
static int engine_for(struct engine_cache *c, const json_t *op, struct fl_err *err)
{
	const json_t *net = json_object_get(op, "network");
	const char *mode = json_string_value(json_object_get(net, "mode"));
	const char *allow = json_string_value(json_object_get(net, "allowList"));
	if (!mode)
		mode = getenv("AP_NETWORK_MODE");
	if (!allow && !net)
		allow = getenv("AP_SSRF_ALLOW_LIST");
	if (!mode || !*mode)
		mode = "UNRESTRICTED";
	int64_t js_ms = limit_of(json_object_get(op, "limits"), "jsTimeMs");
	char *key = fl_asprintf("%s|%s", mode, allow ? allow : "");
	if (c->engine && js_ms == c->js_ms && !strcmp(key, c->net_key)) {
		fl_free(key);
		return 0;
	}
	enum fl_network_mode m;
	if (!strcmp(mode, "UNRESTRICTED")) {
		m = FL_NET_UNRESTRICTED;
	} else if (!strcmp(mode, "STRICT")) {
		m = FL_NET_STRICT;
	} else {
		fl_free(key);
		return fl_err_set(err, FL_ECONFIG,
				  "network mode '%s' is not UNRESTRICTED or STRICT", mode);
	}
	struct net_policy *policy = NULL;
	int rc = net_policy_new(m, allow && *allow ? allow : NULL, &policy, err);
	/* In a sandbox with its own network namespace the only way out is the worker's broker. */
	if (!rc && (rc = net_policy_egress_from_env(policy, err)))
		net_policy_free(policy);
	if (rc) {
		fl_free(key);
		return rc;
	}
	eng_engine_free(c->engine);
	net_policy_free(c->policy);
	fl_free(c->net_key);
	c->policy = policy;
	c->net_key = key;
	c->js_ms = js_ms;
	struct eng_engine_opts eo = { .js_time_limit_ms = js_ms, .policy = policy };
	c->engine = eng_engine_new(&eo);
	return 0;
}

static void kept_flow_release(struct kept_flow *k)
{
	fl_free(k->id);
	eng_flow_free(k->flow);
	fl_free(k->error);
}

/* The flow of an operation: parsed from its "flowVersion", or the one kept under its
 * "flowVersionId". A version sent with an id is kept, the error it gave included, so that an
 * operation without the version finishes as one with it would. *own is set when the caller
 * frees the flow. Returns 0 or FL_EINVAL. */
static int flow_for(struct engine_cache *c, const json_t *op, struct eng_flow **out, int *own,
		    struct fl_err *err)
{
	const json_t *version = json_object_get(op, "flowVersion");
	const char *id = json_string_value(json_object_get(op, "flowVersionId"));
	*out = NULL;
	*own = 0;
	struct kept_flow *k = NULL;
	for (int i = 0; id && i < c->n_flows; i++)
		if (!strcmp(c->flows[i].id, id))
			k = &c->flows[i];
	if (!version && !k)
		return id ? fl_err_set(err, FL_EINVAL,
				       "the operation has no flowVersion, and this engine keeps no "
				       "version '%s'", id)
			  : fl_err_set(err, FL_EINVAL, "the operation has no flowVersion");
	if (version) {
		struct eng_flow *flow = NULL;
		int rc = eng_flow_parse(version, 0, &flow, err);
		if (!id) {
			*out = flow;
			*own = 1;
			return rc;
		}
		if (k) {
			kept_flow_release(k);
		} else {
			if (c->n_flows == ENG_PROTO_FLOWS_KEPT) {
				kept_flow_release(&c->flows[0]);
				memmove(&c->flows[0], &c->flows[1],
					(ENG_PROTO_FLOWS_KEPT - 1) * sizeof c->flows[0]);
				c->n_flows--;
			}
			k = &c->flows[c->n_flows++];
		}
		*k = (struct kept_flow){ .id = fl_strdup(id), .flow = flow,
					 .error = rc ? fl_strdup(err->msg) : NULL };
	}
	if (!k->flow)
		return fl_err_set(err, FL_EINVAL, "%s", k->error);
	*out = k->flow;
	return 0;
}

static void engine_cache_release(struct engine_cache *c)
{
	for (int i = 0; i < c->n_flows; i++)
		kept_flow_release(&c->flows[i]);
	eng_engine_free(c->engine);
	net_policy_free(c->policy);
	fl_free(c->net_key);
}

/* CPU time of the whole engine process (every thread, JavaScriptCore's included), in ns. */
static int64_t process_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Runs one operation. *cpu_mark is the engine's CPU time when the previous one ended: the
 * operation is charged with everything since, the context prepared for it included. */
static void serve_run(struct pipe_host *h, struct engine_cache *cache, const json_t *op,
		      int64_t *cpu_mark)
{
	const char *run_id = json_string_value(json_object_get(op, "runId"));
	h->run_id = run_id ? run_id : "";
	const json_t *limits = json_object_get(op, "limits");
	const json_t *flags = json_object_get(op, "flags");
	h->ack_all = json_is_true(json_object_get(flags, "ackAll"));
	h->ack_none = json_is_true(json_object_get(flags, "noCheckpoint"));
	h->last = json_is_true(json_object_get(flags, "last"));

	struct fl_err err = { 0 };
	struct eng_flow *flow = NULL;
	int own_flow = 0;
	int rc = flow_for(cache, op, &flow, &own_flow, &err);
	if (!rc)
		rc = engine_for(cache, op, &err);
	if (!rc && !run_id)
		rc = fl_err_set(&err, FL_EINVAL, "the operation has no runId");
	json_t *result = NULL;
	enum eng_status status = ENG_INTERNAL_ERROR;
	if (!rc) {
		int64_t timeout = limit_of(limits, "timeoutMs");
		const json_t *resume = json_object_get(op, "resume");
		struct eng_run_opts ro = {
			.run_id = run_id,
			.flow_id = json_string_value(json_object_get(op, "flowId")),
			.frontend_url = json_string_value(json_object_get(op, "frontendUrl")),
			.trigger_output = json_object_get(op, "triggerOutput"),
			.replay = json_object_get(op, "steps"),
			.resume = json_is_null(resume) ? NULL : resume,
			.log_size_limit = limit_of(limits, "logSizeBytes"),
			.deadline_ms = timeout ? fl_mono_ms() + timeout : 0,
		};
		struct eng_host host = {
			.ctx = h,
			.step_started = on_started,
			.step_replayed = on_replayed,
			.step_finished = on_finished,
			.respond = on_respond,
			.paused = on_paused,
			.store_get = on_store_get,
			.store_put = on_store_put,
			.store_delete = on_store_delete,
		};
		h->engine = cache->engine;
		rc = eng_run(cache->engine, flow, &ro, &host, &result, &status, &err);
		h->engine = NULL;
	}
	if (h->broken) {
		json_decref(result);
		if (own_flow)
			eng_flow_free(flow);
		return;
	}
	json_t *fin = json_pack("{s:s, s:s}", "type", "finished", "status",
				eng_status_name(rc ? ENG_INTERNAL_ERROR : status));
	if (rc)
		json_object_set_new(fin, "error", json_string(err.msg));
	else
		json_object_set_new(fin, "result", result);
	int64_t cpu = process_cpu_ns();
	json_object_set_new(fin, "cpuNs", json_integer(cpu - *cpu_mark));
	*cpu_mark = cpu;
	emit(h, fin);
	if (own_flow)
		eng_flow_free(flow);
}

int eng_proto_serve(FILE *in, FILE *out)
{
	struct pipe_host h = { .in = in, .out = out };
	/* Created at the first operation, not before: a zygote's children start no VM early. */
	struct engine_cache cache = { 0 };
	emit(&h, json_pack("{s:s, s:i, s:s}", "type", "ready", "protocol", ENG_PROTO_VERSION,
			   "version", FLOWD_VERSION));
	int64_t cpu_mark = process_cpu_ns();
	while (!h.broken) {
		json_t *m = read_message(&h);
		if (!m)
			break;
		const char *type = msg_type(m);
		if (!strcmp(type, "exit")) {
			json_decref(m);
			break;
		}
		if (strcmp(type, "run")) {
			fl_error("engine", "protocol: expected an operation, got '%s'", type);
			h.bad_input = 1;
			json_decref(m);
			break;
		}
		serve_run(&h, &cache, m, &cpu_mark);
		h.run_id = NULL;
		json_decref(m);
		if (cache.engine && !h.last)
			eng_engine_idle(cache.engine);
	}
	engine_cache_release(&cache);
	free(h.line);
	if (h.bad_input)
		return ENG_PROTO_EXIT_BAD_INPUT;
	return h.broken ? 1 : 0;
}
