/* Unit tests for src/engine/pieces: each action called directly with a resolved input and a
 * test host (in-memory store, fake clock), and the http piece against a local server for every
 * failureMode with 200, 404 and 500. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/json.h"
#include "engine/engine.h"
#include "engine/pieces/pieces.h"
#include "httpsrv.h"

#include <openssl/hmac.h>
#include <string.h>

static struct httpsrv *srv;

struct test_host {
	json_t *store;
	int64_t now;
	int64_t slept;
};

static int64_t th_now(void *ctx)
{
	return ((struct test_host *)ctx)->now;
}

static void th_sleep(void *ctx, int64_t ms)
{
	struct test_host *h = ctx;
	h->now += ms;
	h->slept += ms;
}

static int th_get(void *ctx, const char *key, json_t **value, struct fl_err *err)
{
	json_t *v = json_object_get(((struct test_host *)ctx)->store, key);
	*value = v ? json_incref(v) : NULL;
	return 0;
}

static int th_put(void *ctx, const char *key, const json_t *value, struct fl_err *err)
{
	json_object_set_new(((struct test_host *)ctx)->store, key, json_deep_copy(value));
	return 0;
}

static int th_del(void *ctx, const char *key, struct fl_err *err)
{
	json_object_del(((struct test_host *)ctx)->store, key);
	return 0;
}

static struct test_host th;
static struct eng_host host = {
	.ctx = &th,
	.store_get = th_get,
	.store_put = th_put,
	.store_delete = th_del,
	.now_ms = th_now,
	.sleep_ms = th_sleep,
};

static struct pc_ctx new_ctx(void)
{
	struct pc_ctx c = {
		.run_id = "RunAbc123",
		.flow_id = "flow1",
		.step_name = "step_1",
		.step_path = "step_1",
		.frontend_url = "https://flows.example.com",
		.waitpoint_id = "Wp1",
		.host = &host,
	};
	return c;
}

static void ctx_release(struct pc_ctx *c)
{
	json_decref(c->pause);
	json_decref(c->response);
}

static int setup(void **state)
{
	srv = httpsrv_start();
	return 0;
}

static int teardown(void **state)
{
	httpsrv_stop(srv);
	return 0;
}

static int reset(void **state)
{
	json_decref(th.store);
	th.store = json_object();
	th.now = 1700000000000LL;
	th.slept = 0;
	httpsrv_reset(srv);
	return 0;
}

/* Runs an action with input given as JSON text. */
static int run(pc_action_fn fn, struct pc_ctx *c, const char *input, json_t **out,
	       struct fl_err *err)
{
	json_error_t je;
	json_t *in = json_loads(input, 0, &je);
	if (!in)
		fail_msg("bad test input: %s", je.text);
	*out = NULL;
	int rc = fn(c, in, out, err);
	json_decref(in);
	return rc;
}

static void test_find_action(void **state)
{
	const struct pc_action *a;
	struct fl_err err;
	assert_int_equal(pc_find_action("@activepieces/piece-http", "send_request", &a, &err), 0);
	assert_true(a->effects);
	assert_int_equal(pc_find_action("@activepieces/piece-data-mapper", "advanced_mapping", &a,
					&err),
			 0);
	assert_false(a->effects);
	assert_int_equal(pc_find_action("@activepieces/piece-slack", "send", &a, &err),
			 FL_ENOTFOUND);
	assert_string_equal(err.msg, "piece @activepieces/piece-slack is not installed");
	assert_int_equal(pc_find_action("@activepieces/piece-http", "nope", &a, &err),
			 FL_ENOTFOUND);
	assert_string_equal(err.msg, "action nope not found in @activepieces/piece-http");
	assert_int_equal(pc_find_action("@activepieces/piece-schedule", "x", &a, &err),
			 FL_ENOTFOUND);
	assert_string_equal(err.msg, "action x not found in @activepieces/piece-schedule");
}

/* --- http --------------------------------------------------------------------------------- */

static int http(struct pc_ctx *c, const char *fmt, const char *path, json_t **out,
		struct fl_err *err)
{
	char input[2048];
	snprintf(input, sizeof input, fmt, httpsrv_url(srv, path));
	return run(pc_http_send_request, c, input, out, err);
}

