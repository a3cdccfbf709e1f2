/* @activepieces/piece-webhook: the catch_webhook trigger's output and authentication (used by
 * the app when a request arrives) and the return_response action. */
#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"
#include "engine/pieces/pieces.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>
#include <strings.h>

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* application/x-www-form-urlencoded decoding of s[0..len) into a new string. */
static char *form_decode(const char *s, size_t len)
{
	char *out = fl_malloc(len + 1), *o = out;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '+') {
			*o++ = ' ';
		} else if (s[i] == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 &&
			   hexval(s[i + 2]) >= 0) {
			*o++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	*o = '\0';
	return out;
}

static json_t *string_or_base64(const char *s, size_t len)
{
	json_t *v = json_stringn(s, len);
	if (v)
		return v;
	/* Not UTF-8: keep the bytes, as base64. */
	char *b = pc_base64_encode(s, len);
	v = json_string(b);
	fl_free(b);
	return v;
}

static json_t *parse_form(const char *body, size_t len)
{
	json_t *o = json_object();
	size_t i = 0;
	while (i < len) {
		size_t end = i;
		while (end < len && body[end] != '&')
			end++;
		const char *eq = memchr(body + i, '=', end - i);
		size_t klen = eq ? (size_t)(eq - (body + i)) : end - i;
		if (klen) {
			char *k = form_decode(body + i, klen);
			char *v = eq ? form_decode(eq + 1, (size_t)(body + end - (eq + 1)))
				     : fl_strdup("");
			json_t *jv = string_or_base64(v, strlen(v));
			json_t *jk = json_string(k);
			if (jk)
				json_object_set_new(o, k, jv);
			else
				json_decref(jv);
			json_decref(jk);
			fl_free(k);
			fl_free(v);
		}
		i = end + 1;
	}
	return o;
}

json_t *pc_webhook_trigger_output(const char *method, const json_t *headers, const json_t *query,
				  const char *body, size_t body_len, struct fl_err *err)
{
	json_t *hdrs = json_object();
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)headers, k, v)
	{
		char *lower = fl_strdup(k);
		for (char *p = lower; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		json_object_set(hdrs, lower, v);
		fl_free(lower);
	}
	const char *ctype = json_string_value(json_object_get(hdrs, "content-type"));
	char mime[128] = "";
	if (ctype) {
		size_t n = strcspn(ctype, ";");
		while (n && ctype[n - 1] == ' ')
			n--;
		if (n >= sizeof mime)
			n = sizeof mime - 1;
		for (size_t i = 0; i < n; i++)
			mime[i] = (char)tolower((unsigned char)ctype[i]);
		mime[n] = '\0';
	}
	json_t *parsed;
	size_t mlen = strlen(mime);
	int is_json = !strcmp(mime, "application/json") ||
		      (mlen > 5 && !strcmp(mime + mlen - 5, "+json"));
	if (!body_len) {
		parsed = json_object();
	} else if (is_json) {
		json_error_t je;
		parsed = json_loadb(body, body_len, JSON_DECODE_ANY, &je);
		if (!parsed) {
			json_decref(hdrs);
			fl_err_set(err, FL_EINVAL, "the request body is not valid JSON: %d:%d: %s",
				   je.line, je.column, je.text);
			return NULL;
		}
	} else if (!strcmp(mime, "application/x-www-form-urlencoded")) {
		parsed = parse_form(body, body_len);
	} else {
		parsed = string_or_base64(body, body_len);
	}
	return json_pack("{s:s, s:o, s:o, s:o, s:o}", "method", method ? method : "GET", "headers",
			 hdrs, "body", parsed, "queryParams",
			 query ? json_incref((json_t *)query) : json_object(),
			 "rawBody", string_or_base64(body ? body : "", body_len));
}

/* Constant-time comparison of two strings (their lengths are not secret). */
static int secret_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la != lb)
		return 0;
	return CRYPTO_memcmp(a, b, la) == 0;
}

static const char *auth_field(const json_t *input, const char *key)
{
	const json_t *fields = json_object_get(input, "authFields");
	const char *v = json_string_value(json_object_get(fields, key));
	return v ? v : json_string_value(json_object_get(input, key));
}

static const char *header_value(const json_t *headers, const char *name)
{
	char lower[256];
	size_t n = strlen(name);
	if (n >= sizeof lower)
		return NULL;
	for (size_t i = 0; i <= n; i++)
		lower[i] = (char)tolower((unsigned char)name[i]);
	return json_string_value(json_object_get(headers, lower));
}

