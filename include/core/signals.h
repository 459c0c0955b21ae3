/* The process's signals, taken by one thread of their own: SIGTERM, SIGINT
 * and SIGHUP are blocked in every thread and waited for (sigwait) by the
 * signal thread alone, so they are heard whatever the other threads are
 * doing; SIGPIPE is blocked too (a peer that hangs up is an error return,
 * never a signal). The thread only notes what came; the caller acts on it
 * with signals_next(). */
#ifndef MESHNODE_CORE_SIGNALS_H
#define MESHNODE_CORE_SIGNALS_H

#include <stdatomic.h>
#include <stdbool.h>

struct signals;

/* Called on the signal thread for each signal taken, after it is noted
 * and with no lock held. */
typedef void (*signals_fn)(void *ctx, int sig);

/* Blocks SIGTERM, SIGINT, SIGHUP and SIGPIPE in the calling thread (call it
 * before any other thread exists: they inherit the mask) and starts the
 * signal thread. It ends with the first SIGTERM or SIGINT; later ones stay
 * blocked, as a stop is under way. 'fn' may be NULL; 'ctx' is borrowed.
 * NULL when out of memory or the thread cannot start. */
struct signals *signals_start(signals_fn fn, void *ctx);

/* Ends the signal thread (it is cancelled only in sigwait) and frees 's';
 * the signals stay blocked. NULL is a no-op. */
void signals_stop(struct signals *s);

/* true once SIGTERM or SIGINT came. The flag itself, for code that looks
 * at it without knowing this module, lives as long as 's'. */
bool signals_stop_requested(const struct signals *s);
const atomic_bool *signals_stop_flag(const struct signals *s);

/* Waits for the next signal the caller has not seen: SIGTERM (or SIGINT,
 * whichever came) once a stop was asked for, at once and on every call
 * after; SIGHUP once for any number of SIGHUPs since the last call. A stop
 * comes first. */
int signals_next(struct signals *s);

#endif