static void test_http_get(void **state)
{
	struct pc_ctx c = new_ctx();
	json_t *out;
	struct fl_err err = { 0 };
	assert_int_equal(http(&c, "{\"method\":\"GET\",\"url\":\"%s\",\"queryParams\":{\"b\":\"x y\","
				  "\"n\":5},\"headers\":{\"X-One\":\"1\"}}",
			      "/echo?a=1", &out, &err),
			 0);
	assert_int_equal(json_integer_value(json_object_get(out, "status")), 200);
	assert_string_equal(json_string_value(json_object_get(json_object_get(out, "headers"),
							      "content-type")),
			    "application/json");
	const json_t *echo = json_object_get(out, "body");
	assert_string_equal(json_string_value(json_object_get(echo, "method")), "GET");
	/* queryParams are appended to the URL's own. */
	assert_string_equal(json_string_value(json_object_get(echo, "url")),
			    "/echo?a=1&b=x y&n=5");
	/* Accept first, then the Idempotency-Key, user headers last; no Content-Type without a
	 * body. */
	const char *order[8];
	int n = 0;
	size_t i;
	json_t *h;
	json_array_foreach(json_object_get(echo, "headers"), i, h)
	{
		const char *name = json_string_value(json_array_get(h, 0));
		const char *value = json_string_value(json_array_get(h, 1));
		if (!strcasecmp(name, "Accept")) {
			assert_string_equal(value, "application/json");
			order[n++] = "accept";
		} else if (!strcasecmp(name, "Idempotency-Key")) {
			assert_string_equal(value, "RunAbc123:step_1:1");
			order[n++] = "idem";
		} else if (!strcasecmp(name, "X-One")) {
			order[n++] = "user";
		}
		assert_true(strcasecmp(name, "Content-Type"));
	}
	assert_int_equal(n, 3);
	assert_string_equal(order[0], "accept");
	assert_string_equal(order[1], "idem");
	assert_string_equal(order[2], "user");
	assert_int_equal(c.request_count, 1);
	json_decref(out);
	ctx_release(&c);
}

static const char *echo_header(const json_t *out, const char *name)
{
	size_t i;
	json_t *h;
	json_array_foreach(json_object_get(json_object_get(out, "body"), "headers"), i, h)
		if (!strcasecmp(json_string_value(json_array_get(h, 0)), name))
			return json_string_value(json_array_get(h, 1));
	return NULL;
}

static void test_http_bodies_and_auth(void **state)
{
	struct pc_ctx c = new_ctx();
	json_t *out;
	struct fl_err err = { 0 };
	assert_int_equal(http(&c, "{\"method\":\"POST\",\"url\":\"%s\",\"body_type\":\"json\","
				  "\"body\":{\"data\":{\"a\":[1,2]}},\"authType\":\"BEARER_TOKEN\","
				  "\"authFields\":{\"token\":\"tok\"}}",
			      "/echo", &out, &err),
			 0);
	const json_t *echo = json_object_get(out, "body");
	assert_string_equal(json_string_value(json_object_get(echo, "body")), "{\"a\":[1,2]}");
	assert_string_equal(echo_header(out, "Content-Type"), "application/json");
	assert_string_equal(echo_header(out, "Authorization"), "Bearer tok");
	json_decref(out);

	/* The user's Content-Type and Idempotency-Key win. */
	assert_int_equal(http(&c, "{\"method\":\"PUT\",\"url\":\"%s\",\"body_type\":\"raw\","
				  "\"body\":{\"data\":\"plain text\"},\"headers\":{\"content-type\":"
				  "\"text/plain\",\"Idempotency-Key\":\"mine\"},\"authType\":\"BASIC\","
				  "\"authFields\":{\"username\":\"u\",\"password\":\"p\"}}",
			      "/echo", &out, &err),
			 0);
	echo = json_object_get(out, "body");
	assert_string_equal(json_string_value(json_object_get(echo, "method")), "PUT");
	assert_string_equal(json_string_value(json_object_get(echo, "body")), "plain text");
	assert_string_equal(echo_header(out, "Content-Type"), "text/plain");
	assert_string_equal(echo_header(out, "Idempotency-Key"), "mine");
	assert_string_equal(echo_header(out, "Authorization"), "Basic dTpw");
	json_decref(out);

	assert_int_equal(http(&c, "{\"method\":\"PATCH\",\"url\":\"%s\",\"body_type\":\"form_data\","
				  "\"body\":{\"data\":{\"name\":\"flowd\",\"n\":2}}}",
			      "/echo", &out, &err),
			 0);
	echo = json_object_get(out, "body");
	assert_non_null(strstr(echo_header(out, "Content-Type"), "multipart/form-data; boundary="));
	assert_non_null(strstr(json_string_value(json_object_get(echo, "body")),
			       "name=\"name\"\r\n\r\nflowd\r\n"));
	json_decref(out);
	/* Three requests so far in this step: the key counts them. */
	assert_int_equal(c.request_count, 3);

	assert_int_equal(http(&c, "{\"method\":\"GET\",\"url\":\"%s\",\"authType\":\"OAUTH\"}",
			      "/echo", &out, &err),
			 FL_EINVAL);
	json_decref(out);
	assert_int_equal(http(&c, "{\"method\":\"TRACE\",\"url\":\"%s\"}", "/echo", &out, &err),
			 FL_EINVAL);
	json_decref(out);
	ctx_release(&c);
}

