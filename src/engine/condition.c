/* Router condition operators: see condition.h. Values arrive resolved, so a "number" may be a
 * JSON number or a string that holds one; the conversions follow JavaScript's Number(), since
 * that is what flows written for Activepieces expect. */
#include "engine/condition.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/json.h"
#include "core/time.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The text a value is compared as: strings as they are, undefined as "", anything else as JSON. */
static char *text_of(const json_t *v, int case_sensitive)
{
	char *s;
	if (!v)
		s = fl_strdup("");
	else if (json_is_string(v))
		s = fl_strndup(json_string_value(v), json_string_length(v));
	else
		s = fl_json_dump(v);
	if (!case_sensitive)
		for (char *p = s; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	return s;
}

static int is_js_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* JavaScript's Number(string). */
static double number_of_string(const char *s)
{
	while (is_js_space(*s))
		s++;
	size_t n = strlen(s);
	while (n && is_js_space(s[n - 1]))
		n--;
	if (!n)
		return 0;
	char buf[128];
	if (n >= sizeof buf)
		return NAN;
	memcpy(buf, s, n);
	buf[n] = '\0';
	const char *p = buf;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X' || p[1] == 'o' || p[1] == 'O' || p[1] == 'b' ||
			    p[1] == 'B')) {
		int base = (p[1] == 'x' || p[1] == 'X') ? 16 : (p[1] == 'o' || p[1] == 'O') ? 8 : 2;
		if (!p[2])
			return NAN;
		char *end;
		unsigned long long v = strtoull(p + 2, &end, base);
		return *end || p[2] == '-' || p[2] == '+' ? NAN : (double)v;
	}
	int sign = 1;
	if (*p == '+' || *p == '-') {
		sign = *p == '-' ? -1 : 1;
		p++;
	}
	if (!strcmp(p, "Infinity"))
		return sign * INFINITY;
	/* Digits, an optional fraction and an optional exponent: nothing strtod would add (inf,
	 * nan, hex floats). */
	const char *q = p;
	int digits = 0;
	while (isdigit((unsigned char)*q))
		q++, digits++;
	if (*q == '.') {
		q++;
		while (isdigit((unsigned char)*q))
			q++, digits++;
	}
	if (!digits)
		return NAN;
	if (*q == 'e' || *q == 'E') {
		q++;
		if (*q == '+' || *q == '-')
			q++;
		if (!isdigit((unsigned char)*q))
			return NAN;
		while (isdigit((unsigned char)*q))
			q++;
	}
	if (*q)
		return NAN;
	return sign * strtod(p, NULL);
}

static double number_of(const json_t *v)
{
	if (!v)
		return NAN;
	switch (json_typeof(v)) {
	case JSON_INTEGER:
	case JSON_REAL: return json_number_value(v);
	case JSON_STRING: return number_of_string(json_string_value(v));
	case JSON_TRUE: return 1;
	case JSON_FALSE:
	case JSON_NULL: return 0;
	default: return NAN;
	}
}

static int bool_is(const json_t *v, int want)
{
	if (json_is_boolean(v))
		return json_is_true(v) == want;
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		while (is_js_space(*s))
			s++;
		size_t n = strlen(s);
		while (n && is_js_space(s[n - 1]))
			n--;
		const char *w = want ? "true" : "false";
		return n == strlen(w) && !strncasecmp(s, w, n);
	}
	return 0;
}

/* A date as ms since the epoch: an ISO 8601 string or a number of ms. */
static int date_of(const json_t *v, int64_t *ms)
{
	if (json_is_number(v)) {
		double d = json_number_value(v);
		if (!isfinite(d))
			return -1;
		*ms = (int64_t)d;
		return 0;
	}
	if (json_is_string(v))
		return fl_parse_iso8601(json_string_value(v), ms);
	return -1;
}

static int is_empty_value(const json_t *v)
{
	return !v || json_is_null(v) || (json_is_string(v) && !json_string_length(v));
}

/* The list a value stands for: an array, or a string holding a JSON array. New reference or
 * NULL. */
static json_t *list_of(const json_t *v)
{
	if (json_is_array(v))
		return json_incref((json_t *)v);
	if (json_is_string(v)) {
		json_t *parsed = json_loadb(json_string_value(v), json_string_length(v), 0, NULL);
		if (json_is_array(parsed))
			return parsed;
		json_decref(parsed);
	}
	return NULL;
}

