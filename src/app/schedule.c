/* Schedule triggers. Every replica computes the same ticks from each scheduled flow's cron
 * expression and time zone; firing a tick means claiming (flow, tick) in the store together
 * with the new run, so exactly one replica wins each tick and the others see a conflict. Only
 * the latest due tick fires: an app that was down does not replay the ticks it missed. */
#include "app/app_int.h"
#include "app/cron.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/time.h"

#include <string.h>

#define RELOAD_MS 2000

struct app_sched_entry {
	struct app_sched_entry *next;
	char *flow_id;
	char *version_id;
	char *cron_text;
	char *tz_name;
	char *output;
	struct app_cron cron;
	struct app_tz *tz;
	int64_t next_ms; /* the next tick; -1: never */
	int seen;
};

static void entry_free(struct app_sched_entry *e)
{
	fl_free(e->flow_id);
	fl_free(e->version_id);
	fl_free(e->cron_text);
	fl_free(e->tz_name);
	fl_free(e->output);
	app_tz_free(e->tz);
	fl_free(e);
}

static int same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

/* Brings the entries in line with the store's scheduled flows. */
static void reload(struct app *a, int64_t now)
{
	struct store_flow *flows;
	size_t n;
	struct fl_err err = { 0 };
	if (store_flow_list_scheduled(a->store, &flows, &n, &err)) {
		fl_warn("app", "cannot load schedules: %s", err.msg);
		return;
	}
	for (struct app_sched_entry *e = a->sched; e; e = e->next)
		e->seen = 0;
	for (size_t i = 0; i < n; i++) {
		struct store_flow *f = &flows[i];
		struct app_sched_entry *e = a->sched;
		while (e && strcmp(e->flow_id, f->id))
			e = e->next;
		if (e && same_str(e->cron_text, f->schedule_cron) &&
		    same_str(e->tz_name, f->schedule_tz)) {
			e->seen = 1;
			if (!same_str(e->version_id, f->version_id)) {
				fl_free(e->version_id);
				e->version_id = fl_strdup(f->version_id);
				fl_free(e->output);
				e->output = f->schedule_output ? fl_strdup(f->schedule_output) : NULL;
			}
			continue;
		}
		struct app_sched_entry *ne = fl_calloc(1, sizeof *ne);
		if (app_cron_parse(f->schedule_cron, &ne->cron, &err) ||
		    !(ne->tz = app_tz_load(f->schedule_tz, &err))) {
			fl_warn("app", "flow '%s' has an unusable schedule: %s", f->id, err.msg);
			entry_free(ne);
			continue;
		}
		ne->flow_id = fl_strdup(f->id);
		ne->version_id = fl_strdup(f->version_id);
		ne->cron_text = fl_strdup(f->schedule_cron);
		ne->tz_name = f->schedule_tz ? fl_strdup(f->schedule_tz) : NULL;
		ne->output = f->schedule_output ? fl_strdup(f->schedule_output) : NULL;
		ne->next_ms = app_cron_next(&ne->cron, ne->tz, now);
		ne->seen = 1;
		if (e) { /* the schedule changed: replace the old entry */
			e->seen = 0;
		}
		ne->next = a->sched;
		a->sched = ne;
	}
	for (struct app_sched_entry **p = &a->sched; *p;) {
		if (!(*p)->seen) {
			struct app_sched_entry *dead = *p;
			*p = dead->next;
			entry_free(dead);
		} else {
			p = &(*p)->next;
		}
	}
	store_flow_list_free(flows, n);
}

static void fire(struct app *a, struct app_sched_entry *e, int64_t tick, int64_t now)
{
	char run_id[22];
	fl_random_id(run_id);
	struct store_run run = { .id = run_id, .flow_id = e->flow_id, .flow_version_id = e->version_id,
				 .trigger_output = e->output ? e->output : "{}", .job_id = run_id,
				 .created_at = now };
	struct fl_err err = { 0 };
	int rc = store_schedule_claim(a->store, e->flow_id, tick, &run, &err);
	if (rc == FL_ECONFLICT)
		return; /* another replica fired it */
	if (rc) {
		fl_warn("app", "cannot fire the schedule of flow '%s': %s", e->flow_id, err.msg);
		return;
	}
	app_metrics_count(&a->metrics, &a->metrics.schedule_fired);
	app_metrics_count(&a->metrics, &a->metrics.runs_created[APP_ORIGIN_SCHEDULE]);
	if (app_enqueue(a, run_id, run_id, e->flow_id, e->version_id, "BEGIN", 0, 0, &err))
		fl_warn("app", "scheduled run '%s' not enqueued (the reaper will): %s", run_id,
			err.msg);
	else
		fl_debug("app", "schedule of flow '%s' fired run '%s'", e->flow_id, run_id);
}

void app_schedule_tick(struct app *a, int64_t now)
{
	pthread_mutex_lock(&a->sched_mu);
	if (!a->sched_loaded_ms || now - a->sched_loaded_ms >= RELOAD_MS || now < a->sched_loaded_ms) {
		reload(a, now);
		a->sched_loaded_ms = now;
	}
	for (struct app_sched_entry *e = a->sched; e; e = e->next) {
		if (e->next_ms < 0 || now < e->next_ms)
			continue;
		int64_t tick = e->next_ms, later;
		while ((later = app_cron_next(&e->cron, e->tz, tick)) >= 0 && later <= now)
			tick = later;
		fire(a, e, tick, now);
		e->next_ms = app_cron_next(&e->cron, e->tz, tick);
	}
	pthread_mutex_unlock(&a->sched_mu);
}

void app_schedule_release(struct app *a)
{
	while (a->sched) {
		struct app_sched_entry *e = a->sched;
		a->sched = e->next;
		entry_free(e);
	}
}