static void test_http_binary_text_redirect_timeout(void **state)
{
	struct pc_ctx c = new_ctx();
	json_t *out;
	struct fl_err err = { 0 };
	assert_int_equal(http(&c, "{\"url\":\"%s\",\"response_is_binary\":true}", "/text", &out,
			      &err),
			 0);
	assert_string_equal(json_string_value(json_object_get(out, "body")), "aGVsbG8=");
	json_decref(out);
	assert_int_equal(http(&c, "{\"url\":\"%s\"}", "/text", &out, &err), 0);
	assert_string_equal(json_string_value(json_object_get(out, "body")), "hello");
	json_decref(out);
	/* Bytes that are not UTF-8 come back as base64 even unasked. */
	assert_int_equal(http(&c, "{\"url\":\"%s\"}", "/binary", &out, &err), 0);
	assert_int_equal(json_string_length(json_object_get(out, "body")), 344);
	json_decref(out);

	assert_int_equal(http(&c, "{\"url\":\"%s\"}", "/redirect/302?to=/text", &out, &err), 0);
	assert_int_equal(json_integer_value(json_object_get(out, "status")), 302);
	json_decref(out);
	assert_int_equal(http(&c, "{\"url\":\"%s\",\"followRedirects\":true}",
			      "/redirect/302?to=/text", &out, &err),
			 0);
	assert_int_equal(json_integer_value(json_object_get(out, "status")), 200);
	json_decref(out);

	/* A timeout is a status 500 error, retried like one. */
	assert_int_equal(http(&c, "{\"url\":\"%s\",\"timeout\":0.2}", "/slow?ms=1000", &out, &err),
			 FL_ETIMEOUT);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(out, "response"),
							    "status")),
			 500);
	assert_non_null(strstr(err.msg, "timed out"));
	json_decref(out);
	ctx_release(&c);
}

/* What each failureMode does with 200, 404 and 500: whether the step succeeds and how many
 * requests reach the server. */
static void test_http_failure_modes(void **state)
{
	static const struct {
		const char *mode;
		int ok[3];    /* 200, 404, 500 */
		int tries[3];
	} cases[] = {
		{ "retry_all", { 1, 0, 0 }, { 1, 3, 3 } },
		{ "retry_5xx", { 1, 1, 0 }, { 1, 1, 3 } },
		{ "retry_none", { 1, 0, 0 }, { 1, 1, 1 } },
		{ "continue_all", { 1, 1, 1 }, { 1, 1, 1 } },
		{ "continue_4xx", { 1, 1, 0 }, { 1, 1, 3 } },
		{ "continue_none", { 1, 0, 0 }, { 1, 1, 1 } },
		{ NULL, { 1, 0, 0 }, { 1, 1, 1 } }, /* the default is continue_none */
	};
	static const char *paths[] = { "/status/200", "/status/404", "/status/500" };
	static const int codes[] = { 200, 404, 500 };
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		for (int j = 0; j < 3; j++) {
			struct pc_ctx c = new_ctx();
			httpsrv_reset(srv);
			char fmt[256];
			if (cases[i].mode)
				snprintf(fmt, sizeof fmt,
					 "{\"method\":\"POST\",\"url\":\"%%s\",\"failureMode\":"
					 "\"%s\",\"body_type\":\"json\",\"body\":{\"data\":{\"q\":1}}}",
					 cases[i].mode);
			else
				snprintf(fmt, sizeof fmt, "{\"url\":\"%%s\"}");
			json_t *out;
			struct fl_err err = { 0 };
			int rc = http(&c, fmt, paths[j], &out, &err);
			const char *mode = cases[i].mode ? cases[i].mode : "(default)";
			if (cases[i].ok[j] != (rc == 0))
				fail_msg("%s with %d: rc %d (%s)", mode, codes[j], rc, err.msg);
			if (httpsrv_hits(srv, paths[j]) != cases[i].tries[j])
				fail_msg("%s with %d: %d requests, want %d", mode, codes[j],
					 httpsrv_hits(srv, paths[j]), cases[i].tries[j]);
			assert_int_equal(c.request_count, cases[i].tries[j]);
			if (codes[j] == 200) {
				assert_int_equal(json_integer_value(json_object_get(out, "status")),
						 200);
			} else {
				/* Success or failure, the output is the error object. */
				const json_t *resp = json_object_get(out, "response");
				assert_int_equal(json_integer_value(json_object_get(resp, "status")),
						 codes[j]);
				assert_int_equal(json_integer_value(json_object_get(
							 json_object_get(resp, "body"), "status")),
						 codes[j]);
				assert_non_null(json_object_get(json_object_get(out, "request"),
								"body"));
				if (rc)
					assert_non_null(strstr(err.msg, "\"status\":"));
			}
			json_decref(out);
			ctx_release(&c);
		}
	}
}

