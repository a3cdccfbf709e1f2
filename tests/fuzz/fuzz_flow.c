/* Fuzz driver for the flow parser (src/engine/flow.c): any bytes are loaded as JSON and, when
 * they parse, validated as a flow in every accepted shape. Nothing may crash or leak. */
#include "core/alloc.h"
#include "core/err.h"
#include "engine/flow.h"

#include <jansson.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int init;
	if (!init) {
		fl_alloc_init();
		init = 1;
	}
	json_t *doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
	if (!doc)
		return 0;
	for (int flags = 0; flags <= ENG_FLOW_ALLOW_EMPTY; flags++) {
		struct eng_flow *flow = NULL;
		struct fl_err err = { 0 };
		if (eng_flow_parse(doc, flags, &flow, &err) == 0) {
			for (const struct eng_step *s = flow->trigger; s; s = s->next)
				eng_flow_find_step(flow, s->name);
			eng_flow_free(flow);
		}
	}
	json_decref(doc);
	return 0;
}
