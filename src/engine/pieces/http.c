/* @activepieces/piece-http send_request: builds the request from the step's input, sends it with
 * net/http.h (which applies the network policy to every hop), and applies the failureMode to
 * what comes back, with up to three immediate attempts. */
#include "core/alloc.h"
#include "core/codec.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"
#include "core/rand.h"
#include "engine/pieces/pieces.h"
#include "net/http.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#define MAX_ATTEMPTS 3

enum failure_mode {
	RETRY_ALL,
	RETRY_5XX,
	RETRY_NONE,
	CONTINUE_ALL,
	CONTINUE_4XX,
	CONTINUE_NONE,
};

static int parse_failure_mode(const char *s, enum failure_mode *m)
{
	static const char *const names[] = { "retry_all",    "retry_5xx",    "retry_none",
					     "continue_all", "continue_4xx", "continue_none" };
	for (int i = 0; i < 6; i++) {
		if (!strcmp(s, names[i])) {
			*m = (enum failure_mode)i;
			return 0;
		}
	}
	return -1;
}

struct headers {
	struct net_header *v;
	size_t n, cap;
};

static void headers_add(struct headers *h, const char *name, const char *value)
{
	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 8;
		h->v = fl_realloc(h->v, h->cap * sizeof *h->v);
	}
	h->v[h->n].name = fl_strdup(name);
	h->v[h->n].value = fl_strdup(value);
	h->n++;
}

static void headers_release(struct headers *h)
{
	for (size_t i = 0; i < h->n; i++) {
		fl_free(h->v[i].name);
		fl_free(h->v[i].value);
	}
	fl_free(h->v);
}

/* A value as the text that goes into a header, a query string or a form field. */
static char *text_value(const json_t *v)
{
	if (json_is_string(v))
		return fl_strndup(json_string_value(v), json_string_length(v));
	return fl_json_dump(v);
}

static void url_escape(struct fl_buf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
			fl_buf_addch(b, (char)c);
		else
			fl_buf_addf(b, "%%%02X", c);
	}
}

static int user_has(const json_t *user_headers, const char *name)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)user_headers, k, v)
		if (!strcasecmp(k, name))
			return 1;
	return 0;
}

/* The body as bytes, and the Content-Type it implies (NULL: application/json unless the user
 * sets one). Returns 0, or FL_EINVAL. */
static int build_body(const char *body_type, const json_t *body_in, struct fl_buf *out,
		      char **content_type, int *has_body, struct fl_err *err)
{
	*content_type = NULL;
	*has_body = 0;
	if (!strcmp(body_type, "none"))
		return 0;
	const json_t *data = json_is_object(body_in) ? json_object_get(body_in, "data") : NULL;
	if (!strcmp(body_type, "json") || !strcmp(body_type, "raw")) {
		*has_body = 1;
		if (!data || json_is_null(data)) {
			fl_buf_adds(out, !strcmp(body_type, "json") ? "{}" : "");
			return 0;
		}
		if (json_is_string(data))
			fl_buf_add(out, json_string_value(data), json_string_length(data));
		else
			fl_json_dump_buf(out, data);
		return 0;
	}
	if (!strcmp(body_type, "form_data")) {
		if (data && !json_is_null(data) && !json_is_object(data))
			return fl_err_set(err, FL_EINVAL, "a form_data body must be an object");
		*has_body = 1;
		char boundary[40];
		char hex[17];
		fl_random_hex(hex, 8);
		snprintf(boundary, sizeof boundary, "----flowd%s", hex);
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)data, k, v)
		{
			char *t = text_value(v);
			fl_buf_addf(out, "--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n",
				    boundary, k);
			fl_buf_adds(out, t);
			fl_buf_adds(out, "\r\n");
			fl_free(t);
		}
		fl_buf_addf(out, "--%s--\r\n", boundary);
		*content_type = fl_asprintf("multipart/form-data; boundary=%s", boundary);
		return 0;
	}
	return fl_err_set(err, FL_EINVAL, "body_type '%s' is not none, json, raw or form_data",
			  body_type);
}

/* A body as the step shows it: parsed JSON if it parses, else a string, else (or when binary)
 * base64. */
static json_t *body_value(const char *data, size_t len, int binary)
{
	if (binary) {
		char *b = fl_base64_encode(data, len);
		json_t *v = json_string(b);
		fl_free(b);
		return v;
	}
	if (!len)
		return json_string("");
	json_t *v = json_loadb(data, len, JSON_DECODE_ANY, NULL);
	if (v)
		return v;
	v = json_stringn(data, len);
	if (v)
		return v;
	char *b = fl_base64_encode(data, len);
	v = json_string(b);
	fl_free(b);
	return v;
}

