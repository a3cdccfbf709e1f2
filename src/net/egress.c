/* The egress broker (net/egress.h): a serving thread per engine connection on the worker side,
 * and the engine-side client that net/policy.c uses from curl's open-socket callback. */
#include "net/egress.h"

#include "core/alloc.h"
#include "core/err.h"
#include "core/fdpass.h"
#include "core/json.h"
#include "core/log.h"
#include "net/policy.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static const struct {
	int code;
	const char *name;
} code_names[] = {
	{ FL_EDENIED, "denied" },   { FL_ENOTFOUND, "notfound" }, { FL_EINVAL, "invalid" },
	{ FL_ETIMEOUT, "timeout" }, { FL_EIO, "io" },
};

static const char *code_name(int code)
{
	for (size_t i = 0; i < sizeof code_names / sizeof code_names[0]; i++)
		if (code_names[i].code == code)
			return code_names[i].name;
	return "io";
}

static int code_of(const char *name)
{
	for (size_t i = 0; name && i < sizeof code_names / sizeof code_names[0]; i++)
		if (!strcmp(code_names[i].name, name))
			return code_names[i].code;
	return FL_EIO;
}

/* Sends one message, with fd attached when it is >= 0. */
static int send_msg(int sock, const char *data, size_t len, int fd)
{
	return fl_send_fds(sock, data, len, &fd, fd >= 0 ? 1 : 0);
}

/* Receives one message into buf (NUL-terminated); *fd gets an attached descriptor or -1 (any
 * extra ones are closed). Returns the length, 0 at end of stream, or -errno. */
static ssize_t recv_msg(int sock, char *buf, size_t cap, int *fd)
{
	int n_fds;
	ssize_t r = fl_recv_fds(sock, buf, cap - 1, fd, 1, &n_fds);
	if (!n_fds)
		*fd = -1;
	if (r >= 0)
		buf[r] = '\0';
	return r;
}

/* ---- the broker ---- */

struct net_egress {
	const struct net_policy *policy;
	int64_t connect_timeout_ms;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	int *socks; /* the broker's ends still being served */
	size_t n_socks, cap_socks;
	int stopping;
	struct net_egress_stats stats;
};

struct serving {
	struct net_egress *egress;
	int sock;
};

static void count(struct net_egress *eg, int rc, int handed_out)
{
	pthread_mutex_lock(&eg->lock);
	if (handed_out)
		eg->stats.connects++;
	else if (rc == FL_EDENIED)
		eg->stats.denied++;
	else if (rc)
		eg->stats.failed++;
	pthread_mutex_unlock(&eg->lock);
}

/* Connects to addr:port within the broker's timeout, giving up early if the engine hangs up.
 * Returns the connected (non-blocking) socket or a negative code with err set. */
static int connect_addr(struct net_egress *eg, int engine, const char *host,
			const struct net_addr *addr, uint16_t port, struct fl_err *err)
{
	struct sockaddr_storage ss;
	socklen_t len = net_addr_to_sockaddr(addr, port, &ss);
	char text[NET_ADDR_STRLEN];
	net_addr_format(addr, text, sizeof text);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fl_err_set(err, FL_EIO, "cannot open a socket for host '%s': %s", host,
				  strerror(errno));
	if (connect(fd, (struct sockaddr *)&ss, len) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		return fl_err_set(err, FL_EIO, "cannot connect to %s port %u for host '%s': %s",
				  text, port, host, strerror(e));
	}
	struct pollfd p[2] = { { fd, POLLOUT, 0 }, { engine, POLLRDHUP, 0 } };
	int r;
	do
		r = poll(p, 2, (int)eg->connect_timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0) {
		close(fd);
		return fl_err_set(err, FL_ETIMEOUT, "connecting to %s port %u for host '%s' timed out",
				  text, port, host);
	}
	if (r < 0 || (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR))) {
		close(fd);
		return fl_err_set(err, FL_EIO, "engine went away while connecting to %s", text);
	}
	int soerr = 0;
	socklen_t slen = sizeof soerr;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) || soerr) {
		close(fd);
		return fl_err_set(err, FL_EIO, "cannot connect to %s port %u for host '%s': %s",
				  text, port, host, strerror(soerr ? soerr : errno));
	}
	return fd;
}

