/* Load-balancing strategies over the instances a call may use. Each is one
 * entry of a table (round_robin, random, least_inflight) so a new one is a
 * new entry. A strategy asks about instances through a view instead of
 * reading an array of them, and looks at a few of them per pick, not all:
 * a pick costs the same for 2 instances and for 10,000 as long as most are
 * eligible. State is lock-free: picks for one service run concurrently. */
#ifndef MESHNODE_PEERS_BALANCER_H
#define MESHNODE_PEERS_BALANCER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LB_NONE SIZE_MAX

/* What a strategy may ask about instance i (0 <= i < n). */
struct lb_view {
	size_t n;
	/* its circuit allows a call and the call has not tried it yet */
	bool (*eligible)(void *ctx, size_t i);
	/* calls out to it now */
	unsigned (*inflight)(void *ctx, size_t i);
	void *ctx;
};

/* The per-service state strategies keep between picks. */
struct lb_state {
	atomic_uint_fast64_t next;   /* round robin position */
	atomic_uint_fast64_t draws;  /* random numbers drawn so far */
	uint64_t seed;
};

struct lb_strategy {
	const char *name;
	/* The index of the chosen eligible instance, or LB_NONE when none is
	 * eligible. */
	size_t (*pick)(struct lb_state *st, const struct lb_view *v);
};

/* The strategy named 'name', or NULL. */
const struct lb_strategy *lb_find(const char *name);

/* 'seed' 0 picks a fixed one (tests pass their own). */
void lb_state_init(struct lb_state *st, uint64_t seed);

/* The next random number of 'st' (thread-safe; a given seed gives the same
 * sequence to one thread). */
uint64_t lb_random(struct lb_state *st);

#endif
