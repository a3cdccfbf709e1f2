/* Unit tests for src/net/policy: the policy's checks, and the curl guard against real local HTTP
 * servers on 127.0.0.1, 127.0.0.2 and ::1. AP_SSRF_ALLOW_LIST-style allow lists make 127.0.0.2
 * play the public server. Each server counts the connections that reached it, so a refusal is
 * shown to happen before any connect. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "engine/proto.h"
#include "net/http.h"
#include "net/policy.h"
#include "netsrv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static struct netsrv srv1, srv2, srv6;
static int have_v6;

static int setup_servers(void **state)
{
	assert_int_equal(curl_global_init(CURL_GLOBAL_DEFAULT), 0);
	assert_int_equal(netsrv_start(&srv1, "one", "127.0.0.1"), 0);
	assert_int_equal(netsrv_start(&srv2, "two", "127.0.0.2"), 0);
	have_v6 = netsrv_start(&srv6, "six", "::1") == 0;
	snprintf(srv2.redirect_to, sizeof srv2.redirect_to, "http://127.0.0.1:%u/", srv1.port);
	snprintf(srv1.redirect_to, sizeof srv1.redirect_to, "http://127.0.0.2:%u/", srv2.port);
	return 0;
}

static int teardown_servers(void **state)
{
	netsrv_stop(&srv1);
	netsrv_stop(&srv2);
	if (have_v6)
		netsrv_stop(&srv6);
	curl_global_cleanup();
	return 0;
}

/* Restarts the connection counts; returns the total since the last reset. */
static int reset_counts(void)
{
	int n = atomic_exchange(&srv1.connections, 0) + atomic_exchange(&srv2.connections, 0);
	if (have_v6)
		n += atomic_exchange(&srv6.connections, 0);
	return n;
}

static size_t collect(char *data, size_t size, size_t n, void *userp)
{
	fl_buf_add(userp, data, size * n);
	return size * n;
}

struct result {
	int rc;
	long status;
	struct fl_buf body;
	struct fl_err err;
};

/* Fetches url the way net/http.c does: guard every hop, follow redirects by hand. With
 * curl_follows, curl follows redirects itself, to show that the open-socket check alone stops a
 * hop that was never checked. connect_to, when set, is passed as CURLOPT_CONNECT_TO after the
 * guard has pinned the hop, standing in for a resolver that answers differently the second time. */
static void fetch(const struct net_policy *policy, const char *url, int curl_follows,
		  const char *connect_to, struct result *r)
{
	memset(r, 0, sizeof *r);
	fl_buf_init(&r->body);
	CURL *c = curl_easy_init();
	struct net_guard *g = net_guard_new(policy);
	struct curl_slist *ct = connect_to ? curl_slist_append(NULL, connect_to) : NULL;
	char *next = fl_strdup(url);
	for (int hop = 0; hop < 5; hop++) {
		r->rc = net_guard_hop(g, c, next, &r->err);
		if (r->rc)
			break;
		fl_buf_reset(&r->body);
		curl_easy_setopt(c, CURLOPT_URL, next);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
		curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, (long)curl_follows);
		if (ct)
			curl_easy_setopt(c, CURLOPT_CONNECT_TO, ct);
		CURLcode cc = curl_easy_perform(c);
		if (cc != CURLE_OK) {
			r->rc = net_guard_refused(g, &r->err);
			if (!r->rc)
				r->rc = fl_err_set(&r->err, FL_EIO, "%s", curl_easy_strerror(cc));
			break;
		}
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
		char *loc = NULL;
		curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc);
		if (r->status < 300 || r->status > 399 || !loc)
			break;
		fl_free(next);
		next = fl_strdup(loc);
	}
	fl_free(next);
	curl_slist_free_all(ct);
	net_guard_free(g);
	curl_easy_cleanup(c);
}

static struct net_policy *strict_policy(const char *allow)
{
	struct net_policy *p;
	struct fl_err err;
	assert_int_equal(net_policy_new(FL_NET_STRICT, allow, &p, &err), 0);
	return p;
}

