/* HS256 JWTs for the worker-facing endpoints: see token.h. Parsing is strict (three parts, our
 * header algorithm only) because the input comes straight from the network. */
#include "core/token.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/assert.h"
#include "core/err.h"
#include "core/json.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t fl_base64url_encode(const void *data, size_t len, char *out)
{
	const unsigned char *p = data;
	size_t o = 0, i = 0;
	for (; i + 2 < len; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
		out[o++] = b64url[v >> 18];
		out[o++] = b64url[(v >> 12) & 63];
		out[o++] = b64url[(v >> 6) & 63];
		out[o++] = b64url[v & 63];
	}
	if (len - i == 1) {
		unsigned v = (unsigned)p[i] << 16;
		out[o++] = b64url[v >> 18];
		out[o++] = b64url[(v >> 12) & 63];
	} else if (len - i == 2) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
		out[o++] = b64url[v >> 18];
		out[o++] = b64url[(v >> 12) & 63];
		out[o++] = b64url[(v >> 6) & 63];
	}
	out[o] = '\0';
	return o;
}

static int b64url_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-' || c == '+')
		return 62;
	if (c == '_' || c == '/')
		return 63;
	return -1;
}

long fl_base64url_decode(const char *s, size_t len, unsigned char *out)
{
	while (len && s[len - 1] == '=')
		len--;
	if (len % 4 == 1)
		return -1;
	unsigned acc = 0;
	int bits = 0;
	long o = 0;
	for (size_t i = 0; i < len; i++) {
		int v = b64url_value(s[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	return o;
}

static const char header_b64[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"; /* {"alg":"HS256","typ":"JWT"} */

/* HMAC-SHA256 (RFC 2104) over one fetched digest: OpenSSL 3's one-shot HMAC() looks the
 * algorithm up by name on every call, which costs more than the hashing of a token. */
static EVP_MD *sha256;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void)
{
	sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static void mac(const char *secret, const char *data, size_t len, unsigned char out[32])
{
	pthread_once(&sha256_once, fetch_sha256);
	unsigned char key[64] = { 0 }, pad[64], inner[32];
	size_t klen = strlen(secret);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!sha256 || !ctx)
		fl_assert_fail("EVP_MD_fetch(SHA256)", __FILE__, __LINE__);
	if (klen > 64) {
		EVP_DigestInit_ex(ctx, sha256, NULL);
		EVP_DigestUpdate(ctx, secret, klen);
		EVP_DigestFinal_ex(ctx, key, NULL);
	} else {
		memcpy(key, secret, klen);
	}
	for (int i = 0; i < 64; i++)
		pad[i] = key[i] ^ 0x36;
	EVP_DigestInit_ex(ctx, sha256, NULL);
	EVP_DigestUpdate(ctx, pad, 64);
	EVP_DigestUpdate(ctx, data, len);
	EVP_DigestFinal_ex(ctx, inner, NULL);
	for (int i = 0; i < 64; i++)
		pad[i] = key[i] ^ 0x5c;
	EVP_DigestInit_ex(ctx, sha256, NULL);
	EVP_DigestUpdate(ctx, pad, 64);
	EVP_DigestUpdate(ctx, inner, 32);
	EVP_DigestFinal_ex(ctx, out, NULL);
	EVP_MD_CTX_free(ctx);
	OPENSSL_cleanse(key, sizeof key);
}

char *fl_token_sign(const char *secret, const char *run_id, int64_t iat_s, int64_t exp_s)
{
	json_t *claims = json_pack("{s:s, s:I, s:I}", "sub", run_id, "iat", (json_int_t)iat_s,
				   "exp", (json_int_t)exp_s);
	char *payload = fl_json_dump(claims);
	json_decref(claims);
	size_t plen = strlen(payload);

	struct fl_buf b = FL_BUF_INIT;
	fl_buf_adds(&b, header_b64);
	fl_buf_addch(&b, '.');
	fl_buf_grow(&b, 4 * ((plen + 2) / 3) + 1);
	b.len += fl_base64url_encode(payload, plen, b.data + b.len);
	free(payload);

	unsigned char sig[32];
	mac(secret, b.data, b.len, sig);
	fl_buf_addch(&b, '.');
	fl_buf_grow(&b, 45);
	b.len += fl_base64url_encode(sig, sizeof sig, b.data + b.len);
	return fl_buf_detach(&b, NULL);
}

#define TOKEN_MAX 4096
#define CACHED_SECRET_MAX 256

/* The last token this thread found good, with the secret it was checked against: every call a
 * worker makes for a run carries the same token, and its signature and claims would check out
 * the same way again. Only the expiry is looked at anew. Compared in constant time, as the
 * signature is, so that timing tells nothing of the token kept. */
static _Thread_local struct {
	size_t token_len, secret_len;
	char token[TOKEN_MAX];
	char secret[CACHED_SECRET_MAX];
	char run_id[FL_TOKEN_RUN_ID_MAX + 1];
	json_int_t exp;
} verified;

static int same_bytes(const char *a, size_t a_len, const char *b, size_t b_len)
{
	return a_len && a_len == b_len && !CRYPTO_memcmp(a, b, a_len);
}

static int verify(const char *secret, const char *token, size_t len, int64_t now_s,
		  char run_id[FL_TOKEN_RUN_ID_MAX + 1], json_int_t *exp_out, struct fl_err *err);

int fl_token_verify(const char *secret, const char *token, int64_t now_s,
		    char run_id[FL_TOKEN_RUN_ID_MAX + 1], struct fl_err *err)
{
	if (!token || !*token)
		return fl_err_set(err, FL_EDENIED, "missing engine token");
	size_t len = strlen(token);
	if (len > TOKEN_MAX)
		return fl_err_set(err, FL_EDENIED, "engine token is too long");
	size_t secret_len = strlen(secret);
	if (same_bytes(token, len, verified.token, verified.token_len) &&
	    same_bytes(secret, secret_len, verified.secret, verified.secret_len)) {
		if (verified.exp <= now_s)
			return fl_err_set(err, FL_EDENIED, "engine token expired");
		strcpy(run_id, verified.run_id);
		return 0;
	}
	json_int_t exp = 0;
	int rc = verify(secret, token, len, now_s, run_id, &exp, err);
	if (rc || secret_len > CACHED_SECRET_MAX) {
		verified.token_len = 0;
		return rc;
	}
	memcpy(verified.token, token, len);
	verified.token_len = len;
	memcpy(verified.secret, secret, secret_len);
	verified.secret_len = secret_len;
	strcpy(verified.run_id, run_id);
	verified.exp = exp;
	return 0;
}

static int verify(const char *secret, const char *token, size_t len, int64_t now_s,
		  char run_id[FL_TOKEN_RUN_ID_MAX + 1], json_int_t *exp_out, struct fl_err *err)
{
	const char *dot1 = strchr(token, '.');
	const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (!dot1 || !dot2 || strchr(dot2 + 1, '.'))
		return fl_err_set(err, FL_EDENIED, "engine token is not a JWT");
	/* Only our own header is accepted: that rules out "alg":"none" and algorithm confusion. */
	if ((size_t)(dot1 - token) != sizeof header_b64 - 1 ||
	    memcmp(token, header_b64, sizeof header_b64 - 1))
		return fl_err_set(err, FL_EDENIED, "engine token has an unsupported header");

	unsigned char want[32], got[48];
	mac(secret, token, (size_t)(dot2 - token), want);
	size_t sig_len = len - (size_t)(dot2 + 1 - token);
	if (sig_len > 44 || fl_base64url_decode(dot2 + 1, sig_len, got) != 32 ||
	    CRYPTO_memcmp(want, got, 32))
		return fl_err_set(err, FL_EDENIED, "engine token has a bad signature");

	size_t plen = (size_t)(dot2 - dot1 - 1);
	unsigned char *payload = fl_malloc(3 * (plen / 4) + 3);
	long n = fl_base64url_decode(dot1 + 1, plen, payload);
	json_t *claims = n < 0 ? NULL : json_loadb((const char *)payload, (size_t)n, 0, NULL);
	fl_free(payload);
	const char *sub = json_string_value(json_object_get(claims, "sub"));
	json_t *exp = json_object_get(claims, "exp");
	int rc = 0;
	if (!sub || !json_is_integer(exp))
		rc = fl_err_set(err, FL_EDENIED, "engine token lacks sub or exp");
	else if (json_integer_value(exp) <= now_s)
		rc = fl_err_set(err, FL_EDENIED, "engine token expired");
	else if (strlen(sub) == 0 || strlen(sub) > FL_TOKEN_RUN_ID_MAX)
		rc = fl_err_set(err, FL_EDENIED, "engine token names no valid run");
	else {
		strcpy(run_id, sub);
		*exp_out = json_integer_value(exp);
	}
	json_decref(claims);
	return rc;
}
