/* IP addresses as the network policy sees them: parsing every numeric spelling of a host the way
 * the C library reads it, classifying an address into the IANA special-purpose ranges (IPv4 and
 * IPv6, with the IPv4 address inside mapped, compatible, NAT64 and 6to4 forms looked through),
 * and the CIDR lists of AP_SSRF_ALLOW_LIST. Pure functions, no I/O; net/policy.h builds on them. */
#ifndef NET_ADDR_H
#define NET_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct fl_err;

struct net_addr {
	int family;         /* AF_INET or AF_INET6 */
	uint8_t bytes[16];  /* network order; AF_INET uses the first 4 */
	uint32_t scope_id;  /* IPv6 zone index, 0 when none or not known */
};

/* Longest text net_addr_format writes, NUL included. */
#define NET_ADDR_STRLEN 64

/* What an address is. Everything but NET_ADDR_PUBLIC is refused under STRICT. */
enum net_addr_class {
	NET_ADDR_PUBLIC,          /* global unicast */
	NET_ADDR_UNSPECIFIED,     /* 0.0.0.0, :: */
	NET_ADDR_THIS_NETWORK,    /* 0.0.0.0/8 other than 0.0.0.0 */
	NET_ADDR_LOOPBACK,        /* 127.0.0.0/8, ::1 */
	NET_ADDR_PRIVATE,         /* RFC 1918: 10/8, 172.16/12, 192.168/16 */
	NET_ADDR_SHARED,          /* 100.64.0.0/10, carrier-grade NAT */
	NET_ADDR_LINK_LOCAL,      /* 169.254.0.0/16, fe80::/10 */
	NET_ADDR_PROTOCOL,        /* 192.0.0.0/24, 2001::/23: IETF protocol assignments */
	NET_ADDR_DOCUMENTATION,   /* TEST-NET-1/2/3, 2001:db8::/32, 3fff::/20 */
	NET_ADDR_BENCHMARKING,    /* 198.18.0.0/15, 2001:2::/48 */
	NET_ADDR_MULTICAST,       /* 224.0.0.0/4, ff00::/8 */
	NET_ADDR_BROADCAST,       /* 255.255.255.255 */
	NET_ADDR_RESERVED,        /* 240.0.0.0/4, IPv6 outside 2000::/3 not named below */
	NET_ADDR_DEPRECATED,      /* 192.88.99.0/24 (6to4 relay), IPv4-compatible ::a.b.c.d */
	NET_ADDR_UNIQUE_LOCAL,    /* fc00::/7 */
	NET_ADDR_SITE_LOCAL,      /* fec0::/10 */
	NET_ADDR_DISCARD,         /* 100::/64 */
	NET_ADDR_TEREDO,          /* 2001::/32 */
	NET_ADDR_NAT64_LOCAL,     /* 64:ff9b:1::/48 outside its /96 form: the embedding is unknown */
};

/* How the IPv4 address that decided the class was wrapped in IPv6, if it was. */
enum net_addr_wrap {
	NET_WRAP_NONE,
	NET_WRAP_MAPPED,      /* ::ffff:a.b.c.d */
	NET_WRAP_COMPATIBLE,  /* ::a.b.c.d */
	NET_WRAP_TRANSLATED,  /* ::ffff:0:a.b.c.d (SIIT) */
	NET_WRAP_NAT64,       /* 64:ff9b::a.b.c.d, 64:ff9b:1::a.b.c.d */
	NET_WRAP_6TO4,        /* 2002:aabb:ccdd::/48 */
};

struct net_addr_verdict {
	enum net_addr_class cls;
	enum net_addr_wrap wrap;
};

/* Parses a dotted IPv4 host exactly as inet_aton does, over the whole of s[0..len): one to four
 * parts separated by dots, each decimal, octal (leading 0) or hex (leading 0x), the last part
 * filling the remaining bytes ("127.1" is 127.0.0.1, "2130706433" and "0x7f.1" are too). Unlike
 * inet_aton, nothing may follow the address, not even blanks (getaddrinfo's rule). Returns 0, or
 * FL_EINVAL when s is not such an address. */