static char *failure_reply(int code, const char *msg)
{
	json_t *reply = json_pack("{s:b, s:s, s:s}", "ok", 0, "code", code_name(code), "error", msg);
	char *text = fl_json_dump(reply);
	json_decref(reply);
	return text;
}

/* Serves one request. Returns the reply (caller frees) and sets *fd to a socket to attach. */
static char *handle(struct net_egress *eg, int engine, const char *data, size_t len, int *fd)
{
	*fd = -1;
	struct fl_err err = { 0 };
	int rc = 0;
	json_t *reply = NULL;
	json_error_t jerr;
	json_t *req = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	const char *op = NULL, *host = NULL, *addr_text = NULL;
	json_int_t port = 0;
	if (!req || json_unpack_ex(req, &jerr, 0, "{s:s, s:s, s?s, s?I}", "op", &op, "host", &host,
				   "addr", &addr_text, "port", &port)) {
		rc = fl_err_set(&err, FL_EINVAL, "bad egress request: %s", jerr.text);
		goto out;
	}
	if (!host[0] || strlen(host) > 255) {
		rc = fl_err_set(&err, FL_EINVAL, "bad egress request: bad host");
		goto out;
	}
	if (!strcmp(op, "resolve")) {
		struct net_addr *addrs;
		size_t n;
		rc = net_policy_resolve(eg->policy, host, &addrs, &n, &err);
		if (rc)
			goto out;
		json_t *list = json_array();
		for (size_t i = 0; i < n; i++) {
			char text[NET_ADDR_STRLEN];
			json_array_append_new(list,
					      json_string(net_addr_format(&addrs[i], text, sizeof text)));
		}
		fl_free(addrs);
		reply = json_pack("{s:b, s:o}", "ok", 1, "addrs", list);
		goto out;
	}
	if (strcmp(op, "connect") != 0) {
		rc = fl_err_set(&err, FL_EINVAL, "bad egress request: unknown op '%.32s'", op);
		goto out;
	}
	if (port < 1 || port > 65535) {
		rc = fl_err_set(&err, FL_EINVAL, "bad egress request: bad port");
		goto out;
	}
	if (addr_text) {
		struct net_addr a;
		if (net_addr_parse_strict(addr_text, strlen(addr_text), &a)) {
			rc = fl_err_set(&err, FL_EINVAL, "bad egress request: bad address");
			goto out;
		}
		rc = net_policy_check_addr(eg->policy, host, &a, &err);
		if (rc == 0) {
			rc = connect_addr(eg, engine, host, &a, (uint16_t)port, &err);
			if (rc >= 0) {
				*fd = rc;
				rc = 0;
			}
		}
		goto out;
	}
	struct net_addr *addrs;
	size_t n;
	rc = net_policy_resolve(eg->policy, host, &addrs, &n, &err);
	if (rc)
		goto out;
	for (size_t i = 0; i < n; i++) {
		rc = connect_addr(eg, engine, host, &addrs[i], (uint16_t)port, &err);
		if (rc >= 0) {
			*fd = rc;
			rc = 0;
			break;
		}
	}
	fl_free(addrs);
out:
	count(eg, rc, *fd >= 0);
	json_decref(req);
	if (rc) {
		json_decref(reply);
		return failure_reply(rc, err.msg);
	}
	if (!reply)
		reply = json_pack("{s:b}", "ok", 1);
	char *text = fl_json_dump(reply);
	json_decref(reply);
	return text;
}

