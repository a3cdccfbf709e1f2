/* Address parsing and classification for the network policy. The ranges come from the IANA IPv4
 * and IPv6 special-purpose address registries; IPv6 is judged by allowing only 2000::/3 (global
 * unicast) minus its special blocks, so that space IANA assigns later starts out refused. */
#include "net/addr.h"

#include "core/alloc.h"
#include "core/err.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int digit_value(char c, unsigned base)
{
	unsigned v;
	if (c >= '0' && c <= '9')
		v = (unsigned)(c - '0');
	else if (c >= 'a' && c <= 'f')
		v = (unsigned)(c - 'a') + 10;
	else if (c >= 'A' && c <= 'F')
		v = (unsigned)(c - 'A') + 10;
	else
		return -1;
	return v < base ? (int)v : -1;
}

static void set_v4(struct net_addr *out, uint32_t host_order)
{
	memset(out, 0, sizeof *out);
	out->family = AF_INET;
	out->bytes[0] = (uint8_t)(host_order >> 24);
	out->bytes[1] = (uint8_t)(host_order >> 16);
	out->bytes[2] = (uint8_t)(host_order >> 8);
	out->bytes[3] = (uint8_t)host_order;
}

static uint32_t v4_value(const uint8_t *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

int net_addr_parse_ipv4(const char *s, size_t len, struct net_addr *out)
{
	/* inet_aton reads each part with strtoul(base 0) after checking that it starts with a
	 * digit; the parts before the last are bytes, the last fills what is left. */
	uint32_t parts[3];
	size_t n = 0, i = 0;
	uint64_t v;
	for (;;) {
		if (i >= len || !is_digit(s[i]))
			return FL_EINVAL;
		unsigned base = 10;
		if (s[i] == '0') {
			if (i + 1 < len && (s[i + 1] == 'x' || s[i + 1] == 'X')) {
				/* strtoul takes "0x" only with a hex digit after it; else it
				 * reads "0" and the 'x' is trailing junk. */
				if (i + 2 >= len || digit_value(s[i + 2], 16) < 0)
					return FL_EINVAL;
				base = 16;
				i += 2;
			} else {
				base = 8;
			}
		}
		v = 0;
		int d;
		while (i < len && (d = digit_value(s[i], base)) >= 0) {
			v = v * base + (unsigned)d;
			if (v > 0xffffffffu)
				return FL_EINVAL;
			i++;
		}
		if (i < len && s[i] == '.') {
			if (n >= 3 || v > 0xff)
				return FL_EINVAL;
			parts[n++] = (uint32_t)v;
			i++;
			continue;
		}
		break;
	}
	if (i != len)
		return FL_EINVAL;
	static const uint64_t last_max[4] = { 0xffffffffu, 0xffffffu, 0xffffu, 0xffu };
	if (v > last_max[n])
		return FL_EINVAL;
	uint32_t addr = (uint32_t)v;
	for (size_t k = 0; k < n; k++)
		addr |= parts[k] << (24 - 8 * k);
	set_v4(out, addr);
	return 0;
}

/* Parses an IPv6 address (no brackets) with an optional "%zone" suffix. url_zone says the zone
 * came from a URL, where '%' itself is written "%25". */
static int parse_ipv6(const char *s, size_t len, int url_zone, struct net_addr *out)
{
	char buf[INET6_ADDRSTRLEN];
	const char *pct = memchr(s, '%', len);
	size_t addr_len = pct ? (size_t)(pct - s) : len;
	if (addr_len == 0 || addr_len >= sizeof buf || memchr(s, '\0', len))
		return FL_EINVAL;
	memcpy(buf, s, addr_len);
	buf[addr_len] = '\0';
	struct in6_addr in6;
	if (inet_pton(AF_INET6, buf, &in6) != 1)
		return FL_EINVAL;
	uint32_t scope = 0;
	if (pct) {
		const char *zone = pct + 1;
		size_t zlen = len - addr_len - 1;
		if (url_zone && zlen >= 2 && zone[0] == '2' && zone[1] == '5') {
			zone += 2;
			zlen -= 2;
		}
		if (zlen == 0 || zlen > 64)
			return FL_EINVAL;
		int numeric = 1;
		uint64_t idx = 0;
		for (size_t k = 0; k < zlen; k++) {
			char c = zone[k];
			if (!(is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			      c == '-' || c == '.' || c == '_' || c == '~'))
				return FL_EINVAL;
			if (!is_digit(c))
				numeric = 0;
			else if (idx <= 0xffffffffu)
				idx = idx * 10 + (unsigned)(c - '0');
		}
		if (numeric && idx <= 0xffffffffu)
			scope = (uint32_t)idx;
	}
	memset(out, 0, sizeof *out);
	out->family = AF_INET6;
	memcpy(out->bytes, &in6, 16);
	out->scope_id = scope;
	return 0;
}

int net_addr_parse_host(const char *host, struct net_addr *out)
{
	size_t len = strlen(host);
	if (len >= 2 && host[0] == '[') {
		if (host[len - 1] != ']')
			return FL_EINVAL;
		return parse_ipv6(host + 1, len - 2, 1, out);
	}
	if (memchr(host, ':', len))
		return parse_ipv6(host, len, 0, out);
	return net_addr_parse_ipv4(host, len, out);
}

int net_addr_parse_strict(const char *s, size_t len, struct net_addr *out)
{
	char buf[INET6_ADDRSTRLEN];
	if (len == 0 || len >= sizeof buf || memchr(s, '\0', len))
		return FL_EINVAL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(out, 0, sizeof *out);
	if (memchr(buf, ':', len)) {
		if (inet_pton(AF_INET6, buf, out->bytes) != 1)
			return FL_EINVAL;
		out->family = AF_INET6;
		return 0;
	}
	/* glibc's inet_pton already refuses leading zeros, but say so here rather than rely on it:
	 * "010.0.0.1" means 8.0.0.1 to inet_aton, and a config entry must not be ambiguous. */
	for (size_t i = 0; i + 1 < len; i++)
		if ((i == 0 || buf[i - 1] == '.') && buf[i] == '0' && is_digit(buf[i + 1]))
			return FL_EINVAL;
	if (inet_pton(AF_INET, buf, out->bytes) != 1)
		return FL_EINVAL;
	out->family = AF_INET;
	return 0;
}

int net_addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, struct net_addr *out,
			   uint16_t *port)
{
	memset(out, 0, sizeof *out);
	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		out->family = AF_INET;
		memcpy(out->bytes, &sin->sin_addr, 4);
		if (port)
			*port = ntohs(sin->sin_port);
		return 0;
	}
	if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		out->family = AF_INET6;
		memcpy(out->bytes, &sin6->sin6_addr, 16);
		out->scope_id = sin6->sin6_scope_id;
		if (port)
			*port = ntohs(sin6->sin6_port);
		return 0;
	}
	return FL_EINVAL;
}

