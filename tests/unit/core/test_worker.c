#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdatomic.h>
#include <string.h>

#include "core/clock.h"
#include "core/worker.h"

/* A thread that waits again and again and records how each wait ended;
 * the test waits for the records on the worker's own condition. */
struct rec {
	struct worker w;
	pthread_mutex_t lock;
	uint64_t wait_ms;
	worker_done_fn *done;
	bool flag;		   /* the owner's condition, for 'done' */
	enum worker_wait ends[16]; /* lock */
	size_t n;		   /* lock */
	bool waiting;		   /* lock: inside worker_wait_locked() */
	atomic_bool in_call;
	atomic_bool call_saw_cancel;
	atomic_bool hold; /* the body blocks while set, deaf to stop */
	atomic_bool finished;
	uint64_t fake_now; /* lock */
	bool slow_call;	   /* one call that runs until cancelled */
};

static uint64_t fake_now(void *ctx)
{
	return ((struct rec *)ctx)->fake_now;
}

static bool flag_set(void *ctx)
{
	return ((struct rec *)ctx)->flag;
}

static void *rec_main(void *arg)
{
	struct rec *r = arg;

	while (atomic_load(&r->hold))
		clock_sleep_ms(1);
	pthread_mutex_lock(&r->lock);
	if (r->slow_call) {
		pthread_mutex_unlock(&r->lock);
		atomic_store(&r->in_call, true);
		while (!atomic_load(&r->w.cancel))
			clock_sleep_ms(1);
		atomic_store(&r->call_saw_cancel, true);
		pthread_mutex_lock(&r->lock);
	}
	while (!worker_stopping(&r->w) && r->n < 16) {
		enum worker_wait e;

		r->waiting = true;
		pthread_cond_broadcast(&r->w.cond);
		e = worker_wait_locked(&r->w, r->wait_ms, r->done, r);
		r->waiting = false;
		r->flag = false; /* the owner's work, taken */
		r->ends[r->n++] = e;
		pthread_cond_broadcast(&r->w.cond);
	}
	pthread_mutex_unlock(&r->lock);
	atomic_store(&r->finished, true);
	return NULL;
}

static void rec_init(struct rec *r, uint64_t wait_ms, bool fake_clock)
{
	static struct mn_clock clock;

	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	r->wait_ms = wait_ms;
	clock = (struct mn_clock){fake_now, r};
	assert_int_equal(worker_init(&r->w, &r->lock, fake_clock ? &clock : NULL), MN_OK);
	assert_ptr_equal(r->w.lock, &r->lock);
}

/* With the lock held: waits until the thread has recorded 'n' ends and
 * is waiting again (or has ended). */
static void await_ends(struct rec *r, size_t n)
{
	while (r->n < n || (!r->waiting && !worker_stopping(&r->w) && r->n < 16))
		pthread_cond_wait(&r->w.cond, &r->lock);
}

static void rec_finish(struct rec *r)
{
	worker_release(&r->w);
	pthread_mutex_destroy(&r->lock);
}

/* start, wake (once per call, none lost, none made up), stop, join */
static void test_start_wake_stop_join(void **state)
{
	struct rec r;
	(void)state;

	rec_init(&r, WORKER_FOREVER, false);
	assert_int_equal(worker_start(&r.w, rec_main, &r), MN_OK);
	pthread_mutex_lock(&r.lock);
	await_ends(&r, 0);
	worker_wake_locked(&r.w);
	await_ends(&r, 1);
	assert_int_equal(r.ends[0], WORKER_WOKEN);
	/* a broadcast of the owner's is not a wake */
	pthread_cond_broadcast(&r.w.cond);
	pthread_mutex_unlock(&r.lock);
	worker_wake(&r.w);
	pthread_mutex_lock(&r.lock);
	await_ends(&r, 2);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.ends[1], WORKER_WOKEN);
	pthread_mutex_unlock(&r.lock);
	worker_stop(&r.w);
	assert_true(worker_join(&r.w, -1));
	assert_int_equal(r.n, 3);
	assert_int_equal(r.ends[2], WORKER_STOPPING);
	assert_true(atomic_load(&r.w.cancel));
	assert_true(worker_join(&r.w, -1)); /* twice: nothing more to join */
	rec_finish(&r);
}