static void test_http_retry_recovers(void **state)
{
	struct pc_ctx c = new_ctx();
	json_t *out;
	struct fl_err err = { 0 };
	/* Two 500s, then 200: retry_5xx gets there on the third attempt. */
	assert_int_equal(http(&c, "{\"url\":\"%s\",\"failureMode\":\"retry_5xx\"}", "/flaky/k1/2",
			      &out, &err),
			 0);
	assert_int_equal(json_integer_value(json_object_get(out, "status")), 200);
	assert_int_equal(c.request_count, 3);
	json_decref(out);
	/* A connection refused is a 500 too. */
	assert_int_equal(run(pc_http_send_request, &c,
			     "{\"url\":\"http://127.0.0.1:1/\",\"failureMode\":\"continue_all\"}",
			     &out, &err),
			 0);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(out, "response"),
							    "status")),
			 500);
	json_decref(out);
	ctx_release(&c);
}

/* --- webhook -------------------------------------------------------------------------------- */

static void test_return_response(void **state)
{
	struct pc_ctx c = new_ctx();
	json_t *out;
	struct fl_err err = { 0 };
	assert_int_equal(run(pc_webhook_return_response, &c,
			     "{\"fields\":{\"status\":201,\"headers\":{\"X-A\":\"1\"},\"body\":"
			     "\"{\\\"ok\\\":true}\"}}",
			     &out, &err),
			 0);
	assert_true(c.stop);
	assert_int_equal(json_integer_value(json_object_get(out, "status")), 201);
	assert_true(json_is_true(json_object_get(json_object_get(out, "body"), "ok")));
	assert_true(json_equal(out, c.response));
	json_decref(out);
	ctx_release(&c);

	c = new_ctx();
	assert_int_equal(run(pc_webhook_return_response, &c,
			     "{\"responseType\":\"raw\",\"respond\":\"respond\",\"fields\":{"
			     "\"body\":{\"a\":1}}}",
			     &out, &err),
			 0);
	assert_false(c.stop);
	assert_int_equal(json_integer_value(json_object_get(out, "status")), 200);
	assert_string_equal(json_string_value(json_object_get(out, "body")), "{\"a\":1}");
	json_decref(out);
	ctx_release(&c);

	c = new_ctx();
	assert_int_equal(run(pc_webhook_return_response, &c,
			     "{\"responseType\":\"redirect\",\"fields\":{\"body\":\"example.com/x\"}}",
			     &out, &err),
			 0);
	assert_int_equal(json_integer_value(json_object_get(out, "status")), 301);
	assert_string_equal(json_string_value(json_object_get(json_object_get(out, "headers"),
							      "Location")),
			    "https://example.com/x");
	json_decref(out);
	ctx_release(&c);

	c = new_ctx();
	assert_int_equal(run(pc_webhook_return_response, &c, "{\"respond\":\"later\"}", &out, &err),
			 FL_EINVAL);
	ctx_release(&c);
}

static void test_webhook_trigger_output(void **state)
{
	json_t *hdrs = json_pack("{s:s, s:s}", "Content-Type", "application/json; charset=utf-8",
				 "X-Thing", "1");
	json_t *q = json_pack("{s:s}", "a", "1");
	struct fl_err err = { 0 };
	const char *body = "{\"n\":[1,2]}";
	json_t *o = pc_webhook_trigger_output("POST", hdrs, q, body, strlen(body), &err);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "method")), "POST");
	assert_non_null(json_object_get(json_object_get(o, "headers"), "x-thing"));
	assert_int_equal(json_array_size(json_object_get(json_object_get(o, "body"), "n")), 2);
	assert_string_equal(json_string_value(json_object_get(o, "rawBody")), body);
	assert_string_equal(json_string_value(json_object_get(json_object_get(o, "queryParams"),
							      "a")),
			    "1");
	json_decref(o);
	assert_null(pc_webhook_trigger_output("POST", hdrs, q, "{bad", 4, &err));
	assert_int_equal(err.code, FL_EINVAL);

	json_object_set_new(hdrs, "Content-Type", json_string("application/x-www-form-urlencoded"));
	o = pc_webhook_trigger_output("POST", hdrs, NULL, "a=1&b=x+y%21&c", 14, &err);
	assert_string_equal(json_string_value(json_object_get(json_object_get(o, "body"), "b")),
			    "x y!");
	assert_string_equal(json_string_value(json_object_get(json_object_get(o, "body"), "c")), "");
	json_decref(o);
	json_object_set_new(hdrs, "Content-Type", json_string("text/plain"));
	o = pc_webhook_trigger_output("PUT", hdrs, NULL, "hi", 2, &err);
	assert_string_equal(json_string_value(json_object_get(o, "body")), "hi");
	json_decref(o);
	json_decref(hdrs);
	json_decref(q);
}

