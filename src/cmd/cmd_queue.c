/* `flowd queue`: the operator's view of the BullMQ queue named by AP_QUEUE_NAME under
 * AP_REDIS_PREFIX on AP_REDIS_URL (or the embedded Redis under AP_CONFIG_PATH). Parses options
 * and prints; the work is in src/queue/admin.c. */
#include "cmd/cmd.h"

#include "core/alloc.h"
#include "core/config.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/time.h"
#include "queue/bq.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct queue_args {
	const char *action;
	const char *state;
	int64_t grace_s;
	bool have_grace;
	int64_t offset;
	int64_t limit;
	bool json;
};

static int usage_error(const char *fmt, const char *what)
{
	fprintf(stderr, "flowd queue: ");
	fprintf(stderr, fmt, what);
	fprintf(stderr, "\nsee 'flowd help queue'\n");
	return 2;
}

static int parse_num(const char *opt, const char *v, int64_t *out)
{
	char *end;
	long long n = v ? strtoll(v, &end, 10) : 0;
	if (!v || !*v || *end || n < 0)
		return usage_error("option '%s' needs a non-negative integer", opt);
	*out = n;
	return 0;
}

static int parse_args(int argc, char **argv, struct queue_args *a)
{
	memset(a, 0, sizeof(*a));
	a->limit = 100;
	int npos = 0;
	const char *pos[2] = { 0 };
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];
		if (!strcmp(s, "--json")) {
			a->json = true;
		} else if (!strcmp(s, "--grace") || !strcmp(s, "--limit") || !strcmp(s, "--offset")) {
			int64_t *dst = !strcmp(s, "--grace")   ? &a->grace_s
				       : !strcmp(s, "--limit") ? &a->limit
							       : &a->offset;
			if (parse_num(s, i + 1 < argc ? argv[i + 1] : NULL, dst))
				return 2;
			if (!strcmp(s, "--grace"))
				a->have_grace = true;
			i++;
		} else if (s[0] == '-' && s[1]) {
			return usage_error("unknown option '%s'", s);
		} else if (npos < 2) {
			pos[npos++] = s;
		} else {
			return usage_error("unexpected argument '%s'", s);
		}
	}
	if (!npos)
		return usage_error("%s", "missing action: stats, ls, retry, clean, pause or resume");
	a->action = pos[0];
	a->state = pos[1];
	bool takes_state = !strcmp(a->action, "ls") || !strcmp(a->action, "clean");
	if (takes_state && !a->state)
		return usage_error("'%s' needs a STATE", a->action);
	if (!takes_state && a->state)
		return usage_error("unexpected argument '%s'", a->state);
	if (a->state && !bq_state_valid(a->state))
		return usage_error("unknown state '%s'; expected waiting, active, delayed, "
				   "prioritized, completed, failed or paused",
				   a->state);
	if (!strcmp(a->action, "clean") && a->state && !strcmp(a->state, "active"))
		return usage_error("%s", "active jobs cannot be cleaned");
	if (!strcmp(a->action, "clean") && !a->have_grace)
		return usage_error("%s", "clean needs --grace SECONDS");
	return 0;
}

static void print_json(json_t *v)
{
	char *s = fl_json_dump(v);
	puts(s);
	free(s);
}

static void print_job_line(json_t *j)
{
	char when[32] = "-";
	json_t *t = json_object_get(j, "finishedOn");
	if (!json_is_integer(t))
		t = json_object_get(j, "timestamp");
	if (json_is_integer(t))
		fl_iso8601(json_integer_value(t), when, sizeof(when));
	printf("%-24s %-16s %-24s attempts=%" JSON_INTEGER_FORMAT,
	       json_string_value(json_object_get(j, "id")),
	       json_string_value(json_object_get(j, "name")), when,
	       json_integer_value(json_object_get(j, "attemptsMade")));
	const char *reason = json_string_value(json_object_get(j, "failedReason"));
	if (reason)
		printf("  %s", reason);
	putchar('\n');
}

