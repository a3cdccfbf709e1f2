/* Per-run tokens that workers present to the app's /v1/engine endpoints. A token is a JWT (HS256)
 * signed with AP_JWT_SECRET: {"alg":"HS256","typ":"JWT"}.{"sub":"<runId>","iat":s,"exp":s}.mac.
 * App and workers share the secret, so a worker mints the token for the run it fetched from the
 * queue and the app checks the signature, the run and the expiry. It lives in core because both
 * sides need it and neither may depend on the other. */
#ifndef FL_TOKEN_H
#define FL_TOKEN_H

#include <stddef.h>
#include <stdint.h>

struct fl_err;

/* Longest run id a token may carry; ids are 21 characters, the slack is for foreign ids. */
#define FL_TOKEN_RUN_ID_MAX 64

/* Signs a token naming run_id that expires at exp_s (seconds since the epoch); iat is now.
 * Returns a new heap string (free with fl_free). */
char *fl_token_sign(const char *secret, const char *run_id, int64_t iat_s, int64_t exp_s);

/* Checks token against secret: well formed, HS256, signature (compared in constant time),
 * not expired at now_s. On success copies the run id into run_id[FL_TOKEN_RUN_ID_MAX + 1] and
 * returns 0. Returns FL_EDENIED (err says why) for anything else. */
int fl_token_verify(const char *secret, const char *token, int64_t now_s,
		    char run_id[FL_TOKEN_RUN_ID_MAX + 1], struct fl_err *err);

/* Base64url without padding: the JWT encoding. out needs 4 * ((len + 2) / 3) + 1 bytes.
 * Returns the length written. */
size_t fl_base64url_encode(const void *data, size_t len, char *out);
/* Decodes base64url (padding optional); returns the length, or -1 on a bad character. out needs
 * 3 * (len / 4) + 3 bytes. */
long fl_base64url_decode(const char *s, size_t len, unsigned char *out);

#endif
