/* JSON helpers: see json.h. */
#include "core/json.h"
#include "core/buf.h"
#include "core/err.h"

#include <errno.h>
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

char *fl_json_dump(const json_t *value)
{
	return json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
}

static int dump_cb(const char *data, size_t size, void *b)
{
	fl_buf_add(b, data, size);
	return 0;
}

void fl_json_dump_buf(struct fl_buf *b, const json_t *value)
{
	json_dump_callback(value, dump_cb, b, JSON_COMPACT | JSON_ENCODE_ANY);
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