static void test_describe(void **state)
{
	struct net_policy *p = strict_policy("127.0.0.2, 10.0.0.0/8, ::ffff:192.168.0.0/112");
	char *line = net_policy_describe(p);
	assert_string_equal(line, "network mode STRICT: outbound connections of flows reach public "
				  "unicast addresses only; allow list: 127.0.0.2/32, 10.0.0.0/8, "
				  "192.168.0.0/16");
	fl_free(line);
	net_policy_free(p);
	p = strict_policy(NULL);
	line = net_policy_describe(p);
	assert_non_null(strstr(line, "allow list: none"));
	fl_free(line);
	net_policy_free(p);
	line = net_policy_describe(NULL);
	assert_string_equal(line,
			    "network mode UNRESTRICTED: outbound connections of flows are not checked");
	fl_free(line);
	assert_int_equal(net_policy_mode(NULL), FL_NET_UNRESTRICTED);
	net_policy_free(NULL);
	net_guard_free(NULL);
}

static void test_bad_allow_list(void **state)
{
	struct net_policy *p = (struct net_policy *)1;
	struct fl_err err;
	assert_int_equal(net_policy_new(FL_NET_STRICT, "127.0.0.2,not-an-ip", &p, &err),
			 FL_ECONFIG);
	assert_null(p);
	assert_non_null(strstr(err.msg, "AP_SSRF_ALLOW_LIST"));
	assert_non_null(strstr(err.msg, "'not-an-ip'"));

	setenv("AP_NETWORK_MODE", "STRICT", 1);
	setenv("AP_SSRF_ALLOW_LIST", "127.0.0.2/33", 1);
	struct fl_config cfg;
	assert_int_equal(fl_config_load(&cfg, &err), 0);
	assert_int_equal(net_policy_from_config(&cfg, &p, &err), FL_ECONFIG);
	assert_non_null(strstr(err.msg, "'127.0.0.2/33'"));
	fl_config_release(&cfg);
	setenv("AP_SSRF_ALLOW_LIST", "127.0.0.2", 1);
	assert_int_equal(fl_config_load(&cfg, &err), 0);
	assert_int_equal(net_policy_from_config(&cfg, &p, &err), 0);
	assert_int_equal(net_policy_mode(p), FL_NET_STRICT);
	net_policy_free(p);
	fl_config_release(&cfg);
	unsetenv("AP_NETWORK_MODE");
	unsetenv("AP_SSRF_ALLOW_LIST");
}

static void test_egress_from_env(void **state)
{
	struct net_policy *p;
	struct fl_err err;
	assert_int_equal(net_policy_new(FL_NET_STRICT, "127.0.0.2", &p, &err), 0);
	unsetenv("FLOWD_EGRESS_FD");
	assert_int_equal(net_policy_egress_from_env(p, &err), 0);
	char *line = net_policy_describe(p);
	assert_null(strstr(line, "egress"));
	fl_free(line);
	setenv("FLOWD_EGRESS_FD", "999", 1);
	assert_int_equal(net_policy_egress_from_env(p, &err), FL_ECONFIG);
	assert_non_null(strstr(err.msg, "FLOWD_EGRESS_FD"));
	setenv("FLOWD_EGRESS_FD", "3x", 1);
	assert_int_equal(net_policy_egress_from_env(p, &err), FL_ECONFIG);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	char num[16];
	snprintf(num, sizeof num, "%d", sv[1]);
	setenv("FLOWD_EGRESS_FD", num, 1);
	assert_int_equal(net_policy_egress_from_env(p, &err), 0);
	assert_true(fcntl(sv[1], F_GETFD) & FD_CLOEXEC);
	line = net_policy_describe(p);
	assert_non_null(strstr(line, "egress broker"));
	fl_free(line);
	net_policy_free(p); /* closes its duplicate, not the inherited descriptor */
	assert_true(fcntl(sv[1], F_GETFD) >= 0);
	close(sv[1]);
	close(sv[0]);
	unsetenv("FLOWD_EGRESS_FD");
}

