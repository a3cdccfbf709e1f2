/* JSON helpers: see json.h. */
#include "core/json.h"
#include "core/alloc.h"
#include "core/assert.h"
#include "core/buf.h"
#include "core/err.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *fl_json_load_file(const char *path, struct fl_err *err)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		int e = errno;
		fl_err_set(err, -e, "cannot open '%s': %s", path, strerror(e));
		return NULL;
	}
	json_error_t je;
	json_t *v = json_loadf(f, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
	fclose(f);
	if (!v)
		fl_err_set(err, FL_EINVAL, "'%s': %d:%d: %s", path, je.line, je.column, je.text);
	return v;
}

json_t *fl_json_loadb(const char *data, size_t len, const char *what, struct fl_err *err)
{
	json_error_t je;
	json_t *v = json_loadb(data, len, JSON_DECODE_ANY, &je);
	if (!v)
		fl_err_set(err, FL_EINVAL, "%s is not valid JSON: %d:%d: %s", what, je.line, je.column,
			   je.text);
	return v;
}

/* ---- fl_json_loads: the fast path ---- */

/* Deeper nesting than this goes to jansson, which has its own limit. */
#define FAST_MAX_DEPTH 32

struct fast {
	const char *p;
	struct fl_buf unescaped; /* scratch for strings with escapes */
};

static void skip_space(struct fast *f)
{
	while (*f->p == ' ' || *f->p == '\t' || *f->p == '\n' || *f->p == '\r')
		f->p++;
}

/* A string at f->p (after its opening quote) into *s and *len, pointing into the text or into
 * f->unescaped; 0, or -1 for anything left to jansson. */
static int fast_string(struct fast *f, const char **s, size_t *len)
{
	const char *start = f->p, *q = start;
	while (*q != '"') {
		unsigned char c = (unsigned char)*q;
		if (c < 0x20 || c >= 0x80 || c == '\\')
			break;
		q++;
	}
	if (*q == '"') {
		*s = start;
		*len = (size_t)(q - start);
		f->p = q + 1;
		return 0;
	}
	fl_buf_reset(&f->unescaped);
	fl_buf_add(&f->unescaped, start, (size_t)(q - start));
	for (;;) {
		unsigned char c = (unsigned char)*q;
		if (c == '"')
			break;
		if (c < 0x20 || c >= 0x80)
			return -1;
		if (c != '\\') {
			fl_buf_addch(&f->unescaped, (char)c);
			q++;
			continue;
		}
		char e;
		switch (q[1]) {
		case '"': e = '"'; break;
		case '\\': e = '\\'; break;
		case '/': e = '/'; break;
		case 'b': e = '\b'; break;
		case 'f': e = '\f'; break;
		case 'n': e = '\n'; break;
		case 'r': e = '\r'; break;
		case 't': e = '\t'; break;
		default: return -1; /* \u and anything invalid */
		}
		fl_buf_addch(&f->unescaped, e);
		q += 2;
	}
	*s = f->unescaped.data;
	*len = f->unescaped.len;
	f->p = q + 1;
	return 0;
}

static json_t *fast_value(struct fast *f, int depth);

/* Whether the container ends here: takes the space before and the closing character. */
static int fast_closes(struct fast *f, char close)
{
	skip_space(f);
	if (*f->p != close)
		return 0;
	f->p++;
	return 1;
}

/* After a member or an element: 1 when the container ends, 0 after the comma to the next one
 * (taken, and the space after it), -1 for anything else. */
static int fast_next(struct fast *f, char close)
{
	if (fast_closes(f, close))
		return 1;
	if (*f->p != ',')
		return -1;
	f->p++;
	skip_space(f);
	return 0;
}

