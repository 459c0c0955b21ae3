/* Numeric listener addresses as the settings give them ("127.0.0.1",
 * "0.0.0.0", "::1"): which two listeners would claim the same socket, and
 * how a local client (the Consul agent's HTTP check) reaches one. No names
 * are resolved. Pure logic: the configuration refuses two listeners on one
 * socket with ipaddr_overlap(), and the check URL is built with
 * ipaddr_url_host(). */
#ifndef MESHNODE_CORE_IPADDR_H
#define MESHNODE_CORE_IPADDR_H

#include <stdbool.h>
#include <stddef.h>

/* true when 'addr' is a numeric unspecified address: "0.0.0.0" or "::"
 * (in any spelling inet_pton(3) accepts, "0:0::0" too). */
bool ipaddr_is_any(const char *addr);

/* true when listeners on 'a' and 'b', on the same port, would claim the
 * same socket: the two are the same address (compared as parsed when both
 * are numeric, else as text), or either is unspecified (it takes every
 * address of the host). */
bool ipaddr_overlap(const char *a, const char *b);

/* The host part of a URL that reaches, from this host, a listener on
 * 'addr', into out[len]: an unspecified address becomes the loopback of
 * its family ("0.0.0.0" -> "127.0.0.1", "::" -> "[::1]"), an IPv6 address
 * is put in brackets ("[fe80::1]"), anything else is copied. false, out
 * then "", when it does not fit. */
bool ipaddr_url_host(const char *addr, char *out, size_t len);

#endif
