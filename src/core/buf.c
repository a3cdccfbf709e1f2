/* Growable buffer: see buf.h. */
#include "core/buf.h"
#include "core/alloc.h"

#include <stdio.h>
#include <string.h>

char fl_buf_empty[1];

void fl_buf_init(struct fl_buf *b)
{
	b->data = fl_buf_empty;
	b->len = b->cap = 0;
}

void fl_buf_release(struct fl_buf *b)
{
	if (b->cap)
		fl_free(b->data);
	fl_buf_init(b);
}

void fl_buf_reset(struct fl_buf *b)
{
	b->len = 0;
	if (b->cap)
		b->data[0] = '\0';
}

void fl_buf_grow(struct fl_buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	if (b->cap) {
		b->data = fl_realloc(b->data, cap);
	} else {
		b->data = fl_malloc(cap);
		b->data[0] = '\0';
	}
	b->cap = cap;
}

void fl_buf_add(struct fl_buf *b, const void *data, size_t len)
{
	if (!len)
		return;
	fl_buf_grow(b, len);
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void fl_buf_adds(struct fl_buf *b, const char *s)
{
	fl_buf_add(b, s, strlen(s));
}

void fl_buf_addch(struct fl_buf *b, char c)
{
	if (b->len + 2 > b->cap)
		fl_buf_grow(b, 1);
	b->data[b->len++] = c;
	b->data[b->len] = '\0';
}

void fl_buf_vaddf(struct fl_buf *b, const char *fmt, va_list ap)
{
	va_list cp;
	va_copy(cp, ap);
	int n = vsnprintf(b->data + b->len, b->cap ? b->cap - b->len : 0, fmt, cp);
	va_end(cp);
	if (n < 0)
		return;
	if (b->len + (size_t)n + 1 > b->cap) {
		fl_buf_grow(b, (size_t)n);
		vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	}
	b->len += (size_t)n;
}

void fl_buf_addf(struct fl_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fl_buf_vaddf(b, fmt, ap);
	va_end(ap);
}

/* How c is written in a JSON string: the escapes JSON.stringify uses, so that every JSON text
 * flowd writes matches it. Returns 0 for a character written as itself, else the length of its
 * escape: a short one in *esc, or NULL for \u00XX. */
static int json_escape(unsigned char c, const char **esc)
{
	*esc = NULL;
	switch (c) {
	case '"': *esc = "\\\""; return 2;
	case '\\': *esc = "\\\\"; return 2;
	case '\b': *esc = "\\b"; return 2;
	case '\f': *esc = "\\f"; return 2;
	case '\n': *esc = "\\n"; return 2;
	case '\r': *esc = "\\r"; return 2;
	case '\t': *esc = "\\t"; return 2;
	default: return c >= 0x20 ? 0 : 6;
	}
}

void fl_buf_add_json_escaped(struct fl_buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t run = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *esc;
		if (!json_escape(c, &esc))
			continue;
		fl_buf_add(b, s + run, i - run);
		run = i + 1;
		if (esc) {
			fl_buf_add(b, esc, 2);
		} else {
			char u[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
			fl_buf_add(b, u, 6);
		}
	}
	fl_buf_add(b, s + run, len - run);
}

size_t fl_json_escaped_length(const char *s, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		const char *esc;
		int w = json_escape((unsigned char)s[i], &esc);
		n += w ? (size_t)w : 1;
	}
	return n;
}

char *fl_buf_detach(struct fl_buf *b, size_t *len)
{
	char *s = b->cap ? b->data : fl_strdup("");
	if (len)
		*len = b->len;
	fl_buf_init(b);
	return s;
}
