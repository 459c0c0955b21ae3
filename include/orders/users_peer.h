/* What the orders service needs from the users service: whether a user
 * exists. An interface, so the orders service is tested without a network;
 * the node's implementation calls GET /users/{id} on a healthy `users`
 * instance found through Consul (peers/). */
#ifndef MESHNODE_ORDERS_USERS_PEER_H
#define MESHNODE_ORDERS_USERS_PEER_H

#include <stdint.h>

#include "core/error.h"

/* Passed on to the peer with the call. Both may be NULL. */
struct users_peer_trace {
	const char *request_id;   /* the caller's X-Request-ID */
	const char *traceparent;  /* W3C trace context of the incoming request */
};

struct users_peer {
	/* MN_OK: user 'id' exists. MN_NOT_FOUND: no such user. MN_UNAVAILABLE:
	 * no users instance could answer in time; *retry_after_s is set (>= 1)
	 * for a Retry-After header. Anything else: an internal failure. err
	 * says why in every failing case. */
	enum mn_err (*user_exists)(void *ctx, int64_t id, const struct users_peer_trace *trace,
				   unsigned *retry_after_s, char *err, size_t errlen);
	void *ctx;
};

#endif
