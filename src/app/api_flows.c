/* /v1/flows: create, list, show, update (a new immutable version) and delete flows. A pushed
 * flow is validated by the engine's own parser (engine/flow.h), so that the app accepts exactly
 * what a worker can run, and an invalid one gets 400 with the JSON path of the problem. */
#include "app/app_int.h"
#include "app/cron.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/time.h"
#include "engine/flow.h"

#include <stdlib.h>
#include <string.h>

/* ---- schedules (shared/FLOWS.md §4 piece-schedule) ---- */

static int input_int(const json_t *input, const char *key, int def, int lo, int hi, int *out,
		     struct fl_err *err)
{
	const json_t *v = json_object_get(input, key);
	long n = def;
	if (json_is_integer(v)) {
		n = (long)json_integer_value(v);
	} else if (json_is_real(v)) {
		n = (long)json_real_value(v);
	} else if (json_is_string(v) && *json_string_value(v)) {
		char *end;
		n = strtol(json_string_value(v), &end, 10);
		if (*end)
			return fl_err_set(err, FL_EINVAL,
					  "trigger.settings.input.%s: expected a number", key);
	} else if (v && !json_is_null(v) && !json_is_string(v)) {
		return fl_err_set(err, FL_EINVAL, "trigger.settings.input.%s: expected a number",
				  key);
	}
	if (n < lo || n > hi)
		return fl_err_set(err, FL_EINVAL, "trigger.settings.input.%s: %ld is not in %d..%d",
				  key, n, lo, hi);
	*out = (int)n;
	return 0;
}

static int input_bool(const json_t *input, const char *key)
{
	const json_t *v = json_object_get(input, key);
	return json_is_true(v) || (json_is_string(v) && !strcmp(json_string_value(v), "true"));
}

int app_flow_schedule(const json_t *version, char **cron, char **tz, char **output,
		      struct fl_err *err)
{
	*cron = *tz = *output = NULL;
	const json_t *settings = json_object_get(json_object_get(version, "trigger"), "settings");
	const char *piece = json_string_value(json_object_get(settings, "pieceName"));
	if (!piece || (strcmp(piece, "@activepieces/piece-schedule") && strcmp(piece, "piece-schedule")))
		return 0;
	const char *name = json_string_value(json_object_get(settings, "triggerName"));
	const json_t *input = json_object_get(settings, "input");
	const char *zone = json_string_value(json_object_get(input, "timezone"));
	if (!zone || !*zone)
		zone = "UTC";
	char expr[160];
	int rc = 0, n = 0, hour = 0, day = 0;
	int is_cron = 0;
	if (!name) {
		return fl_err_set(err, FL_EINVAL, "trigger.settings.triggerName: expected a string");
	} else if (!strcmp(name, "every_x_minutes")) {
		if (!(rc = input_int(input, "minutes", 5, 1, 59, &n, err)))
			snprintf(expr, sizeof expr, "*/%d * * * *", n);
		zone = "UTC";
	} else if (!strcmp(name, "every_hour")) {
		snprintf(expr, sizeof expr, "0 * * * %s",
			 input_bool(input, "run_on_weekends") ? "*" : "1-5");
		zone = "UTC";
	} else if (!strcmp(name, "every_day")) {
		if (!(rc = input_int(input, "hour_of_the_day", 0, 0, 23, &hour, err)))
			snprintf(expr, sizeof expr, "0 %d * * %s", hour,
				 input_bool(input, "run_on_weekends") ? "*" : "1-5");
	} else if (!strcmp(name, "every_week")) {
		if (!(rc = input_int(input, "hour_of_the_day", 0, 0, 23, &hour, err)) &&
		    !(rc = input_int(input, "day_of_the_week", 1, 0, 6, &day, err)))
			snprintf(expr, sizeof expr, "0 %d * * %d", hour, day);
	} else if (!strcmp(name, "every_month")) {
		if (!(rc = input_int(input, "hour_of_the_day", 0, 0, 23, &hour, err)) &&
		    !(rc = input_int(input, "day_of_the_month", 1, 1, 31, &day, err)))
			snprintf(expr, sizeof expr, "0 %d %d * *", hour, day);
	} else if (!strcmp(name, "cron_expression")) {
		const char *c = json_string_value(json_object_get(input, "cronExpression"));
		if (!c)
			return fl_err_set(err, FL_EINVAL,
					  "trigger.settings.input.cronExpression: expected a string");
		snprintf(expr, sizeof expr, "%s", c);
		is_cron = 1;
	} else {
		return fl_err_set(err, FL_EINVAL,
				  "trigger.settings.triggerName: unknown schedule trigger '%s'", name);
	}
	if (rc)
		return rc;
	struct app_cron parsed;
	struct fl_err e2 = { 0 };
	if (app_cron_parse(expr, &parsed, &e2))
		return fl_err_set(err, FL_EINVAL, "trigger.settings.input.cronExpression: %s", e2.msg);
	struct app_tz *z = app_tz_load(zone, &e2);
	if (!z)
		return fl_err_set(err, FL_EINVAL, "trigger.settings.input.timezone: %s", e2.msg);
	app_tz_free(z);
	*cron = fl_strdup(expr);
	*tz = fl_strdup(zone);
	json_t *out = is_cron ? json_object()
			      : json_pack("{s:s, s:s}", "cron_expression", expr, "timezone", zone);
	char *text = fl_json_dump(out);
	json_decref(out);
	*output = fl_strdup(text);
	free(text);
	return 0;
}

