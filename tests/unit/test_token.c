/* Unit tests for the per-run engine tokens (core/token.h) and generated secrets (core/secret.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/secret.h"
#include "core/token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_roundtrip(void **state)
{
	char *t = fl_token_sign("s3cret", "AbCdEfGhIjKlMnOpQrStU", 1000, 2000);
	char run[FL_TOKEN_RUN_ID_MAX + 1];
	struct fl_err err;
	assert_int_equal(fl_token_verify("s3cret", t, 1500, run, &err), 0);
	assert_string_equal(run, "AbCdEfGhIjKlMnOpQrStU");
	/* A standard JWT: header.payload.signature with the HS256 header. */
	assert_int_equal(strncmp(t, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.", 37), 0);
	fl_free(t);
}

/* Tokens computed independently (Python's hmac and json), short and long (> 64 bytes) keys. */
static void test_known_tokens(void **state)
{
	char *t = fl_token_sign("Jefe", "AbCdEfGhIjKlMnOpQrStU", 1000, 2000);
	assert_string_equal(t, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJBYkNkRWZHaElqS2xNbk9wUXJTdFUiLCJpYXQiOjEwMDAsImV4cCI6MjAwMH0.Revg0NDHyjjTzTnczKXawn_2KDErHhbvpveI9zwVy6A");
	fl_free(t);
	char key[101];
	memset(key, 'k', 100);
	key[100] = '\0';
	t = fl_token_sign(key, "run1", 5, 6000000000LL);
	assert_string_equal(t, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJydW4xIiwiaWF0Ijo1LCJleHAiOjYwMDAwMDAwMDB9.jesyRo_sRzYatGq0P7sMmcO8BYOfLur7vTgVCLBQujs");
	fl_free(t);
}

static void test_rejects(void **state)
{
	struct fl_err err;
	char run[FL_TOKEN_RUN_ID_MAX + 1];
	char *t = fl_token_sign("s3cret", "run1", 1000, 2000);
	assert_int_equal(fl_token_verify("s3cret", t, 2000, run, &err), FL_EDENIED);
	assert_non_null(strstr(err.msg, "expired"));
	assert_int_equal(fl_token_verify("other", t, 1500, run, &err), FL_EDENIED);
	assert_non_null(strstr(err.msg, "signature"));
	/* A token found good once is still checked for expiry and against the secret given. */
	assert_int_equal(fl_token_verify("s3cret", t, 1500, run, &err), 0);
	assert_int_equal(fl_token_verify("s3cret", t, 1999, run, &err), 0);
	assert_string_equal(run, "run1");
	assert_int_equal(fl_token_verify("s3cret", t, 2000, run, &err), FL_EDENIED);
	assert_non_null(strstr(err.msg, "expired"));
	assert_int_equal(fl_token_verify("s3cre", t, 1500, run, &err), FL_EDENIED);
	assert_int_equal(fl_token_verify("s3cret!", t, 1500, run, &err), FL_EDENIED);
	assert_int_equal(fl_token_verify("s3cret", t, 1500, run, &err), 0);

	/* Any changed byte of payload or signature is caught. */
	size_t len = strlen(t);
	for (size_t i = 37; i < len; i++) {
		char *m = fl_strdup(t);
		m[i] = m[i] == 'A' ? 'B' : 'A';
		assert_int_equal(fl_token_verify("s3cret", m, 1500, run, NULL), FL_EDENIED);
		fl_free(m);
	}
	/* alg none and other headers are refused before any parsing of claims. */
	const char *none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJydW4xIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
	assert_int_equal(fl_token_verify("s3cret", none, 1500, run, &err), FL_EDENIED);
	assert_int_equal(fl_token_verify("s3cret", "", 1500, run, &err), FL_EDENIED);
	assert_int_equal(fl_token_verify("s3cret", NULL, 1500, run, &err), FL_EDENIED);
	assert_int_equal(fl_token_verify("s3cret", "a.b", 1500, run, &err), FL_EDENIED);
	assert_int_equal(fl_token_verify("s3cret", "a.b.c.d", 1500, run, &err), FL_EDENIED);
	fl_free(t);
}

static void test_base64url(void **state)
{
	const char *in = "\xff\xfe\x00hello";
	char enc[32];
	unsigned char dec[32];
	for (size_t n = 0; n <= 8; n++) {
		size_t el = fl_base64url_encode(in, n, enc);
		assert_null(strchr(enc, '='));
		assert_null(strchr(enc, '+'));
		long dl = fl_base64url_decode(enc, el, dec);
		assert_int_equal(dl, (long)n);
		assert_memory_equal(dec, in, n);
	}
	assert_int_equal(fl_base64url_decode("a*b", 3, dec), -1);
}

static void test_secret(void **state)
{
	char dir[] = "/tmp/flowd-secret-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char sub[64];
	snprintf(sub, sizeof sub, "%s/cfg", dir);
	char *a = NULL, *b = NULL;
	int created;
	assert_int_equal(fl_secret_load_or_create(sub, "api-key", &a, &created, NULL), 0);
	assert_int_equal(created, 1);
	assert_int_equal(strlen(a), 64);
	assert_int_equal(fl_secret_load_or_create(sub, "api-key", &b, &created, NULL), 0);
	assert_int_equal(created, 0);
	assert_string_equal(a, b);
	char path[96];
	snprintf(path, sizeof path, "%s/api-key", sub);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	fl_free(b);
	assert_int_equal(fl_secret_read(sub, "api-key", &b, NULL), 0);
	assert_string_equal(a, b);
	assert_int_equal(fl_secret_read(sub, "missing", &b, NULL), FL_ENOTFOUND);
	fl_free(a);
	fl_free(b);
	unlink(path);
	rmdir(sub);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_known_tokens),
		cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_base64url),
		cmocka_unit_test(test_secret),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
