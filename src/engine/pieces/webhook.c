/* @activepieces/piece-webhook: the catch_webhook trigger's output and authentication (used by
 * the app when a request arrives) and the return_response action. */
#include "core/alloc.h"
#include "core/buf.h"
#include "core/codec.h"
#include "core/err.h"
#include "core/json.h"
#include "engine/pieces/pieces.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>
#include <strings.h>

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
	size_t blank = 0;
	while (is_json && blank < body_len && isspace((unsigned char)body[blank]))
		blank++;
	if (!body_len || blank == body_len) {
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
		parsed = json_object();
		fl_form_parse(body, body_len, parsed);
	} else {
		parsed = fl_json_bytes(body, body_len);
	}
	json_t *out = json_pack("{s:s, s:o, s:o, s:o, s:o}", "method", method ? method : "GET",
				"headers", hdrs, "body", parsed, "queryParams",
				query ? json_incref((json_t *)query) : json_object(), "rawBody",
				fl_json_bytes(body ? body : "", body_len));
	if (!out) /* a method that is not UTF-8 */
		out = json_pack("{s:s, s:o, s:o, s:o}", "method", "GET", "headers", json_object(),
				"body", json_object(), "queryParams",
				query ? json_incref((json_t *)query) : json_object());
	return out;
}

/* A field of the trigger's auth settings: authFields.<key>, or <key> at the top of input;
 * def when absent or empty. */
static const char *auth_field(const json_t *input, const char *key, const char *def)
{
	const char *v = json_string_value(json_object_get(json_object_get(input, "authFields"), key));
	if (!v)
		v = json_string_value(json_object_get(input, key));
	return v && *v ? v : def;
}

/* Constant-time comparison (the lengths are not secret). */
static int same(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);
	return alen == blen && !CRYPTO_memcmp(a, b, alen);
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

static int check_basic(const json_t *input, const json_t *headers)
{
	const char *user = auth_field(input, "username", ""), *pass = auth_field(input, "password", "");
	const char *h = header_value(headers, "authorization");
	if (!h || strncasecmp(h, "Basic ", 6))
		return 0;
	h += 6;
	while (*h == ' ')
		h++;
	size_t len = strlen(h);
	if (len > 4096)
		return 0;
	unsigned char *dec = fl_malloc(len + 4);
	int n = EVP_DecodeBlock(dec, (const unsigned char *)h, (int)len);
	int ok = 0;
	if (n >= 0) {
		/* EVP_DecodeBlock counts padding as zero bytes; drop them. */
		while (len && h[len - 1] == '=' && n > 0) {
			n--;
			len--;
		}
		char *want = fl_asprintf("%s:%s", user, pass);
		ok = same((const char *)dec, (size_t)n, want);
		fl_free(want);
	}
	fl_free(dec);
	return ok;
}

static int check_header(const json_t *input, const json_t *headers)
{
	const char *name = auth_field(input, "headerName", NULL);
	const char *value = auth_field(input, "headerValue", "");
	const char *got = name ? header_value(headers, name) : NULL;
	return got && same(got, strlen(got), value);
}

static int check_hmac(const json_t *input, const json_t *headers, const char *body,
		      size_t body_len)
{
	const char *header = auth_field(input, "hmacHeaderName", "x-signature");
	const char *secret = auth_field(input, "hmacSecret", "");
	const char *alg = auth_field(input, "hmacAlgorithm", "sha256");
	const char *enc = auth_field(input, "hmacEncoding", "hex");
	const char *prefix = auth_field(input, "hmacSignaturePrefix", "");
	const EVP_MD *md = !strcasecmp(alg, "sha1")	? EVP_sha1()
			   : !strcasecmp(alg, "sha512") ? EVP_sha512()
			   : !strcasecmp(alg, "sha256") ? EVP_sha256()
							: NULL;
	const char *got = header_value(headers, header);
	if (!md || !got)
		return 0;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	static const unsigned char empty[1];
	HMAC(md, secret, (int)strlen(secret), body_len ? (const unsigned char *)body : empty,
	     body_len, mac, &mac_len);
	struct fl_buf want = FL_BUF_INIT;
	fl_buf_adds(&want, prefix);
	if (!strcasecmp(enc, "base64")) {
		char *b = fl_base64_encode(mac, mac_len);
		fl_buf_adds(&want, b);
		fl_free(b);
	} else {
		for (unsigned i = 0; i < mac_len; i++)
			fl_buf_addf(&want, "%02x", mac[i]);
	}
	while (*got == ' ')
		got++;
	size_t glen = strlen(got);
	while (glen && got[glen - 1] == ' ')
		glen--;
	/* Hex digests are compared without regard to case. */
	int ok;
	if (strcasecmp(enc, "base64") && glen == want.len) {
		char *lower = fl_strndup(got, glen);
		for (size_t i = strlen(prefix); i < glen; i++)
			lower[i] = (char)tolower((unsigned char)lower[i]);
		ok = same(lower, glen, want.data);
		fl_free(lower);
	} else {
		ok = same(got, glen, want.data);
	}
	fl_buf_release(&want);
	return ok;
}

int pc_webhook_check_auth(const json_t *input, const json_t *headers, const char *body,
			  size_t body_len, struct fl_err *err)
{
	const char *type = json_string_value(json_object_get(input, "authType"));
	if (!type || !*type || !strcasecmp(type, "none"))
		return 0;
	int ok;
	if (!strcasecmp(type, "basic"))
		ok = check_basic(input, headers);
	else if (!strcasecmp(type, "header"))
		ok = check_header(input, headers);
	else if (!strcasecmp(type, "hmac"))
		ok = check_hmac(input, headers, body, body_len);
	else /* an auth type we do not know lets nothing through */
		return fl_err_set(err, FL_EDENIED, "unknown webhook authType '%s'", type);
	return ok ? 0 : fl_err_set(err, FL_EDENIED, "%s authentication failed", type);
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
