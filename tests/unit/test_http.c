/* Unit tests for src/net/http.c against a local server (httpsrv.c): methods, header order,
 * bodies, redirects followed by our own loop or returned as they are, timeouts, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/time.h"
#include "httpsrv.h"
#include "net/http.h"

#include <jansson.h>
#include <string.h>

static struct httpsrv *srv;

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

static json_t *body_json(const struct net_http_response *r)
{
	json_t *v = json_loadb(r->body, r->body_len, 0, NULL);
	assert_non_null(v);
	return v;
}

static void test_statuses(void **state)
{
	static const long codes[] = { 200, 201, 404, 500, 503 };
	for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
		char path[32];
		snprintf(path, sizeof path, "/status/%ld", codes[i]);
		char url[256];
		snprintf(url, sizeof url, "%s", httpsrv_url(srv, path));
		struct net_http_request req = { .url = url };
		struct net_http_response resp;
		struct fl_err err = { 0 };
		assert_int_equal(net_http_do(&req, &resp, &err), 0);
		assert_int_equal(resp.status, codes[i]);
		assert_string_equal(net_http_response_header(&resp, "Content-Type"),
				    "application/json");
		json_t *b = body_json(&resp);
		assert_int_equal(json_integer_value(json_object_get(b, "status")), codes[i]);
		json_decref(b);
		net_http_response_release(&resp);
	}
}

static void test_header_order_and_body(void **state)
{
	struct net_header hdrs[] = {
		{ "Accept", "application/json" },
		{ "Content-Type", "application/json" },
		{ "X-Zeta", "1" },
		{ "X-Alpha", "2" },
	};
	const char *body = "{\"a\":1}";
	char url[256];
	snprintf(url, sizeof url, "%s", httpsrv_url(srv, "/echo?x=1"));
	static const char *methods[] = { "POST", "PUT", "PATCH", "DELETE" };
	for (size_t m = 0; m < 4; m++) {
		struct net_http_request req = { .method = methods[m], .url = url, .headers = hdrs,
						.n_headers = 4, .body = body,
						.body_len = strlen(body) };
		struct net_http_response resp;
		struct fl_err err = { 0 };
		assert_int_equal(net_http_do(&req, &resp, &err), 0);
		assert_int_equal(resp.status, 200);
		json_t *e = body_json(&resp);
		assert_string_equal(json_string_value(json_object_get(e, "method")), methods[m]);
		assert_string_equal(json_string_value(json_object_get(e, "body")), body);
		assert_string_equal(json_string_value(json_object_get(e, "url")), "/echo?x=1");
		/* The four headers arrive in the order given. */
		const char *want[] = { "Accept", "Content-Type", "X-Zeta", "X-Alpha" };
		size_t next = 0, i;
		json_t *h;
		json_array_foreach(json_object_get(e, "headers"), i, h)
		{
			const char *name = json_string_value(json_array_get(h, 0));
			if (next < 4 && !strcasecmp(name, want[next]))
				next++;
			assert_string_not_equal(name, "Expect");
		}
		assert_int_equal(next, 4);
		json_decref(e);
		net_http_response_release(&resp);
	}
}

static void test_head_and_binary(void **state)
{
	char url[256];
	snprintf(url, sizeof url, "%s", httpsrv_url(srv, "/binary"));
	struct net_http_request req = { .url = url };
	struct net_http_response resp;
	assert_int_equal(net_http_do(&req, &resp, NULL), 0);
	assert_int_equal(resp.body_len, 256);
	for (int i = 0; i < 256; i++)
		assert_int_equal((unsigned char)resp.body[i], i);
	net_http_response_release(&resp);

	req.method = "HEAD";
	assert_int_equal(net_http_do(&req, &resp, NULL), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body_len, 0);
	net_http_response_release(&resp);
}

