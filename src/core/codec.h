/* Encodings that several parts share: base64 of bytes, percent-decoding, and the
 * application/x-www-form-urlencoded form of query strings and form bodies. */
#ifndef FL_CODEC_H
#define FL_CODEC_H

#include <jansson.h>
#include <stddef.h>

/* Standard, padded base64 of len bytes; a heap string (fl_free). */
char *fl_base64_encode(const void *data, size_t len);

/* Decodes %XX escapes (and '+' as a space when plus is set) of s[0..len) into a heap string;
 * a '%' not followed by two hex digits stays as it is. */
char *fl_url_decode(const char *s, size_t len, int plus);

/* A JSON string of the bytes; bytes that are not UTF-8 come out as their base64. */
json_t *fl_json_bytes(const char *data, size_t len);

/* Adds the pairs of a query string or form body ("a=1&b=x+y") to obj, decoded; a key without
 * '=' gets "". Pairs whose decoded key is empty or not UTF-8 are skipped. */
void fl_form_parse(const char *s, size_t len, json_t *obj);

#endif
