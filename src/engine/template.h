/* {{ ... }} templates in step inputs (shared/FLOWS.md §2). A plain dotted path such as
 * `step_1.body.items[0].name` is resolved natively; anything else is JavaScript (engine/js.h). */
#ifndef ENG_TEMPLATE_H
#define ENG_TEMPLATE_H

#include <jansson.h>

struct fl_err;
struct js_runtime;

/* Resolves every string leaf of value against scope (an object: step name → output; inside a
 * loop, the loop step's name → {"item","index"} as well). *out is a new reference. A string
 * that is exactly one {{expr}} keeps the value's type; other strings get each value spliced in,
 * non-strings as JSON. An expression that throws or yields undefined becomes "". rt may be NULL:
 * then only plain paths resolve and any other expression reads as "". Returns 0, or
 * FL_ETIMEOUT when an expression ran past the time limit (the step then fails). */
int eng_tmpl_resolve(struct js_runtime *rt, const json_t *value, const json_t *scope,
		     json_t **out, struct fl_err *err);

/* True when value contains any {{ anywhere in its string leaves. */
int eng_tmpl_has_templates(const json_t *value);

#endif
