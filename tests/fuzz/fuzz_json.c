/* Fuzzes fl_json_loads against jansson's json_loads, which it must equal for any text: the same
 * value, or a refusal by both, for both flag settings. The input is made a C string at its
 * first NUL, as the callers' texts are. */
#include "core/json.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	static const size_t flags[] = { 0, JSON_DECODE_ANY };
	for (int i = 0; i < 2; i++) {
		json_error_t e1, e2;
		json_t *ours = fl_json_loads(text, flags[i], &e1);
		json_t *theirs = json_loads(text, flags[i], &e2);
		if (!ours != !theirs || (ours && !json_equal(ours, theirs)))
			abort();
		/* json_equal ignores member order: the order must match as well. */
		if (ours && json_is_object(ours)) {
			void *a = json_object_iter(ours), *b = json_object_iter(theirs);
			for (; a && b; a = json_object_iter_next(ours, a), b = json_object_iter_next(theirs, b))
				if (strcmp(json_object_iter_key(a), json_object_iter_key(b)))
					abort();
			if (a || b)
				abort();
		}
		if (!ours && strcmp(e1.text, e2.text))
			abort();
		json_decref(ours);
		json_decref(theirs);
	}
	free(text);
	return 0;
}
