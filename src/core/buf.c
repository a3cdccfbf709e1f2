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
	fl_buf_add(b, &c, 1);
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

void fl_buf_add_json_escaped(struct fl_buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (c) {
		case '"': fl_buf_add(b, "\\\"", 2); break;
		case '\\': fl_buf_add(b, "\\\\", 2); break;
		case '\n': fl_buf_add(b, "\\n", 2); break;
		case '\r': fl_buf_add(b, "\\r", 2); break;
		case '\t': fl_buf_add(b, "\\t", 2); break;
		default:
			if (c < 0x20) {
				char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
				fl_buf_add(b, esc, 6);
			} else {
				fl_buf_addch(b, (char)c);
			}
		}
	}
}

char *fl_buf_detach(struct fl_buf *b, size_t *len)
{
	char *s = b->cap ? b->data : fl_strdup("");
	if (len)
		*len = b->len;
	fl_buf_init(b);
	return s;
}