static void test_check_messages(void **state)
{
	struct net_policy *p = strict_policy("127.0.0.2");
	struct fl_err err;
	struct net_addr a;
	assert_int_equal(net_addr_parse_host("127.0.0.1", &a), 0);
	assert_int_equal(net_policy_check_addr(p, "localhost", &a, &err), FL_EDENIED);
	assert_string_equal(err.msg, "blocked address 127.0.0.1 for host 'localhost' (loopback)");
	assert_int_equal(net_addr_parse_host("::ffff:169.254.169.254", &a), 0);
	assert_int_equal(net_policy_check_addr(p, "metadata", &a, &err), FL_EDENIED);
	assert_string_equal(err.msg, "blocked address ::ffff:169.254.169.254 for host 'metadata' "
				     "(IPv4-mapped link-local)");
	assert_int_equal(net_addr_parse_host("127.0.0.2", &a), 0);
	assert_int_equal(net_policy_check_addr(p, "x", &a, &err), 0);
	assert_int_equal(net_addr_parse_host("::ffff:127.0.0.2", &a), 0);
	assert_int_equal(net_policy_check_addr(p, "x", &a, &err), 0);
	assert_int_equal(net_addr_parse_host("93.184.216.34", &a), 0);
	assert_int_equal(net_policy_check_addr(p, "x", &a, &err), 0);
	assert_int_equal(net_policy_check_addr(NULL, "x", &a, &err), 0);
	net_policy_free(p);
}

static void test_resolve(void **state)
{
	struct net_policy *p = strict_policy("127.0.0.2");
	struct net_addr *addrs;
	size_t n;
	struct fl_err err;
	assert_int_equal(net_policy_resolve(p, "localhost", &addrs, &n, &err), FL_EDENIED);
	assert_null(addrs);
	assert_string_equal(err.msg, "blocked address 127.0.0.1 for host 'localhost' (loopback)");
	assert_int_equal(net_policy_resolve(p, "0x7f.1", &addrs, &n, &err), FL_EDENIED);
	assert_string_equal(err.msg, "blocked address 127.0.0.1 for host '0x7f.1' (loopback)");
	assert_int_equal(net_policy_resolve(p, "", &addrs, &n, &err), FL_EINVAL);
	assert_int_equal(net_policy_resolve(p, "2130706434", &addrs, &n, &err), 0);
	assert_int_equal(n, 1);
	char text[NET_ADDR_STRLEN];
	assert_string_equal(net_addr_format(&addrs[0], text, sizeof text), "127.0.0.2");
	fl_free(addrs);
	assert_int_equal(net_policy_resolve(NULL, "localhost", &addrs, &n, &err), 0);
	assert_true(n >= 1);
	fl_free(addrs);
	net_policy_free(p);
}

static void test_strict_reaches_allowed(void **state)
{
	struct net_policy *p = strict_policy("127.0.0.2");
	char url[128];
	struct result r;
	reset_counts();
	snprintf(url, sizeof url, "http://127.0.0.2:%u/", srv2.port);
	fetch(p, url, 0, NULL, &r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body.data, "two");
	assert_int_equal(atomic_load(&srv2.connections), 1);
	fl_buf_release(&r.body);
	/* The same server through the mapped form of the allowed address. */
	if (have_v6) {
		snprintf(url, sizeof url, "http://[::ffff:127.0.0.2]:%u/", srv2.port);
		fetch(p, url, 0, NULL, &r);
		assert_int_equal(r.rc, 0);
		assert_string_equal(r.body.data, "two");
		fl_buf_release(&r.body);
	}
	net_policy_free(p);
}

