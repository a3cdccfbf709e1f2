/* Shared encodings: see codec.h. */
#include "core/codec.h"
#include "core/alloc.h"

#include <openssl/evp.h>
#include <string.h>

char *fl_base64_encode(const void *data, size_t len)
{
	char *out = fl_malloc(4 * ((len + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *fl_url_decode(const char *s, size_t len, int plus)
{
	char *out = fl_malloc(len + 1);
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
			out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
			continue;
		}
		out[o++] = plus && s[i] == '+' ? ' ' : s[i];
	}
	out[o] = '\0';
	return out;
}

json_t *fl_json_bytes(const char *data, size_t len)
{
	json_t *s = json_stringn(data, len);
	if (s)
		return s;
	char *enc = fl_base64_encode(data, len);
	s = json_string(enc);
	fl_free(enc);
	return s;
}

void fl_form_parse(const char *s, size_t len, json_t *obj)
{
	size_t i = 0;
	while (i < len) {
		size_t end = i;
		while (end < len && s[end] != '&')
			end++;
		if (end > i) {
			size_t eq = i;
			while (eq < end && s[eq] != '=')
				eq++;
			char *k = fl_url_decode(s + i, eq - i, 1);
			char *v = eq < end ? fl_url_decode(s + eq + 1, end - eq - 1, 1) : fl_strdup("");
			json_t *key_ok = json_string(k);
			if (key_ok && *k)
				json_object_set_new(obj, k, fl_json_bytes(v, strlen(v)));
			json_decref(key_ok);
			fl_free(k);
			fl_free(v);
		}
		i = end + 1;
	}
}