static void test_webhook_auth(void **state)
{
	json_t *hdrs = json_object();
	struct fl_err err;
	json_t *none = json_pack("{s:s}", "authType", "none");
	assert_int_equal(pc_webhook_check_auth(none, hdrs, "", 0, &err), 0);
	json_t *basic = json_pack("{s:s, s:{s:s, s:s}}", "authType", "basic", "authFields",
				  "username", "u", "password", "p");
	assert_int_equal(pc_webhook_check_auth(basic, hdrs, "", 0, &err), FL_EDENIED);
	json_object_set_new(hdrs, "authorization", json_string("Basic dTpw"));
	assert_int_equal(pc_webhook_check_auth(basic, hdrs, "", 0, &err), 0);
	json_object_set_new(hdrs, "authorization", json_string("Basic dTpx"));
	assert_int_equal(pc_webhook_check_auth(basic, hdrs, "", 0, &err), FL_EDENIED);
	json_t *header = json_pack("{s:s, s:{s:s, s:s}}", "authType", "header", "authFields",
				   "headerName", "X-Token", "headerValue", "s3cret");
	json_object_set_new(hdrs, "x-token", json_string("s3cret"));
	assert_int_equal(pc_webhook_check_auth(header, hdrs, "", 0, &err), 0);
	json_object_set_new(hdrs, "x-token", json_string("s3cre"));
	assert_int_equal(pc_webhook_check_auth(header, hdrs, "", 0, &err), FL_EDENIED);

	const char *body = "{\"a\":1}";
	unsigned char mac[64];
	unsigned mac_len;
	HMAC(EVP_sha256(), "key", 3, (const unsigned char *)body, strlen(body), mac, &mac_len);
	char hex[200] = "sha256=";
	for (unsigned i = 0; i < mac_len; i++)
		sprintf(hex + 7 + 2 * i, "%02x", mac[i]);
	json_t *hmac = json_pack("{s:s, s:{s:s, s:s}}", "authType", "hmac", "authFields",
				 "hmacSecret", "key", "hmacSignaturePrefix", "sha256=");
	json_object_set_new(hdrs, "x-signature", json_string(hex));
	assert_int_equal(pc_webhook_check_auth(hmac, hdrs, body, strlen(body), &err), 0);
	assert_int_equal(pc_webhook_check_auth(hmac, hdrs, "{\"a\":2}", 7, &err), FL_EDENIED);
	json_decref(none);
	json_decref(basic);
	json_decref(header);
	json_decref(hmac);
	json_decref(hdrs);
}

/* --- delay and approval ------------------------------------------------------------------- */

static void test_delay_for(void **state)
{
	struct pc_ctx c = new_ctx();
	json_t *out;
	struct fl_err err = { 0 };
	assert_int_equal(run(pc_delay_for, &c, "{\"delayFor\":1}", &out, &err), 0);
	assert_null(c.pause);
	assert_int_equal(th.slept, 1000);
	assert_int_equal(json_integer_value(json_object_get(out, "delayForInMs")), 1000);
	assert_true(json_is_true(json_object_get(out, "success")));
	json_decref(out);
	assert_int_equal(run(pc_delay_for, &c, "{\"delayFor\":\"10\",\"unit\":\"seconds\"}", &out,
			     &err),
			 0);
	assert_null(c.pause);
	assert_int_equal(th.slept, 11000);
	json_decref(out);

	/* Beyond 10 s: a DELAY waitpoint, no sleep, output {}. */
	assert_int_equal(run(pc_delay_for, &c, "{\"delayFor\":60}", &out, &err), 0);
	assert_non_null(c.pause);
	assert_int_equal(th.slept, 11000);
	assert_string_equal(json_string_value(json_object_get(c.pause, "type")), "DELAY");
	assert_int_equal(json_integer_value(json_object_get(c.pause, "resumeAt")), th.now + 60000);
	assert_int_equal(json_object_size(out), 0);
	json_decref(out);
	ctx_release(&c);

	c = new_ctx();
	c.resume = json_object();
	assert_int_equal(run(pc_delay_for, &c, "{\"delayFor\":2,\"unit\":\"hours\"}", &out, &err),
			 0);
	assert_null(c.pause);
	assert_int_equal(json_integer_value(json_object_get(out, "delayForInMs")), 7200000);
	json_decref(out);
	json_decref((json_t *)c.resume);
	ctx_release(&c);

	c = new_ctx();
	assert_int_equal(run(pc_delay_for, &c, "{\"delayFor\":1,\"unit\":\"weeks\"}", &out, &err),
			 FL_EINVAL);
	assert_int_equal(run(pc_delay_for, &c, "{\"delayFor\":-1}", &out, &err), FL_EINVAL);
	ctx_release(&c);
}

