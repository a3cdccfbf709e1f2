/* @activepieces/piece-data-mapper advanced_mapping: the output is the resolved mapping itself. */
#include "core/err.h"
#include "core/json.h"
#include "engine/pieces/pieces.h"

int pc_data_mapper(struct pc_ctx *ctx, const json_t *input, json_t **output, struct fl_err *err)
{
	const json_t *mapping = json_object_get(input, "mapping");
	json_t *v;
	if (json_is_string(mapping)) {
		v = json_loadb(json_string_value(mapping), json_string_length(mapping),
			       JSON_DECODE_ANY, NULL);
		if (!v)
			return fl_err_set(err, FL_EINVAL, "the mapping is not valid JSON");
	} else if (!mapping) {
		return fl_err_set(err, FL_EINVAL, "input 'mapping' is required");
	} else {
		v = json_incref((json_t *)mapping);
	}
	if (!json_is_object(v) && !json_is_array(v)) {
		int rc = fl_err_set(err, FL_EINVAL, "the mapping must be an object or an array, got %s",
				    fl_json_type_name(v));
		json_decref(v);
		return rc;
	}
	*output = v;
	return 0;
}