socklen_t net_addr_to_sockaddr(const struct net_addr *a, uint16_t port,
			       struct sockaddr_storage *sa)
{
	memset(sa, 0, sizeof *sa);
	if (a->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)sa;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, a->bytes, 4);
		return sizeof *sin;
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)sa;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	memcpy(&sin6->sin6_addr, a->bytes, 16);
	sin6->sin6_scope_id = a->scope_id;
	return sizeof *sin6;
}

char *net_addr_format(const struct net_addr *a, char *buf, size_t n)
{
	if (n == 0)
		return buf;
	if (!inet_ntop(a->family == AF_INET ? AF_INET : AF_INET6, a->bytes, buf, (socklen_t)n))
		snprintf(buf, n, "?");
	return buf;
}

int net_addr_equal(const struct net_addr *a, const struct net_addr *b)
{
	if (a->family != b->family)
		return 0;
	return memcmp(a->bytes, b->bytes, a->family == AF_INET ? 4 : 16) == 0;
}

static int all_zero(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return 0;
	return 1;
}

int net_addr_unmap(const struct net_addr *a, struct net_addr *v4)
{
	if (a->family != AF_INET6 || !all_zero(a->bytes, 10) || a->bytes[10] != 0xff ||
	    a->bytes[11] != 0xff)
		return 0;
	set_v4(v4, v4_value(a->bytes + 12));
	return 1;
}

/* First match wins, so the more specific blocks come first. */
struct range {
	uint8_t prefix[16];
	unsigned len;
	enum net_addr_class cls;
};