static void test_strict_blocks_before_connect(void **state)
{
	struct net_policy *p = strict_policy("127.0.0.2");
	static const char *const forms[] = {
		"http://127.0.0.1:%u/",       "http://localhost:%u/",
		"http://LOCALHOST:%u/",       "http://[::ffff:127.0.0.1]:%u/",
		"http://2130706433:%u/",      "http://0x7f.1:%u/",
		"http://0177.0.0.1:%u/",      "http://127.1:%u/",
		"http://0x7f000001:%u/",      "http://%%31%%32%%37.0.0.1:%u/",
		"http://[::127.0.0.1]:%u/",   "http://[64:ff9b::7f00:1]:%u/",
		"http://[2002:7f00:1::]:%u/", "http://user:pw@127.0.0.1:%u/",
		"http://0.0.0.0:%u/",         "http://0:%u/",
	};
	reset_counts();
	for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
		char url[128];
		struct result r;
		snprintf(url, sizeof url, forms[i], srv1.port);
		fetch(p, url, 0, NULL, &r);
		if (r.rc != FL_EDENIED)
			fprintf(stderr, "%s: rc %d (%s)\n", url, r.rc, r.err.msg);
		assert_int_equal(r.rc, FL_EDENIED);
		assert_non_null(strstr(r.err.msg, "blocked address "));
		fl_buf_release(&r.body);
	}
	if (have_v6) {
		char url[128];
		struct result r;
		snprintf(url, sizeof url, "http://[::1]:%u/", srv6.port);
		fetch(p, url, 0, NULL, &r);
		assert_int_equal(r.rc, FL_EDENIED);
		assert_string_equal(r.err.msg, "blocked address ::1 for host '[::1]' (loopback)");
		fl_buf_release(&r.body);
	}
	struct result r;
	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%u/", srv1.port);
	fetch(p, url, 0, NULL, &r);
	assert_string_equal(r.err.msg, "blocked address 127.0.0.1 for host '127.0.0.1' (loopback)");
	fl_buf_release(&r.body);
	/* The message names the host as the URL wrote it. */
	snprintf(url, sizeof url, "http://u:p@0x7f.1:%u/x?y#z", srv1.port);
	fetch(p, url, 0, NULL, &r);
	assert_string_equal(r.err.msg, "blocked address 127.0.0.1 for host '0x7f.1' (loopback)");
	fl_buf_release(&r.body);
	snprintf(url, sizeof url, "http://[::ffff:7f00:1]:%u/", srv1.port);
	fetch(p, url, 0, NULL, &r);
	assert_string_equal(r.err.msg, "blocked address ::ffff:127.0.0.1 for host "
				       "'[::ffff:7f00:1]' (IPv4-mapped loopback)");
	fl_buf_release(&r.body);
	assert_int_equal(reset_counts(), 0);
	net_policy_free(p);
}

static void test_strict_schemes(void **state)
{
	struct net_policy *p = strict_policy("127.0.0.2");
	static const char *const urls[] = { "file:///etc/passwd", "ftp://127.0.0.2/",
					    "gopher://127.0.0.2:70/", "dict://127.0.0.2:11211/" };
	for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
		struct result r;
		fetch(p, urls[i], 0, NULL, &r);
		assert_int_equal(r.rc, FL_EDENIED);
		assert_non_null(strstr(r.err.msg, "is not allowed"));
		fl_buf_release(&r.body);
	}
	struct result r;
	fetch(p, "http://exa mple.com/", 0, NULL, &r);
	assert_int_equal(r.rc, FL_EINVAL);
	fl_buf_release(&r.body);
	net_policy_free(p);
}

static void test_strict_redirect(void **state)
{
	struct net_policy *p = strict_policy("127.0.0.2");
	char url[128];
	struct result r;
	snprintf(url, sizeof url, "http://127.0.0.2:%u/redirect", srv2.port);
	reset_counts();
	fetch(p, url, 0, NULL, &r);
	assert_int_equal(r.rc, FL_EDENIED);
	assert_string_equal(r.err.msg, "blocked address 127.0.0.1 for host '127.0.0.1' (loopback)");
	assert_int_equal(atomic_load(&srv2.connections), 1);
	assert_int_equal(atomic_load(&srv1.connections), 0);
	fl_buf_release(&r.body);

	/* Even when curl follows the redirect on its own, past the hop check, the connect to the
	 * unchecked address is refused at the socket. */
	reset_counts();
	fetch(p, url, 1, NULL, &r);
	assert_int_equal(r.rc, FL_EDENIED);
	assert_non_null(strstr(r.err.msg, "refused connection to 127.0.0.1"));
	assert_int_equal(atomic_load(&srv1.connections), 0);
	fl_buf_release(&r.body);
	net_policy_free(p);
}