static void *serve(void *arg)
{
	struct serving *sv = arg;
	struct net_egress *eg = sv->egress;
	int sock = sv->sock;
	fl_free(sv);
	char *buf = fl_malloc(NET_EGRESS_MSG_MAX + 1);
	for (;;) {
		int passed;
		ssize_t n = recv_msg(sock, buf, NET_EGRESS_MSG_MAX + 1, &passed);
		if (passed >= 0)
			close(passed); /* the engine has no business sending descriptors */
		if (n == 0 || (n < 0 && n != -EMSGSIZE))
			break;
		int fd = -1;
		char *reply = n < 0 ? failure_reply(FL_EINVAL, "bad egress request: too long")
				    : handle(eg, sock, buf, (size_t)n, &fd);
		int rc = send_msg(sock, reply, strlen(reply), fd);
		free(reply);
		if (fd >= 0)
			close(fd);
		if (rc)
			break;
	}
	fl_free(buf);
	pthread_mutex_lock(&eg->lock);
	for (size_t i = 0; i < eg->n_socks; i++)
		if (eg->socks[i] == sock) {
			eg->socks[i] = eg->socks[--eg->n_socks];
			break;
		}
	close(sock);
	pthread_cond_broadcast(&eg->idle);
	pthread_mutex_unlock(&eg->lock);
	return NULL;
}

int net_egress_new(const struct net_policy *policy, int64_t connect_timeout_ms,
		   struct net_egress **out, struct fl_err *err)
{
	struct net_egress *eg = fl_calloc(1, sizeof *eg);
	eg->policy = policy;
	eg->connect_timeout_ms = connect_timeout_ms > 0 ? connect_timeout_ms : 30000;
	pthread_mutex_init(&eg->lock, NULL);
	pthread_cond_init(&eg->idle, NULL);
	*out = eg;
	return 0;
}

int net_egress_open_client(struct net_egress *egress, int *engine_fd, struct fl_err *err)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return fl_err_set(err, -errno, "cannot create the egress socket pair: %s",
				  strerror(errno));
	struct serving *s = fl_malloc(sizeof *s);
	s->egress = egress;
	s->sock = sv[0];
	pthread_mutex_lock(&egress->lock);
	if (egress->stopping) {
		pthread_mutex_unlock(&egress->lock);
		close(sv[0]);
		close(sv[1]);
		fl_free(s);
		return fl_err_set(err, -ESHUTDOWN, "the egress broker is stopping");
	}
	if (egress->n_socks == egress->cap_socks) {
		egress->cap_socks = egress->cap_socks ? egress->cap_socks * 2 : 8;
		egress->socks = fl_realloc(egress->socks, egress->cap_socks * sizeof(int));
	}
	egress->socks[egress->n_socks++] = sv[0];
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	int rc = pthread_create(&t, &attr, serve, s);
	pthread_attr_destroy(&attr);
	if (rc) {
		egress->n_socks--;
		pthread_mutex_unlock(&egress->lock);
		close(sv[0]);
		close(sv[1]);
		fl_free(s);
		return fl_err_set(err, -rc, "cannot start an egress thread: %s", strerror(rc));
	}
	pthread_mutex_unlock(&egress->lock);
	*engine_fd = sv[1];
	return 0;
}

void net_egress_free(struct net_egress *egress)
{
	if (!egress)
		return;
	pthread_mutex_lock(&egress->lock);
	egress->stopping = 1;
	/* Shutting the broker's ends down wakes each serving thread, in recv or in a connect's
	 * poll; each removes its socket and signals. */
	for (size_t i = 0; i < egress->n_socks; i++)
		shutdown(egress->socks[i], SHUT_RDWR);
	while (egress->n_socks)
		pthread_cond_wait(&egress->idle, &egress->lock);
	pthread_mutex_unlock(&egress->lock);
	pthread_mutex_destroy(&egress->lock);
	pthread_cond_destroy(&egress->idle);
	fl_free(egress->socks);
	fl_free(egress);
}

void net_egress_get_stats(struct net_egress *egress, struct net_egress_stats *stats)
{
	pthread_mutex_lock(&egress->lock);
	*stats = egress->stats;
	pthread_mutex_unlock(&egress->lock);
}

/* ---- the engine side ---- */

struct net_egress_client {
	int fd;
	pthread_mutex_t lock;
};

