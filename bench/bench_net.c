/* What STRICT costs per request: times net_http_do against a local keep-alive HTTP server under
 * UNRESTRICTED and under STRICT (with an allow list that admits the server), alternating the two
 * request by request so that drift hits both alike, and prints the medians and the difference.
 * Usage: bench_net [N] (default 1000 requests per mode and host form). */
#include "core/alloc.h"
#include "core/err.h"
#include "net/http.h"
#include "net/policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void *serve_conn(void *arg)
{
	int c = (int)(intptr_t)arg;
	char buf[8192];
	size_t len = 0;
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	for (;;) {
		ssize_t r = read(c, buf + len, sizeof buf - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
		buf[len] = '\0';
		char *end;
		/* Requests carry no body here: each ends at the blank line. */
		while ((end = strstr(buf, "\r\n\r\n"))) {
			if (write(c, resp, sizeof resp - 1) < 0)
				goto out;
			size_t used = (size_t)(end + 4 - buf);
			memmove(buf, buf + used, len - used);
			len -= used;
			buf[len] = '\0';
		}
		if (len == sizeof buf - 1)
			break;
	}
out:
	close(c);
	return NULL;
}

static void *serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	for (;;) {
		int c = accept(fd, NULL, NULL);
		if (c < 0)
			continue;
		int one = 1;
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		pthread_t t;
		pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)c);
		pthread_detach(t);
	}
	return NULL;
}

static int start_server(const char *ip, unsigned *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	inet_pton(AF_INET, ip, &sin.sin_addr);
	socklen_t len = sizeof sin;
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, len) || listen(fd, 64) ||
	    getsockname(fd, (struct sockaddr *)&sin, &len))
		return -1;
	*port = ntohs(sin.sin_port);
	pthread_t t;
	pthread_create(&t, NULL, serve, (void *)(intptr_t)fd);
	pthread_detach(t);
	return 0;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static int64_t one_request(const char *url, const struct net_policy *policy)
{
	struct net_http_request req = { .url = url, .policy = policy, .follow_redirects = 1 };
	struct net_http_response resp;
	struct fl_err err;
	int64_t t0 = now_ns();
	int rc = net_http_do(&req, &resp, &err);
	int64_t t = now_ns() - t0;
	if (rc || resp.status != 200) {
		fprintf(stderr, "bench_net: request to %s failed: %s\n", url, rc ? err.msg : "status");
		exit(1);
	}
	net_http_response_release(&resp);
	return t;
}

/* Times n requests to url per mode, alternating, after a warm-up. Returns 0 when the STRICT
 * median stayed within the target. */
static int measure(const char *label, const char *url, const struct net_policy *strict, int n,
		   double target_us)
{
	int64_t *open = fl_calloc((size_t)n, sizeof *open);
	int64_t *guarded = fl_calloc((size_t)n, sizeof *guarded);
	for (int i = 0; i < 50; i++) {
		one_request(url, NULL);
		one_request(url, strict);
	}
	for (int i = 0; i < n; i++) {
		if (i % 2) {
			open[i] = one_request(url, NULL);
			guarded[i] = one_request(url, strict);
		} else {
			guarded[i] = one_request(url, strict);
			open[i] = one_request(url, NULL);
		}
	}
	qsort(open, (size_t)n, sizeof *open, cmp_i64);
	qsort(guarded, (size_t)n, sizeof *guarded, cmp_i64);
	double mo = (double)open[n / 2] / 1000, mg = (double)guarded[n / 2] / 1000;
	double added = mg - mo;
	printf("%-34s UNRESTRICTED %8.1f us   STRICT %8.1f us   added %7.1f us   ratio %.2fx   "
	       "(median of %d)\n",
	       label, mo, mg, added, mg / mo, n);
	fl_free(open);
	fl_free(guarded);
	return added <= target_us ? 0 : 1;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1000;
	if (n < 1)
		n = 1000;
	unsigned port;
	if (start_server("127.0.0.2", &port)) {
		perror("bench_net: cannot start the local server");
		return 1;
	}
	struct net_policy *strict;
	struct fl_err err;
	if (net_policy_new(FL_NET_STRICT, "127.0.0.0/8", &strict, &err)) {
		fprintf(stderr, "bench_net: %s\n", err.msg);
		return 1;
	}
	char url[128];
	int over = 0;
	snprintf(url, sizeof url, "http://127.0.0.2:%u/", port);
	over |= measure("http GET, numeric host 127.0.0.2", url, strict, n, 100);
	/* A name costs STRICT a resolver call per request (curl alone would serve it from its DNS
	 * cache): this is the figure that depends on the host's resolver setup. */
	if (start_server("127.0.0.1", &port) == 0) {
		snprintf(url, sizeof url, "http://localhost:%u/", port);
		over |= measure("http GET, name localhost", url, strict, n, 100);
	}
	printf("target: STRICT adds <= 100 us per request: %s\n", over ? "MISSED" : "met");
	net_policy_free(strict);
	return 0;
}