/* A connect curl is steered to after the check (here CURLOPT_CONNECT_TO; in life a resolver
 * that answers differently the second time) is refused at the socket. */
static void test_strict_verifies_socket(void **state)
{
	struct net_policy *p = strict_policy("127.0.0.2");
	char url[128], steer[128];
	struct result r;
	snprintf(url, sizeof url, "http://127.0.0.2:%u/", srv2.port);
	snprintf(steer, sizeof steer, "127.0.0.2:%u:127.0.0.1:%u", srv2.port, srv1.port);
	reset_counts();
	fetch(p, url, 0, steer, &r);
	assert_int_equal(r.rc, FL_EDENIED);
	assert_non_null(strstr(r.err.msg, "refused connection to 127.0.0.1"));
	assert_int_equal(reset_counts(), 0);
	fl_buf_release(&r.body);
	/* A different port on the checked address is refused too. */
	snprintf(steer, sizeof steer, "127.0.0.2:%u:127.0.0.2:%u", srv2.port, srv1.port);
	fetch(p, url, 0, steer, &r);
	assert_int_equal(r.rc, FL_EDENIED);
	assert_int_equal(reset_counts(), 0);
	fl_buf_release(&r.body);
	net_policy_free(p);
}

/* A name is resolved once and curl is handed that answer. With 127.0.0.0/8 allowed, "localhost"
 * passes and is pinned to 127.0.0.1; a later answer pointing elsewhere is not used. */
static void test_strict_pins_names(void **state)
{
	struct net_policy *p = strict_policy("127.0.0.0/8");
	char url[128];
	struct result r;
	snprintf(url, sizeof url, "http://localhost:%u/", srv1.port);
	reset_counts();
	fetch(p, url, 0, NULL, &r);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.body.data, "one");
	fl_buf_release(&r.body);

	CURL *c = curl_easy_init();
	struct net_guard *g = net_guard_new(p);
	struct fl_err err;
	struct fl_buf body = FL_BUF_INIT;
	assert_int_equal(net_guard_hop(g, c, url, &err), 0);
	char rebind[128];
	snprintf(rebind, sizeof rebind, "localhost:%u:127.0.0.2", srv1.port);
	struct curl_slist *second = curl_slist_append(NULL, rebind);
	curl_easy_setopt(c, CURLOPT_RESOLVE, second);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
	assert_int_not_equal(curl_easy_perform(c), CURLE_OK);
	assert_int_equal(net_guard_refused(g, &err), FL_EDENIED);
	assert_non_null(strstr(err.msg, "refused connection to 127.0.0.2"));
	curl_slist_free_all(second);
	net_guard_free(g);
	curl_easy_cleanup(c);
	fl_buf_release(&body);
	net_policy_free(p);
}

static void test_unrestricted_reaches_everything(void **state)
{
	struct net_policy *p;
	struct fl_err err;
	assert_int_equal(net_policy_new(FL_NET_UNRESTRICTED, NULL, &p, &err), 0);
	static const char *const forms[] = { "http://127.0.0.1:%u/", "http://localhost:%u/",
					     "http://2130706433:%u/", "http://0x7f.1:%u/",
					     "http://0177.0.0.1:%u/", "http://[::ffff:127.0.0.1]:%u/" };
	reset_counts();
	for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
		char url[128];
		struct result r;
		snprintf(url, sizeof url, forms[i], srv1.port);
		fetch(i % 2 ? p : NULL, url, 0, NULL, &r);
		if (r.rc)
			fprintf(stderr, "%s: %s\n", url, r.err.msg);
		assert_int_equal(r.rc, 0);
		assert_string_equal(r.body.data, "one");
		fl_buf_release(&r.body);
	}
	assert_int_equal(atomic_load(&srv1.connections), 6);
	if (have_v6) {
		char url[128];
		struct result r;
		snprintf(url, sizeof url, "http://[::1]:%u/", srv6.port);
		fetch(p, url, 0, NULL, &r);
		assert_int_equal(r.rc, 0);
		assert_string_equal(r.body.data, "six");
		fl_buf_release(&r.body);
	}
	char url[128];
	struct result r;
	snprintf(url, sizeof url, "http://127.0.0.2:%u/redirect", srv2.port);
	fetch(p, url, 0, NULL, &r);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.body.data, "one");
	fl_buf_release(&r.body);
	net_policy_free(p);
}

