/* A circuit breaker for one peer instance: closed (calls flow), open (calls
 * skip the instance until open_ms passed), half-open (one probe call goes;
 * its result closes or re-opens the circuit). Not thread-safe: the caller
 * holds the lock of the state it belongs to. Time comes from the caller. */
#ifndef MESHNODE_PEERS_BREAKER_H
#define MESHNODE_PEERS_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };

struct breaker {
	enum breaker_state state;
	unsigned failures;      /* consecutive, while closed */
	uint64_t opened_at;     /* when it last opened */
	bool probing;           /* half-open: the probe is out */
};

void breaker_init(struct breaker *b);

/* May a call go to the instance at 'now'? An open circuit turns half-open
 * once open_ms passed and then lets exactly one probe through (true once,
 * and it is then taken: the caller must report its result). */
bool breaker_allow(struct breaker *b, uint64_t now, uint64_t open_ms);

/* true when breaker_allow would say yes, without taking a probe. */
bool breaker_would_allow(const struct breaker *b, uint64_t now, uint64_t open_ms);

/* A call succeeded: the circuit closes and the count starts over. */
void breaker_success(struct breaker *b);

/* A call failed: 'threshold' consecutive failures open a closed circuit; a
 * failed probe re-opens it at once. */
void breaker_failure(struct breaker *b, uint64_t now, unsigned threshold);

/* Opens the circuit at once (passive ejection: the instance refused the
 * connection or timed out). */
void breaker_trip(struct breaker *b, uint64_t now);

/* "closed", "open", "half_open". */
const char *breaker_state_name(enum breaker_state s);

#endif