static void test_redirect_not_followed(void **state)
{
	char url[256];
	snprintf(url, sizeof url, "%s", httpsrv_url(srv, "/redirect/302?to=/echo"));
	struct net_http_request req = { .url = url };
	struct net_http_response resp;
	assert_int_equal(net_http_do(&req, &resp, NULL), 0);
	assert_int_equal(resp.status, 302);
	assert_string_equal(net_http_response_header(&resp, "location"), "/echo");
	assert_string_equal(resp.effective_url, url);
	net_http_response_release(&resp);
}

static void test_redirect_followed(void **state)
{
	char url[256];
	struct net_header hdrs[] = { { "Content-Type", "text/plain" } };
	/* 303 turns a POST into a GET without the body. */
	snprintf(url, sizeof url, "%s", httpsrv_url(srv, "/redirect/303?to=/echo"));
	struct net_http_request req = { .method = "POST", .url = url, .body = "data",
					.body_len = 4, .follow_redirects = 1, .headers = hdrs,
					.n_headers = 1 };
	struct net_http_response resp;
	assert_int_equal(net_http_do(&req, &resp, NULL), 0);
	assert_int_equal(resp.status, 200);
	json_t *e = body_json(&resp);
	assert_string_equal(json_string_value(json_object_get(e, "method")), "GET");
	assert_string_equal(json_string_value(json_object_get(e, "body")), "");
	assert_non_null(strstr(resp.effective_url, "/echo"));
	json_decref(e);
	net_http_response_release(&resp);

	/* 307 repeats the request as it was. */
	snprintf(url, sizeof url, "%s", httpsrv_url(srv, "/redirect/307?to=/echo"));
	assert_int_equal(net_http_do(&req, &resp, NULL), 0);
	e = body_json(&resp);
	assert_string_equal(json_string_value(json_object_get(e, "method")), "POST");
	assert_string_equal(json_string_value(json_object_get(e, "body")), "data");
	json_decref(e);
	net_http_response_release(&resp);

	/* A loop ends in an error instead of running forever. */
	snprintf(url, sizeof url, "%s", httpsrv_url(srv, "/redirect/302"));
	struct fl_err err = { 0 };
	httpsrv_reset(srv);
	assert_true(net_http_do(&req, &resp, &err) < 0);
	assert_non_null(strstr(err.msg, "redirects"));
	assert_int_equal(httpsrv_hits(srv, "/redirect/302"), 21);
}

static void test_timeout(void **state)
{
	char url[256];
	snprintf(url, sizeof url, "%s", httpsrv_url(srv, "/slow?ms=1500"));
	struct net_http_request req = { .url = url, .timeout_ms = 200 };
	struct net_http_response resp;
	struct fl_err err = { 0 };
	int64_t t0 = fl_mono_ms();
	assert_int_equal(net_http_do(&req, &resp, &err), FL_ETIMEOUT);
	assert_true(fl_mono_ms() - t0 < 1200);
	assert_non_null(strstr(err.msg, "timed out"));

	req.timeout_ms = 5000;
	assert_int_equal(net_http_do(&req, &resp, &err), 0);
	assert_string_equal(resp.body, "slow");
	net_http_response_release(&resp);
}

static void test_errors(void **state)
{
	struct net_http_response resp;
	struct fl_err err = { 0 };
	/* A port nobody listens on: bind one, then close it. */
	struct net_http_request req = { .url = "http://127.0.0.1:1/x" };
	int rc = net_http_do(&req, &resp, &err);
	assert_true(rc < 0);
	assert_int_not_equal(rc, FL_ETIMEOUT);
	assert_non_null(strstr(err.msg, "127.0.0.1:1"));

	req.url = "file:///etc/passwd";
	assert_true(net_http_do(&req, &resp, &err) < 0);
	req.url = "";
	assert_int_equal(net_http_do(&req, &resp, &err), FL_EINVAL);
}

int main(void)
{
	fl_alloc_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_statuses),
		cmocka_unit_test(test_header_order_and_body),
		cmocka_unit_test(test_head_and_binary),
		cmocka_unit_test(test_redirect_not_followed),
		cmocka_unit_test(test_redirect_followed),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