/* A name whose answer mixes an allowed address with a blocked one is refused whole. The answer
 * comes from the real resolver: a private mount namespace puts a hosts file of our own over
 * /etc/hosts for a child process. */
static void test_strict_mixed_resolution(void **state)
{
	int pipefd[2];
	assert_int_equal(pipe(pipefd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(pipefd[0]);
		char msg[600] = "";
		int code = 0;
		char hosts[] = "/tmp/flowd-hosts-XXXXXX";
		int fd = mkstemp(hosts);
		const char *text = "127.0.0.2 public.test\n"
				   "127.0.0.2 mixed.test\n127.0.0.1 mixed.test\n";
		if (fd < 0 || write(fd, text, strlen(text)) < 0)
			_exit(3);
		close(fd);
		uid_t uid = getuid();
		gid_t gid = getgid();
		int ok = unshare(CLONE_NEWNS) == 0;
		if (!ok && unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0) {
			char map[64];
			int f = open("/proc/self/setgroups", O_WRONLY);
			if (f >= 0) {
				ok = write(f, "deny", 4) == 4;
				close(f);
			}
			snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
			f = open("/proc/self/uid_map", O_WRONLY);
			ok = f >= 0 && write(f, map, strlen(map)) > 0;
			if (f >= 0)
				close(f);
			snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
			f = open("/proc/self/gid_map", O_WRONLY);
			ok = ok && f >= 0 && write(f, map, strlen(map)) > 0;
			if (f >= 0)
				close(f);
		}
		if (!ok || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
		    mount(hosts, "/etc/hosts", NULL, MS_BIND, NULL)) {
			unlink(hosts);
			_exit(4);
		}
		struct net_policy *p = strict_policy("127.0.0.2");
		struct net_addr *addrs;
		size_t n;
		struct fl_err err;
		code = net_policy_resolve(p, "public.test", &addrs, &n, &err);
		if (code == 0 && n == 1)
			fl_free(addrs);
		else
			code = 1;
		if (code == 0) {
			int rc = net_policy_resolve(p, "mixed.test", &addrs, &n, &err);
			snprintf(msg, sizeof msg, "%s", rc == FL_EDENIED ? err.msg : "not denied");
		}
		net_policy_free(p);
		umount("/etc/hosts");
		unlink(hosts);
		if (write(pipefd[1], msg, strlen(msg)) < 0)
			_exit(5);
		_exit(code);
	}
	close(pipefd[1]);
	char msg[600] = "";
	ssize_t got = read(pipefd[0], msg, sizeof msg - 1);
	close(pipefd[0]);
	msg[got > 0 ? got : 0] = '\0';
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 4)
		skip(); /* no mount namespace here: nothing to show it with */
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_string_equal(msg, "blocked address 127.0.0.1 for host 'mixed.test' (loopback)");
}