/* A wake that comes while the thread is busy is kept for its next wait. */
static void test_wake_while_busy_is_kept(void **state)
{
	struct rec r;
	(void)state;

	rec_init(&r, WORKER_FOREVER, false);
	atomic_store(&r.hold, true);
	assert_int_equal(worker_start(&r.w, rec_main, &r), MN_OK);
	worker_wake(&r.w); /* before its first wait */
	atomic_store(&r.hold, false);
	pthread_mutex_lock(&r.lock);
	await_ends(&r, 1);
	assert_int_equal(r.ends[0], WORKER_WOKEN);
	pthread_mutex_unlock(&r.lock);
	worker_stop(&r.w);
	assert_true(worker_join(&r.w, -1));
	assert_int_equal(r.ends[1], WORKER_STOPPING);
	rec_finish(&r);
}

/* Waits count on the injected clock: 999 of 1000 ms is not the end, 1000
 * is, whatever the real time. */
static void test_wait_on_injected_clock(void **state)
{
	struct rec r;
	(void)state;

	rec_init(&r, 1000, true);
	r.fake_now = 5000;
	assert_int_equal(worker_start(&r.w, rec_main, &r), MN_OK);
	pthread_mutex_lock(&r.lock);
	await_ends(&r, 0);
	r.fake_now = 5999;
	pthread_cond_broadcast(&r.w.cond);
	pthread_mutex_unlock(&r.lock);
	clock_sleep_ms(20);
	pthread_mutex_lock(&r.lock);
	assert_int_equal(r.n, 0);
	r.fake_now = 6000;
	pthread_cond_broadcast(&r.w.cond);
	await_ends(&r, 1);
	assert_int_equal(r.ends[0], WORKER_TIMEOUT);
	/* the next wait starts at 6000 */
	r.fake_now = 7000;
	pthread_cond_broadcast(&r.w.cond);
	await_ends(&r, 2);
	assert_int_equal(r.ends[1], WORKER_TIMEOUT);
	pthread_mutex_unlock(&r.lock);
	worker_stop(&r.w);
	assert_true(worker_join(&r.w, -1));
	assert_int_equal(r.ends[r.n - 1], WORKER_STOPPING);
	rec_finish(&r);
}

/* On the real clock a short wait ends by itself. */
static void test_wait_on_system_clock_times_out(void **state)
{
	struct rec r;
	(void)state;

	rec_init(&r, 1, false);
	assert_int_equal(worker_start(&r.w, rec_main, &r), MN_OK);
	pthread_mutex_lock(&r.lock);
	await_ends(&r, 2);
	assert_int_equal(r.ends[0], WORKER_TIMEOUT);
	assert_int_equal(r.ends[1], WORKER_TIMEOUT);
	pthread_mutex_unlock(&r.lock);
	worker_stop(&r.w);
	assert_true(worker_join(&r.w, -1));
	rec_finish(&r);
}

/* The owner's condition ends a wait when it holds, looked at on each
 * signal; before it holds, a signal only makes the wait look again. */
static void test_owner_condition(void **state)
{
	struct rec r;
	(void)state;

	rec_init(&r, WORKER_FOREVER, false);
	r.done = flag_set;
	assert_int_equal(worker_start(&r.w, rec_main, &r), MN_OK);
	pthread_mutex_lock(&r.lock);
	await_ends(&r, 0);
	pthread_cond_broadcast(&r.w.cond);
	pthread_mutex_unlock(&r.lock);
	clock_sleep_ms(20);
	pthread_mutex_lock(&r.lock);
	assert_int_equal(r.n, 0);
	r.flag = true;
	pthread_cond_broadcast(&r.w.cond);
	await_ends(&r, 1);
	assert_int_equal(r.ends[0], WORKER_WOKEN);
	assert_int_equal(r.n, 1);
	pthread_mutex_unlock(&r.lock);
	worker_stop(&r.w);
	assert_true(worker_join(&r.w, -1));
	rec_finish(&r);
}

