#include "core/hostport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool hostport_parse_ip(const char *s, struct sockaddr_storage *sa, socklen_t *len)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct sockaddr_in *in4;
	struct sockaddr_in6 *in6;
	const char *host = s, *colon;
	char buf[64];
	size_t hlen;
	char *end;
	long port;

	if (sa == NULL)
		sa = &ss;
	if (len == NULL)
		len = &sslen;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL)
			return false;
		host = s + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return false;
		hlen = (size_t)(colon - s);
	}
	if (*colon != ':' || hlen == 0 || hlen >= sizeof(buf))
		return false;
	memcpy(buf, host, hlen);
	buf[hlen] = '\0';
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || port < 1 || port > 65535)
		return false;
	memset(sa, 0, sizeof(*sa));
	in4 = (struct sockaddr_in *)sa;
	in6 = (struct sockaddr_in6 *)sa;
	if (inet_pton(AF_INET, buf, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		*len = sizeof(*in4);
		return true;
	}
	if (inet_pton(AF_INET6, buf, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return true;
	}
	return false;
}