/* The same through net/http.c, which guards every hop of its own redirect loop. */
static void test_http_client(void **state)
{
	struct net_policy *p = strict_policy("127.0.0.2");
	struct net_http_request req = { .follow_redirects = 1, .policy = p, .timeout_ms = 5000 };
	struct net_http_response resp;
	struct fl_err err;
	char url[128];
	req.url = url;
	reset_counts();

	snprintf(url, sizeof url, "http://127.0.0.2:%u/", srv2.port);
	assert_int_equal(net_http_do(&req, &resp, &err), 0);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "two");
	net_http_response_release(&resp);

	static const char *const blocked[] = { "http://127.0.0.1:%u/", "http://localhost:%u/",
					       "http://2130706433:%u/", "http://0x7f.1:%u/",
					       "http://0177.0.0.1:%u/",
					       "http://[::ffff:127.0.0.1]:%u/" };
	for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++) {
		snprintf(url, sizeof url, blocked[i], srv1.port);
		assert_int_equal(net_http_do(&req, &resp, &err), FL_EDENIED);
		assert_true(strncmp(err.msg, "blocked address ", 16) == 0);
		assert_non_null(strstr(err.msg, "127.0.0.1 for host '"));
	}
	assert_int_equal(atomic_load(&srv1.connections), 0);

	snprintf(url, sizeof url, "http://127.0.0.2:%u/redirect", srv2.port);
	assert_int_equal(net_http_do(&req, &resp, &err), FL_EDENIED);
	assert_string_equal(err.msg, "blocked address 127.0.0.1 for host '127.0.0.1' (loopback)");
	assert_int_equal(atomic_load(&srv1.connections), 0);
	/* Without following, the 302 itself is the answer. */
	req.follow_redirects = 0;
	assert_int_equal(net_http_do(&req, &resp, &err), 0);
	assert_int_equal(resp.status, 302);
	net_http_response_release(&resp);

	/* The thread's handle is reused: the next, unrestricted request must not carry the
	 * previous guard's pin or callback. */
	req.policy = NULL;
	req.follow_redirects = 1;
	assert_int_equal(net_http_do(&req, &resp, &err), 0);
	assert_string_equal(resp.body, "one");
	net_http_response_release(&resp);
	snprintf(url, sizeof url, "http://localhost:%u/", srv1.port);
	assert_int_equal(net_http_do(&req, &resp, &err), 0);
	assert_string_equal(resp.body, "one");
	net_http_response_release(&resp);
	net_policy_free(p);
}

/* The policy reaches flows: an engine serving the worker's pipe protocol, with the environment
 * the worker gives it, runs an http step and a code step's fetch under STRICT. */
struct engine_result {
	char status[32];
	char message[600];
	char body[600];
};