static json_t *fast_object(struct fast *f, int depth)
{
	json_t *o = json_object();
	if (fast_closes(f, '}'))
		return o;
	for (;;) {
		const char *key;
		size_t key_len;
		if (*f->p != '"')
			goto fail;
		f->p++;
		if (fast_string(f, &key, &key_len))
			goto fail;
		/* The key may sit in the scratch buffer, which the value's strings reuse. */
		char small[64];
		char *key_copy = key_len < sizeof small ? small : fl_malloc(key_len + 1);
		memcpy(key_copy, key, key_len);
		key_copy[key_len] = '\0';
		skip_space(f);
		json_t *v = NULL;
		if (*f->p == ':') {
			f->p++;
			skip_space(f);
			v = fast_value(f, depth + 1);
		}
		/* A repeated key keeps its place and takes the last value, as jansson does. */
		int rc = v ? json_object_setn_new_nocheck(o, key_copy, key_len, v) : -1;
		if (key_copy != small)
			fl_free(key_copy);
		int next = rc ? -1 : fast_next(f, '}');
		if (next > 0)
			return o;
		if (next < 0)
			goto fail;
	}
fail:
	json_decref(o);
	return NULL;
}

static json_t *fast_array(struct fast *f, int depth)
{
	json_t *a = json_array();
	if (fast_closes(f, ']'))
		return a;
	for (;;) {
		json_t *v = fast_value(f, depth + 1);
		int next = !v || json_array_append_new(a, v) ? -1 : fast_next(f, ']');
		if (next > 0)
			return a;
		if (next < 0)
			goto fail;
	}
fail:
	json_decref(a);
	return NULL;
}

/* An integer of at most 18 digits, which no json_int_t overflows; anything else (reals, longer
 * or malformed numbers) is left to jansson. */
static json_t *fast_number(struct fast *f)
{
	const char *q = f->p;
	int negative = *q == '-';
	if (negative)
		q++;
	if (*q < '0' || *q > '9' || (*q == '0' && q[1] >= '0' && q[1] <= '9'))
		return NULL;
	long long v = 0;
	int digits = 0;
	while (*q >= '0' && *q <= '9') {
		if (++digits > 18)
			return NULL;
		v = v * 10 + (*q++ - '0');
	}
	if (*q == '.' || *q == 'e' || *q == 'E')
		return NULL;
	f->p = q;
	return json_integer(negative ? -v : v);
}

static json_t *fast_value(struct fast *f, int depth)
{
	if (depth > FAST_MAX_DEPTH)
		return NULL;
	switch (*f->p) {
	case '{': f->p++; return fast_object(f, depth);
	case '[': f->p++; return fast_array(f, depth);
	case '"': {
		f->p++;
		const char *s;
		size_t len;
		return fast_string(f, &s, &len) ? NULL : json_stringn_nocheck(s, len);
	}
	case 't':
		if (strncmp(f->p, "true", 4))
			return NULL;
		f->p += 4;
		return json_true();
	case 'f':
		if (strncmp(f->p, "false", 5))
			return NULL;
		f->p += 5;
		return json_false();
	case 'n':
		if (strncmp(f->p, "null", 4))
			return NULL;
		f->p += 4;
		return json_null();
	default: return fast_number(f);
	}
}

json_t *fl_json_loads(const char *text, size_t flags, json_error_t *error)
{
	FL_ASSERT((flags & ~(size_t)JSON_DECODE_ANY) == 0);
	struct fast f = { .p = text, .unescaped = FL_BUF_INIT };
	skip_space(&f);
	json_t *v = NULL;
	if (*f.p == '{' || *f.p == '[') {
		v = fast_value(&f, 0);
		skip_space(&f);
		if (v && *f.p) {
			json_decref(v);
			v = NULL;
		}
	}
	fl_buf_release(&f.unescaped);
	/* Not taken above: jansson decides, errors included, as if it had been asked first. */
	return v ? v : json_loads(text, flags, error);
}

