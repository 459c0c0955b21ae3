#include "peers/breaker.h"

void breaker_init(struct breaker *b) { *b = (struct breaker){BREAKER_CLOSED, 0, 0, false}; }

bool breaker_would_allow(const struct breaker *b, uint64_t now, uint64_t open_ms)
{
	switch (b->state) {
	case BREAKER_CLOSED:
		return true;
	case BREAKER_OPEN:
		return now >= b->opened_at + open_ms;
	case BREAKER_HALF_OPEN:
		return !b->probing;
	}
	return false;
}

bool breaker_allow(struct breaker *b, uint64_t now, uint64_t open_ms)
{
	if (!breaker_would_allow(b, now, open_ms))
		return false;
	if (b->state == BREAKER_CLOSED)
		return true;
	b->state = BREAKER_HALF_OPEN;
	b->probing = true;
	return true;
}

void breaker_success(struct breaker *b)
{
	b->state = BREAKER_CLOSED;
	b->failures = 0;
	b->probing = false;
}

void breaker_trip(struct breaker *b, uint64_t now)
{
	b->state = BREAKER_OPEN;
	b->opened_at = now;
	b->probing = false;
	b->failures = 0;
}

void breaker_failure(struct breaker *b, uint64_t now, unsigned threshold)
{
	switch (b->state) {
	case BREAKER_CLOSED:
		if (++b->failures >= (threshold ? threshold : 1))
			breaker_trip(b, now);
		break;
	case BREAKER_HALF_OPEN:
		breaker_trip(b, now);
		break;
	case BREAKER_OPEN:
		break; /* a call started before the circuit opened */
	}
}

const char *breaker_state_name(enum breaker_state s)
{
	switch (s) {
	case BREAKER_CLOSED:
		return "closed";
	case BREAKER_OPEN:
		return "open";
	case BREAKER_HALF_OPEN:
		return "half_open";
	}
	return "unknown";
}
