/* SPIFFE IDs as Consul 1.8 writes them in Connect certificates: the service
 * identity spiffe://<trust-domain>/ns/<namespace>/dc/<dc>/svc/<service>,
 * parsed strictly (no percent-escapes, dot or empty segments, query,
 * port or user part; lowercase where Consul writes lowercase), the URI a
 * service is expected to present, and the identity check of a peer. The
 * agent's (/agent/client/dc/<dc>/id/<node>) and the CA's (no path) URIs
 * are recognised and refused as not a service identity. No allocation. */
#ifndef MESHNODE_CONNECT_SPIFFE_H
#define MESHNODE_CONNECT_SPIFFE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

#define SPIFFE_URI_MAX		512 /* longest URI accepted, in bytes */
#define SPIFFE_TRUST_DOMAIN_MAX 253 /* a host name */
#define SPIFFE_NAME_MAX		63  /* namespace, datacenter, node */
#define SPIFFE_SERVICE_MAX	128 /* a service name */

enum spiffe_kind {
	SPIFFE_NONE,	/* not parsed, or not a URI of any form below */
	SPIFFE_SERVICE, /* /ns/<ns>/dc/<dc>/svc/<service> */
	SPIFFE_AGENT,	/* /agent/client/dc/<dc>/id/<node> */
	SPIFFE_CA,	/* no path: a CA's signing certificate */
};

/* A parsed URI: every part NUL-terminated in its own buffer; the ones a
 * kind does not have are empty (an agent's node is in 'service'). */
struct spiffe_id {
	enum spiffe_kind kind;
	char trust_domain[SPIFFE_TRUST_DOMAIN_MAX + 1];
	char ns[SPIFFE_NAME_MAX + 1];
	char dc[SPIFFE_NAME_MAX + 1];
	char service[SPIFFE_SERVICE_MAX + 1];
};

/* Parses uri[0..len) (need not be NUL-terminated) into *out. MN_OK only
 * for a service identity. MN_INVALID otherwise, with the reason in the
 * optional 'err' ("not a service identity: an agent's URI", "segment 3
 * ('..') is a dot segment", ...) and out->kind saying which form it was
 * (SPIFFE_AGENT, SPIFFE_CA, or SPIFFE_NONE for anything malformed). */
enum mn_err spiffe_parse(const char *uri, size_t len, struct spiffe_id *out, char *err,
			 size_t errlen);

/* NULL when s[0..len) is a trust domain as Consul writes it: a lowercase
 * RFC 1123 host name ("<cluster uuid>.consul"); else why not, a static
 * string to follow the name ("is not lowercase"). */
const char *spiffe_trust_domain_problem(const char *s, size_t len);

/* NULL when s[0..len) is a service name / a datacenter name as Consul
 * writes them in a SPIFFE ID (the rules spiffe_parse() applies); else why
 * not, a static string to follow the name ("is empty", "is not
 * lowercase", ...). */
const char *spiffe_service_problem(const char *s, size_t len);
const char *spiffe_dc_problem(const char *s, size_t len);

/* Writes the URI a service presents, in namespace "default",
 * NUL-terminated, into buf[0..size). MN_INVALID (reason in 'err') when a
 * part is not what Consul would write, MN_TOO_LARGE when buf is short. */
enum mn_err spiffe_service_uri(char *buf, size_t size, const char *trust_domain, const char *dc,
			       const char *service, char *err, size_t errlen);

/* Writes the URI 'id' was parsed from (any kind: service, agent, CA),
 * NUL-terminated, into buf[0..size): for logs and for the agent's
 * authorize call. false (buf "") for SPIFFE_NONE or a buf too short. */
bool spiffe_id_format(const struct spiffe_id *id, char *buf, size_t size);

/* true when 'id' is a service identity of 'trust_domain' (compared as host
 * names, without regard to case), namespace "default" and exactly
 * 'service'. The datacenter is not compared: a service keeps its identity
 * in every datacenter of the trust domain. */
bool spiffe_service_matches(const struct spiffe_id *id, const char *trust_domain,
			    const char *service);

#endif
