/* What STRICT costs per request: times one HTTP request to a local keep-alive server under
 * UNRESTRICTED and under STRICT (with an allow list that admits the server), alternating the two
 * request by request so that drift hits both alike, and prints the medians and the difference.
 * Measured twice: net_http_do alone, and a whole run of a flow whose one step is the http piece
 * (eng_run, as the engine runs it). Usage: bench_net [N] (default 1000 per mode and case). */
#include "core/alloc.h"
#include "core/err.h"
#include "engine/engine.h"
#include "engine/flow.h"
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

/* One request, as a flow run: a webhook trigger and an http step, on engine e. */
struct step_case {
	struct eng_flow *flow;
	struct eng_engine *open, *strict;
};

static int64_t one_step(const struct step_case *c, struct eng_engine *e)
{
	struct eng_run_opts ro = { .run_id = "benchNetRun0000000001", .flow_id = "bench" };
	struct eng_host host = { 0 };
	json_t *result = NULL;
	enum eng_status status;
	struct fl_err err;
	int64_t t0 = now_ns();
	int rc = eng_run(e, c->flow, &ro, &host, &result, &status, &err);
	int64_t t = now_ns() - t0;
	if (rc || status != ENG_SUCCEEDED) {
		char *text = result ? json_dumps(result, JSON_COMPACT) : NULL;
		fprintf(stderr, "bench_net: the http step failed: %s\n", rc ? err.msg : text);
		exit(1);
	}
	json_decref(result);
	return t;
}

/* One request under policy (NULL: unrestricted): a flow run when step is set, else a bare
 * net_http_do. */
static int64_t run_case(const char *url, const struct net_policy *policy,
			const struct step_case *step)
{
	if (step)
		return one_step(step, policy ? step->strict : step->open);
	return one_request(url, policy);
}

/* Times n requests to url per mode, alternating, after a warm-up. Returns 0 when the STRICT
 * median stayed within the target. */
static int measure(const char *label, const char *url, const struct net_policy *strict,
		   const struct step_case *step, int n, double target_us)
{
	int64_t *open = fl_calloc((size_t)n, sizeof *open);
	int64_t *guarded = fl_calloc((size_t)n, sizeof *guarded);
	for (int i = 0; i < 50; i++) {
		run_case(url, NULL, step);
		run_case(url, strict, step);
	}
	for (int i = 0; i < n; i++) {
		if (i % 2) {
			open[i] = run_case(url, NULL, step);
			guarded[i] = run_case(url, strict, step);
		} else {
			guarded[i] = run_case(url, strict, step);
			open[i] = run_case(url, NULL, step);
		}
	}
	qsort(open, (size_t)n, sizeof *open, cmp_i64);
	qsort(guarded, (size_t)n, sizeof *guarded, cmp_i64);
	double mo = (double)open[n / 2] / 1000, mg = (double)guarded[n / 2] / 1000;
	double added = mg - mo;
	printf("%-36s UNRESTRICTED %8.1f us   STRICT %8.1f us   added %7.1f us   ratio %.2fx   "
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
	over |= measure("net_http_do, host 127.0.0.2", url, strict, NULL, n, 100);

	char *doc = fl_asprintf(
		"{\"displayName\":\"bench\",\"trigger\":{\"name\":\"trigger\",\"type\":"
		"\"PIECE_TRIGGER\",\"displayName\":\"Trigger\",\"settings\":{\"pieceName\":"
		"\"@activepieces/piece-webhook\",\"pieceVersion\":\"~0.1.0\",\"triggerName\":"
		"\"catch_webhook\",\"input\":{}},\"nextAction\":{\"name\":\"step_1\","
		"\"displayName\":\"Request\",\"type\":\"PIECE\",\"settings\":{\"pieceName\":"
		"\"@activepieces/piece-http\",\"pieceVersion\":\"~0.5.0\",\"actionName\":"
		"\"send_request\",\"input\":{\"method\":\"GET\",\"url\":\"%s\"}}}}}",
		url);
	json_t *json = json_loads(doc, 0, NULL);
	fl_free(doc);
	struct step_case step = { 0 };
	if (!json || eng_flow_parse(json, 0, &step.flow, &err)) {
		fprintf(stderr, "bench_net: bad flow: %s\n", json ? err.msg : "json");
		return 1;
	}
	json_decref(json);
	struct eng_engine_opts open_opts = { 0 }, strict_opts = { .policy = strict };
	step.open = eng_engine_new(&open_opts);
	step.strict = eng_engine_new(&strict_opts);
	over |= measure("http step (eng_run), host 127.0.0.2", url, strict, &step, n, 100);
	eng_engine_free(step.open);
	eng_engine_free(step.strict);
	eng_flow_free(step.flow);
	/* A name costs STRICT a resolver call per request (curl alone would serve it from its DNS
	 * cache): this is the figure that depends on the host's resolver setup. */
	if (start_server("127.0.0.1", &port) == 0) {
		snprintf(url, sizeof url, "http://localhost:%u/", port);
		over |= measure("net_http_do, name localhost", url, strict, NULL, n, 100);
	}
	printf("target: STRICT adds <= 100 us per request: %s\n", over ? "MISSED" : "met");
	net_policy_free(strict);
	return 0;
}