/* ---- JSON views ---- */

static json_t *flow_json(const struct app *a, const struct store_flow *f, int with_definition)
{
	json_t *version = NULL;
	if (with_definition && f->definition)
		version = json_loads(f->definition, 0, NULL);
	if (!json_is_object(version)) {
		json_decref(version);
		version = json_object();
	}
	json_object_set_new(version, "id", json_string(f->version_id));
	json_object_set_new(version, "number", json_integer(f->version_number));
	char *url = fl_asprintf("%s/v1/webhooks/%s", a->cfg->frontend_url, f->id);
	json_t *o = json_pack("{s:s, s:s, s:o, s:s, s:o, s:o}", "id", f->id, "displayName",
			      f->display_name, "version", version, "webhookUrl", url, "createdAt",
			      app_json_time(f->created_at), "updatedAt", app_json_time(f->updated_at));
	fl_free(url);
	if (f->schedule_cron) {
		json_t *sched = json_pack("{s:s, s:s}", "cronExpression", f->schedule_cron,
					  "timezone", f->schedule_tz ? f->schedule_tz : "UTC");
		struct app_cron c;
		struct app_tz *tz = app_tz_load(f->schedule_tz, NULL);
		if (tz && !app_cron_parse(f->schedule_cron, &c, NULL))
			json_object_set_new(sched, "nextRunAt",
					    app_json_time(app_cron_next(&c, tz, fl_now_ms())));
		app_tz_free(tz);
		json_object_set_new(o, "schedule", sched);
	}
	return o;
}

/* Validates body as a flow; fills f's display name, definition and schedule. On failure replies
 * 400 with the message and the JSON path, and returns -1. */
static int validate(struct app_req *r, struct app_response *resp, struct store_flow *f)
{
	struct fl_err err = { 0 };
	json_t *doc;
	if (app_req_json(r, &doc, &err)) {
		app_reply_error(resp, 400, "%s", err.msg);
		return -1;
	}
	if (!doc) {
		app_reply_error(resp, 400, "a flow version is required in the body");
		return -1;
	}
	struct eng_flow *flow = NULL;
	int rc = eng_flow_parse(doc, 0, &flow, &err);
	if (!rc)
		rc = app_flow_schedule(flow->version, &f->schedule_cron, &f->schedule_tz,
				       &f->schedule_output, &err);
	if (rc) {
		const char *colon = strstr(err.msg, ": ");
		char *path = colon ? fl_strndup(err.msg, (size_t)(colon - err.msg)) : fl_strdup("(root)");
		json_t *m = json_string(err.msg);
		json_t *jp = json_string(path);
		app_reply_json(resp, 400,
			       json_pack("{s:o, s:o}", "error", m ? m : json_string("invalid flow"),
					 "path", jp ? jp : json_string("(root)")));
		fl_free(path);
		eng_flow_free(flow);
		json_decref(doc);
		return -1;
	}
	f->display_name = fl_strdup(*flow->display_name ? flow->display_name : "Untitled");
	f->definition = fl_json_dump(flow->version);
	eng_flow_free(flow);
	json_decref(doc);
	return 0;
}