static void test_delay_until(void **state)
{
	struct pc_ctx c = new_ctx();
	json_t *out;
	struct fl_err err = { 0 };
	/* th.now is 2023-11-14T22:13:20Z. */
	assert_int_equal(run(pc_delay_until, &c, "{\"delayUntilTimestamp\":\"2020-01-01T00:00:00Z\"}",
			     &out, &err),
			 0);
	assert_int_equal(th.slept, 0);
	assert_string_equal(json_string_value(json_object_get(out, "delayTill")),
			    "2020-01-01T00:00:00.000Z");
	json_decref(out);
	assert_int_equal(run(pc_delay_until, &c,
			     "{\"delayUntilTimestamp\":\"2023-11-14T22:14:00Z\"}", &out, &err),
			 0);
	assert_null(c.pause);
	assert_int_equal(th.slept, 40000);
	json_decref(out);
	assert_int_equal(run(pc_delay_until, &c,
			     "{\"delayUntilTimestamp\":\"2023-11-14T23:00:00Z\"}", &out, &err),
			 0);
	assert_non_null(c.pause);
	assert_string_equal(json_string_value(json_object_get(c.pause, "resumeAtIso")),
			    "2023-11-14T23:00:00.000Z");
	json_decref(out);
	assert_int_equal(run(pc_delay_until, &c, "{\"delayUntilTimestamp\":\"soon\"}", &out, &err),
			 FL_EINVAL);
	ctx_release(&c);
}

static void test_approval(void **state)
{
	struct pc_ctx c = new_ctx();
	json_t *out;
	struct fl_err err = { 0 };
	assert_int_equal(run(pc_approval_create_links, &c, "{}", &out, &err), 0);
	assert_string_equal(json_string_value(json_object_get(out, "approvalLink")),
			    "https://flows.example.com/v1/flow-runs/RunAbc123/waitpoints/Wp1"
			    "?action=approve");
	assert_string_equal(json_string_value(json_object_get(out, "disapprovalLink")),
			    "https://flows.example.com/v1/flow-runs/RunAbc123/waitpoints/Wp1"
			    "?action=disapprove");
	assert_true(c.made_approval_links);
	assert_null(c.pause);
	json_decref(out);

	assert_int_equal(run(pc_approval_wait, &c, "{}", &out, &err), 0);
	assert_string_equal(json_string_value(json_object_get(c.pause, "type")), "WEBHOOK");
	json_decref(out);
	ctx_release(&c);

	c = new_ctx();
	json_t *resume = json_pack("{s:{}, s:{}, s:{s:s}}", "body", "headers", "queryParams",
				   "action", "approve");
	c.resume = resume;
	assert_int_equal(run(pc_approval_wait, &c, "{}", &out, &err), 0);
	assert_true(json_is_true(json_object_get(out, "approved")));
	json_decref(out);
	json_object_set_new(json_object_get(resume, "queryParams"), "action",
			    json_string("disapprove"));
	assert_int_equal(run(pc_approval_wait, &c, "{}", &out, &err), 0);
	assert_true(json_is_false(json_object_get(out, "approved")));
	json_decref(out);
	json_decref(resume);
	ctx_release(&c);

	char a[22], b[22], a2[22];
	pc_waitpoint_id("run1", "step", a);
	pc_waitpoint_id("run1", "step", a2);
	pc_waitpoint_id("run1", "loop[2].step", b);
	assert_int_equal(strlen(a), 21);
	assert_string_equal(a, a2);
	assert_string_not_equal(a, b);
}

/* --- data mapper and store ---------------------------------------------------------------- */

static void test_data_mapper(void **state)
{
	struct pc_ctx c = new_ctx();
	json_t *out;
	struct fl_err err = { 0 };
	assert_int_equal(run(pc_data_mapper, &c, "{\"mapping\":{\"a\":1,\"b\":[2]}}", &out, &err),
			 0);
	assert_int_equal(json_integer_value(json_object_get(out, "a")), 1);
	json_decref(out);
	assert_int_equal(run(pc_data_mapper, &c, "{\"mapping\":\"[1,2]\"}", &out, &err), 0);
	assert_int_equal(json_array_size(out), 2);
	json_decref(out);
	assert_int_equal(run(pc_data_mapper, &c, "{\"mapping\":\"5\"}", &out, &err), FL_EINVAL);
	assert_int_equal(run(pc_data_mapper, &c, "{\"mapping\":\"{x\"}", &out, &err), FL_EINVAL);
	assert_int_equal(run(pc_data_mapper, &c, "{}", &out, &err), FL_EINVAL);
	ctx_release(&c);
}

