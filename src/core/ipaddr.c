#include "core/ipaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* The parsed form of a numeric address: its family and bytes; family 0
 * when 'addr' is not numeric. */
struct ipaddr_bytes {
	int family;
	unsigned char b[16];
};

static struct ipaddr_bytes ipaddr_parse(const char *addr)
{
	struct ipaddr_bytes p = {0};

	if (inet_pton(AF_INET, addr, p.b) == 1)
		p.family = AF_INET;
	else if (inet_pton(AF_INET6, addr, p.b) == 1)
		p.family = AF_INET6;
	return p;
}

bool ipaddr_is_any(const char *addr)
{
	static const unsigned char zero[16];
	struct ipaddr_bytes p = ipaddr_parse(addr);

	return p.family != 0 && memcmp(p.b, zero, sizeof(zero)) == 0;
}

bool ipaddr_overlap(const char *a, const char *b)
{
	struct ipaddr_bytes pa, pb;

	if (ipaddr_is_any(a) || ipaddr_is_any(b))
		return true;
	pa = ipaddr_parse(a);
	pb = ipaddr_parse(b);
	if (pa.family == 0 || pb.family == 0)
		return strcmp(a, b) == 0;
	return pa.family == pb.family && memcmp(pa.b, pb.b, sizeof(pa.b)) == 0;
}

bool ipaddr_url_host(const char *addr, char *out, size_t len)
{
	struct ipaddr_bytes p = ipaddr_parse(addr);
	const char *host = addr;
	int n;

	if (ipaddr_is_any(addr))
		host = p.family == AF_INET ? "127.0.0.1" : "::1";
	if (p.family == AF_INET6)
		n = snprintf(out, len, "[%s]", host);
	else
		n = snprintf(out, len, "%s", host);
	if (n < 0 || (size_t)n >= len) {
		if (len)
			out[0] = '\0';
		return false;
	}
	return true;
}