char *fl_json_format_number(double d, char out[32])
{
	if (isnan(d))
		return strcpy(out, "NaN");
	if (isinf(d))
		return strcpy(out, d > 0 ? "Infinity" : "-Infinity");
	if (d == 0)
		return strcpy(out, "0");
	/* The shortest digits that read back as d, as ECMAScript's Number::toString asks. */
	char sci[40];
	for (int prec = 0; prec < 17; prec++) {
		snprintf(sci, sizeof sci, "%.*e", prec, d);
		if (strtod(sci, NULL) == d)
			break;
	}
	const char *p = sci;
	int neg = *p == '-';
	p += neg;
	char digits[24];
	int k = 0;
	for (; *p && *p != 'e'; p++)
		if (*p >= '0' && *p <= '9')
			digits[k++] = *p;
	while (k > 1 && digits[k - 1] == '0')
		k--;
	int n = atoi(p + 1) + 1; /* value = 0.digits × 10^n */
	char *o = out;
	if (neg)
		*o++ = '-';
	if (k <= n && n <= 21) {
		memcpy(o, digits, (size_t)k);
		o += k;
		for (int i = k; i < n; i++)
			*o++ = '0';
	} else if (0 < n && n <= 21) {
		memcpy(o, digits, (size_t)n);
		o += n;
		*o++ = '.';
		memcpy(o, digits + n, (size_t)(k - n));
		o += k - n;
	} else if (-6 < n && n <= 0) {
		*o++ = '0';
		*o++ = '.';
		for (int i = 0; i < -n; i++)
			*o++ = '0';
		memcpy(o, digits, (size_t)k);
		o += k;
	} else {
		*o++ = digits[0];
		if (k > 1) {
			*o++ = '.';
			memcpy(o, digits + 1, (size_t)(k - 1));
			o += k - 1;
		}
		o += sprintf(o, "e%c%d", n - 1 >= 0 ? '+' : '-', abs(n - 1));
	}
	*o = '\0';
	return out;
}