static const struct range v4_ranges[] = {
	{ { 0, 0, 0, 0 }, 32, NET_ADDR_UNSPECIFIED },
	{ { 0 }, 8, NET_ADDR_THIS_NETWORK },
	{ { 10 }, 8, NET_ADDR_PRIVATE },
	{ { 100, 64 }, 10, NET_ADDR_SHARED },
	{ { 127 }, 8, NET_ADDR_LOOPBACK },
	{ { 169, 254 }, 16, NET_ADDR_LINK_LOCAL },
	{ { 172, 16 }, 12, NET_ADDR_PRIVATE },
	/* 192.0.0.9 and .10 (PCP and TURN anycast) are global in the registry; the whole /24 is
	 * refused anyway, since no flow needs them and the rest of the block is not routable. */
	{ { 192, 0, 0 }, 24, NET_ADDR_PROTOCOL },
	{ { 192, 0, 2 }, 24, NET_ADDR_DOCUMENTATION },
	{ { 192, 88, 99 }, 24, NET_ADDR_DEPRECATED },
	{ { 192, 168 }, 16, NET_ADDR_PRIVATE },
	{ { 198, 18 }, 15, NET_ADDR_BENCHMARKING },
	{ { 198, 51, 100 }, 24, NET_ADDR_DOCUMENTATION },
	{ { 203, 0, 113 }, 24, NET_ADDR_DOCUMENTATION },
	{ { 255, 255, 255, 255 }, 32, NET_ADDR_BROADCAST },
	{ { 224 }, 4, NET_ADDR_MULTICAST },
	{ { 240 }, 4, NET_ADDR_RESERVED },
};

static const struct range v6_ranges[] = {
	{ { 0x01, 0x00, 0, 0, 0, 0, 0, 0 }, 64, NET_ADDR_DISCARD },
	/* The few global services inside the IETF protocol block (RFC 9637 registry entries). */
	{ { 0x20, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 }, 128, NET_ADDR_PUBLIC },
	{ { 0x20, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2 }, 128, NET_ADDR_PUBLIC },
	{ { 0x20, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3 }, 128, NET_ADDR_PUBLIC },
	{ { 0x20, 0x01, 0x00, 0x03 }, 32, NET_ADDR_PUBLIC },
	{ { 0x20, 0x01, 0x00, 0x04, 0x01, 0x12 }, 48, NET_ADDR_PUBLIC },
	/* Teredo tunnels to an IPv4 client through whatever relay is near: refused whole. */
	{ { 0x20, 0x01, 0x00, 0x00 }, 32, NET_ADDR_TEREDO },
	{ { 0x20, 0x01, 0x00, 0x02, 0x00, 0x00 }, 48, NET_ADDR_BENCHMARKING },
	{ { 0x20, 0x01, 0x00, 0x00 }, 23, NET_ADDR_PROTOCOL },
	{ { 0x20, 0x01, 0x0d, 0xb8 }, 32, NET_ADDR_DOCUMENTATION },
	{ { 0x3f, 0xff, 0x00 }, 20, NET_ADDR_DOCUMENTATION },
	{ { 0x20 }, 3, NET_ADDR_PUBLIC },
	{ { 0xfc }, 7, NET_ADDR_UNIQUE_LOCAL },
	{ { 0xfe, 0x80 }, 10, NET_ADDR_LINK_LOCAL },
	{ { 0xfe, 0xc0 }, 10, NET_ADDR_SITE_LOCAL },
	{ { 0xff }, 8, NET_ADDR_MULTICAST },
};

