#include "core/backoff.h"

#include "core/clock.h"

uint64_t mn_rand_next(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

void backoff_init(struct backoff *b, uint64_t base_ms, uint64_t cap_ms, uint64_t seed)
{
	b->base_ms = base_ms ? base_ms : 1;
	b->cap_ms = cap_ms < b->base_ms ? b->base_ms : cap_ms;
	b->attempt = 0;
	if (seed == 0)
		seed = clock_monotonic_ns() ^ (uint64_t)(uintptr_t)b;
	b->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
}

uint64_t backoff_next(struct backoff *b)
{
	uint64_t d = b->base_ms;

	for (unsigned i = 0; i < b->attempt && d < b->cap_ms; i++)
		d *= 2;
	if (d > b->cap_ms)
		d = b->cap_ms;
	if (b->attempt < 64)
		b->attempt++;
	return d / 2 + mn_rand_next(&b->rng) % (d - d / 2 + 1);
}

void backoff_reset(struct backoff *b) { b->attempt = 0; }