static void create_flow(struct app *a, struct app_req *r, struct app_response *resp)
{
	struct store_flow f = { 0 };
	if (validate(r, resp, &f)) {
		store_flow_release(&f);
		return;
	}
	char id[22], version_id[22];
	fl_random_id(id);
	fl_random_id(version_id);
	f.id = fl_strdup(id);
	f.version_id = fl_strdup(version_id);
	f.version_number = 1;
	f.created_at = f.updated_at = fl_now_ms();
	struct fl_err err = { 0 };
	int rc = store_flow_create(a->store, &f, &err);
	if (rc) {
		app_reply_fail(resp, rc, &err);
	} else {
		fl_info("app", "flow '%s' created (%s)", f.id, f.display_name);
		app_reply_json(resp, 201, flow_json(a, &f, 1));
	}
	store_flow_release(&f);
}

static void update_flow(struct app *a, struct app_req *r, struct app_response *resp,
			const char *id)
{
	struct store_flow f = { 0 };
	if (validate(r, resp, &f)) {
		store_flow_release(&f);
		return;
	}
	char version_id[22];
	fl_random_id(version_id);
	f.id = fl_strdup(id);
	f.version_id = fl_strdup(version_id);
	f.updated_at = fl_now_ms();
	struct fl_err err = { 0 };
	int rc = store_flow_update(a->store, &f, NULL, &err);
	store_flow_release(&f);
	app_flow_forget(a, id);
	if (!rc)
		rc = store_flow_get(a->store, id, &f, &err);
	if (rc) {
		app_reply_fail(resp, rc, &err);
		return;
	}
	app_reply_json(resp, 200, flow_json(a, &f, 1));
	store_flow_release(&f);
}

static int query_limit(struct app_req *r, struct app_response *resp, int def, int max, int *out)
{
	const char *l = json_string_value(json_object_get(r->query, "limit"));
	*out = def;
	if (!l || !*l)
		return 0;
	char *end;
	long n = strtol(l, &end, 10);
	if (*end || n < 1 || n > max) {
		app_reply_error(resp, 400, "limit must be an integer from 1 to %d", max);
		return -1;
	}
	*out = (int)n;
	return 0;
}

static void list_flows(struct app *a, struct app_req *r, struct app_response *resp)
{
	int limit;
	if (query_limit(r, resp, 50, 1000, &limit))
		return;
	const char *cursor = json_string_value(json_object_get(r->query, "cursor"));
	struct store_flow *flows;
	size_t n;
	char *next;
	struct fl_err err = { 0 };
	int rc = store_flow_list(a->store, cursor && *cursor ? cursor : NULL, limit, &flows, &n,
				 &next, &err);
	if (rc) {
		app_reply_fail(resp, rc, &err);
		return;
	}
	json_t *data = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(data, flow_json(a, &flows[i], 0));
	app_reply_json(resp, 200,
		       json_pack("{s:o, s:o}", "data", data, "next",
				 next ? json_string(next) : json_null()));
	store_flow_list_free(flows, n);
	fl_free(next);
}

void app_api_flows(struct app *a, struct app_req *r, struct app_response *resp)
{
	const char *m = r->raw->method ? r->raw->method : "GET";
	struct fl_err err = { 0 };
	if (r->n_segs == 2) {
		if (!strcmp(m, "POST"))
			create_flow(a, r, resp);
		else if (!strcmp(m, "GET"))
			list_flows(a, r, resp);
		else
			app_reply_error(resp, 405, "method %s not allowed on /v1/flows", m);
		return;
	}
	if (r->n_segs != 3) {
		app_reply_error(resp, 404, "no route for '%s'", r->path);
		return;
	}
	const char *id = r->segs[2];
	if (!strcmp(m, "GET")) {
		struct store_flow f;
		int rc = store_flow_get(a->store, id, &f, &err);
		if (rc) {
			app_reply_fail(resp, rc, &err);
			return;
		}
		app_reply_json(resp, 200, flow_json(a, &f, 1));
		store_flow_release(&f);
	} else if (!strcmp(m, "PUT")) {
		update_flow(a, r, resp, id);
	} else if (!strcmp(m, "DELETE")) {
		int rc = store_flow_delete(a->store, id, fl_now_ms(), &err);
		app_flow_forget(a, id);
		if (rc) {
			app_reply_fail(resp, rc, &err);
			return;
		}
		fl_info("app", "flow '%s' deleted", id);
		app_reply_json(resp, 200, json_pack("{s:s, s:b}", "id", id, "deleted", 1));
	} else {
		app_reply_error(resp, 405, "method %s not allowed on a flow", m);
	}
}
