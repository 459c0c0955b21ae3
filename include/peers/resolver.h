/* The node's live view of the peer services it calls. Each followed
 * service is watched with one blocking query on
 * /v1/health/service/<service>[?tag=<tag>] (every registered instance with
 * its checks), started on first use; every answer that changes the
 * instances is published as an immutable, refcounted snapshot that callers
 * read without asking Consul. When the agent is unreachable the last
 * snapshot stays in use.
 *
 * A snapshot holds the instances calls may use: those passing (every
 * check passing, the node's included: what ?passing keeps), or, while the
 * service is in panic, every registered one. A service is in panic when
 * fewer than its panic threshold (percent; 0: never) of its registered
 * instances pass, none passing of any registered included: a partitioned
 * host that rejoins with stale gossip can make Consul fail a healthy host
 * for a moment, and calling every instance (circuit breakers eject the
 * ones that are really gone) beats failing every call. Instances in
 * maintenance count nowhere (an operator took them out), and deregistered
 * ones leave the count at once: a scale-down is no panic. The service's
 * entering and leaving panic are logged once each. Out of panic, the
 * registered instances that do not pass are kept as a reserve, called
 * only when no passing instance can take a call: a host wrongly failed
 * by Consul while the passing one is cut off still answers.
 *
 * What is followed is bounded by configuration, never by a caller: only
 * services the 'allowed' callback accepts, at most max_services at once; a
 * service not used for idle_ms stops being followed; a service asked for
 * with another tag than the one followed is followed with the new tag and
 * the old watch stops. Watches stop on a housekeeping thread, never on the
 * caller's. */
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
	const struct consul_instance *inst; /* the instances calls use, with valid
					       addresses: the passing ones, or in
					       panic every registered one (the
					       passing ones first) */
	size_t n;
	size_t reserve;                     /* inst[n .. n + reserve): registered
					       instances that do not pass, tried
					       only when none of the n could take
					       a call (their circuits open, or
					       each failed within it); 0 in panic
					       and with the threshold 0 */
	size_t passing;                     /* instances passing */
	size_t registered;                  /* instances registered, those in
					       maintenance left out */
	bool panic;                         /* fewer than the panic threshold pass:
					       n == registered */
	uint64_t index;                     /* X-Consul-Index it came with */
	uint64_t changed_ms;                /* clock time it was published */
	bool known;                         /* false: Consul has not answered yet */
	bool connect;                       /* the service's Connect endpoints
					       (resolver_get_for): native
					       instances and proxies */
	void *prepared;                     /* what opts.prepare made of it (of
					       the n + reserve instances); NULL
					       for a snapshot with no instance */
};

struct resolver_opts {
	struct consul *consul;              /* borrowed */
	const struct mn_clock *clock;       /* NULL: the system clock */
	uint64_t first_wait_ms;             /* first use waits this long for an
					       answer; 0 means 2000 */
	uint64_t wait_ms;                   /* blocking wait; 0 means 5 min */
	uint64_t backoff_cap_ms;            /* 0 means 30 s */
	size_t max_services;                /* followed at once; 0 means 32 */
	size_t max_response;                /* one health answer; 0 means 64 MiB
					       (10,000 instances take 10-20 MB) */
	const char *dns_server;             /* the agent's DNS interface, "127.0.0.1:8600"
					       (copied), for services followed
					       through DNS; NULL: none can be */
	uint64_t dns_refresh_ms;            /* DNS lookups this often while the
					       records' TTL is 0; 0 means 1000 */
	uint64_t idle_ms;                   /* unused this long: stop; 0: never
					       (counted from the sweep that saw
					       the last use: within a second) */
	/* May 'service' be followed? Asked when a service is first asked for,
	 * and again every second for those followed (a service no longer
	 * allowed stops). NULL: any valid name. Called without resolver locks
	 * held by the caller; must not call back into the resolver. */
	bool (*allowed)(void *ctx, const char *service);
	/* The panic threshold of 'service' in force, percent (above 100
	 * counts as 100): asked on the watch thread at each answer, and by
	 * each sweep for each service followed, so that a changed threshold
	 * applies within a second rather than at the next answer. NULL: 0,
	 * never in panic. Same rules as allowed. */
	unsigned (*panic_threshold)(void *ctx, const char *service);
	/* Called on the watch thread for each new snapshot with instances,
	 * before it is published; its result is snapshot->prepared, handed
	 * to release() when the snapshot is freed (on whatever thread drops
	 * the last reference). Both may be NULL. */
	void *(*prepare)(void *ctx, const struct peer_snapshot *s);
	void (*release)(void *ctx, void *prepared);
	void *ctx;                          /* for the callbacks above */
};

