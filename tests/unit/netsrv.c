/* The test HTTP server of netsrv.h. */
#include "netsrv.h"

#include "net/addr.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

static void serve_one(struct netsrv *s, int c)
{
	char req[8192];
	size_t len = 0;
	while (len < sizeof req - 1) {
		struct pollfd p = { c, POLLIN, 0 };
		if (poll(&p, 1, 2000) <= 0)
			break;
		ssize_t r = read(c, req + len, sizeof req - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
		req[len] = '\0';
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	req[len] = '\0';
	char resp[1024];
	int n;
	if (strncmp(req, "GET /redirect", 13) == 0)
		n = snprintf(resp, sizeof resp,
			     "HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n"
			     "Connection: close\r\n\r\n",
			     s->redirect_to);
	else
		n = snprintf(resp, sizeof resp,
			     "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
			     strlen(s->name), s->name);
	if (write(c, resp, (size_t)n) < 0)
		perror("write");
}

static void *server_main(void *arg)
{
	struct netsrv *s = arg;
	while (!atomic_load(&s->stop)) {
		struct pollfd p = { s->fd, POLLIN, 0 };
		if (poll(&p, 1, 20) <= 0)
			continue;
		int c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		atomic_fetch_add(&s->connections, 1);
		serve_one(s, c);
		close(c);
	}
	return NULL;
}

int netsrv_start(struct netsrv *s, const char *name, const char *ip)
{
	memset(s, 0, sizeof *s);
	s->name = name;
	struct net_addr a;
	if (net_addr_parse_host(ip, &a))
		return -EINVAL;
	struct sockaddr_storage ss;
	socklen_t len = net_addr_to_sockaddr(&a, 0, &ss);
	s->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		return -errno;
	uint16_t port;
	if (bind(s->fd, (struct sockaddr *)&ss, len) || listen(s->fd, 16) ||
	    getsockname(s->fd, (struct sockaddr *)&ss, &len) ||
	    net_addr_from_sockaddr((struct sockaddr *)&ss, len, &a, &port)) {
		int e = errno ? errno : EINVAL;
		close(s->fd);
		return -e;
	}
	s->port = port;
	int rc = pthread_create(&s->thread, NULL, server_main, s);
	if (rc) {
		close(s->fd);
		return -rc;
	}
	return 0;
}

/* Stops the server and returns how many connections ever reached it, counting those still
 * waiting in the listen queue. */
int netsrv_stop(struct netsrv *s)
{
	atomic_store(&s->stop, 1);
	pthread_join(s->thread, NULL);
	int pending = 0, c;
	fcntl(s->fd, F_SETFL, O_NONBLOCK);
	while ((c = accept(s->fd, NULL, NULL)) >= 0) {
		pending++;
		close(c);
	}
	close(s->fd);
	return atomic_load(&s->connections) + pending;
}

