/* Unit tests for src/net/egress: the broker's answers and refusals, its robustness against a
 * hostile engine, and an engine in a network namespace of its own (no route anywhere) that
 * reaches the allowed server through the broker and nothing else. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/err.h"
#include "net/egress.h"
#include "net/http.h"
#include "net/policy.h"
#include "netsrv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static struct netsrv srv1, srv2;
static struct net_policy *policy;
static struct net_egress *broker;

static int setup(void **state)
{
	assert_int_equal(netsrv_start(&srv1, "one", "127.0.0.1"), 0);
	assert_int_equal(netsrv_start(&srv2, "two", "127.0.0.2"), 0);
	snprintf(srv2.redirect_to, sizeof srv2.redirect_to, "http://127.0.0.1:%u/", srv1.port);
	struct fl_err err;
	assert_int_equal(net_policy_new(FL_NET_STRICT, "127.0.0.2", &policy, &err), 0);
	assert_int_equal(net_egress_new(policy, 2000, &broker, &err), 0);
	return 0;
}

static int teardown(void **state)
{
	net_egress_free(broker);
	net_policy_free(policy);
	netsrv_stop(&srv1);
	netsrv_stop(&srv2);
	return 0;
}

static struct net_egress_client *new_client(void)
{
	int fd;
	struct fl_err err;
	assert_int_equal(net_egress_open_client(broker, &fd, &err), 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	return net_egress_client_new(fd);
}

/* Sends a plain HTTP request on a connected socket and returns the body of the answer. */
static void get_body(int fd, char *body, size_t cap)
{
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	const char req[] = "GET / HTTP/1.0\r\n\r\n";
	assert_int_equal(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
	char buf[1024];
	size_t len = 0;
	ssize_t r;
	while (len < sizeof buf - 1 && (r = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)r;
	buf[len] = '\0';
	const char *b = strstr(buf, "\r\n\r\n");
	snprintf(body, cap, "%s", b ? b + 4 : "");
}

static void test_resolve(void **state)
{
	struct net_egress_client *c = new_client();
	struct net_addr *addrs;
	size_t n;
	struct fl_err err;
	assert_int_equal(net_egress_resolve(c, "127.0.0.2", &addrs, &n, &err), 0);
	assert_int_equal(n, 1);
	char text[NET_ADDR_STRLEN];
	assert_string_equal(net_addr_format(&addrs[0], text, sizeof text), "127.0.0.2");
	fl_free(addrs);
	assert_int_equal(net_egress_resolve(c, "localhost", &addrs, &n, &err), FL_EDENIED);
	assert_string_equal(err.msg, "blocked address 127.0.0.1 for host 'localhost' (loopback)");
	assert_null(addrs);
	assert_int_equal(net_egress_resolve(c, "0x7f.1", &addrs, &n, &err), FL_EDENIED);
	assert_int_equal(net_egress_resolve(c, "[::ffff:127.0.0.1]", &addrs, &n, &err),
			 FL_EDENIED);
	net_egress_client_free(c);
}

static void test_connect(void **state)
{
	struct net_egress_client *c = new_client();
	struct net_egress_stats before, after;
	net_egress_get_stats(broker, &before);
	atomic_store(&srv1.connections, 0);
	struct fl_err err;
	struct net_addr a;
	int fd;
	char body[256];

	assert_int_equal(net_addr_parse_host("127.0.0.2", &a), 0);
	assert_int_equal(net_egress_connect(c, "127.0.0.2", &a, (uint16_t)srv2.port, &fd, &err), 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	get_body(fd, body, sizeof body);
	assert_string_equal(body, "two");
	close(fd);

	/* By name, resolved by the broker. */
	assert_int_equal(net_egress_connect(c, "2130706434", NULL, (uint16_t)srv2.port, &fd, &err),
			 0);
	get_body(fd, body, sizeof body);
	assert_string_equal(body, "two");
	close(fd);

	/* The broker does not take the engine's word: whatever host it names, a blocked address
	 * is refused. */
	assert_int_equal(net_addr_parse_host("127.0.0.1", &a), 0);
	assert_int_equal(net_egress_connect(c, "127.0.0.2", &a, (uint16_t)srv1.port, &fd, &err),
			 FL_EDENIED);
	assert_string_equal(err.msg, "blocked address 127.0.0.1 for host '127.0.0.2' (loopback)");
	assert_int_equal(fd, -1);
	assert_int_equal(net_egress_connect(c, "localhost", NULL, (uint16_t)srv1.port, &fd, &err),
			 FL_EDENIED);
	assert_int_equal(net_addr_parse_host("::ffff:127.0.0.1", &a), 0);
	assert_int_equal(net_egress_connect(c, "x", &a, (uint16_t)srv1.port, &fd, &err),
			 FL_EDENIED);
	assert_int_equal(atomic_load(&srv1.connections), 0);

	/* Nothing listens on srv1's port at 127.0.0.2. */
	assert_int_equal(net_addr_parse_host("127.0.0.2", &a), 0);
	int rc = net_egress_connect(c, "127.0.0.2", &a, (uint16_t)srv1.port, &fd, &err);
	if (rc == 0)
		close(fd); /* something else happens to listen there */
	else
		assert_non_null(strstr(err.msg, "cannot connect to 127.0.0.2"));

	net_egress_get_stats(broker, &after);
	assert_int_equal(after.connects - before.connects, rc == 0 ? 3 : 2);
	assert_int_equal(after.denied - before.denied, 3);
	net_egress_client_free(c);
}

/* Sends raw bytes as one request and returns the reply text. */
static void raw_call(int fd, const void *data, size_t len, char *reply, size_t cap)
{
	assert_int_equal(send(fd, data, len, 0), (ssize_t)len);
	ssize_t r = recv(fd, reply, cap - 1, 0);
	assert_true(r > 0);
	reply[r] = '\0';
}

static void test_hostile_engine(void **state)
{
	int fd;
	struct fl_err err;
	assert_int_equal(net_egress_open_client(broker, &fd, &err), 0);
	static const char *const bad[] = {
		"not json",
		"{}",
		"[]",
		"{\"op\":\"connect\",\"host\":\"127.0.0.2\",\"port\":0}",
		"{\"op\":\"connect\",\"host\":\"127.0.0.2\",\"port\":70000}",
		"{\"op\":\"connect\",\"host\":\"127.0.0.2\",\"port\":\"80\"}",
		"{\"op\":\"connect\",\"host\":\"127.0.0.2\",\"addr\":\"0x7f.1\",\"port\":80}",
		"{\"op\":\"connect\",\"host\":\"\",\"port\":80}",
		"{\"op\":\"explode\",\"host\":\"x\"}",
		"{\"op\":\"resolve\",\"host\":\"a\",\"host\":\"b\"}",
	};
	char reply[4096];
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		raw_call(fd, bad[i], strlen(bad[i]), reply, sizeof reply);
		if (!strstr(reply, "\"code\":\"invalid\""))
			fprintf(stderr, "%s -> %s\n", bad[i], reply);
		assert_non_null(strstr(reply, "\"ok\":false"));
		assert_non_null(strstr(reply, "\"code\":\"invalid\""));
	}
	char *big = fl_malloc(NET_EGRESS_MSG_MAX * 2);
	memset(big, 'x', NET_EGRESS_MSG_MAX * 2);
	raw_call(fd, big, NET_EGRESS_MSG_MAX * 2, reply, sizeof reply);
	assert_non_null(strstr(reply, "too long"));
	fl_free(big);
	/* Still serving. */
	const char ok[] = "{\"op\":\"resolve\",\"host\":\"127.0.0.2\"}";
	raw_call(fd, ok, sizeof ok - 1, reply, sizeof reply);
	assert_string_equal(reply, "{\"ok\":true,\"addrs\":[\"127.0.0.2\"]}");
	close(fd);
}

/* The engine's side in a network namespace of its own: with nothing but a loopback that is not
 * even up, direct connections fail, and the broker is the only way out. Runs in a child. */
static int engine_in_netns(char *report, size_t cap, int engine_fd)
{
	char url[128];
	struct fl_err err;
	struct net_http_response resp;

	/* Raw sockets straight to the servers reach nothing. */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)srv2.port),
				   .sin_addr = { htonl(0x7f000002) } };
	if (s >= 0 && connect(s, (struct sockaddr *)&sin, sizeof sin) == 0) {
		snprintf(report, cap, "raw TCP connect reached 127.0.0.2");
		return 1;
	}
	close(s);
	s = socket(AF_INET, SOCK_DGRAM, 0);
	if (s >= 0 && sendto(s, "x", 1, 0, (struct sockaddr *)&sin, sizeof sin) == 1) {
		snprintf(report, cap, "raw UDP send to 127.0.0.2 went out");
		return 1;
	}
	close(s);

	struct net_policy *p;
	if (net_policy_new(FL_NET_STRICT, "127.0.0.2", &p, &err))
		return 1;
	struct net_http_request req = { .url = url, .follow_redirects = 1, .timeout_ms = 5000 };
	snprintf(url, sizeof url, "http://127.0.0.2:%u/", srv2.port);
	/* Without the broker: no way out. */
	req.policy = p;
	if (net_http_do(&req, &resp, &err) == 0) {
		snprintf(report, cap, "reached 127.0.0.2 without the broker");
		return 1;
	}
	net_policy_set_egress(p, engine_fd);
	char *line = net_policy_describe(p);
	int described = strstr(line, "egress broker") != NULL;
	fl_free(line);
	if (!described) {
		snprintf(report, cap, "describe does not mention the broker");
		return 1;
	}
	int rc = net_http_do(&req, &resp, &err);
	if (rc || resp.status != 200 || strcmp(resp.body, "two")) {
		snprintf(report, cap, "through the broker: %s", rc ? err.msg : "wrong answer");
		return 1;
	}
	net_http_response_release(&resp);
	snprintf(url, sizeof url, "http://0x7f.1:%u/", srv1.port);
	if (net_http_do(&req, &resp, &err) != FL_EDENIED) {
		snprintf(report, cap, "0x7f.1 not denied");
		return 1;
	}
	snprintf(url, sizeof url, "http://127.0.0.2:%u/redirect", srv2.port);
	if (net_http_do(&req, &resp, &err) != FL_EDENIED) {
		snprintf(report, cap, "redirect to 127.0.0.1 not denied");
		return 1;
	}
	snprintf(report, cap, "ok");
	net_policy_free(p);
	return 0;
}

