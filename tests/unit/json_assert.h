/* assert_json_text: a cmocka assertion that a JSON value equals the value of a JSON text, with
 * both printed when they differ. Header-only, like pg_harness.h. Include after <cmocka.h>. */
#ifndef TEST_JSON_ASSERT_H
#define TEST_JSON_ASSERT_H

#include <jansson.h>

static inline void assert_json_text(const json_t *got, const char *want_text)
{
	json_t *want = json_loads(want_text, 0, NULL);
	assert_non_null(want);
	if (!json_equal(got, want)) {
		char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
		fail_msg("got %s\nwant %s", g, want_text);
	}
	json_decref(want);
}

#endif
