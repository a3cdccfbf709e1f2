/* Unit tests for src/net/addr: every numeric spelling of a host, the special-purpose ranges of
 * IPv4 and IPv6 with their edges, the IPv4 address inside each IPv6 wrapping, and allow lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/err.h"
#include "net/addr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

struct host_case {
	const char *host;      /* as written in a URL host or handed to the resolver */
	const char *canonical; /* what it means; NULL when it is not a numeric address */
	const char *verdict;   /* net_addr_verdict_describe of it */
};

static const struct host_case cases[] = {
	/* Loopback in every spelling inet_aton accepts. */
	{ "127.0.0.1", "127.0.0.1", "loopback" },
	{ "127.1", "127.0.0.1", "loopback" },
	{ "127.0.1", "127.0.0.1", "loopback" },
	{ "2130706433", "127.0.0.1", "loopback" },
	{ "017700000001", "127.0.0.1", "loopback" },
	{ "0x7f000001", "127.0.0.1", "loopback" },
	{ "0X7F000001", "127.0.0.1", "loopback" },
	{ "0x7f.1", "127.0.0.1", "loopback" },
	{ "0x7f.0.0.1", "127.0.0.1", "loopback" },
	{ "0x7F.0.0.1", "127.0.0.1", "loopback" },
	{ "0177.0.0.1", "127.0.0.1", "loopback" },
	{ "0177.1", "127.0.0.1", "loopback" },
	{ "0177.0.1", "127.0.0.1", "loopback" },
	{ "0x7f.0x0.0x0.0x1", "127.0.0.1", "loopback" },
	{ "0177.0.0.01", "127.0.0.1", "loopback" },
	{ "00000177.0.0.1", "127.0.0.1", "loopback" },
	{ "0x00000007f.1", "127.0.0.1", "loopback" },
	{ "127.000.000.001", "127.0.0.1", "loopback" },
	{ "0177.0x0.00.0x1", "127.0.0.1", "loopback" },
	{ "127.0.0.0x1", "127.0.0.1", "loopback" },
	{ "127.0x1", "127.0.0.1", "loopback" },
	{ "127.0.0x1", "127.0.0.1", "loopback" },
	{ "127.0.0.255", "127.0.0.255", "loopback" },
	{ "127.255.255.254", "127.255.255.254", "loopback" },
	{ "127.16777215", "127.255.255.255", "loopback" },
	{ "127.0xffffff", "127.255.255.255", "loopback" },
	{ "0x7fffffff", "127.255.255.255", "loopback" },
	{ "2147483647", "127.255.255.255", "loopback" },
	{ "2130706434", "127.0.0.2", "loopback" },
	{ "127.0.0.2", "127.0.0.2", "loopback" },
	{ "127.2", "127.0.0.2", "loopback" },
	/* Not numeric: each is a name to the resolver, or nothing at all. */
	{ "127.0.0.1.", NULL, NULL },
	{ "127.0.0.1.1", NULL, NULL },
	{ "127.0.0.256", NULL, NULL },
	{ "127.0.65536", NULL, NULL },
	{ "127.16777216", NULL, NULL },
	{ "256.0.0.1", NULL, NULL },
	{ "4294967296", NULL, NULL },
	{ "0x100000000", NULL, NULL },
	{ "99999999999999999999", NULL, NULL },
	{ "0xffffffffffffffffff", NULL, NULL },
	{ "08.0.0.1", NULL, NULL },
	{ "09", NULL, NULL },
	{ "0128.0.0.1", NULL, NULL },
	{ "0x", NULL, NULL },
	{ "0x.1", NULL, NULL },
	{ "0xg", NULL, NULL },
	{ "0x7f.1x", NULL, NULL },
	{ "1..1", NULL, NULL },
	{ ".1.2.3", NULL, NULL },
	{ "", NULL, NULL },
	{ ".", NULL, NULL },
	{ "localhost", NULL, NULL },
	{ "example.com", NULL, NULL },
	{ "1.2.3.4 ", NULL, NULL },
	{ " 1.2.3.4", NULL, NULL },
	{ "+1.2.3.4", NULL, NULL },
	{ "-1", NULL, NULL },
	{ "1e3", NULL, NULL },
	{ "1.2.3.4/8", NULL, NULL },
	{ "0x1.0x2.0x3.0x4.0x5", NULL, NULL },
	{ "[127.0.0.1]", NULL, NULL },
	{ "[::1", NULL, NULL },
	{ "::1]", NULL, NULL },
	{ "[:::1]", NULL, NULL },
	{ "[::1]x", NULL, NULL },
	{ "[]", NULL, NULL },
	{ "1:2", NULL, NULL },
	{ "[fe80::1%]", NULL, NULL },
	{ "[fe80::1%25]", NULL, NULL },
	{ "fe80::1%", NULL, NULL },
	{ "fe80::1%eth0/1", NULL, NULL },
	{ "::ffff:127.1", NULL, NULL },
	{ "::ffff:0x7f.0.0.1", NULL, NULL },
	{ "::ffff:127.0.0.1.", NULL, NULL },
	/* IPv4 ranges, with the addresses just outside them. */
	{ "0.0.0.0", "0.0.0.0", "unspecified" },
	{ "0", "0.0.0.0", "unspecified" },
	{ "0x0", "0.0.0.0", "unspecified" },
	{ "00", "0.0.0.0", "unspecified" },
	{ "0.1.2.3", "0.1.2.3", "this network" },
	{ "0.255.255.255", "0.255.255.255", "this network" },
	{ "1", "0.0.0.1", "this network" },
	{ "1.0.0.0", "1.0.0.0", "public" },
	{ "10.0.0.1", "10.0.0.1", "private" },
	{ "10.1", "10.0.0.1", "private" },
	{ "012.0.0.1", "10.0.0.1", "private" },
	{ "0xa.0.0.1", "10.0.0.1", "private" },
	{ "167772161", "10.0.0.1", "private" },
	{ "10.255.255.255", "10.255.255.255", "private" },
	{ "9.255.255.255", "9.255.255.255", "public" },
	{ "11.0.0.0", "11.0.0.0", "public" },
	{ "100.64.0.1", "100.64.0.1", "shared address space" },
	{ "100.127.255.255", "100.127.255.255", "shared address space" },
	{ "100.63.255.255", "100.63.255.255", "public" },
	{ "100.128.0.0", "100.128.0.0", "public" },
	{ "169.254.169.254", "169.254.169.254", "link-local" },
	{ "0xa9fea9fe", "169.254.169.254", "link-local" },
	{ "2852039166", "169.254.169.254", "link-local" },
	{ "0251.0376.0251.0376", "169.254.169.254", "link-local" },
	{ "169.254.43518", "169.254.169.254", "link-local" },
	{ "0xa9.0xfe.0xa9fe", "169.254.169.254", "link-local" },
	{ "169.254.0.0", "169.254.0.0", "link-local" },
	{ "169.253.255.255", "169.253.255.255", "public" },
	{ "169.255.0.0", "169.255.0.0", "public" },
	{ "172.16.0.1", "172.16.0.1", "private" },
	{ "172.31.255.255", "172.31.255.255", "private" },
	{ "172.15.255.255", "172.15.255.255", "public" },
	{ "172.32.0.0", "172.32.0.0", "public" },
	{ "192.0.0.1", "192.0.0.1", "IETF protocol assignment" },
	{ "192.0.0.9", "192.0.0.9", "IETF protocol assignment" },
	{ "192.0.0.255", "192.0.0.255", "IETF protocol assignment" },
	{ "192.0.1.0", "192.0.1.0", "public" },
	{ "192.0.2.1", "192.0.2.1", "documentation" },
	{ "198.51.100.7", "198.51.100.7", "documentation" },
	{ "203.0.113.255", "203.0.113.255", "documentation" },
	{ "203.0.114.0", "203.0.114.0", "public" },
	{ "192.88.99.1", "192.88.99.1", "deprecated" },
	{ "192.168.0.1", "192.168.0.1", "private" },
	{ "192.168.255.255", "192.168.255.255", "private" },
	{ "192.169.0.0", "192.169.0.0", "public" },
	{ "192.167.255.255", "192.167.255.255", "public" },
	{ "3232235521", "192.168.0.1", "private" },
	{ "0xc0a80001", "192.168.0.1", "private" },
	{ "192.168.1", "192.168.0.1", "private" },
	{ "0300.0250.0.1", "192.168.0.1", "private" },
	{ "198.18.0.1", "198.18.0.1", "benchmarking" },
	{ "198.19.255.255", "198.19.255.255", "benchmarking" },
	{ "198.17.255.255", "198.17.255.255", "public" },
	{ "198.20.0.0", "198.20.0.0", "public" },
	{ "224.0.0.1", "224.0.0.1", "multicast" },
	{ "239.255.255.255", "239.255.255.255", "multicast" },
	{ "233.252.0.1", "233.252.0.1", "multicast" },
	{ "223.255.255.255", "223.255.255.255", "public" },
	{ "240.0.0.1", "240.0.0.1", "reserved" },
	{ "255.255.255.254", "255.255.255.254", "reserved" },
	{ "255.255.255.255", "255.255.255.255", "broadcast" },
	{ "4294967295", "255.255.255.255", "broadcast" },
	{ "0xffffffff", "255.255.255.255", "broadcast" },
	{ "037777777777", "255.255.255.255", "broadcast" },
	{ "8.8.8.8", "8.8.8.8", "public" },
	{ "1.1.1.1", "1.1.1.1", "public" },
	{ "134744072", "8.8.8.8", "public" },
	{ "0x8.0x8.0x8.0x8", "8.8.8.8", "public" },
	{ "010.010.010.010", "8.8.8.8", "public" },
	{ "8.8.2056", "8.8.8.8", "public" },
	{ "93.184.216.34", "93.184.216.34", "public" },
	/* IPv6 loopback and unspecified, bracketed or not. */
	{ "::", "::", "unspecified" },
	{ "[::]", "::", "unspecified" },
	{ "0:0:0:0:0:0:0:0", "::", "unspecified" },
	{ "::1", "::1", "loopback" },
	{ "[::1]", "::1", "loopback" },
	{ "0:0:0:0:0:0:0:1", "::1", "loopback" },
	{ "[0000::1]", "::1", "loopback" },
	{ "::0:1", "::1", "loopback" },
	/* IPv4-mapped. */
	{ "::ffff:127.0.0.1", "::ffff:127.0.0.1", "IPv4-mapped loopback" },
	{ "[::ffff:127.0.0.1]", "::ffff:127.0.0.1", "IPv4-mapped loopback" },
	{ "::ffff:7f00:1", "::ffff:127.0.0.1", "IPv4-mapped loopback" },
	{ "[0:0:0:0:0:ffff:7f00:0001]", "::ffff:127.0.0.1", "IPv4-mapped loopback" },
	{ "::FFFF:127.0.0.1", "::ffff:127.0.0.1", "IPv4-mapped loopback" },
	{ "::ffff:10.0.0.1", "::ffff:10.0.0.1", "IPv4-mapped private" },
	{ "::ffff:169.254.169.254", "::ffff:169.254.169.254", "IPv4-mapped link-local" },
	{ "::ffff:a9fe:a9fe", "::ffff:169.254.169.254", "IPv4-mapped link-local" },
	{ "::ffff:0.0.0.0", "::ffff:0.0.0.0", "IPv4-mapped unspecified" },
	{ "::ffff:1:2", "::ffff:0.1.0.2", "IPv4-mapped this network" },
	{ "::ffff:192.168.1.1", "::ffff:192.168.1.1", "IPv4-mapped private" },
	{ "::ffff:100.64.0.1", "::ffff:100.64.0.1", "IPv4-mapped shared address space" },
	{ "::ffff:224.0.0.1", "::ffff:224.0.0.1", "IPv4-mapped multicast" },
	{ "::ffff:255.255.255.255", "::ffff:255.255.255.255", "IPv4-mapped broadcast" },
	{ "::ffff:198.18.0.1", "::ffff:198.18.0.1", "IPv4-mapped benchmarking" },
	{ "::ffff:8.8.8.8", "::ffff:8.8.8.8", "IPv4-mapped public" },
	/* IPv4-compatible (deprecated even around a public address). */
	{ "::127.0.0.1", "::127.0.0.1", "IPv4-compatible loopback" },
	{ "::7f00:1", "::127.0.0.1", "IPv4-compatible loopback" },
	{ "[::127.0.0.1]", "::127.0.0.1", "IPv4-compatible loopback" },
	{ "::10.0.0.1", "::10.0.0.1", "IPv4-compatible private" },
	{ "::169.254.169.254", "::169.254.169.254", "IPv4-compatible link-local" },
	{ "::0.0.0.2", "::2", "IPv4-compatible this network" },
	{ "::8.8.8.8", "::8.8.8.8", "IPv4-compatible deprecated" },
	/* IPv4-translated (SIIT). */
	{ "::ffff:0:127.0.0.1", "::ffff:0:7f00:1", "IPv4-translated loopback" },
	{ "::ffff:0:8.8.8.8", "::ffff:0:808:808", "IPv4-translated deprecated" },
	/* NAT64, well-known and local-use prefixes. */
	{ "64:ff9b::127.0.0.1", "64:ff9b::7f00:1", "NAT64 loopback" },
	{ "64:ff9b::7f00:1", "64:ff9b::7f00:1", "NAT64 loopback" },
	{ "[64:ff9b::127.0.0.1]", "64:ff9b::7f00:1", "NAT64 loopback" },
	{ "64:ff9b::10.0.0.1", "64:ff9b::a00:1", "NAT64 private" },
	{ "64:ff9b::169.254.169.254", "64:ff9b::a9fe:a9fe", "NAT64 link-local" },
	{ "64:ff9b::192.168.0.1", "64:ff9b::c0a8:1", "NAT64 private" },
	{ "64:ff9b::0.0.0.0", "64:ff9b::", "NAT64 unspecified" },
	{ "64:ff9b::8.8.8.8", "64:ff9b::808:808", "NAT64 public" },
	{ "64:ff9b:1::127.0.0.1", "64:ff9b:1::7f00:1", "NAT64 loopback" },
	{ "64:ff9b:1::172.16.0.1", "64:ff9b:1::ac10:1", "NAT64 private" },
	{ "64:ff9b:1::8.8.8.8", "64:ff9b:1::808:808", "NAT64 public" },
	{ "64:ff9b:1:abcd::1", "64:ff9b:1:abcd::1", "local-use NAT64" },
	{ "64:ff9b:1:7f00:1::", "64:ff9b:1:7f00:1::", "local-use NAT64" },
	{ "64:ff9c::1", "64:ff9c::1", "reserved" },
	{ "64:ff9b:0:0:0:1::1", "64:ff9b::1:0:1", "reserved" },
	/* 6to4 carries the IPv4 address in bits 16..47. */
	{ "2002:7f00:1::", "2002:7f00:1::", "6to4 loopback" },
	{ "2002:7f00:0001::1", "2002:7f00:1::1", "6to4 loopback" },
	{ "[2002:7f00:1::1]", "2002:7f00:1::1", "6to4 loopback" },
	{ "2002:a00:1::1", "2002:a00:1::1", "6to4 private" },
	{ "2002:a9fe:a9fe::1", "2002:a9fe:a9fe::1", "6to4 link-local" },
	{ "2002:c0a8:101::1", "2002:c0a8:101::1", "6to4 private" },
	{ "2002:6440:1::", "2002:6440:1::", "6to4 shared address space" },
	{ "2002::", "2002::", "6to4 unspecified" },
	{ "2002:e000:1::", "2002:e000:1::", "6to4 multicast" },
	{ "2002:ffff:ffff::", "2002:ffff:ffff::", "6to4 broadcast" },
	{ "2002:808:808::1", "2002:808:808::1", "6to4 public" },
	/* The IETF protocol block and its global services; Teredo. */
	{ "2001::1", "2001::1", "Teredo" },
	{ "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
	  "Teredo" },
	{ "2001:1::1", "2001:1::1", "public" },
	{ "2001:1::2", "2001:1::2", "public" },
	{ "2001:1::4", "2001:1::4", "IETF protocol assignment" },
	{ "2001:2::1", "2001:2::1", "benchmarking" },
	{ "2001:2:0:ffff::1", "2001:2:0:ffff::1", "benchmarking" },
	{ "2001:2:1::1", "2001:2:1::1", "IETF protocol assignment" },
	{ "2001:3::1", "2001:3::1", "public" },
	{ "2001:4:112::1", "2001:4:112::1", "public" },
	{ "2001:4:113::1", "2001:4:113::1", "IETF protocol assignment" },
	{ "2001:10::1", "2001:10::1", "IETF protocol assignment" },
	{ "2001:20::1", "2001:20::1", "IETF protocol assignment" },
	{ "2001:1ff::1", "2001:1ff::1", "IETF protocol assignment" },
	{ "2001:200::1", "2001:200::1", "public" },
	/* Documentation. */
	{ "2001:db8::1", "2001:db8::1", "documentation" },
	{ "[2001:db8::1]", "2001:db8::1", "documentation" },
	{ "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
	  "documentation" },
	{ "2001:db9::1", "2001:db9::1", "public" },
	{ "3fff::1", "3fff::1", "documentation" },
	{ "3fff:fff:ffff::", "3fff:fff:ffff::", "documentation" },
	{ "3fff:1000::1", "3fff:1000::1", "public" },
	/* Discard, local and multicast scopes. */
	{ "100::1", "100::1", "discard-only" },
	{ "100::ffff:ffff:ffff:ffff", "100::ffff:ffff:ffff:ffff", "discard-only" },
	{ "100:0:0:1::1", "100:0:0:1::1", "reserved" },
	{ "fc00::1", "fc00::1", "unique local" },
	{ "fd00::2", "fd00::2", "unique local" },
	{ "[fd12:3456:789a::1]", "fd12:3456:789a::1", "unique local" },
	{ "fdff:ffff::1", "fdff:ffff::1", "unique local" },
	{ "fe00::1", "fe00::1", "reserved" },
	{ "fe80::1", "fe80::1", "link-local" },
	{ "FE80::1", "fe80::1", "link-local" },
	{ "[fe80::1%25eth0]", "fe80::1", "link-local" },
	{ "[fe80::1%eth0]", "fe80::1", "link-local" },
	{ "fe80::1%eth0", "fe80::1", "link-local" },
	{ "fe80::1%2", "fe80::1", "link-local" },
	{ "febf:ffff::1", "febf:ffff::1", "link-local" },
	{ "fec0::1", "fec0::1", "site-local" },
	{ "feff::1", "feff::1", "site-local" },
	{ "ff02::1", "ff02::1", "multicast" },
	{ "ff05::2", "ff05::2", "multicast" },
	{ "ff0e::1", "ff0e::1", "multicast" },
	{ "[ff02::1%251]", "ff02::1", "multicast" },
	/* Outside 2000::/3 is refused unless named above. */
	{ "1::1", "1::1", "reserved" },
	{ "::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8", "reserved" },
	{ "4000::1", "4000::1", "reserved" },
	{ "5f00::1", "5f00::1", "reserved" },
	{ "8000::1", "8000::1", "reserved" },
	{ "e000::1", "e000::1", "reserved" },
	/* Global unicast. */
	{ "2606:4700:4700::1111", "2606:4700:4700::1111", "public" },
	{ "[2606:4700:4700::1111]", "2606:4700:4700::1111", "public" },
	{ "2a00:1450:4001:80b::200e", "2a00:1450:4001:80b::200e", "public" },
	{ "2001:4860:4860::8888", "2001:4860:4860::8888", "public" },
	{ "[2001:4860:4860::8888%25eth0]", "2001:4860:4860::8888", "public" },
	{ "3000::1", "3000::1", "public" },
	{ "2000::", "2000::", "public" },
	{ "3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	  "public" },
};

static void test_host_table(void **state)
{
	size_t n = sizeof cases / sizeof cases[0];
	assert_true(n >= 150);
	int failures = 0;
	for (size_t i = 0; i < n; i++) {
		const struct host_case *c = &cases[i];
		struct net_addr a;
		int rc = net_addr_parse_host(c->host, &a);
		if (!c->canonical) {
			if (rc != FL_EINVAL) {
				fprintf(stderr, "'%s': parsed, expected not numeric\n", c->host);
				failures++;
			}
			continue;
		}
		if (rc != 0) {
			fprintf(stderr, "'%s': not parsed, expected %s\n", c->host, c->canonical);
			failures++;
			continue;
		}
		char text[NET_ADDR_STRLEN], why[64];
		net_addr_format(&a, text, sizeof text);
		net_addr_verdict_describe(net_addr_classify(&a), why, sizeof why);
		if (strcmp(text, c->canonical) || strcmp(why, c->verdict)) {
			fprintf(stderr, "'%s': got %s (%s), expected %s (%s)\n", c->host, text, why,
				c->canonical, c->verdict);
			failures++;
		}
	}
	fprintf(stderr, "%zu host spellings checked\n", n);
	assert_int_equal(failures, 0);
}

/* The IPv4 parser must agree with the C library's inet_aton wherever no blank is involved
 * (inet_aton stops at a blank; getaddrinfo and we do not). */
static void test_ipv4_matches_inet_aton(void **state)
{
	static const char *extra[] = { "0x7f.1",   "1.2.3",      "0377.0377.0377.0377",
				       "0x100.1",  "1.0x1000000", "1.2.0x10000",
				       "00x1",     "0x0x1",      "1.2.3.0400",
				       "0xff.0xffffff", "0.0.0.0.0", "007" };
	size_t n = sizeof cases / sizeof cases[0];
	for (size_t i = 0; i < n + sizeof extra / sizeof extra[0]; i++) {
		const char *s = i < n ? cases[i].host : extra[i - n];
		if (strpbrk(s, " \t:[]") || !s[0])
			continue;
		struct in_addr libc;
		struct net_addr ours;
		int libc_ok = inet_aton(s, &libc) == 1;
		int ours_ok = net_addr_parse_ipv4(s, strlen(s), &ours) == 0;
		if (libc_ok != ours_ok)
			fprintf(stderr, "'%s': inet_aton %d, ours %d\n", s, libc_ok, ours_ok);
		assert_int_equal(libc_ok, ours_ok);
		if (libc_ok)
			assert_memory_equal(&libc, ours.bytes, 4);
	}
}

static void test_strict_parse(void **state)
{
	struct net_addr a;
	assert_int_equal(net_addr_parse_strict("10.0.0.1", 8, &a), 0);
	assert_int_equal(a.family, AF_INET);
	assert_int_equal(net_addr_parse_strict("2001:db8::1", 11, &a), 0);
	assert_int_equal(a.family, AF_INET6);
	static const char *bad[] = { "10.1", "2130706433", "0x7f.0.0.1", "010.0.0.1", "10.0.0.01",
				     "[::1]", "fe80::1%eth0", "1.2.3.4.", "", " 1.2.3.4" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(net_addr_parse_strict(bad[i], strlen(bad[i]), &a), FL_EINVAL);
}

static void test_sockaddr_round_trip(void **state)
{
	struct net_addr a, b;
	uint16_t port = 0;
	struct sockaddr_storage ss;
	assert_int_equal(net_addr_parse_host("[fe80::1%7]", &a), 0);
	assert_int_equal(a.scope_id, 7);
	socklen_t len = net_addr_to_sockaddr(&a, 8080, &ss);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_int_equal(net_addr_from_sockaddr((struct sockaddr *)&ss, len, &b, &port), 0);
	assert_true(net_addr_equal(&a, &b));
	assert_int_equal(b.scope_id, 7);
	assert_int_equal(port, 8080);
	assert_int_equal(net_addr_parse_host("0x7f.1", &a), 0);
	len = net_addr_to_sockaddr(&a, 1, &ss);
	assert_int_equal(net_addr_from_sockaddr((struct sockaddr *)&ss, len, &b, &port), 0);
	assert_true(net_addr_equal(&a, &b));
	assert_int_equal(net_addr_from_sockaddr((struct sockaddr *)&ss, 4, &b, &port), FL_EINVAL);
	struct net_addr v4;
	assert_int_equal(net_addr_parse_host("::ffff:127.0.0.2", &a), 0);
	assert_true(net_addr_unmap(&a, &v4));
	assert_int_equal(v4.family, AF_INET);
	assert_int_equal(net_addr_parse_host("::127.0.0.2", &a), 0);
	assert_false(net_addr_unmap(&a, &v4));
}

static void check_list(const char *text, const char *expect)
{
	struct net_cidr_list list;
	struct fl_err err;
	assert_int_equal(net_cidr_list_parse(text, &list, &err), 0);
	char buf[512];
	net_cidr_list_format(&list, buf, sizeof buf);
	assert_string_equal(buf, expect);
	net_cidr_list_release(&list);
}

static void check_bad_list(const char *text, const char *entry)
{
	struct net_cidr_list list;
	struct fl_err err;
	assert_int_equal(net_cidr_list_parse(text, &list, &err), FL_ECONFIG);
	assert_int_equal(err.code, FL_ECONFIG);
	char quoted[128];
	snprintf(quoted, sizeof quoted, "'%s'", entry);
	if (!strstr(err.msg, quoted))
		fprintf(stderr, "message '%s' does not name %s\n", err.msg, quoted);
	assert_non_null(strstr(err.msg, quoted));
	assert_null(list.items);
	assert_int_equal(list.n, 0);
}

static void test_allow_list_parse(void **state)
{
	check_list(NULL, "");
	check_list("", "");
	check_list("127.0.0.2", "127.0.0.2/32");
	check_list(" 10.0.0.0/8 , 2001:db8::/32,,", "10.0.0.0/8, 2001:db8::/32");
	check_list("::ffff:127.0.0.2", "127.0.0.2/32");
	check_list("::ffff:10.0.0.0/104", "10.0.0.0/8");
	check_list("::1,::/0,0.0.0.0/0", "::1/128, ::/0, 0.0.0.0/0");
	check_list("\t192.168.1.0/24\t", "192.168.1.0/24");
	check_list("2001:DB8::/32", "2001:db8::/32");

	check_bad_list("127.0.0.2,127.1", "127.1");
	check_bad_list("10/8", "10/8");
	check_bad_list("10.0.0.1/8", "10.0.0.1/8");
	check_bad_list("1.2.3.4/33", "1.2.3.4/33");
	check_bad_list("::/129", "::/129");
	check_bad_list("abc", "abc");
	check_bad_list("1.2.3.4/", "1.2.3.4/");
	check_bad_list("1.2.3.4/-1", "1.2.3.4/-1");
	check_bad_list("1.2.3.4/+8", "1.2.3.4/+8");
	check_bad_list("010.0.0.1", "010.0.0.1");
	check_bad_list("[::1]", "[::1]");
	check_bad_list("1.2.3.4 5.6.7.8", "1.2.3.4 5.6.7.8");
	check_bad_list("localhost", "localhost");
	check_bad_list("fe80::1%eth0", "fe80::1%eth0");
	check_bad_list("2130706433", "2130706433");

	struct net_cidr_list list;
	struct fl_err err;
	assert_int_equal(net_cidr_list_parse("10.0.0.1/8", &list, &err), FL_ECONFIG);
	assert_non_null(strstr(err.msg, "10.0.0.0/8"));
}

static int list_has(const char *text, const char *host)
{
	struct net_cidr_list list;
	struct net_addr a;
	assert_int_equal(net_cidr_list_parse(text, &list, NULL), 0);
	assert_int_equal(net_addr_parse_host(host, &a), 0);
	int r = net_cidr_list_contains(&list, &a);
	net_cidr_list_release(&list);
	return r;
}

static void test_allow_list_contains(void **state)
{
	assert_true(list_has("127.0.0.2", "127.0.0.2"));
	assert_true(list_has("127.0.0.2", "2130706434"));
	assert_true(list_has("127.0.0.2", "::ffff:127.0.0.2"));
	assert_false(list_has("127.0.0.2", "127.0.0.1"));
	assert_false(list_has("127.0.0.2", "127.0.0.3"));
	assert_false(list_has("127.0.0.2", "::127.0.0.2"));
	assert_false(list_has("127.0.0.2", "64:ff9b::127.0.0.2"));
	assert_true(list_has("10.0.0.0/8", "10.255.255.255"));
	assert_false(list_has("10.0.0.0/8", "11.0.0.0"));
	assert_true(list_has("172.16.0.0/12", "172.31.0.1"));
	assert_false(list_has("172.16.0.0/12", "172.32.0.1"));
	assert_true(list_has("fd00::/8", "fd00::2"));
	assert_false(list_has("fd00::/8", "fc00::2"));
	assert_true(list_has("::1", "[::1]"));
	assert_false(list_has("::1", "127.0.0.1"));
	assert_true(list_has("0.0.0.0/0", "255.255.255.255"));
	assert_false(list_has("0.0.0.0/0", "::1"));
	assert_true(list_has("::/0", "::ffff:127.0.0.1"));
	assert_true(list_has("192.168.1.128/25", "192.168.1.200"));
	assert_false(list_has("192.168.1.128/25", "192.168.1.127"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_table),
		cmocka_unit_test(test_ipv4_matches_inet_aton),
		cmocka_unit_test(test_strict_parse),
		cmocka_unit_test(test_sockaddr_round_trip),
		cmocka_unit_test(test_allow_list_parse),
		cmocka_unit_test(test_allow_list_contains),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