static int run(struct bq_queue *q, const struct queue_args *a, const char *queue_name)
{
	struct fl_err err = { 0 };
	int rc = 0;
	if (!strcmp(a->action, "stats")) {
		struct bq_counts c;
		bool paused = false;
		if ((rc = bq_queue_counts(q, &c, &err)) || (rc = bq_queue_is_paused(q, &paused, &err)))
			goto fail;
		if (a->json) {
			printf("{\"active\":%" PRId64 ",\"completed\":%" PRId64 ",\"delayed\":%" PRId64
			       ",\"failed\":%" PRId64 ",\"paused\":%" PRId64 ",\"prioritized\":%" PRId64
			       ",\"waiting\":%" PRId64 ",\"waiting-children\":%" PRId64 "}\n",
			       c.active, c.completed, c.delayed, c.failed, c.paused, c.prioritized,
			       c.waiting, c.waiting_children);
		} else {
			printf("queue %s%s\n", queue_name, paused ? " (paused)" : "");
			printf("  waiting      %" PRId64 "\n  prioritized  %" PRId64
			       "\n  active       %" PRId64 "\n  delayed      %" PRId64
			       "\n  completed    %" PRId64 "\n  failed       %" PRId64 "\n",
			       c.waiting, c.prioritized, c.active, c.delayed, c.completed, c.failed);
			if (c.paused)
				printf("  paused list  %" PRId64 "\n", c.paused);
		}
	} else if (!strcmp(a->action, "ls")) {
		json_t *jobs;
		if ((rc = bq_queue_list(q, a->state, a->offset, a->limit, &jobs, &err)))
			goto fail;
		if (a->json) {
			print_json(jobs);
		} else {
			size_t i;
			json_t *j;
			json_array_foreach(jobs, i, j) print_job_line(j);
		}
		json_decref(jobs);
	} else if (!strcmp(a->action, "retry")) {
		int64_t moved;
		if ((rc = bq_queue_retry_failed(q, a->limit == 100 ? 0 : a->limit, &moved, &err)))
			goto fail;
		if (a->json)
			printf("{\"retried\":%" PRId64 "}\n", moved);
		else
			printf("moved %" PRId64 " failed jobs back to waiting\n", moved);
	} else if (!strcmp(a->action, "clean")) {
		int64_t removed;
		if ((rc = bq_queue_clean(q, a->state, a->grace_s * 1000, a->limit == 100 ? 0 : a->limit,
					 &removed, &err)))
			goto fail;
		if (a->json)
			printf("{\"removed\":%" PRId64 "}\n", removed);
		else
			printf("removed %" PRId64 " %s jobs\n", removed, a->state);
	} else if (!strcmp(a->action, "pause") || !strcmp(a->action, "resume")) {
		bool pause = !strcmp(a->action, "pause");
		if ((rc = bq_queue_pause(q, pause, &err)))
			goto fail;
		if (a->json)
			printf("{\"paused\":%s}\n", pause ? "true" : "false");
		else
			printf("queue %s %s\n", queue_name, pause ? "paused" : "resumed");
	} else {
		return usage_error("unknown action '%s'", a->action);
	}
	return 0;
fail:
	fprintf(stderr, "flowd queue: %s\n", err.msg);
	return 1;
}

int cmd_queue(int argc, char **argv)
{
	struct queue_args a;
	int rc = parse_args(argc, argv, &a);
	if (rc)
		return rc;
	struct fl_config cfg;
	struct fl_err err = { 0 };
	if (fl_config_load(&cfg, &err)) {
		fprintf(stderr, "flowd queue: %s\n", err.msg);
		return 2;
	}
	fl_log_setup(cfg.log_level, cfg.log_pretty);
	char *url = cfg.redis_url ? fl_strdup(cfg.redis_url) : bq_embedded_redis_url(cfg.config_path);
	struct bq_queue *q;
	if (bq_queue_new(url, cfg.redis_prefix, cfg.queue_name, &q, &err)) {
		fprintf(stderr, "flowd queue: %s\n", err.msg);
		fl_free(url);
		fl_config_release(&cfg);
		return 1;
	}
	rc = run(q, &a, cfg.queue_name);
	bq_queue_free(q);
	fl_free(url);
	fl_config_release(&cfg);
	return rc;
}
