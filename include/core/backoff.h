/* Capped exponential backoff with jitter ("equal jitter": half the delay is
 * fixed, half random), so many nodes retrying one agent spread out. The random
 * source is a seeded xorshift so tests are deterministic. */
#ifndef MESHNODE_CORE_BACKOFF_H
#define MESHNODE_CORE_BACKOFF_H

#include <stdint.h>

struct backoff {
	uint64_t base_ms;
	uint64_t cap_ms;
	unsigned attempt;
	uint64_t rng;
};

/* 'seed' 0 picks a seed from the clock and address space. */
void backoff_init(struct backoff *b, uint64_t base_ms, uint64_t cap_ms, uint64_t seed);

/* The delay before the next attempt, in [d/2, d] with d = min(cap, base*2^n). */
uint64_t backoff_next(struct backoff *b);

/* Back to the first delay (after a success). */
void backoff_reset(struct backoff *b);

/* A xorshift64* step: the next pseudo-random number of 'state'. */
uint64_t mn_rand_next(uint64_t *state);

#endif
