/* Calls to peer services found through the resolver: an instance chosen by
 * the service's balancing strategy among those whose circuit allows it,
 * keep-alive connections (a pool of handles, none used by two threads at
 * once), per-attempt timeout, retries on other instances, a circuit breaker
 * per instance and passive ejection (an instance that refuses the
 * connection or times out is skipped at once, before Consul notices). */
#ifndef MESHNODE_PEERS_PEER_CLIENT_H
#define MESHNODE_PEERS_PEER_CLIENT_H

#include <jansson.h>

#include "http/client.h"
#include "metrics/metrics.h"
#include "peers/resolver.h"

struct peer_client;

/* The settings of one call, from peers.<name>.* (dynamic: read from the
 * config in force at each call). */
struct peer_settings {
	uint64_t timeout_ms;          /* per attempt */
	unsigned retries;             /* further attempts, each on another instance */
	const char *lb;               /* "round_robin", "random", "least_inflight" */
	const char *tag;              /* "" or NULL: any instance */
	unsigned breaker_failures;
	uint64_t breaker_open_ms;
};

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

struct peer_client *peer_client_create(struct resolver *resolver, const struct mn_clock *clock,
				       const struct peer_metrics *metrics);
void peer_client_destroy(struct peer_client *pc);

/* One call. MN_OK: an instance answered (res->status may be any status,
 * 5xx included when no retry could do better). MN_UNAVAILABLE: no instance
 * could be reached (none passing, all circuits open, or every attempt
 * failed to connect or timed out); MN_INVALID: a bad service name or
 * lb. err says why. */
enum mn_err peer_call(struct peer_client *pc, const struct peer_settings *s,
		      const struct peer_request *req, struct httpc_response *res, char *err,
		      size_t errlen);

/* Milliseconds until the earliest open circuit of 'service' may let a call
 * through (0 when none is open): a Retry-After hint. */
uint64_t peer_client_retry_after_ms(struct peer_client *pc, const char *service,
				    uint64_t breaker_open_ms);

/* The node's view of 'service' for GET /peers/{service} (new reference;
 * NULL for an invalid name). */
json_t *peer_client_view(struct peer_client *pc, const char *service, const char *tag,
			 uint64_t breaker_open_ms);

/* Per instance of every service called so far: fn gets the circuit state
 * name; for the circuit metric. */
void peer_client_foreach_instance(struct peer_client *pc,
				  void (*fn)(void *ctx, const char *service, const char *instance,
					     const char *state),
				  void *ctx);

#endif
