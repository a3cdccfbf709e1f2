/* JSON helpers over jansson: loading with positions in errors, and the one JSON writer of flowd.
 * Every JSON text flowd emits (API answers, stored steps, engine events, queue return values,
 * CLI output, logs) goes through fl_json_write, so numbers read the same everywhere and the
 * same as JavaScript writes them: 6.4, never jansson's 6.4000000000000004. */
#ifndef FL_JSON_H
#define FL_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct fl_err;
struct fl_buf;

/* Parses a whole file. On failure returns NULL and sets err to
 * "'<path>': <line>:<column>: <reason>" (or the errno text when it cannot be read). */
json_t *fl_json_load_file(const char *path, struct fl_err *err);
/* Parses len bytes; `what` names the source in errors ("payload", "request body"). */
json_t *fl_json_loadb(const char *data, size_t len, const char *what, struct fl_err *err);
/* Parses text as json_loads(text, flags, error) does, to the very same value, for flags 0 or
 * JSON_DECODE_ANY, only faster for what flowd writes itself, such as an engine's events: ASCII
 * strings, integers. Whatever else it meets (other characters, \\u escapes, reals, deep
 * nesting, a scalar at the top, errors) it leaves to json_loads from the start, error and all. */
json_t *fl_json_loads(const char *text, size_t flags, json_error_t *error);
enum fl_json_flags {
	/* Two-space indentation and ": " after keys, as JSON.stringify(v, null, 2) (and
	 * jansson's JSON_INDENT(2)) write it; for people reading CLI output. */
	FL_JSON_INDENT = 1 << 0,
	/* JavaScript's own key order: keys that are canonical array indices ("0", "17", not
	 * "01") first in numeric order, then the rest as stored. Without it keys come as stored. */
	FL_JSON_JS_KEY_ORDER = 1 << 1,
};

/* Appends the JSON text of value (any type, strings included) to b as JSON.stringify writes
 * it: reals in the shortest form that reads back as the same double (5.4, 1e+21, 1e-7, -0 as
 * 0), integers as integers, the same string escapes (\b \f \n \r \t \" \\, other control
 * characters as \u00xx, everything else as it is). flags: enum fl_json_flags; 0 is compact. */
void fl_json_write(struct fl_buf *b, const json_t *value, unsigned flags);
/* Compact JSON text of value; the caller frees it with free(). Never NULL. */
char *fl_json_dump(const json_t *value);
/* Appends the compact JSON text of value to b. */
void fl_json_dump_buf(struct fl_buf *b, const json_t *value);
/* strlen(fl_json_dump(value)), without writing the text: for a size check on a value that is
 * never written out. */
size_t fl_json_length(const json_t *value);
/* Writes the double d as JavaScript's String(d) does ("5.4", "1e+21", "-0" as "0", "NaN",
 * "Infinity") into out, which must hold 32 bytes. Returns out. */
char *fl_json_format_number(double d, char out[32]);

/* True when k is a canonical array index ("0", "17", not "01"), with its value in *value:
 * JavaScript lists such keys first, in numeric order, whatever order they were added in. */
bool fl_json_index_key(const char *k, unsigned long *value);
/* "object", "array", "string", "number", "boolean", "null" */
const char *fl_json_type_name(const json_t *value);

#endif
