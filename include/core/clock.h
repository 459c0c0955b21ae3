/* Time sources. Logic that depends on time takes a `struct mn_clock` so tests
 * can drive it by hand instead of sleeping. */
#ifndef MESHNODE_CORE_CLOCK_H
#define MESHNODE_CORE_CLOCK_H

#include <stdint.h>

struct mn_clock {
	uint64_t (*now_ms)(void *ctx); /* monotonic milliseconds */
	void *ctx;
};

/* Monotonic milliseconds since an arbitrary start. */
uint64_t clock_monotonic_ms(void);
/* Monotonic nanoseconds, for durations. */
uint64_t clock_monotonic_ns(void);
/* Wall-clock seconds since the epoch, with fraction. */
double clock_wall_seconds(void);
/* Wall-clock milliseconds since the epoch (timestamps stored for others). */
int64_t clock_wall_ms(void);

/* The process's real monotonic clock. */
extern const struct mn_clock clock_system;

static inline uint64_t clock_now(const struct mn_clock *c) { return c->now_ms(c->ctx); }

#include <time.h>

#include <pthread.h>

/* Initialises a condition whose timed waits count on CLOCK_MONOTONIC, so a
 * wall-clock jump neither stretches nor cuts them. 0 or an errno value. */
int clock_cond_init(pthread_cond_t *cond);

/* The CLOCK_MONOTONIC time 'ms' from now, for pthread_cond_timedwait on a
 * condition made by clock_cond_init(). */
struct timespec clock_deadline_ms(uint64_t ms);

/* The CLOCK_REALTIME time 'ms' from now, for the waits that only take
 * that clock (pthread_timedjoin_np). */
struct timespec clock_realtime_deadline_ms(uint64_t ms);

/* Sleeps 'ms' milliseconds (restarts after signals). */
void clock_sleep_ms(uint64_t ms);

#endif
