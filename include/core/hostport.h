/* "address:port" with a numeric address, as the agent's DNS interface is
 * named: "127.0.0.1:8600", "[::1]:8600" (an IPv6 address in brackets, or
 * bare when the last colon leaves a valid one: "::1:8600"). No names are
 * resolved. The one parser of the form: the settings table checks
 * consul.dns_address with it and the DNS client connects with its result. */
#ifndef MESHNODE_CORE_HOSTPORT_H
#define MESHNODE_CORE_HOSTPORT_H

#include <stdbool.h>
#include <sys/socket.h>

/* Parses 's' into *sa (an AF_INET or AF_INET6 address with its port, the
 * rest zeroed) and *len (its size). false when 's' is not a numeric
 * address, a colon and a port from 1 to 65535; *sa and *len are then
 * unspecified. 'sa' and 'len' may be NULL to check only. */
bool hostport_parse_ip(const char *s, struct sockaddr_storage *sa, socklen_t *len);

#endif