int net_addr_parse_ipv4(const char *s, size_t len, struct net_addr *out);

/* Parses a numeric host as a URL or a resolver would take it: any IPv4 spelling above, or an
 * IPv6 literal with or without brackets, with an optional zone id ("%eth0", or "%25eth0" as URLs
 * write it; a numeric zone is kept in scope_id). Returns 0, or FL_EINVAL when host is not a
 * numeric address (a name, or junk). */
int net_addr_parse_host(const char *host, struct net_addr *out);

/* Strict form for configuration: a dotted-quad IPv4 of four decimal parts, or an IPv6 address
 * without zone or brackets. Returns 0 or FL_EINVAL. */
int net_addr_parse_strict(const char *s, size_t len, struct net_addr *out);

/* Converts from and to socket addresses (the port is taken from or put into sa). Returns 0, or
 * FL_EINVAL for another family or a short length. */
int net_addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, struct net_addr *out,
			   uint16_t *port);
socklen_t net_addr_to_sockaddr(const struct net_addr *a, uint16_t port,
			       struct sockaddr_storage *sa);

/* Writes the canonical text (dotted quad, RFC 5952 IPv6) into buf (NET_ADDR_STRLEN bytes fit
 * any address) and returns buf. */
char *net_addr_format(const struct net_addr *a, char *buf, size_t n);

/* 1 when a and b are the same address (scope ids ignored), else 0. */
int net_addr_equal(const struct net_addr *a, const struct net_addr *b);

/* If a is ::ffff:a.b.c.d, stores the IPv4 address in v4 and returns 1; else returns 0. */
int net_addr_unmap(const struct net_addr *a, struct net_addr *v4);

/* Classifies a. For an IPv6 address that carries an IPv4 one (mapped, compatible, translated,
 * NAT64, 6to4) the class is that of the IPv4 address when it is not public, with wrap saying
 * how it was carried; a public IPv4 inside a deprecated form is NET_ADDR_DEPRECATED. */
struct net_addr_verdict net_addr_classify(const struct net_addr *a);

/* A lowercase phrase for a class ("loopback", "private", ...). */
const char *net_addr_class_name(enum net_addr_class cls);
/* The verdict as a phrase, e.g. "loopback" or "IPv4-mapped loopback", into buf; returns buf. */
char *net_addr_verdict_describe(struct net_addr_verdict v, char *buf, size_t n);

/* A list of networks, such as AP_SSRF_ALLOW_LIST. */
struct net_cidr {
	struct net_addr addr; /* network address; host bits are zero */
	unsigned prefix;      /* 0..32 for AF_INET, 0..128 for AF_INET6 */
};

struct net_cidr_list {
	struct net_cidr *items;
	size_t n;
};

/* Parses a comma-separated list of addresses and CIDRs, v4 and v6 (blanks around entries and
 * empty entries are ignored; an IPv4-mapped IPv6 entry is stored as IPv4). An entry that is not
 * a strict address, has a bad prefix, or has host bits set is an FL_ECONFIG error naming it. On
 * success *list owns its items (release with net_cidr_list_release); on error it is empty. */
int net_cidr_list_parse(const char *text, struct net_cidr_list *list, struct fl_err *err);
void net_cidr_list_release(struct net_cidr_list *list);
/* 1 when a (or, for ::ffff:a.b.c.d, its IPv4 address) is inside one of the networks. */
int net_cidr_list_contains(const struct net_cidr_list *list, const struct net_addr *a);
/* Writes the networks as "a/n, b/m" (canonical forms) into buf; returns buf. */
char *net_cidr_list_format(const struct net_cidr_list *list, char *buf, size_t n);

#endif