static void test_engine_in_netns(void **state)
{
	int engine_fd, pipefd[2];
	struct fl_err err;
	assert_int_equal(net_egress_open_client(broker, &engine_fd, &err), 0);
	assert_int_equal(pipe(pipefd), 0);
	atomic_store(&srv1.connections, 0);
	atomic_store(&srv2.connections, 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(pipefd[0]);
		if (unshare(CLONE_NEWNET) && unshare(CLONE_NEWUSER | CLONE_NEWNET))
			_exit(4);
		char report[600];
		int code = engine_in_netns(report, sizeof report, engine_fd);
		if (write(pipefd[1], report, strlen(report)) < 0)
			_exit(5);
		_exit(code);
	}
	close(engine_fd);
	close(pipefd[1]);
	char report[600] = "";
	ssize_t got = read(pipefd[0], report, sizeof report - 1);
	close(pipefd[0]);
	report[got > 0 ? got : 0] = '\0';
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 4)
		skip(); /* no network namespaces here */
	assert_string_equal(report, "ok");
	assert_int_equal(WEXITSTATUS(status), 0);
	/* The child reached srv2 once (directly it could not) and srv1 never. */
	assert_int_equal(atomic_load(&srv1.connections), 0);
	assert_true(atomic_load(&srv2.connections) >= 1);
}

/* Freeing the broker with engines still connected, one of them mid-conversation, returns. */
static void test_free_with_clients(void **state)
{
	struct net_egress *eg;
	struct fl_err err;
	assert_int_equal(net_egress_new(policy, 0, &eg, &err), 0);
	int a, b;
	assert_int_equal(net_egress_open_client(eg, &a, &err), 0);
	assert_int_equal(net_egress_open_client(eg, &b, &err), 0);
	struct net_egress_client *c = net_egress_client_new(a);
	struct net_addr *addrs;
	size_t n;
	assert_int_equal(net_egress_resolve(c, "127.0.0.2", &addrs, &n, &err), 0);
	fl_free(addrs);
	net_egress_free(eg);
	/* The engine now finds the broker gone. */
	assert_int_equal(net_egress_resolve(c, "127.0.0.2", &addrs, &n, &err), FL_EIO);
	assert_non_null(strstr(err.msg, "egress broker unreachable"));
	net_egress_client_free(c);
	close(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resolve),
		cmocka_unit_test(test_connect),
		cmocka_unit_test(test_hostile_engine),
		cmocka_unit_test(test_engine_in_netns),
		cmocka_unit_test(test_free_with_clients),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