static json_t *response_headers(const struct net_http_response *resp)
{
	json_t *o = json_object();
	for (size_t i = 0; i < resp->n_headers; i++) {
		const char *name = resp->headers[i].name, *value = resp->headers[i].value;
		json_t *old = json_object_get(o, name);
		json_t *v = json_string(value);
		if (!v)
			continue;
		if (!old) {
			json_object_set_new(o, name, v);
		} else if (!strcmp(name, "set-cookie")) {
			/* Cookies cannot be joined with commas: they become a list. */
			if (!json_is_array(old)) {
				json_t *list = json_pack("[O]", old);
				json_object_set_new(o, name, list);
				old = list;
			}
			json_array_append_new(old, v);
		} else {
			char *joined = fl_asprintf("%s, %s", json_string_value(old), value);
			json_object_set_new(o, name, json_string(joined));
			fl_free(joined);
			json_decref(v);
		}
	}
	return o;
}

int pc_http_send_request(struct pc_ctx *ctx, const json_t *input, json_t **output,
			 struct fl_err *err)
{
	const char *method, *url, *auth_type, *body_type, *mode_name;
	double timeout_s;
	int follow, binary;
	int rc = pc_input_string(input, "method", "GET", &method, err);
	if (!rc)
		rc = pc_input_string(input, "url", NULL, &url, err);
	if (!rc)
		rc = pc_input_string(input, "authType", "NONE", &auth_type, err);
	if (!rc)
		rc = pc_input_string(input, "body_type", "none", &body_type, err);
	if (!rc)
		rc = pc_input_string(input, "failureMode", "continue_none", &mode_name, err);
	if (!rc)
		rc = pc_input_number(input, "timeout", 0, &timeout_s, err);
	if (!rc)
		rc = pc_input_bool(input, "followRedirects", 0, &follow, err);
	if (!rc)
		rc = pc_input_bool(input, "response_is_binary", 0, &binary, err);
	if (rc)
		return rc;
	if (!url || !*url)
		return fl_err_set(err, FL_EINVAL, "input 'url' is required");
	static const char *const methods[] = { "GET", "POST", "PATCH", "PUT", "DELETE", "HEAD" };
	int method_ok = 0;
	for (int i = 0; i < 6; i++)
		method_ok |= !strcasecmp(method, methods[i]);
	if (!method_ok)
		return fl_err_set(err, FL_EINVAL, "method '%s' is not one of GET, POST, PATCH, PUT, "
						  "DELETE, HEAD",
				  method);
	enum failure_mode mode;
	if (parse_failure_mode(mode_name, &mode))
		return fl_err_set(err, FL_EINVAL, "failureMode '%s' is not known", mode_name);
	const json_t *user_headers = json_object_get(input, "headers");
	const json_t *query = json_object_get(input, "queryParams");
	if (user_headers && !json_is_null(user_headers) && !json_is_object(user_headers))
		return fl_err_set(err, FL_EINVAL, "input 'headers' must be an object");
	if (query && !json_is_null(query) && !json_is_object(query))
		return fl_err_set(err, FL_EINVAL, "input 'queryParams' must be an object");

