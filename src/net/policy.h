/* The outbound network policy of flows (AP_NETWORK_MODE, AP_SSRF_ALLOW_LIST; shared/DESIGN.md §7)
 * and its enforcement on libcurl handles. Under STRICT a request's host is resolved once, every
 * address it resolves to must be public (or allow-listed), and curl is then pinned to exactly
 * those addresses: CURLOPT_RESOLVE hands curl the checked answer, and an open-socket callback
 * refuses any connect to an address that was not checked, so a second DNS answer (rebinding),
 * a proxy, or a redirect curl follows on its own reaches nothing. Every redirect hop is checked
 * again by calling net_guard_hop with its URL. */
#ifndef NET_POLICY_H
#define NET_POLICY_H

#include <stddef.h>

#include <curl/curl.h>

#include "core/config.h"
#include "net/addr.h"

struct fl_err;
struct net_policy;

/* Builds a policy from a mode and an allow list (comma-separated IPs/CIDRs, or NULL). A bad
 * allow-list entry is FL_ECONFIG with a message naming AP_SSRF_ALLOW_LIST and the entry. The
 * caller owns *out (net_policy_free). */
int net_policy_new(enum fl_network_mode mode, const char *allow_list, struct net_policy **out,
		   struct fl_err *err);
/* The same from a loaded configuration (network_mode, ssrf_allow_list). */
int net_policy_from_config(const struct fl_config *cfg, struct net_policy **out,
			   struct fl_err *err);
/* In an engine process: when the sandbox set NET_EGRESS_FD_ENV (net/egress.h) to an inherited descriptor, routes
 * policy through the egress broker at a duplicate of it (net_policy_set_egress), so that any
 * number of policies can be made and freed in the engine's life. Returns 0 (also when the
 * variable is unset) or FL_ECONFIG when it names no open descriptor. */
int net_policy_egress_from_env(struct net_policy *policy, struct fl_err *err);
void net_policy_free(struct net_policy *policy);

/* For an engine in its own network namespace: from now on the guards of this policy resolve and
 * connect through the egress broker at fd (net/egress.h, the engine's end of the worker's
 * socketpair), which applies the worker's policy again. Takes ownership of fd. Under
 * UNRESTRICTED too, since the engine has no other way out. */
void net_policy_set_egress(struct net_policy *policy, int fd);

/* The mode; a NULL policy is UNRESTRICTED. */
enum fl_network_mode net_policy_mode(const struct net_policy *policy);

/* One line for the start-up log, e.g. "network mode STRICT: outbound connections reach public
 * unicast addresses only; allow list: 127.0.0.2/32". The caller frees it with fl_free. */
char *net_policy_describe(const struct net_policy *policy);

/* Checks one address that host names. Returns 0, or FL_EDENIED with a message such as
 * "blocked address 127.0.0.1 for host 'localhost' (loopback)". */
int net_policy_check_addr(const struct net_policy *policy, const char *host,
			  const struct net_addr *addr, struct fl_err *err);

/* Resolves host once (a numeric host in any spelling is parsed, a name goes to getaddrinfo) and
 * checks every address it yields: one blocked address refuses the whole host. On success
 * *addrs (freed by the caller with fl_free) holds the *n checked addresses, without duplicates,
 * in the resolver's order. Returns 0, FL_EDENIED, FL_ENOTFOUND for an unknown name, FL_EINVAL for
 * an empty host, or FL_EIO when the resolver failed otherwise. Under UNRESTRICTED nothing is
 * refused, but the host is still resolved. */
int net_policy_resolve(const struct net_policy *policy, const char *host, struct net_addr **addrs,
		       size_t *n, struct fl_err *err);

/* Enforcement of a policy on one curl easy handle for the length of one request, redirects
 * included. The guard borrows the policy, which must outlive it. It owns the callback data and
 * the resolve list it sets on the handle, so it is freed only after the request's last
 * curl_easy_perform; net_guard_free then removes them from the handle, which may be reused.
 * With a NULL policy, or UNRESTRICTED without an egress broker, every call is a no-op that
 * returns 0. */
struct net_guard;

struct net_guard *net_guard_new(const struct net_policy *policy);
void net_guard_free(struct net_guard *guard);

/* Call before each curl_easy_perform, with the URL about to be requested: the first URL, then
 * each redirect target. The first call also sets the handle's fixed options: no proxy (not
 * even from the environment), http and https only, and the open-socket check. Then the URL's
 * host is resolved and checked (net_policy_resolve) and curl is pinned to its addresses.
 * Returns 0; FL_EDENIED when the scheme or an address is refused, before any connection; or
 * FL_EINVAL, FL_ENOTFOUND, FL_EIO as net_policy_resolve. err says why. */
int net_guard_hop(struct net_guard *guard, CURL *curl, const char *url, struct fl_err *err);

/* After a failed curl_easy_perform: returns FL_EDENIED with the reason in err when the guard's
 * open-socket check refused a connect during it, else 0. */
int net_guard_refused(const struct net_guard *guard, struct fl_err *err);

#endif