bool fl_json_index_key(const char *k, unsigned long *value)
{
	if (!*k || (k[0] == '0' && k[1]) || strlen(k) > 9)
		return false;
	for (const char *p = k; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	*value = strtoul(k, NULL, 10);
	return true;
}

struct key_ref {
	const char *key;
	const json_t *value;
	unsigned long index;
	size_t order;
	bool is_index;
};

static int key_cmp(const void *a, const void *b)
{
	const struct key_ref *x = a, *y = b;
	if (x->is_index != y->is_index)
		return x->is_index ? -1 : 1;
	if (x->is_index)
		return x->index < y->index ? -1 : x->index > y->index;
	return x->order < y->order ? -1 : x->order > y->order;
}

static void add_string(struct fl_buf *b, const char *s, size_t len)
{
	fl_buf_addch(b, '"');
	fl_buf_add_json_escaped(b, s, len);
	fl_buf_addch(b, '"');
}

static void newline(struct fl_buf *b, unsigned flags, int depth)
{
	if (!(flags & FL_JSON_INDENT))
		return;
	fl_buf_addch(b, '\n');
	for (int i = 0; i < depth; i++)
		fl_buf_add(b, "  ", 2);
}

static void write_value(struct fl_buf *b, const json_t *v, unsigned flags, int depth);

/* i as printf's %lld writes it, without the cost of a format string for every number: the
 * text ends at the end of digits, and starts where the return value points. */
static const char *integer_text(json_int_t i, char digits[24])
{
	char *p = digits + 24;
	unsigned long long u = i < 0 ? 0ULL - (unsigned long long)i : (unsigned long long)i;
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (i < 0)
		*--p = '-';
	return p;
}

static void write_integer(struct fl_buf *b, json_int_t i)
{
	char digits[24];
	const char *p = integer_text(i, digits);
	fl_buf_add(b, p, (size_t)(digits + sizeof digits - p));
}

static void write_object(struct fl_buf *b, const json_t *v, unsigned flags, int depth)
{
	size_t n = json_object_size(v), i = 0;
	if (!n) {
		fl_buf_add(b, "{}", 2);
		return;
	}
	struct key_ref small[16];
	struct key_ref *keys = n <= 16 ? small : fl_malloc(n * sizeof *keys);
	bool any_index = false;
	const char *k;
	json_t *member;
	json_object_foreach((json_t *)v, k, member) {
		keys[i] = (struct key_ref){ .key = k, .value = member, .order = i };
		if (flags & FL_JSON_JS_KEY_ORDER) {
			keys[i].is_index = fl_json_index_key(k, &keys[i].index);
			any_index |= keys[i].is_index;
		}
		i++;
	}
	if (any_index)
		qsort(keys, n, sizeof *keys, key_cmp);
	fl_buf_addch(b, '{');
	for (i = 0; i < n; i++) {
		if (i)
			fl_buf_addch(b, ',');
		newline(b, flags, depth + 1);
		add_string(b, keys[i].key, strlen(keys[i].key));
		fl_buf_add(b, ": ", flags & FL_JSON_INDENT ? 2 : 1);
		write_value(b, keys[i].value, flags, depth + 1);
	}
	newline(b, flags, depth);
	fl_buf_addch(b, '}');
	if (keys != small)
		fl_free(keys);
}

static void write_value(struct fl_buf *b, const json_t *v, unsigned flags, int depth)
{
	char num[32];
	switch (json_typeof(v)) {
	case JSON_NULL: fl_buf_add(b, "null", 4); return;
	case JSON_TRUE: fl_buf_add(b, "true", 4); return;
	case JSON_FALSE: fl_buf_add(b, "false", 5); return;
	case JSON_INTEGER: write_integer(b, json_integer_value(v)); return;
	case JSON_REAL: {
		double d = json_real_value(v);
		/* json_real refuses NaN and infinities; should one get in anyway, write what
		 * JSON.stringify writes rather than text no JSON parser accepts. */
		fl_buf_adds(b, isfinite(d) ? fl_json_format_number(d, num) : "null");
		return;
	}
	case JSON_STRING: add_string(b, json_string_value(v), json_string_length(v)); return;
	case JSON_ARRAY: {
		size_t n = json_array_size(v);
		if (!n) {
			fl_buf_add(b, "[]", 2);
			return;
		}
		fl_buf_addch(b, '[');
		for (size_t i = 0; i < n; i++) {
			if (i)
				fl_buf_addch(b, ',');
			newline(b, flags, depth + 1);
			write_value(b, json_array_get(v, i), flags, depth + 1);
		}
		newline(b, flags, depth);
		fl_buf_addch(b, ']');
		return;
	}
	case JSON_OBJECT: write_object(b, v, flags, depth); return;
	}
}

void fl_json_write(struct fl_buf *b, const json_t *value, unsigned flags)
{
	write_value(b, value, flags, 0);
}

char *fl_json_dump(const json_t *value)
{
	struct fl_buf b = FL_BUF_INIT;
	fl_json_write(&b, value, 0);
	return fl_buf_detach(&b, NULL);
}

void fl_json_dump_buf(struct fl_buf *b, const json_t *value)
{
	fl_json_write(b, value, 0);
}

size_t fl_json_length(const json_t *v)
{
	char num[32];
	switch (json_typeof(v)) {
	case JSON_NULL: return 4;
	case JSON_TRUE: return 4;
	case JSON_FALSE: return 5;
	case JSON_INTEGER: {
		char digits[24];
		return (size_t)(digits + sizeof digits - integer_text(json_integer_value(v), digits));
	}
	case JSON_REAL: {
		double d = json_real_value(v);
		return isfinite(d) ? strlen(fl_json_format_number(d, num)) : 4;
	}
	case JSON_STRING: return 2 + fl_json_escaped_length(json_string_value(v), json_string_length(v));
	case JSON_ARRAY: {
		size_t n = json_array_size(v);
		size_t total = n ? n + 1 : 2; /* brackets and the commas between */
		for (size_t i = 0; i < n; i++)
			total += fl_json_length(json_array_get(v, i));
		return total;
	}
	case JSON_OBJECT: {
		size_t n = json_object_size(v);
		size_t total = n ? n + 1 : 2; /* braces and the commas between */
		const char *k;
		json_t *member;
		json_object_foreach((json_t *)v, k, member)
			total += 3 + fl_json_escaped_length(k, strlen(k)) + fl_json_length(member);
		return total;
	}
	}
	return 0;
}


const char *fl_json_type_name(const json_t *value)
{
	switch (json_typeof(value)) {
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER:
	case JSON_REAL: return "number";
	case JSON_TRUE:
	case JSON_FALSE: return "boolean";
	case JSON_NULL: return "null";
	}
	return "unknown";
}
