/* Fuzzes template resolution: the input is a string leaf (and, when it parses, a whole JSON
 * input) resolved against a fixed scope. Exercises the {{ }} scanner, the native path parser
 * and the hand-off to JavaScriptCore. */
#include "core/alloc.h"
#include "engine/js.h"
#include "engine/template.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct js_runtime *rt;
static json_t *scope;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!rt) {
		fl_alloc_init();
		struct js_runtime_opts opts = { .time_limit_ms = 100 };
		rt = js_runtime_new(&opts);
		scope = json_loads("{\"trigger\":{\"items\":[5,\"a\",{\"k\":null}],\"price\":6.4,"
				   "\"a b\":{\"c\":[[1]]}},\"step_1\":{\"body\":\"text\"},"
				   "\"loop\":{\"item\":1,\"index\":1}}", 0, NULL);
	}
	json_t *inputs[2] = {
		json_stringn_nocheck((const char *)data, size),
		json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL),
	};
	for (int i = 0; i < 2; i++) {
		if (!inputs[i])
			continue;
		json_t *out = NULL;
		if (eng_tmpl_resolve(rt, inputs[i], scope, &out, NULL) == 0) {
			if (!out)
				abort();
			json_decref(out);
		}
		eng_tmpl_has_templates(inputs[i]);
		json_decref(inputs[i]);
	}
	return 0;
}
