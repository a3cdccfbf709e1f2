/* A growable byte buffer that is always NUL-terminated, the building block for strings that are
 * assembled piece by piece (HTTP bodies, log lines, templates). Embed it and call fl_buf_init,
 * or use FL_BUF_INIT; fl_buf_release frees the storage, fl_buf_detach hands it to the caller. */
#ifndef FL_BUF_H
#define FL_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct fl_buf {
	char *data; /* NUL-terminated; never NULL after init */
	size_t len;
	size_t cap;
};

#define FL_BUF_INIT { .data = fl_buf_empty, .len = 0, .cap = 0 }
extern char fl_buf_empty[1];

void fl_buf_init(struct fl_buf *b);
void fl_buf_release(struct fl_buf *b);
void fl_buf_reset(struct fl_buf *b);
void fl_buf_grow(struct fl_buf *b, size_t extra);
void fl_buf_add(struct fl_buf *b, const void *data, size_t len);
void fl_buf_adds(struct fl_buf *b, const char *s);
void fl_buf_addch(struct fl_buf *b, char c);
void fl_buf_addf(struct fl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fl_buf_vaddf(struct fl_buf *b, const char *fmt, va_list ap);
/* Appends s as the body of a JSON string (escaped as JSON.stringify escapes it, without the
 * surrounding quotes). */
void fl_buf_add_json_escaped(struct fl_buf *b, const char *s, size_t len);
/* The length of what fl_buf_add_json_escaped appends for s. */
size_t fl_json_escaped_length(const char *s, size_t len);
/* Returns the heap string (the caller frees it with fl_free) and re-initialises b. */
char *fl_buf_detach(struct fl_buf *b, size_t *len);

#endif
