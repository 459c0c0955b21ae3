#include "peers/balancer.h"

#include <string.h>

/* Random probes before a strategy falls back to walking the instances:
 * with most instances eligible one or two probes find one; with most
 * ejected the walk still finds the few that are left. */
#define RANDOM_PROBES 4
/* Up to this many instances least_inflight compares them all; above, two
 * random choices (Mitzenmacher's power of two, as Envoy's least_request). */
#define LEAST_EXACT_MAX 4

uint64_t lb_random(struct lb_state *st)
{
	/* splitmix64 of a counter: no shared state written but the counter */
	uint64_t z = st->seed + (atomic_fetch_add(&st->draws, 1) + 1) * 0x9E3779B97F4A7C15ULL;

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* The first eligible instance at or after 'start', wrapping around. */
static size_t walk_from(const struct lb_view *v, size_t start)
{
	for (size_t k = 0; k < v->n; k++) {
		size_t i = (start + k) % v->n;

		if (v->eligible(v->ctx, i))
			return i;
	}
	return LB_NONE;
}

static size_t pick_round_robin(struct lb_state *st, const struct lb_view *v)
{
	if (v->n == 0)
		return LB_NONE;
	return walk_from(v, (size_t)(atomic_fetch_add(&st->next, 1) % v->n));
}

/* A uniformly drawn eligible instance, other than 'not' (LB_NONE: any),
 * after a few probes; then the first eligible one from a random place. */
static size_t random_other(struct lb_state *st, const struct lb_view *v, size_t not)
{
	size_t i;

	if (v->n == 0)
		return LB_NONE;
	for (int k = 0; k < RANDOM_PROBES; k++) {
		i = (size_t)(lb_random(st) % v->n);
		if (i != not && v->eligible(v->ctx, i))
			return i;
	}
	i = walk_from(v, (size_t)(lb_random(st) % v->n));
	if (i == not && not != LB_NONE) {
		/* the walk found the excluded one: look past it */
		for (size_t k = 1; k < v->n; k++) {
			size_t j = (not + k) % v->n;

			if (v->eligible(v->ctx, j))
				return j;
		}
		return LB_NONE;
	}
	return i;
}

static size_t pick_random(struct lb_state *st, const struct lb_view *v)
{
	return random_other(st, v, LB_NONE);
}

/* The fewest calls in flight: all compared while they are few (ties broken
 * at random so equal instances share the load), else the better of two
 * random eligible ones. */
static size_t pick_least_inflight(struct lb_state *st, const struct lb_view *v)
{
	size_t best = LB_NONE, ties = 0, a, b;

	if (v->n <= LEAST_EXACT_MAX) {
		for (size_t i = 0; i < v->n; i++) {
			unsigned in;

			if (!v->eligible(v->ctx, i))
				continue;
			in = v->inflight(v->ctx, i);
			if (best == LB_NONE || in < v->inflight(v->ctx, best)) {
				best = i;
				ties = 1;
			} else if (in == v->inflight(v->ctx, best) && lb_random(st) % ++ties == 0) {
				best = i;
			}
		}
		return best;
	}
	a = random_other(st, v, LB_NONE);
	if (a == LB_NONE)
		return LB_NONE;
	b = random_other(st, v, a);
	if (b == LB_NONE)
		return a;
	return v->inflight(v->ctx, b) < v->inflight(v->ctx, a) ? b : a;
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
	atomic_init(&st->next, 0);
	atomic_init(&st->draws, 0);
	st->seed = seed ? seed : 0x9E3779B97F4A7C15ULL;
}
