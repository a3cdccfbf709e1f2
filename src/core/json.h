/* JSON helpers over jansson: loading with positions in errors, compact dumping, and typed field
 * access that reports the JSON path of what is wrong ("trigger.nextAction.settings.items"). */
#ifndef FL_JSON_H
#define FL_JSON_H

#include <jansson.h>
#include <stddef.h>

struct fl_err;
struct fl_buf;

/* Parses a whole file. On failure returns NULL and sets err to
 * "'<path>': <line>:<column>: <reason>" (or the errno text when it cannot be read). */
json_t *fl_json_load_file(const char *path, struct fl_err *err);
/* Parses len bytes; `what` names the source in errors ("payload", "request body"). */
json_t *fl_json_loadb(const char *data, size_t len, const char *what, struct fl_err *err);
/* Compact JSON text of any value (strings included); the caller frees it with free(). */
char *fl_json_dump(const json_t *value);
/* Appends the compact JSON text of value to b. */
void fl_json_dump_buf(struct fl_buf *b, const json_t *value);
/* "object", "array", "string", "number", "boolean", "null" */
const char *fl_json_type_name(const json_t *value);

#endif
