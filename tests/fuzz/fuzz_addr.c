/* Fuzzes the numeric host parser, the classifier and the allow-list parser. Besides not
 * crashing, it checks three properties: the IPv4 parser agrees with the C library's inet_aton
 * wherever inet_aton's stop-at-a-blank rule is not involved; a parsed address prints and parses
 * back to itself with the same verdict; and an address an allow list was built from is inside it. */
#include "core/alloc.h"
#include "core/assert.h"
#include "net/addr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	char *s = fl_malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';

	int has_blank = 0;
	for (size_t i = 0; i < size; i++)
		if (isspace((unsigned char)s[i]) || s[i] == '\0')
			has_blank = 1;

	struct net_addr a;
	int ours = net_addr_parse_ipv4(s, size, &a) == 0;
	if (!has_blank) {
		struct in_addr libc;
		int theirs = inet_aton(s, &libc) == 1;
		FL_ASSERT(ours == theirs);
		if (ours)
			FL_ASSERT(memcmp(&libc, a.bytes, 4) == 0);
	}

	if (net_addr_parse_host(s, &a) == 0) {
		FL_ASSERT(a.family == AF_INET || a.family == AF_INET6);
		char text[NET_ADDR_STRLEN], why[64];
		net_addr_format(&a, text, sizeof text);
		struct net_addr_verdict v = net_addr_classify(&a);
		net_addr_verdict_describe(v, why, sizeof why);
		struct net_addr back;
		FL_ASSERT(net_addr_parse_host(text, &back) == 0);
		FL_ASSERT(net_addr_equal(&a, &back));
		struct net_addr_verdict v2 = net_addr_classify(&back);
		FL_ASSERT(v.cls == v2.cls && v.wrap == v2.wrap);
		FL_ASSERT(net_addr_parse_strict(text, strlen(text), &back) == 0);
		FL_ASSERT(net_addr_equal(&a, &back));

		struct net_cidr_list list;
		FL_ASSERT(net_cidr_list_parse(text, &list, NULL) == 0);
		FL_ASSERT(list.n == 1 && net_cidr_list_contains(&list, &a));
		net_cidr_list_release(&list);
	}

	struct net_cidr_list list;
	if (net_cidr_list_parse(s, &list, NULL) == 0) {
		char buf[8192];
		net_cidr_list_format(&list, buf, sizeof buf);
		for (size_t i = 0; i < list.n; i++)
			FL_ASSERT(net_cidr_list_contains(&list, &list.items[i].addr));
		net_cidr_list_release(&list);
	}
	fl_free(s);
	return 0;
}
