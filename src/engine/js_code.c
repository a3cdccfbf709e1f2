/* CODE steps on JavaScriptCore. */
#include "engine/js_int.h"

#include "core/err.h"

JSClassRef js_code_class_create(void)
{
	JSClassDefinition def = kJSClassDefinitionEmpty;
	def.className = "global";
	return JSClassCreate(&def);
}

int js_run_code(struct js_runtime *rt, const char *source, const json_t *inputs,
		const struct js_code_ctx *ctx, json_t **out, struct fl_buf *console,
		struct fl_err *err)
{
	*out = NULL;
	return fl_err_set(err, FL_EUNSUPPORTED, "code steps are not available in this build yet");
}