static int prefix_match(const uint8_t *a, const uint8_t *prefix, unsigned len)
{
	unsigned full = len / 8, rest = len % 8;
	if (memcmp(a, prefix, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[full] & mask) == (prefix[full] & mask);
}

static enum net_addr_class classify_v4(const uint8_t *b)
{
	for (size_t i = 0; i < sizeof v4_ranges / sizeof v4_ranges[0]; i++)
		if (prefix_match(b, v4_ranges[i].prefix, v4_ranges[i].len))
			return v4_ranges[i].cls;
	return NET_ADDR_PUBLIC;
}

/* The verdict for an IPv4 address carried inside IPv6. public_cls is what a public IPv4 address
 * makes of the whole: public when the form really reaches it, else the form's own class. */
static struct net_addr_verdict wrapped(const uint8_t *v4, enum net_addr_wrap wrap,
				       enum net_addr_class public_cls)
{
	enum net_addr_class c = classify_v4(v4);
	struct net_addr_verdict v = { c == NET_ADDR_PUBLIC ? public_cls : c, wrap };
	return v;
}

struct net_addr_verdict net_addr_classify(const struct net_addr *a)
{
	struct net_addr_verdict v = { NET_ADDR_PUBLIC, NET_WRAP_NONE };
	if (a->family == AF_INET) {
		v.cls = classify_v4(a->bytes);
		return v;
	}
	if (a->family != AF_INET6) {
		v.cls = NET_ADDR_RESERVED;
		return v;
	}
	const uint8_t *b = a->bytes;
	static const uint8_t nat64_wkp[12] = { 0x00, 0x64, 0xff, 0x9b };
	static const uint8_t nat64_local[6] = { 0x00, 0x64, 0xff, 0x9b, 0x00, 0x01 };
	if (all_zero(b, 12)) {
		if (all_zero(b + 12, 3) && b[15] <= 1) {
			v.cls = b[15] ? NET_ADDR_LOOPBACK : NET_ADDR_UNSPECIFIED;
			return v;
		}
		/* Deprecated by RFC 4291 and routed nowhere useful, even around a public one. */
		return wrapped(b + 12, NET_WRAP_COMPATIBLE, NET_ADDR_DEPRECATED);
	}
	if (all_zero(b, 10) && b[10] == 0xff && b[11] == 0xff)
		return wrapped(b + 12, NET_WRAP_MAPPED, NET_ADDR_PUBLIC);
	if (all_zero(b, 8) && b[8] == 0xff && b[9] == 0xff && b[10] == 0 && b[11] == 0)
		return wrapped(b + 12, NET_WRAP_TRANSLATED, NET_ADDR_DEPRECATED);
	if (memcmp(b, nat64_wkp, 12) == 0)
		return wrapped(b + 12, NET_WRAP_NAT64, NET_ADDR_PUBLIC);
	if (memcmp(b, nat64_local, 6) == 0) {
		/* Local-use NAT64 (RFC 8215): an operator may embed the IPv4 address at any RFC 6052
		 * position. Only the /96 form can be read with certainty. */
		if (all_zero(b + 6, 6))
			return wrapped(b + 12, NET_WRAP_NAT64, NET_ADDR_PUBLIC);
		v.cls = NET_ADDR_NAT64_LOCAL;
		return v;
	}
	if (b[0] == 0x20 && b[1] == 0x02)
		return wrapped(b + 2, NET_WRAP_6TO4, NET_ADDR_PUBLIC);
	for (size_t i = 0; i < sizeof v6_ranges / sizeof v6_ranges[0]; i++)
		if (prefix_match(b, v6_ranges[i].prefix, v6_ranges[i].len)) {
			v.cls = v6_ranges[i].cls;
			return v;
		}
	v.cls = NET_ADDR_RESERVED;
	return v;
}

const char *net_addr_class_name(enum net_addr_class cls)
{
	switch (cls) {
	case NET_ADDR_PUBLIC: return "public";
	case NET_ADDR_UNSPECIFIED: return "unspecified";
	case NET_ADDR_THIS_NETWORK: return "this network";
	case NET_ADDR_LOOPBACK: return "loopback";
	case NET_ADDR_PRIVATE: return "private";
	case NET_ADDR_SHARED: return "shared address space";
	case NET_ADDR_LINK_LOCAL: return "link-local";
	case NET_ADDR_PROTOCOL: return "IETF protocol assignment";
	case NET_ADDR_DOCUMENTATION: return "documentation";
	case NET_ADDR_BENCHMARKING: return "benchmarking";
	case NET_ADDR_MULTICAST: return "multicast";
	case NET_ADDR_BROADCAST: return "broadcast";
	case NET_ADDR_RESERVED: return "reserved";
	case NET_ADDR_DEPRECATED: return "deprecated";
	case NET_ADDR_UNIQUE_LOCAL: return "unique local";
	case NET_ADDR_SITE_LOCAL: return "site-local";
	case NET_ADDR_DISCARD: return "discard-only";
	case NET_ADDR_TEREDO: return "Teredo";
	case NET_ADDR_NAT64_LOCAL: return "local-use NAT64";
	}
	return "unknown";
}

char *net_addr_verdict_describe(struct net_addr_verdict v, char *buf, size_t n)
{
	static const char *const wrap_names[] = {
		[NET_WRAP_NONE] = "",
		[NET_WRAP_MAPPED] = "IPv4-mapped ",
		[NET_WRAP_COMPATIBLE] = "IPv4-compatible ",
		[NET_WRAP_TRANSLATED] = "IPv4-translated ",
		[NET_WRAP_NAT64] = "NAT64 ",
		[NET_WRAP_6TO4] = "6to4 ",
	};
	snprintf(buf, n, "%s%s", wrap_names[v.wrap], net_addr_class_name(v.cls));
	return buf;
}

static int cidr_contains(const struct net_cidr *c, const struct net_addr *a)
{
	return c->addr.family == a->family && prefix_match(a->bytes, c->addr.bytes, c->prefix);
}

static int parse_cidr(const char *s, size_t len, struct net_cidr *out)
{
	const char *slash = memchr(s, '/', len);
	size_t addr_len = slash ? (size_t)(slash - s) : len;
	if (net_addr_parse_strict(s, addr_len, &out->addr))
		return -1;
	unsigned max = out->addr.family == AF_INET ? 32 : 128;
	out->prefix = max;
	if (slash) {
		const char *p = slash + 1;
		size_t plen = len - addr_len - 1;
		unsigned v = 0;
		if (plen == 0 || plen > 3)
			return -1;
		for (size_t i = 0; i < plen; i++) {
			if (!is_digit(p[i]))
				return -1;
			v = v * 10 + (unsigned)(p[i] - '0');
		}
		if (v > max)
			return -1;
		out->prefix = v;
	}
	return 0;
}

/* Clears the bits past prefix; returns 1 if any was set. */
static int clear_host_bits(struct net_cidr *c)
{
	unsigned bytes = c->addr.family == AF_INET ? 4 : 16;
	int had = 0;
	for (unsigned i = 0; i < bytes; i++) {
		unsigned keep = c->prefix > i * 8 ? c->prefix - i * 8 : 0;
		uint8_t mask = keep >= 8 ? 0xff : (uint8_t)(0xff << (8 - keep));
		if (c->addr.bytes[i] & ~mask)
			had = 1;
		c->addr.bytes[i] &= mask;
	}
	return had;
}

int net_cidr_list_parse(const char *text, struct net_cidr_list *list, struct fl_err *err)
{
	list->items = NULL;
	list->n = 0;
	if (!text)
		return 0;
	size_t cap = 0;
	const char *p = text;
	while (*p) {
		const char *end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		const char *a = p, *b = end;
		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
			b--;
		p = *end ? end + 1 : end;
		if (a == b)
			continue;
		struct net_cidr c;
		int len = (int)(b - a);
		if (parse_cidr(a, (size_t)(b - a), &c)) {
			net_cidr_list_release(list);
			return fl_err_set(err, FL_ECONFIG,
					  "bad entry '%.*s': expected an IP address or CIDR such as "
					  "203.0.113.7, 10.0.0.0/8 or 2001:db8::/32",
					  len, a);
		}
		if (clear_host_bits(&c)) {
			char net[NET_ADDR_STRLEN];
			net_addr_format(&c.addr, net, sizeof net);
			net_cidr_list_release(list);
			return fl_err_set(err, FL_ECONFIG,
					  "bad entry '%.*s': host bits are set (the network is %s/%u)",
					  len, a, net, c.prefix);
		}
		struct net_addr v4;
		if (c.addr.family == AF_INET6 && c.prefix >= 96 && net_addr_unmap(&c.addr, &v4)) {
			c.addr = v4;
			c.prefix -= 96;
		}
		if (list->n == cap) {
			cap = cap ? cap * 2 : 4;
			list->items = fl_realloc(list->items, cap * sizeof *list->items);
		}
		list->items[list->n++] = c;
	}
	return 0;
}

void net_cidr_list_release(struct net_cidr_list *list)
{
	fl_free(list->items);
	list->items = NULL;
	list->n = 0;
}

int net_cidr_list_contains(const struct net_cidr_list *list, const struct net_addr *a)
{
	struct net_addr v4;
	int mapped = net_addr_unmap(a, &v4);
	for (size_t i = 0; i < list->n; i++)
		if (cidr_contains(&list->items[i], a) ||
		    (mapped && cidr_contains(&list->items[i], &v4)))
			return 1;
	return 0;
}

char *net_cidr_list_format(const struct net_cidr_list *list, char *buf, size_t n)
{
	size_t off = 0;
	if (n)
		buf[0] = '\0';
	for (size_t i = 0; i < list->n && off < n; i++) {
		char a[NET_ADDR_STRLEN];
		net_addr_format(&list->items[i].addr, a, sizeof a);
		int w = snprintf(buf + off, n - off, "%s%s/%u", i ? ", " : "", a,
				 list->items[i].prefix);
		if (w < 0)
			break;
		off += (size_t)w;
	}
	return buf;
}
