/* A background thread with the lock, condition variable and stop flag
 * every one of the node's loops needs (the Consul watches, the DNS watch,
 * the registrar, the events publisher, the resolver's sweeper, the
 * PostgreSQL pool, the store probe, the configuration reloader):
 *
 *     worker_init(&x->worker, &x->lock, NULL);  (the owner's lock, or NULL
 *                                                 for the worker's own)
 *     worker_start(&x->worker, x_main, x);
 *
 *     static void *x_main(void *arg)         the thread: lock held but
 *     {                                       around slow calls, which take
 *         lock;                               &x->worker.cancel to give up
 *         while (!worker_stopping(&x->worker)) {
 *             ... (unlock, call, lock) ...
 *             worker_wait_locked(&x->worker, interval_ms, NULL, NULL);
 *         }
 *         unlock;
 *     }
 *
 *     worker_wake(&x->worker);                work is waiting: end a wait now
 *     worker_stop(&x->worker);                stop, cancel the call in flight
 *     worker_join(&x->worker, -1);            (or with a deadline)
 *     worker_release(&x->worker);
 *
 * Waits count on CLOCK_MONOTONIC, or on an injected clock (tests), and end
 * at once on stop. A wake is remembered until the next wait consumes it, so
 * none is lost while the thread is busy. The owner may wait on 'cond' too
 * (for its own state, under the same lock) and broadcast it: such a
 * broadcast makes a worker_wait_locked() look again, not return. */
#ifndef MESHNODE_CORE_WORKER_H
#define MESHNODE_CORE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/clock.h"
#include "core/error.h"

struct worker {
	pthread_mutex_t *lock; /* the owner's, or own_lock */
	pthread_mutex_t own_lock;
	pthread_cond_t cond;	      /* CLOCK_MONOTONIC: wake, stop, the owner's own */
	const struct mn_clock *clock; /* what waits count on */
	atomic_bool stopping;	      /* set once by worker_stop() */
	atomic_bool cancel;	      /* set by worker_stop(): for a call in flight
					 (curl's progress callback, a handshake);
					 the owner may clear it between calls */
	bool woken;		      /* lock: a wake no wait has consumed yet */
	bool started;		      /* start and join: one thread, or under lock */
	pthread_t thread;
};

/* What ended a worker_wait_locked(). */
enum worker_wait {
	WORKER_TIMEOUT,	 /* the time passed */
	WORKER_WOKEN,	 /* worker_wake(), or the owner's condition holds */
	WORKER_STOPPING, /* worker_stop() */
};

/* No time limit, for worker_wait_locked(). */
#define WORKER_FOREVER UINT64_MAX

/* The owner's condition for a wait (its state, under the lock). */
typedef bool worker_done_fn(void *ctx);

/* Prepares 'w': 'lock' is the owner's mutex (borrowed: it must outlive
 * the worker) or NULL for one of the worker's own; 'clock' is what waits
 * count on (NULL: the system's monotonic clock). No thread yet. MN_NOMEM
 * when the condition variable cannot be made (nothing to release then). */
enum mn_err worker_init(struct worker *w, pthread_mutex_t *lock, const struct mn_clock *clock);

/* Starts the thread: fn(arg). MN_NOMEM when it cannot be created;
 * MN_UNAVAILABLE after worker_stop() (no thread is started then). Not
 * twice. */
enum mn_err worker_start(struct worker *w, void *(*fn)(void *), void *arg);

static inline bool worker_stopping(struct worker *w)
{
	return atomic_load(&w->stopping);
}

/* Ends the current or the next wait with WORKER_WOKEN. */
void worker_wake(struct worker *w);
void worker_wake_locked(struct worker *w);

/* Tells the thread to stop: the flag, the cancel flag, and every wait
 * ends. The thread is not waited for (worker_join()). May come before
 * worker_start() (then no thread starts) and more than once. */
void worker_stop(struct worker *w);
void worker_stop_locked(struct worker *w);

/* Waits for the thread to end, at most 'timeout_ms' (negative: as long as
 * it takes). true when it ended or never started; false when it was still
 * running at the deadline: it is then detached, left behind, and 'w' and
 * what the thread uses must never be released. Call after worker_stop(),
 * without the lock. */
bool worker_join(struct worker *w, int64_t timeout_ms);

/* Frees the condition variable (and the worker's own lock), after a join
 * that returned true, or when no thread was started. */
void worker_release(struct worker *w);

/* With the lock held: waits until 'ms' passed on the worker's clock
 * (WORKER_FOREVER: no limit), worker_stop(), a wake, or done(ctx) holds
 * (NULL: none; looked at before waiting and on every signal of 'cond').
 * Consumes the wake it returns for. The lock is held again on return. */
enum worker_wait worker_wait_locked(struct worker *w, uint64_t ms, worker_done_fn *done, void *ctx);

#endif
