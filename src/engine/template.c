/* {{ ... }} templates (shared/FLOWS.md §2). Most templates in real flows are plain paths into
 * earlier outputs (`step_1.body.items[0].name`); those are resolved here on the jansson values
 * without touching JavaScriptCore. Anything else is evaluated by engine/js.c, all the
 * expressions of one input in one fresh context that is created only when first needed. */
#include "engine/template.h"

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"
#include "engine/js.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tmpl {
	struct js_runtime *rt;
	const json_t *scope;
	struct js_session *session; /* created on the first expression that needs JavaScript */
	struct fl_err *err;
};

/* ---- the native path ---- */

enum fast { FAST_VALUE, FAST_UNDEFINED, FAST_LENGTH, FAST_NO };

static bool is_ident_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$';
}

static bool is_ident_char(char c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9');
}

static bool is_step_name(const char *s, size_t len)
{
	if (len < 6 || memcmp(s, "step_", 5) != 0)
		return false;
	for (size_t i = 5; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* Names every object inherits from Object.prototype: a path that reaches one of them on an
 * object that lacks it as its own key means something else in JavaScript. */
static bool is_inherited_name(const char *k)
{
	static const char *const names[] = {
		"constructor", "hasOwnProperty", "isPrototypeOf", "propertyIsEnumerable",
		"toString", "toLocaleString", "valueOf", "__proto__", "__defineGetter__",
		"__defineSetter__", "__lookupGetter__", "__lookupSetter__",
	};
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		if (strcmp(k, names[i]) == 0)
			return true;
	return false;
}

/* One step of a path on cur. key is NUL-terminated; numeric says it was written as a bare
 * number in brackets. */
static enum fast step_into(const json_t **cur, const char *key, bool numeric)
{
	const json_t *v = *cur;
	if (json_is_object(v)) {
		json_t *m = json_object_get(v, key);
		if (m) {
			*cur = m;
			return FAST_VALUE;
		}
		return is_inherited_name(key) ? FAST_NO : FAST_UNDEFINED;
	}
	if (json_is_array(v)) {
		unsigned long idx;
		if (fl_json_index_key(key, &idx)) {
			if (idx >= json_array_size(v))
				return FAST_UNDEFINED;
			*cur = json_array_get(v, idx);
			return FAST_VALUE;
		}
		if (!numeric && strcmp(key, "length") == 0)
			return FAST_LENGTH;
		return FAST_NO; /* methods and the like: JavaScript knows */
	}
	if (json_is_null(v))
		return FAST_UNDEFINED; /* a TypeError in JavaScript: "" all the same */
	if (json_is_string(v) && !numeric && strcmp(key, "length") == 0)
		return FAST_LENGTH;
	return FAST_NO; /* another property of a string, number or boolean */
}

/* .length as JavaScript counts it: array items, or UTF-16 code units of a string. */
static json_int_t js_length(const json_t *v)
{
	if (json_is_array(v))
		return (json_int_t)json_array_size(v);
	const unsigned char *s = (const unsigned char *)json_string_value(v);
	size_t n = json_string_length(v);
	json_int_t units = 0;
	for (size_t i = 0; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			units++;
		if (s[i] >= 0xf0)
			units++; /* a surrogate pair */
	}
	return units;
}

/* Resolves expr (already trimmed) if it is a plain path: an identifier followed by .name,
 * [digits] or ['key'] / ["key"] steps. */
static enum fast fast_path(const json_t *scope, const char *p, const char *end,
			   const json_t **out, json_int_t *length)
{
	if (p == end || !is_ident_start(*p))
		return FAST_NO;
	const char *q = p;
	while (q < end && is_ident_char(*q))
		q++;
	char key[256];
	if ((size_t)(q - p) >= sizeof key)
		return FAST_NO;
	memcpy(key, p, (size_t)(q - p));
	key[q - p] = '\0';
	const json_t *cur = json_object_get(scope, key);
	bool undefined = false;
	if (!cur) {
		if (!is_step_name(p, (size_t)(q - p)))
			return FAST_NO; /* Math, JSON, undefined...: a JavaScript global */
		undefined = true;
	}
	p = q;
	while (p < end) {
		bool numeric = false;
		size_t klen = 0;
		if (*p == '.' || (*p == '?' && p + 1 < end && p[1] == '.')) {
			bool optional = *p == '?';
			p += optional ? 2 : 1;
			if (optional && p < end && *p == '[')
				continue; /* a?.[0] */
			if (p == end || !is_ident_start(*p))
				return FAST_NO;
			while (p < end && is_ident_char(*p)) {
				if (klen + 1 >= sizeof key)
					return FAST_NO;
				key[klen++] = *p++;
			}
		} else if (*p == '[') {
			p++;
			if (p < end && (*p == '\'' || *p == '"')) {
				char quote = *p++;
				while (p < end && *p != quote) {
					if (*p == '\\' || *p == '\n' || klen + 1 >= sizeof key)
						return FAST_NO;
					key[klen++] = *p++;
				}
				if (p == end)
					return FAST_NO;
				p++;
			} else {
				numeric = true;
				while (p < end && *p >= '0' && *p <= '9') {
					if (klen + 1 >= sizeof key)
						return FAST_NO;
					key[klen++] = *p++;
				}
				if (!klen || (key[0] == '0' && klen > 1))
					return FAST_NO;
			}
			if (p == end || *p != ']')
				return FAST_NO;
			p++;
		} else {
			return FAST_NO;
		}
		key[klen] = '\0';
		if (memchr(key, '\0', klen))
			return FAST_NO;
		if (undefined)
			continue; /* keep parsing: the whole expression must be a path */
		enum fast r = step_into(&cur, key, numeric);
		if (r == FAST_NO)
			return FAST_NO;
		if (r == FAST_LENGTH) {
			if (p != end)
				return FAST_NO; /* items.length.toFixed... */
			*length = js_length(cur);
			return FAST_LENGTH;
		}
		if (r == FAST_UNDEFINED)
			undefined = true;
	}
	if (undefined)
		return FAST_UNDEFINED;
	*out = cur;
	return FAST_VALUE;
}

/* ---- expressions ---- */

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static void trim(const char **p, const char **end)
{
	while (*p < *end && is_space(**p))
		(*p)++;
	while (*end > *p && is_space((*end)[-1]))
		(*end)--;
}

static struct js_session *session(struct tmpl *t)
{
	if (!t->session && t->rt)
		t->session = js_session_new(t->rt, t->scope);
	return t->session;
}

/* An expression's value as a new json_t; undefined and errors become "". */
static int eval_value(struct tmpl *t, const char *p, const char *end, json_t **out)
{
	trim(&p, &end);
	if (p == end) {
		*out = json_string("");
		return 0;
	}
	const json_t *v;
	json_int_t length;
	switch (fast_path(t->scope, p, end, &v, &length)) {
	case FAST_VALUE: *out = json_deep_copy(v); return 0;
	case FAST_LENGTH: *out = json_integer(length); return 0;
	case FAST_UNDEFINED: *out = json_string(""); return 0;
	case FAST_NO: break;
	}
	json_t *r = NULL;
	struct fl_err err;
	if (!session(t)) { /* no runtime: only plain paths resolve */
		*out = json_string("");
		return 0;
	}
	int rc = js_session_eval(session(t), p, (size_t)(end - p), &r, &err);
	if (rc == FL_ETIMEOUT) {
		if (t->err)
			*t->err = err;
		return rc;
	}
	*out = r ? r : json_string("");
	return 0;
}

/* Appends an expression's value as template text. */
static int eval_text(struct tmpl *t, const char *p, const char *end, struct fl_buf *out)
{
	trim(&p, &end);
	if (p == end)
		return 0;
	const json_t *v;
	json_int_t length;
	switch (fast_path(t->scope, p, end, &v, &length)) {
	case FAST_LENGTH: fl_buf_addf(out, "%" JSON_INTEGER_FORMAT, length); return 0;
	case FAST_VALUE:
		if (json_is_string(v))
			fl_buf_add(out, json_string_value(v), json_string_length(v));
		else
			fl_json_write(out, v, FL_JSON_JS_KEY_ORDER);
		return 0;
	case FAST_UNDEFINED: return 0;
	case FAST_NO: break;
	}
	struct fl_err err;
	size_t mark = out->len;
	if (!session(t))
		return 0;
	int rc = js_session_eval_text(session(t), p, (size_t)(end - p), out, &err);
	if (rc == FL_ETIMEOUT) {
		if (t->err)
			*t->err = err;
		return rc;
	}
	if (rc) { /* a throw reads as "" */
		out->len = mark;
		out->data[mark] = '\0';
	}
	return 0;
}

/* Finds the "}}" that closes an expression starting at p: the first one outside string
 * literals and outside braces the expression opened, so that `{{ {"a":{"b":1}} }}` is one
 * expression. Falls back to the first "}}" when the expression does not balance. */
static const char *expr_end(const char *p, const char *end)
{
	int depth = 0;
	for (const char *q = p; q < end; q++) {
		char c = *q;
		if (c == '"' || c == '\'' || c == '`') {
			for (q++; q < end && *q != c; q++)
				if (*q == '\\')
					q++;
			if (q >= end)
				break;
		} else if (c == '{') {
			depth++;
		} else if (c == '}') {
			if (depth == 0 && q + 1 < end && q[1] == '}')
				return q;
			if (depth > 0)
				depth--;
		}
	}
	for (const char *q = p; q + 1 < end; q++)
		if (q[0] == '}' && q[1] == '}')
			return q;
	return NULL;
}

static const char *find_open(const char *p, const char *end)
{
	for (; p + 1 < end; p++)
		if (p[0] == '{' && p[1] == '{')
			return p;
	return NULL;
}

static int resolve_string(struct tmpl *t, const json_t *str, json_t **out)
{
	const char *s = json_string_value(str);
	const char *end = s + json_string_length(str);
	const char *open = find_open(s, end);
	const char *close = open ? expr_end(open + 2, end) : NULL;
	if (!close) {
		*out = json_incref((json_t *)str);
		return 0;
	}
	if (open == s && close + 2 == end)
		return eval_value(t, open + 2, close, out);

	struct fl_buf b = FL_BUF_INIT;
	const char *p = s;
	while (open && close) {
		fl_buf_add(&b, p, (size_t)(open - p));
		int rc = eval_text(t, open + 2, close, &b);
		if (rc) {
			fl_buf_release(&b);
			return rc;
		}
		p = close + 2;
		open = find_open(p, end);
		close = open ? expr_end(open + 2, end) : NULL;
	}
	fl_buf_add(&b, p, (size_t)(end - p));
	*out = json_stringn_nocheck(b.data, b.len);
	fl_buf_release(&b);
	return 0;
}

static int resolve(struct tmpl *t, const json_t *v, json_t **out)
{
	switch (json_typeof(v)) {
	case JSON_STRING: return resolve_string(t, v, out);
	case JSON_ARRAY: {
		json_t *a = json_array();
		for (size_t i = 0; i < json_array_size(v); i++) {
			json_t *item;
			int rc = resolve(t, json_array_get(v, i), &item);
			if (rc) {
				json_decref(a);
				return rc;
			}
			json_array_append_new(a, item);
		}
		*out = a;
		return 0;
	}
	case JSON_OBJECT: {
		json_t *o = json_object();
		const char *k;
		json_t *member;
		json_object_foreach((json_t *)v, k, member) {
			json_t *item;
			int rc = resolve(t, member, &item);
			if (rc) {
				json_decref(o);
				return rc;
			}
			json_object_set_new_nocheck(o, k, item);
		}
		*out = o;
		return 0;
	}
	default:
		*out = json_incref((json_t *)v);
		return 0;
	}
}

int eng_tmpl_resolve(struct js_runtime *rt, const json_t *value, const json_t *scope,
		     json_t **out, struct fl_err *err)
{
	static json_t *empty_scope;
	if (!scope) {
		if (!empty_scope)
			empty_scope = json_object();
		scope = empty_scope;
	}
	struct tmpl t = { .rt = rt, .scope = scope, .err = err };
	*out = NULL;
	int rc = resolve(&t, value, out);
	js_session_free(t.session);
	return rc;
}

int eng_tmpl_has_templates(const json_t *value)
{
	switch (json_typeof(value)) {
	case JSON_STRING:
		return find_open(json_string_value(value),
				 json_string_value(value) + json_string_length(value)) != NULL;
	case JSON_ARRAY:
		for (size_t i = 0; i < json_array_size(value); i++)
			if (eng_tmpl_has_templates(json_array_get(value, i)))
				return 1;
		return 0;
	case JSON_OBJECT: {
		const char *k;
		json_t *member;
		json_object_foreach((json_t *)value, k, member)
			if (eng_tmpl_has_templates(member))
				return 1;
		return 0;
	}
	default: return 0;
	}
}
