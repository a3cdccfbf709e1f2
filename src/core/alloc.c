/* The abort-on-OOM allocator described in alloc.h. */
#include "core/alloc.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void oom(size_t size)
{
	char msg[96];
	int n = snprintf(msg, sizeof msg, "fatal: out of memory allocating %zu bytes\n", size);
	if (n > 0)
		(void)!write(2, msg, (size_t)n);
	abort();
}

void *fl_malloc(size_t size)
{
	void *p = malloc(size ? size : 1);
	if (!p)
		oom(size);
	return p;
}

void *fl_calloc(size_t count, size_t size)
{
	void *p = calloc(count ? count : 1, size ? size : 1);
	if (!p)
		oom(count * size);
	return p;
}

void *fl_realloc(void *ptr, size_t size)
{
	void *p = realloc(ptr, size ? size : 1);
	if (!p)
		oom(size);
	return p;
}

char *fl_strdup(const char *s)
{
	return fl_strndup(s, strlen(s));
}

char *fl_strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = fl_malloc(len + 1);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *fl_asprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom(0);
	char *p = fl_malloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

void fl_free(void *ptr)
{
	free(ptr);
}

void fl_alloc_init(void)
{
	json_set_alloc_funcs(fl_malloc, fl_free);
}
