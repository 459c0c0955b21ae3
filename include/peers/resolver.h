/* The node's live view of the peer services it calls. Each (service, tag)
 * is followed by one blocking-query watch on
 * /v1/health/service/<service>?passing[&tag=<tag>], started on first use;
 * every answer that changes the instances is published as an immutable,
 * refcounted snapshot that callers read without asking Consul. When the
 * agent is unreachable the last snapshot stays in use. */
#ifndef MESHNODE_PEERS_RESOLVER_H
#define MESHNODE_PEERS_RESOLVER_H

#include <stdbool.h>
#include <stdint.h>

#include "consul/client.h"
#include "consul/health.h"
#include "core/clock.h"

struct resolver;

struct peer_snapshot {
	const char *service;
	const char *tag;                    /* "" for any instance */
	const struct consul_instance *inst; /* passing instances with valid addresses */
	size_t n;
	uint64_t index;                     /* X-Consul-Index it came with */
	uint64_t changed_ms;                /* clock time it was published */
	bool known;                         /* false: Consul has not answered yet */
};

struct resolver_opts {
	struct consul *consul;              /* borrowed */
	const struct mn_clock *clock;       /* NULL: the system clock */
	uint64_t first_wait_ms;             /* first use waits this long for an
					       answer; 0 means 2000 */
	uint64_t wait_ms;                   /* blocking wait; 0 means 5 min */
	uint64_t backoff_cap_ms;            /* 0 means 30 s */
};

/* NULL when out of memory. */
struct resolver *resolver_create(const struct resolver_opts *opts);
/* Stops every watch (within ~100 ms) and frees everything; snapshots still
 * held must have been released. */
void resolver_destroy(struct resolver *r);

/* The current snapshot of 'service' with 'tag' (NULL or "": any). The
 * first use starts the watch and waits up to first_wait_ms for Consul's
 * first answer (later callers wait only what is left of that). Never NULL
 * unless out of memory or the name is not a valid service name; release
 * with resolver_put(). */
const struct peer_snapshot *resolver_get(struct resolver *r, const char *service,
					 const char *tag);
void resolver_put(const struct peer_snapshot *s);

/* How long the view has been out of touch with Consul: 0 while the agent
 * answers, else milliseconds since the first failed call. */
uint64_t resolver_stale_ms(struct resolver *r, const char *service, const char *tag);

/* Calls fn for each followed (service, tag) with its current snapshot and
 * staleness; for metrics. */
void resolver_foreach(struct resolver *r,
		      void (*fn)(void *ctx, const struct peer_snapshot *s, uint64_t stale_ms),
		      void *ctx);

/* true for a name Consul would accept as a service name and that is safe in
 * a URL path: [A-Za-z0-9_-] and '.', 1..128 bytes. */
bool resolver_name_valid(const char *name);

#endif
