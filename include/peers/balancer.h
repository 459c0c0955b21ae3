/* Load-balancing strategies over the instances a call may use. Each is one
 * entry of a table (round_robin, random, least_inflight) so a new one is a
 * new entry. Pure: the caller passes what it knows and holds any lock. */
#ifndef MESHNODE_PEERS_BALANCER_H
#define MESHNODE_PEERS_BALANCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LB_NONE SIZE_MAX

/* What a strategy sees of each instance. */
struct lb_candidate {
	bool eligible;       /* circuit allows it and the call has not tried it */
	unsigned inflight;   /* calls out to it now */
};

/* The per-service state strategies keep between picks. */
struct lb_state {
	uint64_t next;       /* round robin position */
	uint64_t rng;        /* xorshift state for random picks and ties */
};

struct lb_strategy {
	const char *name;
	/* The index of the chosen eligible candidate, or LB_NONE. */
	size_t (*pick)(struct lb_state *st, const struct lb_candidate *c, size_t n);
};

/* The strategy named 'name', or NULL. */
const struct lb_strategy *lb_find(const char *name);

void lb_state_init(struct lb_state *st, uint64_t seed);

#endif
