#include "peers/balancer.h"

#include <string.h>

#include "core/backoff.h"

/* The first eligible candidate at or after the round-robin position. */
static size_t pick_round_robin(struct lb_state *st, const struct lb_candidate *c, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		size_t i = (size_t)((st->next + k) % n);

		if (c[i].eligible) {
			st->next = (uint64_t)i + 1;
			return i;
		}
	}
	return LB_NONE;
}

static size_t pick_random(struct lb_state *st, const struct lb_candidate *c, size_t n)
{
	size_t eligible = 0, want;

	for (size_t i = 0; i < n; i++)
		eligible += c[i].eligible;
	if (eligible == 0)
		return LB_NONE;
	want = (size_t)(mn_rand_next(&st->rng) % eligible);
	for (size_t i = 0; i < n; i++)
		if (c[i].eligible && want-- == 0)
			return i;
	return LB_NONE;
}

/* The fewest calls in flight; ties broken at random so equal instances
 * share the load. */
static size_t pick_least_inflight(struct lb_state *st, const struct lb_candidate *c, size_t n)
{
	size_t best = LB_NONE, ties = 0;

	for (size_t i = 0; i < n; i++) {
		if (!c[i].eligible)
			continue;
		if (best == LB_NONE || c[i].inflight < c[best].inflight) {
			best = i;
			ties = 1;
		} else if (c[i].inflight == c[best].inflight &&
			   mn_rand_next(&st->rng) % ++ties == 0) {
			best = i;
		}
	}
	return best;
}

static const struct lb_strategy strategies[] = {
	{"round_robin", pick_round_robin},
	{"random", pick_random},
	{"least_inflight", pick_least_inflight},
};

const struct lb_strategy *lb_find(const char *name)
{
	for (size_t i = 0; i < sizeof(strategies) / sizeof(strategies[0]); i++)
		if (strcmp(strategies[i].name, name) == 0)
			return &strategies[i];
	return NULL;
}

void lb_state_init(struct lb_state *st, uint64_t seed)
{
	st->next = 0;
	st->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
}
