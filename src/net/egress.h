/* The egress broker: the only way out of an engine that runs in its own network namespace (the
 * process-sandbox modes under STRICT, shared/DESIGN.md §7). The worker runs the broker; each
 * engine gets one end of a unix socketpair. Over it the engine asks the broker to resolve a host
 * or to connect to an address; the broker applies the worker's policy itself, connects, and
 * passes the connected socket back (SCM_RIGHTS). The engine never needs a route or a resolver of
 * its own, and code that bypasses the engine's own checks has nowhere to send a packet.
 *
 * Protocol: SOCK_SEQPACKET, one JSON message per request and one per reply, at most
 * NET_EGRESS_MSG_MAX bytes.
 *   {"op":"resolve","host":H}                  -> {"ok":true,"addrs":["a",...]}
 *   {"op":"connect","host":H,"addr":A,"port":P} -> {"ok":true} with the connected socket attached
 *   {"op":"connect","host":H,"port":P}          -> the same, resolving H and trying each address
 *   any failure                                 -> {"ok":false,"code":C,"error":"message"}
 * where C is "denied", "notfound", "invalid", "timeout" or "io". H only names the host in
 * messages when A is given: the broker checks the address it connects to, never trusting the
 * engine's word that it belongs to H. */
#ifndef NET_EGRESS_H
#define NET_EGRESS_H

#include <stddef.h>
#include <stdint.h>

#include "net/addr.h"

struct fl_err;
struct net_policy;

#define NET_EGRESS_MSG_MAX 4096

/* The environment variable through which a sandbox tells its engine the descriptor number of
 * its end of the broker connection (see net_policy_from_env). */
#define NET_EGRESS_FD_ENV "FLOWD_EGRESS_FD"

/* The worker side. Each engine connection is served by its own thread, one request at a time. */
struct net_egress;

/* Starts a broker that applies policy (borrowed: it must outlive the broker). connect_timeout_ms
 * bounds each connect (0: 30 s). Returns 0 and sets *out. */
int net_egress_new(const struct net_policy *policy, int64_t connect_timeout_ms,
		   struct net_egress **out, struct fl_err *err);
/* Opens a connection for one engine and returns the engine's end in *engine_fd, owned by the
 * caller, with O_CLOEXEC set: clear it or dup2 it in the child that becomes the engine. The
 * broker's end closes when the engine's end does. Returns 0 or -errno. */
int net_egress_open_client(struct net_egress *egress, int *engine_fd, struct fl_err *err);
/* Disconnects every engine, waits for the serving threads, and frees the broker. */
void net_egress_free(struct net_egress *egress);

struct net_egress_stats {
	uint64_t connects;  /* sockets handed out */
	uint64_t denied;    /* requests the policy refused */
	uint64_t failed;    /* other failures: bad requests, unreachable hosts */
};
void net_egress_get_stats(struct net_egress *egress, struct net_egress_stats *stats);

/* The engine side: a client of one broker connection. Calls are serialised on an internal lock,
 * so the client may be shared by threads. */
struct net_egress_client;

/* Takes ownership of fd (the engine's end from net_egress_open_client). */
struct net_egress_client *net_egress_client_new(int fd);
void net_egress_client_free(struct net_egress_client *client);

/* Asks the broker to resolve and check host. Returns 0 with *addrs (fl_free) and *n set, or the
 * broker's verdict as a code (FL_EDENIED, FL_ENOTFOUND, FL_EINVAL, FL_ETIMEOUT, FL_EIO) with its
 * message in err; FL_EIO also when the broker cannot be reached. */
int net_egress_resolve(struct net_egress_client *client, const char *host,
		       struct net_addr **addrs, size_t *n, struct fl_err *err);
/* Asks the broker for a socket connected to addr:port (addr NULL: to host, resolved by the
 * broker). Returns 0 with *fd set (the caller owns it; O_CLOEXEC, non-blocking), or a code as
 * above. */
int net_egress_connect(struct net_egress_client *client, const char *host,
		       const struct net_addr *addr, uint16_t port, int *fd, struct fl_err *err);

#endif
