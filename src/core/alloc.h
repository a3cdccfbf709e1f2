/* Memory allocation for all of flowd. Out of memory is not a recoverable condition for a worker
 * or an app, so these never return NULL: they log and abort, as Redis's zmalloc does. The same
 * functions are plugged into jansson so that every allocation follows one policy. */
#ifndef FL_ALLOC_H
#define FL_ALLOC_H

#include <stddef.h>

void *fl_malloc(size_t size);
void *fl_calloc(size_t count, size_t size);
void *fl_realloc(void *ptr, size_t size);
char *fl_strdup(const char *s);
char *fl_strndup(const char *s, size_t n);
/* printf into a new heap string; the caller frees it. */
char *fl_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fl_free(void *ptr);

/* Installs fl_malloc/fl_free as jansson's allocator; call once at start, before any json_t. */
void fl_alloc_init(void);

#endif