static void run_in_engine(const char *step_json, struct engine_result *out)
{
	int to_engine[2], from_engine[2];
	assert_int_equal(pipe(to_engine), 0);
	assert_int_equal(pipe(from_engine), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(to_engine[1]);
		close(from_engine[0]);
		setenv("AP_NETWORK_MODE", "STRICT", 1);
		setenv("AP_SSRF_ALLOW_LIST", "127.0.0.2", 1);
		FILE *in = fdopen(to_engine[0], "r"), *o = fdopen(from_engine[1], "w");
		_exit(eng_proto_serve(in, o));
	}
	close(to_engine[0]);
	close(from_engine[1]);
	FILE *to = fdopen(to_engine[1], "w"), *from = fdopen(from_engine[0], "r");
	char *op = fl_asprintf(
		"{\"type\":\"run\",\"runId\":\"netPolicyRun000000001\",\"flowId\":\"f\","
		"\"flowVersion\":{\"displayName\":\"net\",\"trigger\":{\"name\":\"trigger\","
		"\"type\":\"PIECE_TRIGGER\",\"displayName\":\"Trigger\",\"settings\":{"
		"\"pieceName\":\"@activepieces/piece-webhook\",\"pieceVersion\":\"~0.1.0\","
		"\"triggerName\":\"catch_webhook\",\"input\":{}},\"nextAction\":%s}},"
		"\"triggerOutput\":{}}\n",
		step_json);
	fputs(op, to);
	fflush(to);
	fl_free(op);
	memset(out, 0, sizeof *out);
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, from) > 0) {
		json_t *ev = json_loads(line, 0, NULL);
		assert_non_null(ev);
		const char *type = json_string_value(json_object_get(ev, "type"));
		if (!strcmp(type, "step_finished") && json_is_true(json_object_get(ev, "ack"))) {
			fputs("{\"type\":\"ack\"}\n", to);
			fflush(to);
		}
		if (!strcmp(type, "finished")) {
			json_t *result = json_object_get(ev, "result");
			snprintf(out->status, sizeof out->status, "%s",
				 json_string_value(json_object_get(ev, "status")));
			const char *msg = json_string_value(
				json_object_get(json_object_get(result, "failedStep"), "message"));
			snprintf(out->message, sizeof out->message, "%s", msg ? msg : "");
			json_t *output = json_object_get(
				json_object_get(json_object_get(result, "steps"), "step_1"), "output");
			char *text = output ? json_dumps(output, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
			snprintf(out->body, sizeof out->body, "%s", text ? text : "");
			free(text);
			json_decref(ev);
			break;
		}
		json_decref(ev);
	}
	free(line);
	fputs("{\"type\":\"exit\"}\n", to);
	fclose(to);
	fclose(from);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static char *http_step(const char *url)
{
	return fl_asprintf(
		"{\"name\":\"step_1\",\"displayName\":\"Request\",\"type\":\"PIECE\",\"settings\":{"
		"\"pieceName\":\"@activepieces/piece-http\",\"pieceVersion\":\"~0.5.0\","
		"\"actionName\":\"send_request\",\"input\":{\"method\":\"GET\",\"url\":\"%s\","
		"\"headers\":{},\"queryParams\":{},\"body_type\":\"none\",\"followRedirects\":true,"
		"\"failureMode\":\"continue_none\"}}}",
		url);
}

static char *fetch_step(const char *url)
{
	return fl_asprintf(
		"{\"name\":\"step_1\",\"displayName\":\"Fetch\",\"type\":\"CODE\",\"settings\":{"
		"\"input\":{\"url\":\"%s\"},\"sourceCode\":{\"packageJson\":\"{}\",\"code\":"
		"\"export const code = async (inputs) => { const r = await fetch(inputs.url); "
		"return { status: r.status, text: await r.text() }; };\"}}}",
		url);
}

static void test_engine_applies_policy(void **state)
{
	char *(*const kinds[])(const char *) = { http_step, fetch_step };
	for (size_t k = 0; k < 2; k++) {
		char url[128];
		struct engine_result r;
		reset_counts();
		snprintf(url, sizeof url, "http://127.0.0.2:%u/", srv2.port);
		char *step = kinds[k](url);
		run_in_engine(step, &r);
		fl_free(step);
		if (strcmp(r.status, "SUCCEEDED"))
			fprintf(stderr, "%s: %s %s\n", url, r.status, r.message);
		assert_string_equal(r.status, "SUCCEEDED");
		assert_non_null(strstr(r.body, "two"));
		assert_int_equal(atomic_load(&srv2.connections), 1);

		static const char *const blocked[] = { "http://127.0.0.1:%u/", "http://localhost:%u/",
						       "http://0x7f.1:%u/", "http://2130706433:%u/" };
		for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++) {
			snprintf(url, sizeof url, blocked[i], srv1.port);
			step = kinds[k](url);
			run_in_engine(step, &r);
			fl_free(step);
			if (strcmp(r.status, "FAILED") || !strstr(r.message, "blocked address"))
				fprintf(stderr, "%s: %s %s\n", url, r.status, r.message);
			assert_string_equal(r.status, "FAILED");
			assert_non_null(strstr(r.message, "blocked address 127.0.0.1 for host '"));
		}
		snprintf(url, sizeof url, "http://127.0.0.2:%u/redirect", srv2.port);
		step = kinds[k](url);
		run_in_engine(step, &r);
		fl_free(step);
		assert_string_equal(r.status, "FAILED");
		assert_non_null(strstr(r.message, "blocked address 127.0.0.1 for host '127.0.0.1'"));
		assert_int_equal(atomic_load(&srv1.connections), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_describe),
		cmocka_unit_test(test_bad_allow_list),
		cmocka_unit_test(test_egress_from_env),
		cmocka_unit_test(test_check_messages),
		cmocka_unit_test(test_resolve),
		cmocka_unit_test(test_strict_reaches_allowed),
		cmocka_unit_test(test_strict_blocks_before_connect),
		cmocka_unit_test(test_strict_schemes),
		cmocka_unit_test(test_strict_redirect),
		cmocka_unit_test(test_strict_verifies_socket),
		cmocka_unit_test(test_strict_pins_names),
		cmocka_unit_test(test_unrestricted_reaches_everything),
		cmocka_unit_test(test_strict_mixed_resolution),
		cmocka_unit_test(test_http_client),
		cmocka_unit_test(test_engine_applies_policy),
	};
	return cmocka_run_group_tests(tests, setup_servers, teardown_servers);
}