/* A stop while the body is in a slow call: the call sees the cancel
 * flag, and the thread ends without waiting. */
static void test_stop_while_body_runs(void **state)
{
	struct rec r;
	(void)state;

	rec_init(&r, WORKER_FOREVER, false);
	r.slow_call = true;
	assert_int_equal(worker_start(&r.w, rec_main, &r), MN_OK);
	while (!atomic_load(&r.in_call))
		clock_sleep_ms(1);
	worker_stop(&r.w);
	assert_true(worker_join(&r.w, -1));
	assert_true(atomic_load(&r.call_saw_cancel));
	assert_int_equal(r.n, 0); /* it never waited */
	rec_finish(&r);
}

/* A stop before the start: no thread starts, the join has nothing to do. */
static void test_stop_before_start(void **state)
{
	struct rec r;
	(void)state;

	rec_init(&r, WORKER_FOREVER, false);
	worker_stop(&r.w);
	worker_stop(&r.w); /* twice is harmless */
	assert_int_equal(worker_start(&r.w, rec_main, &r), MN_UNAVAILABLE);
	assert_false(r.w.started);
	assert_true(worker_join(&r.w, 0));
	assert_false(atomic_load(&r.finished));
	rec_finish(&r);
}

/* A join with a deadline leaves behind a thread that does not end in
 * time (here: one deaf to the stop until the test lets it go). */
static void test_join_deadline_leaves_thread_behind(void **state)
{
	static struct rec r; /* the detached thread reads it after the join */
	(void)state;

	rec_init(&r, WORKER_FOREVER, false);
	atomic_store(&r.hold, true);
	assert_int_equal(worker_start(&r.w, rec_main, &r), MN_OK);
	worker_stop(&r.w);
	assert_false(worker_join(&r.w, 30));
	assert_false(r.w.started);
	assert_true(worker_join(&r.w, 0)); /* nothing left to join */
	atomic_store(&r.hold, false);
	while (!atomic_load(&r.finished))
		clock_sleep_ms(1);
	clock_sleep_ms(20); /* let the detached thread return */
	assert_int_equal(r.n, 0);
	rec_finish(&r);
}

/* A worker with a lock of its own. */
static void test_own_lock(void **state)
{
	struct worker w;
	(void)state;

	assert_int_equal(worker_init(&w, NULL, NULL), MN_OK);
	assert_ptr_equal(w.lock, &w.own_lock);
	pthread_mutex_lock(w.lock);
	worker_wake_locked(&w);
	assert_int_equal(worker_wait_locked(&w, WORKER_FOREVER, NULL, NULL), WORKER_WOKEN);
	assert_int_equal(worker_wait_locked(&w, 0, NULL, NULL), WORKER_TIMEOUT);
	worker_stop_locked(&w);
	assert_int_equal(worker_wait_locked(&w, WORKER_FOREVER, NULL, NULL), WORKER_STOPPING);
	pthread_mutex_unlock(w.lock);
	worker_release(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_start_wake_stop_join),
		cmocka_unit_test(test_wake_while_busy_is_kept),
		cmocka_unit_test(test_wait_on_injected_clock),
		cmocka_unit_test(test_wait_on_system_clock_times_out),
		cmocka_unit_test(test_owner_condition),
		cmocka_unit_test(test_stop_while_body_runs),
		cmocka_unit_test(test_stop_before_start),
		cmocka_unit_test(test_join_deadline_leaves_thread_behind),
		cmocka_unit_test(test_own_lock),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
