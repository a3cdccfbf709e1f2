/* An HTTP client on libcurl for everything a flow sends out: the http piece and code-step fetch.
 * One blocking request per call. The network policy (net/policy.h) is applied to every address
 * the request would connect to, redirects included; a NULL policy means unrestricted. */
#ifndef NET_HTTP_H
#define NET_HTTP_H

#include <stddef.h>
#include <stdint.h>

struct fl_err;
struct net_policy;

struct net_header {
	char *name;
	char *value;
};

struct net_http_request {
	const char *method;                /* "GET", "POST", ...; NULL means GET */
	const char *url;
	const struct net_header *headers;  /* sent in this order */
	size_t n_headers;
	const char *body;                  /* NULL: no body */
	size_t body_len;
	int64_t timeout_ms;                /* 0: none */
	int follow_redirects;              /* 0: a 3xx is returned as it is */
	const struct net_policy *policy;   /* NULL: unrestricted */
};

struct net_http_response {
	long status;
	struct net_header *headers;        /* names lower-cased, in the order received */
	size_t n_headers;
	char *body;                        /* NUL-terminated for convenience; may hold NULs */
	size_t body_len;
	char *effective_url;               /* the last URL, after redirects */
};

/* Performs req. Returns 0 when an HTTP response arrived (any status), FL_EDENIED when the
 * policy refused an address (before any connection to it), FL_ETIMEOUT, or another negative
 * code for a network error; err says what happened. On success resp is filled and must be
 * released with net_http_response_release. */
int net_http_do(const struct net_http_request *req, struct net_http_response *resp,
		struct fl_err *err);
void net_http_response_release(struct net_http_response *resp);

/* Returns the first value of header name (case-insensitive) in resp, or NULL. */
const char *net_http_response_header(const struct net_http_response *resp, const char *name);

#endif
