/* Request parsing and response building shared by the app's handlers: headers, query strings,
 * bodies, and the JSON error shape {"error": "..."}. Everything here handles untrusted input
 * from the network, so lengths are explicit and nothing assumes NUL-terminated bodies. */
#include "app/app_int.h"
#include "core/codec.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/json.h"
#include "core/time.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *app_req_header(const struct app_req *r, const char *name)
{
	for (size_t i = 0; i < r->raw->n_headers; i++)
		if (r->raw->headers[i].name && !strcasecmp(r->raw->headers[i].name, name))
			return r->raw->headers[i].value ? r->raw->headers[i].value : "";
	return NULL;
}

int app_content_type_is_json(const char *ct)
{
	if (!ct)
		return 0;
	while (*ct == ' ')
		ct++;
	size_t n = strcspn(ct, "; ");
	if (n == 16 && !strncasecmp(ct, "application/json", 16))
		return 1;
	/* application/vnd.api+json and friends */
	return n > 5 && !strncasecmp(ct + n - 5, "+json", 5);
}

int app_req_json(const struct app_req *r, json_t **out, struct fl_err *err)
{
	*out = NULL;
	size_t len = r->raw->body_len;
	const char *b = r->raw->body;
	size_t i = 0;
	while (i < len && isspace((unsigned char)b[i]))
		i++;
	if (i == len)
		return 0;
	*out = fl_json_loadb(b, len, "request body", err);
	return *out ? 0 : FL_EINVAL;
}

json_t *app_req_headers_json(const struct app_req *r)
{
	json_t *headers = json_object();
	for (size_t i = 0; i < r->raw->n_headers; i++) {
		const char *name = r->raw->headers[i].name;
		const char *v = r->raw->headers[i].value ? r->raw->headers[i].value : "";
		if (!name)
			continue;
		char *lower = fl_strdup(name);
		for (char *p = lower; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		const char *old = json_string_value(json_object_get(headers, lower));
		if (old) {
			/* A repeated header is one value, comma-joined (RFC 9110 §5.3). */
			char *joined = fl_asprintf("%s, %s", old, v);
			json_object_set_new(headers, lower, fl_json_bytes(joined, strlen(joined)));
			fl_free(joined);
		} else {
			json_object_set_new(headers, lower, fl_json_bytes(v, strlen(v)));
		}
		fl_free(lower);
	}
	return headers;
}

json_t *app_json_time(int64_t ms)
{
	if (!ms)
		return json_null();
	char buf[32];
	return json_string(fl_iso8601(ms, buf, sizeof buf));
}

/* ---- responses ---- */

static void set_body(struct app_response *resp, char *body, size_t len, const char *type)
{
	json_decref(resp->json);
	resp->json = NULL;
	fl_free(resp->body);
	fl_free(resp->content_type);
	resp->body = body;
	resp->body_len = len;
	resp->content_type = type ? fl_strdup(type) : NULL;
}

void app_reply_json(struct app_response *resp, int status, json_t *body)
{
	resp->status = status;
	if (!body) {
		set_body(resp, NULL, 0, NULL);
		return;
	}
	if (resp->keep_json) {
		set_body(resp, NULL, 0, "application/json");
		resp->json = body;
		return;
	}
	struct fl_buf b = FL_BUF_INIT;
	fl_json_dump_buf(&b, body);
	json_decref(body);
	size_t len;
	char *text = fl_buf_detach(&b, &len);
	set_body(resp, text, len, "application/json");
}

void app_reply_error(struct app_response *resp, int status, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	json_t *m = json_string(msg);
	if (!m)
		m = json_string("request failed");
	app_reply_json(resp, status, json_pack("{s:o}", "error", m));
}

void app_reply_fail(struct app_response *resp, int code, const struct fl_err *err)
{
	int status;
	switch (code) {
	case FL_EINVAL: status = 400; break;
	case FL_ENOTFOUND: status = 404; break;
	case FL_ECONFLICT: status = 409; break;
	case FL_EDENIED: status = 401; break;
	case FL_ELIMIT: status = 413; break;
	case FL_EREDIS: status = 503; break;
	default: status = 500;
	}
	app_reply_error(resp, status, "%s", err && err->msg[0] ? err->msg : fl_strerror(code));
}

void app_response_add_header(struct app_response *resp, const char *name, const char *value)
{
	resp->headers = fl_realloc(resp->headers, (resp->n_headers + 1) * sizeof *resp->headers);
	resp->headers[resp->n_headers].name = fl_strdup(name);
	resp->headers[resp->n_headers].value = fl_strdup(value);
	resp->n_headers++;
}

void app_response_release(struct app_response *resp)
{
	json_decref(resp->json);
	fl_free(resp->body);
	fl_free(resp->content_type);
	for (size_t i = 0; i < resp->n_headers; i++) {
		fl_free((char *)resp->headers[i].name);
		fl_free((char *)resp->headers[i].value);
	}
	fl_free(resp->headers);
	memset(resp, 0, sizeof *resp);
}

static int header_is_ours(const char *name)
{
	static const char *const hop[] = { "content-length", "transfer-encoding", "connection",
					   "keep-alive", "upgrade", "te", "trailer", "content-type",
					   NULL };
	for (int i = 0; hop[i]; i++)
		if (!strcasecmp(name, hop[i]))
			return 1;
	return 0;
}

static int header_value_ok(const char *v)
{
	for (; *v; v++)
		if (*v == '\r' || *v == '\n')
			return 0;
	return 1;
}

static int header_name_ok(const char *n)
{
	if (!*n)
		return 0;
	for (; *n; n++)
		if (!isgraph((unsigned char)*n) || *n == ':')
			return 0;
	return 1;
}

void app_reply_flow_response(struct app_response *resp, const json_t *response)
{
	json_t *st = json_object_get(response, "status");
	long status = 200;
	if (json_is_integer(st))
		status = (long)json_integer_value(st);
	else if (json_is_real(st))
		status = (long)json_real_value(st);
	else if (json_is_string(st))
		status = strtol(json_string_value(st), NULL, 10);
	if (status < 100 || status > 599)
		status = 200;
	resp->status = (int)status;

	const char *type = NULL;
	json_t *headers = json_object_get(response, "headers");
	const char *name;
	json_t *v;
	json_object_foreach(headers, name, v)
	{
		char *text = json_is_string(v) ? fl_strdup(json_string_value(v)) : fl_json_dump(v);
		if (!strcasecmp(name, "content-type"))
			type = json_string_value(v);
		else if (header_name_ok(name) && header_value_ok(text) && !header_is_ours(name))
			app_response_add_header(resp, name, text);
		if (json_is_string(v))
			fl_free(text);
		else
			free(text);
	}
	json_t *body = json_object_get(response, "body");
	if (!body || json_is_null(body)) {
		set_body(resp, NULL, 0, type && header_value_ok(type) ? type : NULL);
		return;
	}
	if (json_is_string(body)) {
		size_t len = json_string_length(body);
		char *b = fl_malloc(len + 1);
		memcpy(b, json_string_value(body), len + 1);
		set_body(resp, b, len,
			 type && header_value_ok(type) ? type : "text/plain; charset=utf-8");
		return;
	}
	struct fl_buf b = FL_BUF_INIT;
	fl_json_dump_buf(&b, body);
	size_t len;
	char *text = fl_buf_detach(&b, &len);
	set_body(resp, text, len, type && header_value_ok(type) ? type : "application/json");
}