static void test_store(void **state)
{
	struct pc_ctx c = new_ctx();
	json_t *out;
	struct fl_err err = { 0 };
	assert_int_equal(run(pc_store_put, &c, "{\"key\":\"k\",\"value\":{\"a\":1}}", &out, &err), 0);
	assert_int_equal(json_integer_value(json_object_get(out, "a")), 1);
	json_decref(out);
	assert_int_equal(run(pc_store_get, &c, "{\"key\":\"k\"}", &out, &err), 0);
	assert_int_equal(json_integer_value(json_object_get(out, "a")), 1);
	json_decref(out);
	assert_int_equal(run(pc_store_get, &c, "{\"key\":\"nope\",\"defaultValue\":7}", &out, &err),
			 0);
	assert_int_equal(json_integer_value(out), 7);
	json_decref(out);
	assert_int_equal(run(pc_store_get, &c, "{\"key\":\"nope\"}", &out, &err), 0);
	assert_true(json_is_null(out));
	json_decref(out);

	/* Scopes prefix the key. */
	assert_int_equal(run(pc_store_put, &c, "{\"key\":\"k\",\"value\":1,\"store_scope\":\"FLOW\"}",
			     &out, &err),
			 0);
	json_decref(out);
	assert_non_null(json_object_get(th.store, "flow_flow1/k"));
	assert_int_equal(run(pc_store_put, &c, "{\"key\":\"k\",\"value\":2,\"store_scope\":\"RUN\"}",
			     &out, &err),
			 0);
	json_decref(out);
	assert_non_null(json_object_get(th.store, "flow_flow1/run_RunAbc123/k"));
	assert_int_equal(run(pc_store_get, &c, "{\"key\":\"k\",\"store_scope\":\"RUN\"}", &out,
			     &err),
			 0);
	assert_int_equal(json_integer_value(out), 2);
	json_decref(out);

	assert_int_equal(run(pc_store_append, &c, "{\"key\":\"s\",\"value\":\"a\",\"separator\":\",\"}",
			     &out, &err),
			 0);
	json_decref(out);
	assert_int_equal(run(pc_store_append, &c, "{\"key\":\"s\",\"value\":\"b\",\"separator\":\",\"}",
			     &out, &err),
			 0);
	assert_string_equal(json_string_value(out), "a,b");
	json_decref(out);

	assert_int_equal(run(pc_store_remove_value, &c, "{\"key\":\"s\"}", &out, &err), 0);
	assert_true(json_is_true(json_object_get(out, "success")));
	json_decref(out);
	assert_null(json_object_get(th.store, "s"));

	assert_int_equal(run(pc_store_add_to_list, &c, "{\"key\":\"l\",\"value\":[1,\"2\"]}", &out,
			     &err),
			 0);
	json_decref(out);
	/* "1" equals 1: ignored when it exists. */
	assert_int_equal(run(pc_store_add_to_list, &c,
			     "{\"key\":\"l\",\"value\":\"1\",\"ignore_if_exists\":true}", &out, &err),
			 0);
	assert_int_equal(json_array_size(out), 2);
	json_decref(out);
	assert_int_equal(run(pc_store_add_to_list, &c, "{\"key\":\"l\",\"value\":3}", &out, &err),
			 0);
	assert_int_equal(json_array_size(out), 3);
	json_decref(out);
	assert_int_equal(run(pc_store_remove_from_list, &c, "{\"key\":\"l\",\"value\":2}", &out,
			     &err),
			 0);
	assert_int_equal(json_array_size(out), 2);
	assert_int_equal(json_integer_value(json_array_get(out, 0)), 1);
	assert_int_equal(json_integer_value(json_array_get(out, 1)), 3);
	json_decref(out);
	assert_int_equal(run(pc_store_add_to_list, &c, "{\"key\":\"k\",\"value\":1}", &out, &err),
			 FL_EINVAL); /* k holds an object */

	/* Limits. */
	assert_int_equal(run(pc_store_get, &c, "{\"key\":\"\"}", &out, &err), FL_EINVAL);
	char big[200];
	memset(big, 'x', 129);
	big[129] = 0;
	char input[400];
	snprintf(input, sizeof input, "{\"key\":\"%s\"}", big);
	assert_int_equal(run(pc_store_get, &c, input, &out, &err), FL_EINVAL);
	char *value = fl_malloc(520 * 1024 + 1);
	memset(value, 'y', 520 * 1024);
	value[520 * 1024] = '\0';
	char *huge = fl_asprintf("{\"key\":\"h\",\"value\":\"%s\"}", value);
	assert_int_equal(run(pc_store_put, &c, huge, &out, &err), FL_ELIMIT);
	fl_free(huge);
	fl_free(value);
	assert_int_equal(run(pc_store_get, &c, "{\"key\":\"k\",\"store_scope\":\"GLOBAL\"}", &out,
			     &err),
			 FL_EINVAL);

	/* Without a store in the host, the step fails with a message. */
	struct eng_host bare = { 0 };
	c.host = &bare;
	assert_int_equal(run(pc_store_get, &c, "{\"key\":\"k\"}", &out, &err), FL_EUNSUPPORTED);
	ctx_release(&c);
}

