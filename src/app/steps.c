/* Builds a run's §5.4 steps object from its step records. A record is stored under its path,
 * "<name>" at the top level or "<loop>[<i>].<name>" inside iteration i (1-based) of a loop,
 * chained for nested loops; this puts each one where the engine's own result would have it:
 * steps[loop].output.iterations[i-1][name]. A loop whose own record has not been stored yet
 * (it is still running) gets a RUNNING placeholder, and a loop record that arrives after some
 * of its iterations keeps them. */
#include "app/app_int.h"
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>

#define MAX_ITERATIONS 1000000

static json_t *placeholder_loop(void)
{
	return json_pack("{s:s, s:s, s:{}, s:{s:n, s:i, s:[]}, s:i}", "type", "LOOP_ON_ITEMS",
			 "status", "RUNNING", "input", "output", "item", "index", 0, "iterations",
			 "duration", 0);
}

/* The iterations array of a loop record, created if missing. */
static json_t *iterations_of(json_t *loop)
{
	json_t *out = json_object_get(loop, "output");
	if (!json_is_object(out)) {
		out = json_object();
		json_object_set_new(loop, "output", out);
	}
	json_t *its = json_object_get(out, "iterations");
	if (!json_is_array(its)) {
		its = json_array();
		json_object_set_new(out, "iterations", its);
	}
	return its;
}

/* Puts record under name in level, keeping what is already known of a loop's iterations. */
static void place(json_t *level, const char *name, json_t *record)
{
	json_t *old = json_object_get(level, name);
	json_t *old_its = json_object_get(json_object_get(old, "output"), "iterations");
	if (json_is_array(old_its) && json_array_size(old_its) && json_is_object(record)) {
		json_t *its = iterations_of(record);
		for (size_t i = 0; i < json_array_size(old_its); i++) {
			json_t *o = json_array_get(old_its, i);
			while (json_array_size(its) <= i)
				json_array_append_new(its, json_object());
			json_t *n = json_array_get(its, i);
			if (json_is_object(o) && json_is_object(n))
				json_object_update_missing(n, o);
		}
	}
	json_object_set(level, name, record);
}

/* Parses "name[12]" into name and index; index 0 when there is none, -1 if malformed. */
static long split_segment(const char *seg, size_t len, char *name, size_t name_size)
{
	const char *br = memchr(seg, '[', len);
	size_t nlen = br ? (size_t)(br - seg) : len;
	if (nlen == 0 || nlen >= name_size)
		return -1;
	memcpy(name, seg, nlen);
	name[nlen] = '\0';
	if (!br)
		return 0;
	if (seg[len - 1] != ']')
		return -1;
	char *end;
	long i = strtol(br + 1, &end, 10);
	if (end != seg + len - 1 || i < 0 || i > MAX_ITERATIONS)
		return -1;
	return i < 1 ? 1 : i;
}

static void merge(json_t *steps, const char *path, json_t *record)
{
	json_t *level = steps;
	const char *p = path;
	char name[256];
	for (;;) {
		const char *dot = strchr(p, '.');
		/* A dot inside brackets is not a separator; names themselves have no dots. */
		size_t len = dot ? (size_t)(dot - p) : strlen(p);
		long idx = split_segment(p, len, name, sizeof name);
		if (idx < 0)
			return;
		if (!dot) {
			if (idx == 0)
				place(level, name, record);
			return;
		}
		if (idx == 0)
			return; /* only a loop iteration can contain steps */
		json_t *loop = json_object_get(level, name);
		if (!json_is_object(loop)) {
			loop = placeholder_loop();
			json_object_set_new(level, name, loop);
		}
		json_t *its = iterations_of(loop);
		while (json_array_size(its) < (size_t)idx)
			json_array_append_new(its, json_object());
		json_t *out = json_object_get(loop, "output");
		const char *st = json_string_value(json_object_get(loop, "status"));
		/* A loop still running shows the iteration it is in, as the engine's merge does. */
		if (st && !strcmp(st, "RUNNING") && json_integer_value(json_object_get(out, "index")) < idx)
			json_object_set_new(out, "index", json_integer(idx));
		level = json_array_get(its, (size_t)idx - 1);
		if (!json_is_object(level))
			return;
		p = dot + 1;
	}
}

json_t *app_steps_assemble(const struct store_step *steps, size_t n)
{
	json_t *out = json_object();
	for (size_t i = 0; i < n; i++) {
		json_t *rec = steps[i].record ? json_loads(steps[i].record, 0, NULL) : NULL;
		if (!json_is_object(rec)) {
			json_decref(rec);
			continue;
		}
		merge(out, steps[i].path, rec);
		json_decref(rec);
	}
	return out;
}