static int list_contains(const json_t *list_value, const json_t *item, int case_sensitive)
{
	json_t *list = list_of(list_value);
	if (!list)
		return 0;
	char *want = text_of(item, case_sensitive);
	int found = 0;
	size_t i;
	json_t *e;
	json_array_foreach(list, i, e)
	{
		char *t = text_of(e, case_sensitive);
		found = !strcmp(t, want);
		fl_free(t);
		if (found)
			break;
	}
	fl_free(want);
	json_decref(list);
	return found;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && !memcmp(s + a - b, suffix, b);
}

int eng_condition_eval(const json_t *c)
{
	const char *op = json_string_value(json_object_get(c, "operator"));
	if (!op)
		return 0;
	const json_t *first = json_object_get(c, "firstValue");
	const json_t *second = json_object_get(c, "secondValue");
	int cs = json_is_true(json_object_get(c, "caseSensitive"));

	if (!strncmp(op, "TEXT_", 5)) {
		char *a = text_of(first, cs), *b = text_of(second, cs);
		int r = 0;
		if (!strcmp(op, "TEXT_CONTAINS"))
			r = strstr(a, b) != NULL;
		else if (!strcmp(op, "TEXT_DOES_NOT_CONTAIN"))
			r = strstr(a, b) == NULL;
		else if (!strcmp(op, "TEXT_EXACTLY_MATCHES"))
			r = !strcmp(a, b);
		else if (!strcmp(op, "TEXT_DOES_NOT_EXACTLY_MATCH"))
			r = strcmp(a, b) != 0;
		else if (!strcmp(op, "TEXT_START_WITH"))
			r = !strncmp(a, b, strlen(b));
		else if (!strcmp(op, "TEXT_DOES_NOT_START_WITH"))
			r = strncmp(a, b, strlen(b)) != 0;
		else if (!strcmp(op, "TEXT_ENDS_WITH"))
			r = ends_with(a, b);
		else if (!strcmp(op, "TEXT_DOES_NOT_END_WITH"))
			r = !ends_with(a, b);
		fl_free(a);
		fl_free(b);
		return r;
	}
	if (!strncmp(op, "NUMBER_", 7)) {
		/* NaN compares false either way, as in JavaScript. */
		double a = number_of(first), b = number_of(second);
		if (!strcmp(op, "NUMBER_IS_GREATER_THAN"))
			return a > b;
		if (!strcmp(op, "NUMBER_IS_LESS_THAN"))
			return a < b;
		if (!strcmp(op, "NUMBER_IS_EQUAL_TO"))
			return a == b;
		return 0;
	}
	if (!strcmp(op, "BOOLEAN_IS_TRUE"))
		return bool_is(first, 1);
	if (!strcmp(op, "BOOLEAN_IS_FALSE"))
		return bool_is(first, 0);
	if (!strncmp(op, "DATE_", 5)) {
		int64_t a, b;
		if (date_of(first, &a) || date_of(second, &b))
			return 0;
		if (!strcmp(op, "DATE_IS_BEFORE"))
			return a < b;
		if (!strcmp(op, "DATE_IS_EQUAL"))
			return a == b;
		if (!strcmp(op, "DATE_IS_AFTER"))
			return a > b;
		return 0;
	}
	if (!strcmp(op, "LIST_CONTAINS"))
		return list_contains(first, second, cs);
	if (!strcmp(op, "LIST_DOES_NOT_CONTAIN"))
		return !list_contains(first, second, cs);
	if (!strcmp(op, "LIST_IS_EMPTY") || !strcmp(op, "LIST_IS_NOT_EMPTY")) {
		/* Nothing at all counts as an empty list; a value that is no list is not a full one. */
		json_t *list = list_of(first);
		size_t n = list ? json_array_size(list) : 0;
		int empty = list ? n == 0 : is_empty_value(first);
		json_decref(list);
		return !strcmp(op, "LIST_IS_EMPTY") ? empty : n > 0;
	}
	if (!strcmp(op, "EXISTS"))
		return !is_empty_value(first);
	if (!strcmp(op, "DOES_NOT_EXIST"))
		return is_empty_value(first);
	return 0;
}

int eng_conditions_eval(const json_t *groups)
{
	size_t i, j;
	const json_t *group, *c;
	json_array_foreach(groups, i, group)
	{
		if (!json_array_size(group))
			continue;
		int all = 1;
		json_array_foreach(group, j, c)
		{
			if (!eng_condition_eval(c)) {
				all = 0;
				break;
			}
		}
		if (all)
			return 1;
	}
	return 0;
}