/* --- triggers ----------------------------------------------------------------------------- */

static void check_spec(const char *trigger, const char *input, const char *cron, const char *tz)
{
	json_t *in = json_loads(input, 0, NULL);
	char *c, *t;
	struct fl_err err = { 0 };
	if (pc_schedule_spec(trigger, in, &c, &t, &err))
		fail_msg("%s: %s", trigger, err.msg);
	assert_string_equal(c, cron);
	assert_string_equal(t, tz);
	fl_free(c);
	fl_free(t);
	json_decref(in);
}

static void test_schedule(void **state)
{
	check_spec("every_x_minutes", "{\"minutes\":5}", "*/5 * * * *", "UTC");
	check_spec("every_hour", "{\"run_on_weekends\":true}", "0 * * * *", "UTC");
	check_spec("every_hour", "{}", "0 * * * 1-5", "UTC");
	check_spec("every_day", "{\"hour_of_the_day\":9,\"timezone\":\"Europe/Paris\"}",
		   "0 9 * * 1-5", "Europe/Paris");
	check_spec("every_day", "{\"hour_of_the_day\":\"9\",\"run_on_weekends\":true}", "0 9 * * *",
		   "UTC");
	check_spec("every_week", "{\"day_of_the_week\":0,\"hour_of_the_day\":18}", "0 18 * * 0",
		   "UTC");
	check_spec("every_month", "{\"day_of_the_month\":15,\"hour_of_the_day\":6}", "0 6 15 * *",
		   "UTC");
	check_spec("cron_expression", "{\"cronExpression\":\"*/2 3 * * MON\",\"timezone\":\"UTC\"}",
		   "*/2 3 * * MON", "UTC");
	char *c, *t;
	json_t *bad = json_pack("{s:i}", "minutes", 60);
	assert_int_equal(pc_schedule_spec("every_x_minutes", bad, &c, &t, NULL), FL_EINVAL);
	json_decref(bad);
	bad = json_pack("{s:s}", "cronExpression", "* * *");
	assert_int_equal(pc_schedule_spec("cron_expression", bad, &c, &t, NULL), FL_EINVAL);
	assert_int_equal(pc_schedule_spec("every_year", bad, &c, &t, NULL), FL_ENOTFOUND);
	json_decref(bad);

	json_t *in = json_pack("{s:i}", "minutes", 10);
	json_t *o = pc_trigger_output("@activepieces/piece-schedule", "every_x_minutes", in, NULL);
	assert_string_equal(json_string_value(json_object_get(o, "cron_expression")),
			    "*/10 * * * *");
	assert_string_equal(json_string_value(json_object_get(o, "timezone")), "UTC");
	json_decref(o);
	o = pc_trigger_output("@activepieces/piece-schedule", "cron_expression", in, NULL);
	assert_int_equal(json_object_size(o), 0);
	json_decref(o);
	o = pc_trigger_output("@activepieces/piece-manual-trigger", "manual_trigger", in, NULL);
	assert_int_equal(json_object_size(o), 0);
	json_decref(o);
	json_t *payload = json_pack("{s:i}", "x", 1);
	o = pc_trigger_output("@activepieces/piece-manual-trigger", "manual_trigger", in, payload);
	assert_ptr_equal(o, payload);
	json_decref(o);
	json_decref(payload);
	json_decref(in);
}

int main(void)
{
	fl_alloc_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_find_action, reset),
		cmocka_unit_test_setup(test_http_get, reset),
		cmocka_unit_test_setup(test_http_bodies_and_auth, reset),
		cmocka_unit_test_setup(test_http_binary_text_redirect_timeout, reset),
		cmocka_unit_test_setup(test_http_failure_modes, reset),
		cmocka_unit_test_setup(test_http_retry_recovers, reset),
		cmocka_unit_test_setup(test_return_response, reset),
		cmocka_unit_test_setup(test_webhook_trigger_output, reset),
		cmocka_unit_test_setup(test_webhook_auth, reset),
		cmocka_unit_test_setup(test_delay_for, reset),
		cmocka_unit_test_setup(test_delay_until, reset),
		cmocka_unit_test_setup(test_approval, reset),
		cmocka_unit_test_setup(test_data_mapper, reset),
		cmocka_unit_test_setup(test_store, reset),
		cmocka_unit_test_setup(test_schedule, reset),
	};
	int rc = cmocka_run_group_tests(tests, setup, teardown);
	json_decref(th.store);
	return rc;
}
