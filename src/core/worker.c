#include "core/worker.h"

#include <errno.h>
#include <time.h>

enum mn_err worker_init(struct worker *w, pthread_mutex_t *lock, const struct mn_clock *clock)
{
	if (lock == NULL) {
		if (pthread_mutex_init(&w->own_lock, NULL) != 0)
			return MN_NOMEM;
		lock = &w->own_lock;
	}
	if (clock_cond_init(&w->cond) != 0) {
		if (lock == &w->own_lock)
			pthread_mutex_destroy(&w->own_lock);
		return MN_NOMEM;
	}
	w->lock = lock;
	w->clock = clock ? clock : &clock_system;
	atomic_init(&w->stopping, false);
	atomic_init(&w->cancel, false);
	w->woken = false;
	w->started = false;
	return MN_OK;
}

enum mn_err worker_start(struct worker *w, void *(*fn)(void *), void *arg)
{
	if (worker_stopping(w))
		return MN_UNAVAILABLE;
	if (pthread_create(&w->thread, NULL, fn, arg) != 0)
		return MN_NOMEM;
	w->started = true;
	return MN_OK;
}

void worker_wake_locked(struct worker *w)
{
	w->woken = true;
	pthread_cond_broadcast(&w->cond);
}

void worker_wake(struct worker *w)
{
	pthread_mutex_lock(w->lock);
	worker_wake_locked(w);
	pthread_mutex_unlock(w->lock);
}

void worker_stop_locked(struct worker *w)
{
	atomic_store(&w->stopping, true);
	atomic_store(&w->cancel, true);
	pthread_cond_broadcast(&w->cond);
}

void worker_stop(struct worker *w)
{
	pthread_mutex_lock(w->lock);
	worker_stop_locked(w);
	pthread_mutex_unlock(w->lock);
}

bool worker_join(struct worker *w, int64_t timeout_ms)
{
	struct timespec deadline;

	if (!w->started)
		return true;
	w->started = false;
	if (timeout_ms < 0) {
		pthread_join(w->thread, NULL);
		return true;
	}
	deadline = clock_realtime_deadline_ms((uint64_t)timeout_ms);
	if (pthread_timedjoin_np(w->thread, NULL, &deadline) != 0) {
		pthread_detach(w->thread);
		return false;
	}
	return true;
}

void worker_release(struct worker *w)
{
	pthread_cond_destroy(&w->cond);
	if (w->lock == &w->own_lock)
		pthread_mutex_destroy(&w->own_lock);
}

enum worker_wait worker_wait_locked(struct worker *w, uint64_t ms, worker_done_fn *done, void *ctx)
{
	uint64_t start = ms == WORKER_FOREVER ? 0 : clock_now(w->clock);

	for (;;) {
		struct timespec ts;
		uint64_t passed;

		if (worker_stopping(w))
			return WORKER_STOPPING;
		if (w->woken) {
			w->woken = false;
			return WORKER_WOKEN;
		}
		if (done && done(ctx))
			return WORKER_WOKEN;
		if (ms == WORKER_FOREVER) {
			pthread_cond_wait(&w->cond, w->lock);
			continue;
		}
		passed = clock_now(w->clock) - start;
		if (passed >= ms)
			return WORKER_TIMEOUT;
		ts = clock_deadline_ms(ms - passed);
		/* on the system clock the condition's own time out is the
		 * answer; an injected clock is asked again after each signal */
		if (pthread_cond_timedwait(&w->cond, w->lock, &ts) == ETIMEDOUT &&
		    w->clock == &clock_system)
			return WORKER_TIMEOUT;
	}
}
