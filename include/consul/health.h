/* Service instances from Consul's health endpoint
 * (GET /v1/health/service/<name>, with or without ?passing, and
 * GET /v1/health/connect/<name>, the same form: a Connect-native service
 * or the proxies in front of one, kind "connect-proxy"): parsing, each
 * instance's health as ?passing would judge it, and the checks an address
 * from Consul passes before a call goes to it. */
#ifndef MESHNODE_CONSUL_HEALTH_H
#define MESHNODE_CONSUL_HEALTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/error.h"

#define CONSUL_HOST_MAX 253
#define CONSUL_DC_MAX	63 /* a datacenter name kept (SPIFFE_NAME_MAX) */

struct consul_instance {
	char *id;            /* Service.ID */
	char *node;          /* Node.Node */
	char dc[CONSUL_DC_MAX + 1]; /* Node.Datacenter: "" when absent, longer
				       than CONSUL_DC_MAX or not [a-z0-9_-]
				       (the identity a Connect call expects) */
	char *address;       /* Service.Address, or Node.Address when empty */
	int port;            /* 1..65535 */
	json_t *tags;        /* array of strings (own copy) */
	json_t *meta;        /* object of strings (own copy) */
	bool passing;        /* every check passing, its node's included (serfHealth):
				what ?passing keeps; warning is not passing */
	bool maintenance;    /* in maintenance: a _node_maintenance or
				_service_maintenance:<id> check (an operator took
				it out) */
};

/* true for an IPv4 or IPv6 literal or an RFC 1123 host name: nothing that
 * could smuggle a scheme, credentials, a path or a header into a URL. */
bool consul_host_valid(const char *host);

/* NULL when a call can go to 'host' (a valid host as consul_host_valid()
 * says); otherwise why not, a static string: an unspecified address
 * (0.0.0.0, ::) names no host and a link-local one (169.254.0.0/16,
 * fe80::/10, the IPv4 ones mapped into IPv6 too) is reachable from one
 * link only; both come from a bad registration, never from a usable
 * instance. Host names are not resolved here. */
const char *consul_host_unusable(const char *host);

/* Parses the JSON array the health endpoint answers into *out (a new array
 * of *n instances; free with consul_instances_free()). An entry with an
 * invalid address or port is left out and described on a line of
 * 'rejected' (may be NULL; what Consul sent is escaped so that each
 * description is one line). MN_INVALID when the body is not such an array
 * or nests deeper than MN_JSON_MAX_DEPTH. */
enum mn_err consul_health_parse(const char *json, size_t len, struct consul_instance **out,
				size_t *n, struct buf *rejected, char *err, size_t errlen);

void consul_instances_free(struct consul_instance *v, size_t n);

#endif
