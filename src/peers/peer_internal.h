/* What the files of the peer client share and nothing else sees: the
 * client's, services' and instance states' layout, and the functions that
 * cross between peer_client.c (the client and its pool of transport
 * handles), peer_call.c (a call), peer_instances.c (instance states and the
 * table each snapshot carries), peer_index.c (a service's states by
 * instance), peer_traceparent.c (the trace context header) and peer_view.c
 * (GET /peers and the circuit metric). The public interface is
 * peers/peer_client.h. */
#ifndef MESHNODE_PEERS_PEER_INTERNAL_H
#define MESHNODE_PEERS_PEER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "connect/outbound.h"
#include "core/hashmap.h"
#include "peers/balancer.h"
#include "peers/breaker.h"
#include "peers/peer_client.h"

/* Handles kept for reuse, in shards a thread keeps to: a handle that
 * moves between threads costs about 5 us a call (its buffers freed into
 * another thread's malloc arena), an eighth of a call on loopback. */
#define POOL_SHARDS    8
#define POOL_SHARD_MAX 8

/* What the node remembers of one instance across snapshots. Shared by the
 * service's index and every table that lists it; freed with the last. An
 * instance is the pair (Consul node, service ID): Consul keeps IDs unique
 * per agent only, and two machines cloned with one hostname register the
 * same default ID; one timing out must not open the other's circuit. */
struct inst_state {
	char *node;
	char *id;
	bool index_gone;	  /* peer_index_foreach takes it out */
	uint64_t seen;		  /* last table built with it (svc->lock) */
	atomic_uint refs;
	atomic_uint inflight;
	atomic_bool closed;   /* br.state == BREAKER_CLOSED, readable
				 without the lock: a pick looks at it first */
	const char *service;  /* the service's name, for logs; lives
				 as long as the client */
	pthread_mutex_t lock; /* everything below */
	struct breaker br;
	unsigned recent_failures; /* consecutive */
	uint64_t calls, failures;
	char last_error[160];
	char identity_logged[64]; /* the identity refusal last logged for it
				     (once per reason until a call succeeds) */
};

/* The instance states of one service by (node, id): a core hash map of
 * state pointers (zeroed: empty). Only peer_index.c reads its fields. */
struct peer_index {
	struct hashmap map;
};

struct peer_service;

/* A snapshot's instances with their states, in the snapshot's order:
 * peer_snapshot.prepared. */
struct peer_table {
	struct peer_service *svc;
	size_t n;
	struct inst_state *st[];
};

struct peer_service {
	char *name;
	struct lb_state lb;
	atomic_uint reserve_next; /* where the next reserve pick starts */
	pthread_mutex_t lock;	  /* the index */
	struct peer_index index;
	uint64_t generation; /* tables built */
	struct peer_service *next;
};

struct pool_shard {
	pthread_mutex_t lock;
	struct httpc *h[POOL_SHARD_MAX];
	size_t n;
};

struct peer_client {
	struct resolver *resolver;
	struct connect_outbound *outbound; /* NULL: Connect off */
	const struct mn_clock *clock;
	const struct httpc_transport *transport;
	struct peer_metrics m;
	pthread_mutex_t lock; /* services */
	struct peer_service *services;
	struct pool_shard pool[POOL_SHARDS];
	uint64_t rng;
};

/* ---- peer_client.c -------------------------------------------------------- */

/* The snapshot of 'service' for settings 's' (resolver_get_for()); release
 * it with resolver_put(). MN_INTERNAL when no resolver is attached. */
enum mn_err peer_client_snapshot(struct peer_client *pc, const char *service,
				 const struct peer_settings *s, const struct peer_snapshot **snap,
				 char *err, size_t errlen);

/* A transport handle for one attempt, from the calling thread's shard or
 * new; NULL: out of memory. Give it back with peer_client_handle_release(),
 * which keeps it for the thread's next call or destroys it. */
struct httpc *peer_client_handle_acquire(struct peer_client *pc);
void peer_client_handle_release(struct peer_client *pc, struct httpc *h);

/* ---- peer_instances.c ----------------------------------------------------- */

/* Drops a reference to 'st', freeing it with the last; NULL does nothing. */
void inst_state_unref(struct inst_state *st);

/* Frees 'svc' and drops its index's references (a state still in a table
 * lives on until the table is released). */
void peer_service_destroy(struct peer_service *svc);

/* ---- peer_index.c --------------------------------------------------------- */

/* The state of instance ('node', 'id') in 'ix', or NULL (borrowed). */
struct inst_state *peer_index_find(const struct peer_index *ix, const char *node, const char *id);

/* Adds 'st' (not in 'ix'; its node and id set), taking the caller's
 * reference. false: out of memory, nothing added, the reference still the
 * caller's. */
bool peer_index_insert(struct peer_index *ix, struct inst_state *st);

size_t peer_index_count(const struct peer_index *ix);

/* Calls fn for each state of 'ix'; fn returning true takes the state out of
 * the index, which drops its reference (the state freed with the last). */
void peer_index_foreach(struct peer_index *ix, bool (*fn)(void *ctx, struct inst_state *st),
			void *ctx);

/* Drops every reference of 'ix' and frees its buckets: 'ix' is empty. */
void peer_index_release(struct peer_index *ix);

/* ---- peer_traceparent.c --------------------------------------------------- */

/* The traceparent header line for a call (W3C trace context) in 'out':
 * "traceparent: " and the caller's trace id 'in' with a new span id of
 * ours, or a new trace when 'in' is NULL or malformed. */
void peer_traceparent(const char *in, char out[80]);

#endif