	/* The URL's own query stays; queryParams are appended to it. */
	struct fl_buf full_url = FL_BUF_INIT;
	const char *hash = strchr(url, '#');
	size_t base_len = hash ? (size_t)(hash - url) : strlen(url);
	fl_buf_add(&full_url, url, base_len);
	int has_query = memchr(url, '?', base_len) != NULL;
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)query, k, v)
	{
		if (json_is_null(v))
			continue;
		fl_buf_addch(&full_url, has_query ? '&' : '?');
		has_query = 1;
		url_escape(&full_url, k);
		fl_buf_addch(&full_url, '=');
		char *t = text_value(v);
		url_escape(&full_url, t);
		fl_free(t);
	}

	struct fl_buf body = FL_BUF_INIT;
	char *content_type = NULL;
	int has_body = 0;
	rc = build_body(body_type, json_object_get(input, "body"), &body, &content_type, &has_body,
			err);
	if (rc) {
		fl_buf_release(&full_url);
		return rc;
	}

	/* Accept first; Content-Type with a body; credentials; user headers last. */
	struct headers hdrs = { 0 };
	if (!user_has(user_headers, "accept"))
		headers_add(&hdrs, "Accept", "application/json");
	if (has_body && (content_type || !user_has(user_headers, "content-type")))
		headers_add(&hdrs, "Content-Type", content_type ? content_type : "application/json");
	const json_t *auth = json_object_get(input, "authFields");
	if (!strcasecmp(auth_type, "BASIC")) {
		const char *user = json_string_value(json_object_get(auth, "username"));
		const char *pass = json_string_value(json_object_get(auth, "password"));
		char *plain = fl_asprintf("%s:%s", user ? user : "", pass ? pass : "");
		char *b64 = fl_base64_encode(plain, strlen(plain));
		char *value = fl_asprintf("Basic %s", b64);
		headers_add(&hdrs, "Authorization", value);
		fl_free(plain);
		fl_free(b64);
		fl_free(value);
	} else if (!strcasecmp(auth_type, "BEARER_TOKEN")) {
		const char *token = json_string_value(json_object_get(auth, "token"));
		char *value = fl_asprintf("Bearer %s", token ? token : "");
		headers_add(&hdrs, "Authorization", value);
		fl_free(value);
	} else if (strcasecmp(auth_type, "NONE")) {
		rc = fl_err_set(err, FL_EINVAL, "authType '%s' is not NONE, BASIC or BEARER_TOKEN",
				auth_type);
	}
	int user_idempotency = user_has(user_headers, "idempotency-key");
	size_t idem_slot = hdrs.n;
	if (!user_idempotency)
		headers_add(&hdrs, "Idempotency-Key", "");
	json_object_foreach((json_t *)user_headers, k, v)
	{
		if (json_is_null(v))
			continue;
		if (!strcasecmp(k, "content-type") && content_type)
			continue; /* multipart needs our boundary */
		char *t = text_value(v);
		headers_add(&hdrs, k, t);
		fl_free(t);
	}

	char upper[8];
	size_t ml = strlen(method);
	for (size_t i = 0; i <= ml && i < sizeof upper; i++)
		upper[i] = (char)toupper((unsigned char)method[i]);
	upper[sizeof upper - 1] = '\0';

	struct net_http_request req = {
		.method = upper,
		.url = full_url.data,
		.headers = hdrs.v,
		.n_headers = hdrs.n,
		.body = has_body ? body.data : NULL,
		.body_len = body.len,
		.timeout_ms = timeout_s > 0 ? (int64_t)(timeout_s * 1000) : 0,
		.follow_redirects = follow,
		.policy = ctx->policy,
	};
	json_t *request_body = has_body ? body_value(body.data, body.len, 0) : json_null();
	json_t *result = NULL;
	for (int attempt = 1; !rc && attempt <= MAX_ATTEMPTS; attempt++) {
		/* A fresh key per request: n counts the step's requests, the same on a replay. */
		ctx->request_count++;
		if (!user_idempotency) {
			fl_free(hdrs.v[idem_slot].value);
			hdrs.v[idem_slot].value = fl_asprintf("%s:%s:%d", ctx->run_id, ctx->step_path,
							      ctx->request_count);
		}
		struct net_http_response resp;
		struct fl_err net_err = { 0 };
		int nrc = net_http_do(&req, &resp, &net_err);
		long status;
		json_t *resp_body;
		if (nrc == FL_EDENIED) {
			/* The policy refused: not a server error to retry, and never continued. */
			rc = fl_err_set(err, FL_EDENIED, "%s", net_err.msg);
			break;
		}
		if (nrc) {
			status = 500;
			resp_body = json_string(net_err.msg);
		} else {
			status = resp.status;
			resp_body = body_value(resp.body, resp.body_len, binary);
		}
		if (!nrc && status < 400) {
			json_decref(result);
			result = json_pack("{s:i, s:o, s:o}", "status", (int)status, "headers",
					   response_headers(&resp), "body", resp_body);
			net_http_response_release(&resp);
			break;
		}
		if (!nrc)
			net_http_response_release(&resp);
		json_decref(result);
		result = json_pack("{s:{s:i, s:o}, s:{s:O}}", "response", "status", (int)status,
				   "body", resp_body, "request", "body", request_body);
		int is4xx = status < 500;
		int retry = 0, ok = 0;
		switch (mode) {
		case RETRY_ALL: retry = 1; break;
		case RETRY_5XX:
			retry = !is4xx;
			ok = is4xx;
			break;
		case RETRY_NONE: break;
		case CONTINUE_ALL: ok = 1; break;
		case CONTINUE_4XX:
			ok = is4xx;
			retry = !is4xx;
			break;
		case CONTINUE_NONE: break;
		}
		if (ok)
			break;
		if (!retry || attempt == MAX_ATTEMPTS) {
			char *text = fl_json_dump(result);
			rc = fl_err_set(err, nrc == FL_ETIMEOUT ? FL_ETIMEOUT : FL_EIO, "%s", text);
			fl_free(text);
			break;
		}
	}
	json_decref(request_body);
	headers_release(&hdrs);
	fl_buf_release(&body);
	fl_buf_release(&full_url);
	fl_free(content_type);
	*output = result;
	return rc;
}
