/* The network policy and its libcurl guard: resolve once, check every address, pin curl to the
 * checked addresses, and verify each socket curl opens against that pin. */
#include "net/policy.h"

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "net/egress.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

struct net_policy {
	enum fl_network_mode mode;
	struct net_cidr_list allow;
	struct net_egress_client *egress; /* NULL: connect directly */
};

int net_policy_new(enum fl_network_mode mode, const char *allow_list, struct net_policy **out,
		   struct fl_err *err)
{
	*out = NULL;
	struct net_policy *p = fl_calloc(1, sizeof *p);
	p->mode = mode;
	int rc = net_cidr_list_parse(allow_list, &p->allow, err);
	if (rc) {
		fl_free(p);
		fl_err_prefix(err, "AP_SSRF_ALLOW_LIST");
		return rc;
	}
	*out = p;
	return 0;
}

int net_policy_from_config(const struct fl_config *cfg, struct net_policy **out,
			   struct fl_err *err)
{
	return net_policy_new(cfg->network_mode, cfg->ssrf_allow_list, out, err);
}

int net_policy_egress_from_env(struct net_policy *policy, struct fl_err *err)
{
	const char *fd_text = getenv(NET_EGRESS_FD_ENV);
	if (!fd_text || !*fd_text)
		return 0;
	char *end;
	long fd = strtol(fd_text, &end, 10);
	/* The descriptor was inherited across exec on purpose; keep it from the engine's own
	 * children. */
	int copy = -1;
	if (*end || fd < 0 || fd > 65535 || fcntl((int)fd, F_SETFD, FD_CLOEXEC) != 0 ||
	    (copy = fcntl((int)fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return fl_err_set(err, FL_ECONFIG, "%s: '%s' is not an open descriptor",
				  NET_EGRESS_FD_ENV, fd_text);
	net_policy_set_egress(policy, copy);
	return 0;
}

void net_policy_free(struct net_policy *policy)
{
	if (!policy)
		return;
	net_cidr_list_release(&policy->allow);
	net_egress_client_free(policy->egress);
	fl_free(policy);
}

void net_policy_set_egress(struct net_policy *policy, int fd)
{
	net_egress_client_free(policy->egress);
	policy->egress = net_egress_client_new(fd);
}

enum fl_network_mode net_policy_mode(const struct net_policy *policy)
{
	return policy ? policy->mode : FL_NET_UNRESTRICTED;
}

char *net_policy_describe(const struct net_policy *policy)
{
	if (net_policy_mode(policy) != FL_NET_STRICT)
		return fl_strdup(policy && policy->egress
					 ? "network mode UNRESTRICTED: outbound connections of flows "
					   "are not checked; they go through the egress broker"
					 : "network mode UNRESTRICTED: outbound connections of flows "
					   "are not checked");
	struct fl_buf b = FL_BUF_INIT;
	fl_buf_adds(&b, "network mode STRICT: outbound connections of flows reach public unicast "
			"addresses only; allow list: ");
	if (policy->allow.n == 0) {
		fl_buf_adds(&b, "none");
	} else {
		for (size_t i = 0; i < policy->allow.n; i++) {
			char a[NET_ADDR_STRLEN];
			net_addr_format(&policy->allow.items[i].addr, a, sizeof a);
			fl_buf_addf(&b, "%s%s/%u", i ? ", " : "", a, policy->allow.items[i].prefix);
		}
	}
	if (policy->egress)
		fl_buf_adds(&b, "; connections go through the egress broker");
	return fl_buf_detach(&b, NULL);
}

int net_policy_check_addr(const struct net_policy *policy, const char *host,
			  const struct net_addr *addr, struct fl_err *err)
{
	if (net_policy_mode(policy) != FL_NET_STRICT)
		return 0;
	if (net_cidr_list_contains(&policy->allow, addr))
		return 0;
	struct net_addr_verdict v = net_addr_classify(addr);
	if (v.cls == NET_ADDR_PUBLIC)
		return 0;
	char text[NET_ADDR_STRLEN], why[64];
	net_addr_format(addr, text, sizeof text);
	net_addr_verdict_describe(v, why, sizeof why);
	return fl_err_set(err, FL_EDENIED, "blocked address %s for host '%s' (%s)", text, host, why);
}

static void add_unique(struct net_addr **addrs, size_t *n, size_t *cap, const struct net_addr *a)
{
	for (size_t i = 0; i < *n; i++)
		if (net_addr_equal(&(*addrs)[i], a))
			return;
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 4;
		*addrs = fl_realloc(*addrs, *cap * sizeof **addrs);
	}
	(*addrs)[(*n)++] = *a;
}

/* net_policy_resolve, naming the host as shown in messages. */
static int resolve_as(const struct net_policy *policy, const char *host, const char *shown,
		      struct net_addr **addrs, size_t *n, struct fl_err *err)
{
	*addrs = NULL;
	*n = 0;
	if (!host[0])
		return fl_err_set(err, FL_EINVAL, "empty host");
	size_t cap = 0;
	struct net_addr a;
	if (net_addr_parse_host(host, &a) == 0) {
		add_unique(addrs, n, &cap, &a);
	} else {
		struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
		struct addrinfo *res = NULL;
		int rc = getaddrinfo(host, NULL, &hints, &res);
		if (rc) {
			int code = (rc == EAI_NONAME || rc == EAI_NODATA) ? FL_ENOTFOUND : FL_EIO;
			return fl_err_set(err, code, "cannot resolve host '%s': %s", shown,
					  rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		}
		for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
			if (net_addr_from_sockaddr(ai->ai_addr, ai->ai_addrlen, &a, NULL) == 0)
				add_unique(addrs, n, &cap, &a);
		freeaddrinfo(res);
		if (*n == 0)
			return fl_err_set(err, FL_ENOTFOUND, "cannot resolve host '%s': no address",
					  shown);
	}
	for (size_t i = 0; i < *n; i++) {
		int rc = net_policy_check_addr(policy, shown, &(*addrs)[i], err);
		if (rc) {
			fl_free(*addrs);
			*addrs = NULL;
			*n = 0;
			return rc;
		}
	}
	return 0;
}

int net_policy_resolve(const struct net_policy *policy, const char *host, struct net_addr **addrs,
		       size_t *n, struct fl_err *err)
{
	return resolve_as(policy, host, host, addrs, n, err);
}

/* The host as the URL spells it, for messages only (curl's own reading, which is what gets
 * checked and connected to, turns "0x7f.1" into "127.0.0.1": the user should see what they
 * wrote). NULL when it cannot be picked out. */
static char *written_host(const char *url)
{
	const char *p = strstr(url, "://");
	if (!p)
		return NULL;
	p += 3;
	const char *end = p + strcspn(p, "/?#");
	for (const char *q = p; q < end; q++)
		if (*q == '@')
			p = q + 1;
	const char *stop;
	if (*p == '[') {
		stop = memchr(p, ']', (size_t)(end - p));
		if (!stop)
			return NULL;
		stop++;
	} else {
		stop = memchr(p, ':', (size_t)(end - p));
		if (!stop)
			stop = end;
	}
	return stop > p ? fl_strndup(p, (size_t)(stop - p)) : NULL;
}

struct net_guard {
	const struct net_policy *policy;
	CURL *curl; /* the handle the options below are set on */
	/* The current hop: its host as curl names it, its port, and the checked addresses. */
	char *host;
	unsigned port;
	struct net_addr *pinned;
	size_t n_pinned;
	struct curl_slist *resolve;
	int refused;
	struct fl_err refusal;
};

struct net_guard *net_guard_new(const struct net_policy *policy)
{
	struct net_guard *g = fl_calloc(1, sizeof *g);
	g->policy = policy;
	return g;
}

void net_guard_free(struct net_guard *guard)
{
	if (!guard)
		return;
	/* The handle may outlive the guard (net/http.c keeps one per thread): leave it with no
	 * pointer into freed memory. */
	if (guard->curl) {
		curl_easy_setopt(guard->curl, CURLOPT_OPENSOCKETFUNCTION, NULL);
		curl_easy_setopt(guard->curl, CURLOPT_OPENSOCKETDATA, NULL);
		curl_easy_setopt(guard->curl, CURLOPT_RESOLVE, NULL);
		curl_easy_setopt(guard->curl, CURLOPT_SOCKOPTFUNCTION, NULL);
	}
	fl_free(guard->host);
	fl_free(guard->pinned);
	curl_slist_free_all(guard->resolve);
	fl_free(guard);
}

/* Every connect curl attempts comes through here. A connect to anything but an address this
 * hop checked is refused: the pin above should make that impossible, so reaching the refusal
 * means curl resolved on its own (a rebinding answer, a proxy, a redirect it followed itself). */
static curl_socket_t guard_open_socket(void *clientp, curlsocktype purpose,
				       struct curl_sockaddr *address)
{
	struct net_guard *g = clientp;
	struct net_addr a;
	uint16_t port = 0;
	char text[NET_ADDR_STRLEN] = "?";
	const char *host = g->host ? g->host : "";
	if (purpose != CURLSOCKTYPE_IPCXN ||
	    net_addr_from_sockaddr(&address->addr, address->addrlen, &a, &port) != 0) {
		fl_err_set(&g->refusal, FL_EDENIED,
			   "refused a connection of an unexpected kind for host '%s'", host);
		g->refused = 1;
		return CURL_SOCKET_BAD;
	}
	net_addr_format(&a, text, sizeof text);
	int pinned = 0;
	for (size_t i = 0; i < g->n_pinned && !pinned; i++)
		pinned = net_addr_equal(&g->pinned[i], &a);
	if (!pinned || port != g->port) {
		fl_err_set(&g->refusal, FL_EDENIED,
			   "refused connection to %s port %u for host '%s': not the address that "
			   "was checked",
			   text, port, host);
		g->refused = 1;
		return CURL_SOCKET_BAD;
	}
	if (net_policy_check_addr(g->policy, host, &a, &g->refusal)) {
		g->refused = 1;
		return CURL_SOCKET_BAD;
	}
	if (g->policy->egress) {
		/* The broker checks the address again with the worker's policy, connects, and
		 * hands the socket over; guard_sockopt tells curl it is connected already. */
		int fd;
		struct fl_err err;
		int rc = net_egress_connect(g->policy->egress, host, &a, port, &fd, &err);
		if (rc == FL_EDENIED) {
			g->refusal = err;
			g->refused = 1;
		}
		return rc ? CURL_SOCKET_BAD : fd;
	}
	int fd = socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
	return fd < 0 ? CURL_SOCKET_BAD : fd;
}

static int guard_sockopt(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
	return CURL_SOCKOPT_ALREADY_CONNECTED;
}

static int attach(struct net_guard *g, CURL *curl, struct fl_err *err)
{
	/* An empty proxy string turns off the environment's http_proxy and friends: a proxy
	 * would make curl connect to an address the policy never saw. */
	if (curl_easy_setopt(curl, CURLOPT_PROXY, "") != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, guard_open_socket) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, g) != CURLE_OK ||
	    (g->policy->egress &&
	     curl_easy_setopt(curl, CURLOPT_SOCKOPTFUNCTION, guard_sockopt) != CURLE_OK))
		return fl_err_set(err, FL_EIO, "cannot set the network policy on the request");
	g->curl = curl;
	return 0;
}

int net_guard_hop(struct net_guard *guard, CURL *curl, const char *url, struct fl_err *err)
{
	if (!guard || !guard->policy ||
	    (guard->policy->mode != FL_NET_STRICT && !guard->policy->egress))
		return 0;
	struct net_guard *g = guard;
	g->refused = 0;
	fl_err_clear(&g->refusal);
	/* Until this hop is checked, nothing may connect. */
	g->n_pinned = 0;
	if (g->curl != curl) {
		int rc = attach(g, curl, err);
		if (rc)
			return rc;
	}

	/* The host and port are read with curl's own URL parser, so that they are the ones curl
	 * will connect to: it decodes %-escapes and normalises numeric hosts itself. */
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL;
	int rc = 0;
	if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
		rc = fl_err_set(err, FL_EINVAL, "bad URL '%s'", url);
		goto out;
	}
	if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
		rc = fl_err_set(err, FL_EDENIED, "scheme '%s' is not allowed for outbound requests",
				scheme);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
		rc = fl_err_set(err, FL_EINVAL, "bad URL '%s'", url);
		goto out;
	}
	char *end;
	unsigned long port_num = strtoul(port, &end, 10);
	if (*end || port_num == 0 || port_num > 65535) {
		rc = fl_err_set(err, FL_EINVAL, "bad port in URL '%s'", url);
		goto out;
	}

	struct net_addr *addrs;
	size_t n;
	char *written = written_host(url);
	const char *shown = written ? written : host;
	if (g->policy->egress) {
		/* Inside the sandbox there is no resolver to ask: the broker resolves and checks.
		 * Its answer is checked here too, so a broker with a looser policy widens nothing. */
		rc = net_egress_resolve(g->policy->egress, host, &addrs, &n, err);
		for (size_t i = 0; rc == 0 && i < n; i++)
			rc = net_policy_check_addr(g->policy, shown, &addrs[i], err);
		if (rc && addrs)
			fl_free(addrs);
	} else {
		rc = resolve_as(g->policy, host, shown, &addrs, &n, err);
	}
	fl_free(written);
	if (rc)
		goto out;
	fl_free(g->host);
	fl_free(g->pinned);
	g->host = fl_strdup(host);
	g->port = (unsigned)port_num;
	g->pinned = addrs;
	g->n_pinned = n;

	/* A numeric host pins itself: curl connects to the literal without resolving. A name is
	 * handed to curl already resolved, so curl never asks DNS a second time. */
	struct net_addr literal;
	if (net_addr_parse_host(host, &literal) != 0) {
		struct fl_buf entry = FL_BUF_INIT;
		fl_buf_addf(&entry, "%s:%lu:", host, port_num);
		for (size_t i = 0; i < n; i++) {
			char a[NET_ADDR_STRLEN];
			net_addr_format(&addrs[i], a, sizeof a);
			fl_buf_addf(&entry, addrs[i].family == AF_INET6 ? "%s[%s]" : "%s%s",
				    i ? "," : "", a);
		}
		struct curl_slist *list = curl_slist_append(NULL, entry.data);
		fl_buf_release(&entry);
		if (!list || curl_easy_setopt(curl, CURLOPT_RESOLVE, list) != CURLE_OK) {
			curl_slist_free_all(list);
			g->n_pinned = 0;
			rc = fl_err_set(err, FL_EIO, "cannot pin host '%s' on the request", host);
			goto out;
		}
		curl_slist_free_all(g->resolve);
		g->resolve = list;
	}
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return rc;
}

int net_guard_refused(const struct net_guard *guard, struct fl_err *err)
{
	if (!guard || !guard->refused)
		return 0;
	return fl_err_set(err, FL_EDENIED, "%s", guard->refusal.msg);
}
