/* Calls to peer services found through the resolver: an instance chosen by
 * the service's balancing strategy among those whose circuit allows it,
 * keep-alive connections (a pool of handles, none used by two threads at
 * once), per-attempt timeout, retries on other instances, a circuit breaker
 * per instance and passive ejection (an instance that refuses the
 * connection or times out is skipped at once, before Consul notices).
 *
 * The cost of a call does not grow with the number of instances: what the
 * node remembers of each instance (its circuit, calls in flight) is indexed
 * by instance id, and each snapshot the resolver publishes carries a table
 * of those states built once, on the watch thread (peer_client_prepare).
 * A call locks only the few instances its balancer looks at. */
#ifndef MESHNODE_PEERS_PEER_CLIENT_H
#define MESHNODE_PEERS_PEER_CLIENT_H

#include <jansson.h>

#include "connect/identity.h"
#include "http/client.h"
#include "metrics/metrics.h"
#include "peers/peer_settings.h"
#include "peers/resolver.h"

struct peer_client;

struct peer_request {
	const char *service;
	const char *method;
	const char *path;             /* "/users/42", with query */
	const char *body;             /* may be NULL */
	size_t body_len;
	const char *request_id;       /* passed on as X-Request-ID; may be NULL */
	const char *traceparent;      /* passed on; may be NULL */
	size_t max_response;          /* 0 means 1 MiB */
};

/* The metric families the client updates; any may be NULL. */
struct peer_metrics {
	struct metric_family *requests;   /* {service,outcome} counter */
	struct metric_family *duration;   /* {service} histogram, seconds */
};

/* 'transport' NULL: httpc_libcurl. The resolver must have been created with
 * peer_client_prepare and peer_client_release as its prepare and release
 * hooks and the client as their context (see peer_client_hooks()): create
 * the client first, then the resolver, then attach it. */
struct peer_client *peer_client_create(const struct mn_clock *clock,
				       const struct peer_metrics *metrics,
				       const struct httpc_transport *transport);
void peer_client_attach(struct peer_client *pc, struct resolver *resolver);

/* Calls out over Connect with the node's identity 'id' (borrowed: it must
 * outlive the client; NULL: Connect off, every call in plain HTTP). Then a
 * peer whose peers.<name>.connect is true (the default) is found through
 * its Connect endpoints (resolver_get_for) and called over mutual TLS with
 * the identity's current leaf, HTTP/1.1 only, the answering certificate
 * checked to be the service's (in the instance's datacenter) on a current
 * root; a refusal is a failed attempt like a refused connection (retried,
 * the instance ejected), outcome "tls_identity", logged once per instance
 * and reason. A rotated leaf or roots apply to the next new connection.
 * Call it before calls start (the composition root, after creating the
 * client). MN_NOMEM. */
enum mn_err peer_client_set_connect(struct peer_client *pc, struct connect_identity *id);
/* Frees the client; instance states still referenced by snapshots are
 * freed with them. Destroy the resolver first: its watches prepare tables
 * of the client's states until it stops them. */
void peer_client_destroy(struct peer_client *pc);

/* The resolver hooks (resolver_opts.prepare / release, with the client as
 * ctx): a table of instance states per snapshot. */
void *peer_client_prepare(void *pc, const struct peer_snapshot *snap);
void peer_client_release(void *pc, void *prepared);

/* One call. MN_OK: an instance answered (res->status may be any status,
 * 5xx included when no retry could do better). MN_UNAVAILABLE: no instance
 * could be reached (none passing, all circuits open, every attempt
 * failed to connect or timed out, or the service cannot be followed now);
 * MN_INVALID: a bad service name or lb; MN_NOT_FOUND: a service this node
 * does not follow (see resolver_get). err says why. */
enum mn_err peer_call(struct peer_client *pc, const struct peer_settings *s,
		      const struct peer_request *req, struct httpc_response *res, char *err,
		      size_t errlen);

/* Milliseconds until the earliest open circuit of 'service' may let a call
 * through (0 when none is open): a Retry-After hint. */
uint64_t peer_client_retry_after_ms(struct peer_client *pc, const char *service,
				    const struct peer_settings *s);

/* The node's view of 'service' for GET /peers/{service} in *out (new
 * reference): the snapshot's index, age and staleness, "discovery"
 * ("http" or "dns"), "connect" (followed through its Connect endpoints), "panic" with
 * "instances_passing" and "instances_registered", "instances_reserve" (the
 * registered instances that do not pass, called only when none of the
 * others can take a call), "instances_total" (those
 * calls use), and those instances from 'offset' on, at most 'limit' of them
 * (a view of 10,000 instances is megabytes: a request asks for a page),
 * each with its Consul health ("passing") and circuit. The errors of
 * resolver_get (MN_INVALID, MN_NOT_FOUND, MN_UNAVAILABLE) or MN_NOMEM,
 * with detail in err. */
enum mn_err peer_client_view(struct peer_client *pc, const char *service,
			     const struct peer_settings *s, size_t offset, size_t limit,
			     json_t **out, char *err, size_t errlen);

/* Calls fn for each instance of 'snap', named by its Consul node and
 * service ID (together they are the instance: IDs are unique per agent
 * only), with its circuit state name ("closed", "open", "half_open"); for
 * the circuit metric. Takes only each instance's own lock, one at a time. */
void peer_client_foreach_instance(const struct peer_snapshot *snap,
				  void (*fn)(void *ctx, const char *service, const char *node,
					     const char *instance, const char *state),
				  void *ctx);

#endif