/* NULL when out of memory or a thread cannot start. */
struct resolver *resolver_create(const struct resolver_opts *opts);
/* Stops every watch (within ~100 ms) and frees everything; snapshots still
 * held must have been released. */
void resolver_destroy(struct resolver *r);

/* The current snapshot of 'service' with 'tag' (NULL or "": any) in *out,
 * to release with resolver_put(). The first use starts the watch and waits
 * up to first_wait_ms for Consul's first answer (later callers wait only
 * what is left of that). Errors, with detail in err: MN_INVALID for a name
 * that is not a valid service name, MN_NOT_FOUND for a service that is not
 * allowed, MN_UNAVAILABLE when max_services are followed already, MN_NOMEM. */
enum mn_err resolver_get(struct resolver *r, const char *service, const char *tag,
			 const struct peer_snapshot **out, char *err, size_t errlen);

/* resolver_get(), the service followed through Consul's DNS interface when
 * 'dns' (consul/dns.h: the SRV records of [<tag>.]<service>.service.consul,
 * asked every dns_refresh_ms; the instances whose checks pass, each named
 * by its address and port), through blocking health queries otherwise;
 * and when 'connect' the service's Connect endpoints instead of its
 * instances: /v1/health/connect/<service>[?tag=] (the Connect-native
 * instances and the proxies in front of the service, each at its own
 * address and port; panic and reserve as for the instances), or through
 * DNS the SRV records of <service>.connect.consul (no tag there:
 * MN_INVALID with a tag). A service followed another way is followed
 * anew, the old watch stopped (as for a changed tag). MN_INVALID for
 * 'dns' with no dns_server. */
enum mn_err resolver_get_for(struct resolver *r, const char *service, const char *tag, bool dns,
			     bool connect, const struct peer_snapshot **out, char *err,
			     size_t errlen);
void resolver_put(const struct peer_snapshot *s);

/* How far behind Consul the view of 'service' may be: the milliseconds
 * since the watch's last complete, successful answer (since it started,
 * before the first), whatever the call in flight does. A healthy watch
 * answers at least every wait_ms (plus Consul's jitter). 0 for a service
 * not followed. */
uint64_t resolver_stale_ms(struct resolver *r, const char *service);

/* Calls fn for each followed service with its current snapshot and
 * staleness, without the resolver's lock held (fn may take its time); for
 * metrics. */
void resolver_foreach(struct resolver *r,
		      void (*fn)(void *ctx, const struct peer_snapshot *s, uint64_t stale_ms),
		      void *ctx);

/* Services followed now. */
size_t resolver_followed(struct resolver *r);

/* Stops what is idle, no longer allowed or replaced, and publishes anew
 * the snapshot of a service whose panic a changed threshold decides
 * otherwise (same instances, same index); the housekeeping thread calls it
 * every second; exposed for tests with a hand clock. Returns how many
 * watches it stopped. */
size_t resolver_sweep(struct resolver *r);

/* Whether a service with 'passing' of its 'registered' instances passing
 * is in panic under 'threshold' percent (above 100 counts as 100):
 * passing * 100 < threshold * registered, so that none passing of some is
 * panic with any threshold but 0; never with none registered. */
bool resolver_panic(size_t passing, size_t registered, unsigned threshold);

/* true for a name Consul would accept as a service name and that is safe in
 * a URL path: [A-Za-z0-9_-] and '.', 1..128 bytes. */
bool resolver_name_valid(const char *name);

#endif