struct net_egress_client *net_egress_client_new(int fd)
{
	struct net_egress_client *c = fl_calloc(1, sizeof *c);
	c->fd = fd;
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

void net_egress_client_free(struct net_egress_client *client)
{
	if (!client)
		return;
	close(client->fd);
	pthread_mutex_destroy(&client->lock);
	fl_free(client);
}

/* One request and its reply. Returns the parsed reply with *fd set to an attached socket, or
 * NULL with err set when the broker cannot be reached or answered nonsense. */
static json_t *call(struct net_egress_client *c, json_t *req, int *fd, struct fl_err *err)
{
	*fd = -1;
	char *text = fl_json_dump(req);
	json_decref(req);
	size_t len = strlen(text);
	char *buf = fl_malloc(NET_EGRESS_MSG_MAX + 1);
	json_t *reply = NULL;
	pthread_mutex_lock(&c->lock);
	int rc = len > NET_EGRESS_MSG_MAX ? -EMSGSIZE : send_msg(c->fd, text, len, -1);
	ssize_t n = rc ? rc : recv_msg(c->fd, buf, NET_EGRESS_MSG_MAX + 1, fd);
	pthread_mutex_unlock(&c->lock);
	free(text);
	if (n <= 0) {
		fl_err_set(err, FL_EIO, "egress broker unreachable: %s",
			   n == 0 ? "connection closed" : strerror((int)-n));
	} else if (!(reply = json_loadb(buf, (size_t)n, 0, NULL)) || !json_is_object(reply)) {
		json_decref(reply);
		reply = NULL;
		fl_err_set(err, FL_EIO, "egress broker sent a bad reply");
	}
	fl_free(buf);
	if (!reply && *fd >= 0) {
		close(*fd);
		*fd = -1;
	}
	return reply;
}

/* 0 for an "ok" reply, else the broker's code with its message in err. */
static int verdict(json_t *reply, struct fl_err *err)
{
	if (json_is_true(json_object_get(reply, "ok")))
		return 0;
	const char *msg = json_string_value(json_object_get(reply, "error"));
	return fl_err_set(err, code_of(json_string_value(json_object_get(reply, "code"))), "%s",
			  msg ? msg : "egress broker refused");
}

int net_egress_resolve(struct net_egress_client *client, const char *host,
		       struct net_addr **addrs, size_t *n, struct fl_err *err)
{
	*addrs = NULL;
	*n = 0;
	int fd;
	json_t *reply = call(client, json_pack("{s:s, s:s}", "op", "resolve", "host", host), &fd,
			     err);
	if (!reply)
		return FL_EIO;
	if (fd >= 0)
		close(fd);
	int rc = verdict(reply, err);
	json_t *list = json_object_get(reply, "addrs");
	if (rc == 0 && (!json_is_array(list) || json_array_size(list) == 0))
		rc = fl_err_set(err, FL_EIO, "egress broker sent a bad reply");
	if (rc == 0) {
		*addrs = fl_calloc(json_array_size(list), sizeof **addrs);
		size_t i;
		json_t *v;
		json_array_foreach(list, i, v) {
			const char *s = json_string_value(v);
			if (!s || net_addr_parse_strict(s, strlen(s), &(*addrs)[i])) {
				rc = fl_err_set(err, FL_EIO, "egress broker sent a bad reply");
				break;
			}
		}
		if (rc) {
			fl_free(*addrs);
			*addrs = NULL;
		} else {
			*n = json_array_size(list);
		}
	}
	json_decref(reply);
	return rc;
}

int net_egress_connect(struct net_egress_client *client, const char *host,
		       const struct net_addr *addr, uint16_t port, int *fd, struct fl_err *err)
{
	*fd = -1;
	json_t *req = json_pack("{s:s, s:s, s:i}", "op", "connect", "host", host, "port", (int)port);
	if (addr) {
		char text[NET_ADDR_STRLEN];
		json_object_set_new(req, "addr", json_string(net_addr_format(addr, text, sizeof text)));
	}
	int got;
	json_t *reply = call(client, req, &got, err);
	if (!reply)
		return FL_EIO;
	int rc = verdict(reply, err);
	json_decref(reply);
	if (rc == 0 && got < 0)
		rc = fl_err_set(err, FL_EIO, "egress broker sent no socket");
	if (rc) {
		if (got >= 0)
			close(got);
		return rc;
	}
	*fd = got;
	return 0;
}