int pc_webhook_check_auth(const json_t *input, const json_t *headers, const char *body,
			  size_t body_len, struct fl_err *err)
{
	const char *type = json_string_value(json_object_get(input, "authType"));
	if (!type || !strcasecmp(type, "none"))
		return 0;
	if (!strcasecmp(type, "basic")) {
		const char *user = auth_field(input, "username"), *pass = auth_field(input, "password");
		const char *got = header_value(headers, "authorization");
		if (!user || !pass || !got || strncasecmp(got, "Basic ", 6))
			return fl_err_set(err, FL_EDENIED, "basic authentication failed");
		char *plain = fl_asprintf("%s:%s", user, pass);
		char *want = pc_base64_encode(plain, strlen(plain));
		const char *cred = got + 6;
		while (*cred == ' ')
			cred++;
		int ok = secret_equal(cred, want);
		fl_free(plain);
		fl_free(want);
		return ok ? 0 : fl_err_set(err, FL_EDENIED, "basic authentication failed");
	}
	if (!strcasecmp(type, "header")) {
		const char *name = auth_field(input, "headerName");
		const char *want = auth_field(input, "headerValue");
		const char *got = name ? header_value(headers, name) : NULL;
		if (!want || !got || !secret_equal(got, want))
			return fl_err_set(err, FL_EDENIED, "header authentication failed");
		return 0;
	}
	if (!strcasecmp(type, "hmac")) {
		const char *hname = auth_field(input, "hmacHeaderName");
		const char *secret = auth_field(input, "hmacSecret");
		const char *alg = auth_field(input, "hmacAlgorithm");
		const char *enc = auth_field(input, "hmacEncoding");
		const char *prefix = auth_field(input, "hmacSignaturePrefix");
		if (!hname || !*hname)
			hname = "x-signature";
		if (!secret)
			return fl_err_set(err, FL_EDENIED, "hmac authentication has no secret");
		const EVP_MD *md = !alg || !strcasecmp(alg, "sha256") ? EVP_sha256()
				   : !strcasecmp(alg, "sha1")		 ? EVP_sha1()
				   : !strcasecmp(alg, "sha512")		 ? EVP_sha512()
									 : NULL;
		if (!md)
			return fl_err_set(err, FL_EDENIED, "unknown hmac algorithm '%s'", alg);
		unsigned char mac[EVP_MAX_MD_SIZE];
		unsigned int mac_len = 0;
		HMAC(md, secret, (int)strlen(secret), (const unsigned char *)(body ? body : ""),
		     body_len, mac, &mac_len);
		struct fl_buf want = FL_BUF_INIT;
		fl_buf_adds(&want, prefix ? prefix : "");
		if (enc && !strcasecmp(enc, "base64")) {
			char *b = pc_base64_encode(mac, mac_len);
			fl_buf_adds(&want, b);
			fl_free(b);
		} else {
			for (unsigned i = 0; i < mac_len; i++)
				fl_buf_addf(&want, "%02x", mac[i]);
		}
		const char *got = header_value(headers, hname);
		int ok = got && secret_equal(got, want.data);
		fl_buf_release(&want);
		return ok ? 0 : fl_err_set(err, FL_EDENIED, "hmac signature mismatch");
	}
	return fl_err_set(err, FL_EDENIED, "unknown webhook authType '%s'", type);
}

int pc_webhook_return_response(struct pc_ctx *ctx, const json_t *input, json_t **output,
			       struct fl_err *err)
{
	const char *type, *respond;
	int rc = pc_input_string(input, "responseType", "json", &type, err);
	if (!rc)
		rc = pc_input_string(input, "respond", "stop", &respond, err);
	if (rc)
		return rc;
	const json_t *fields = json_object_get(input, "fields");
	if (fields && !json_is_object(fields) && !json_is_null(fields))
		return fl_err_set(err, FL_EINVAL, "input 'fields' must be an object");
	double status;
	rc = pc_input_number(fields, "status", 200, &status, err);
	if (rc)
		return rc;
	if (status < 100 || status > 599)
		return fl_err_set(err, FL_EINVAL, "status %g is not an HTTP status", status);
	const json_t *hdrs = json_object_get(fields, "headers");
	json_t *headers = json_object();
	if (json_is_object(hdrs)) {
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)hdrs, k, v)
		{
			if (json_is_string(v)) {
				json_object_set(headers, k, v);
			} else if (!json_is_null(v)) {
				char *t = fl_json_dump(v);
				json_object_set_new(headers, k, json_string(t));
				fl_free(t);
			}
		}
	} else if (hdrs && !json_is_null(hdrs)) {
		json_decref(headers);
		return fl_err_set(err, FL_EINVAL, "input 'fields.headers' must be an object");
	}
	const json_t *body_in = json_object_get(fields, "body");
	json_t *body;
	if (!strcmp(type, "json")) {
		body = NULL;
		if (json_is_string(body_in))
			body = json_loadb(json_string_value(body_in), json_string_length(body_in),
					  JSON_DECODE_ANY, NULL);
		if (!body)
			body = body_in ? json_incref((json_t *)body_in) : json_object();
	} else if (!strcmp(type, "raw")) {
		if (!body_in || json_is_null(body_in)) {
			body = json_string("");
		} else if (json_is_string(body_in)) {
			body = json_incref((json_t *)body_in);
		} else {
			char *t = fl_json_dump(body_in);
			body = json_string(t);
			fl_free(t);
		}
	} else if (!strcmp(type, "redirect")) {
		const char *to = json_string_value(body_in);
		if (!to || !*to) {
			json_decref(headers);
			return fl_err_set(err, FL_EINVAL, "a redirect needs the URL in 'fields.body'");
		}
		char *loc = strstr(to, "://") ? fl_strdup(to) : fl_asprintf("https://%s", to);
		json_object_set_new(headers, "Location", json_string(loc));
		fl_free(loc);
		status = 301;
		body = json_object();
	} else {
		json_decref(headers);
		return fl_err_set(err, FL_EINVAL,
				  "responseType '%s' is not json, raw or redirect", type);
	}
	if (strcmp(respond, "stop") && strcmp(respond, "respond")) {
		json_decref(headers);
		json_decref(body);
		return fl_err_set(err, FL_EINVAL, "respond '%s' is not stop or respond", respond);
	}
	json_t *resp = json_pack("{s:i, s:o, s:o}", "status", (int)status, "headers", headers,
				 "body", body);
	ctx->response = json_incref(resp);
	ctx->stop = !strcmp(respond, "stop");
	*output = resp;
	return 0;
}
