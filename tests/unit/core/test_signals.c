#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "core/signals.h"

/* What the callback saw, on the signal thread. */
static atomic_int seen_hup, seen_term, seen_int, seen_other;

static void on_signal(void *ctx, int sig)
{
	atomic_int *calls = ctx;

	atomic_fetch_add(calls, 1);
	if (sig == SIGHUP)
		atomic_fetch_add(&seen_hup, 1);
	else if (sig == SIGTERM)
		atomic_fetch_add(&seen_term, 1);
	else if (sig == SIGINT)
		atomic_fetch_add(&seen_int, 1);
	else
		atomic_fetch_add(&seen_other, 1);
}

static int setup(void **state)
{
	(void)state;
	atomic_store(&seen_hup, 0);
	atomic_store(&seen_term, 0);
	atomic_store(&seen_int, 0);
	atomic_store(&seen_other, 0);
	return 0;
}

/* Waits (up to 10 s: a loaded machine) until *counter reaches n. */
static void wait_for(atomic_int *counter, int n)
{
	for (int i = 0; i < 10000 && atomic_load(counter) < n; i++)
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	assert_int_equal(atomic_load(counter), n);
}

static void test_sighup_then_sigterm(void **state)
{
	atomic_int calls = 0;
	struct signals *s = signals_start(on_signal, &calls);
	(void)state;

	assert_non_null(s);
	assert_false(signals_stop_requested(s));
	assert_int_equal(kill(getpid(), SIGHUP), 0);
	wait_for(&seen_hup, 1);
	assert_false(signals_stop_requested(s));
	assert_int_equal(signals_next(s), SIGHUP);

	assert_int_equal(kill(getpid(), SIGTERM), 0);
	wait_for(&seen_term, 1);
	assert_true(signals_stop_requested(s));
	assert_true(atomic_load(signals_stop_flag(s)));
	/* a stop is answered at once, on every call */
	assert_int_equal(signals_next(s), SIGTERM);
	assert_int_equal(signals_next(s), SIGTERM);
	assert_int_equal(atomic_load(&calls), 2);
	assert_int_equal(atomic_load(&seen_other), 0);
	signals_stop(s);
}

/* Two SIGHUPs taken before the caller looks are one reload; a stop that
 * came meanwhile comes first. */
static void test_sighups_coalesce_and_stop_first(void **state)
{
	atomic_int calls = 0;
	struct signals *s = signals_start(on_signal, &calls);
	(void)state;

	assert_non_null(s);
	assert_int_equal(kill(getpid(), SIGHUP), 0);
	wait_for(&seen_hup, 1);
	assert_int_equal(kill(getpid(), SIGHUP), 0);
	wait_for(&seen_hup, 2);
	assert_int_equal(signals_next(s), SIGHUP);

	assert_int_equal(kill(getpid(), SIGHUP), 0);
	wait_for(&seen_hup, 3);
	assert_int_equal(kill(getpid(), SIGINT), 0);
	wait_for(&seen_int, 1);
	assert_int_equal(signals_next(s), SIGINT);
	assert_int_equal(atomic_load(&calls), 4);
	signals_stop(s);
}

/* A signal sent to the thread that called signals_start() (blocked there)
 * is still the signal thread's: it is pending for the process. */
static void test_signal_to_the_main_thread(void **state)
{
	atomic_int calls = 0;
	struct signals *s = signals_start(on_signal, &calls);
	(void)state;

	assert_non_null(s);
	assert_int_equal(pthread_kill(pthread_self(), SIGHUP), 0);
	/* a signal directed at this thread stays pending here (blocked) */
	sigset_t pending;

	assert_int_equal(sigpending(&pending), 0);
	assert_int_equal(sigismember(&pending, SIGHUP), 1);
	/* kill() makes it the process's: the signal thread takes that one */
	assert_int_equal(kill(getpid(), SIGTERM), 0);
	wait_for(&seen_term, 1);
	assert_int_equal(signals_next(s), SIGTERM);
	signals_stop(s);
	/* take the thread-directed SIGHUP so the next test starts clean */
	sigset_t hup;
	int sig;

	sigemptyset(&hup);
	sigaddset(&hup, SIGHUP);
	assert_int_equal(sigwait(&hup, &sig), 0);
	assert_int_equal(sig, SIGHUP);
}

/* Stopped with no signal ever sent: the thread is cancelled in sigwait,
 * and the signals stay blocked (a SIGPIPE is no death). */
static void test_stop_without_signal(void **state)
{
	atomic_int calls = 0;
	struct signals *s = signals_start(on_signal, &calls);
	sigset_t mask;
	(void)state;

	assert_non_null(s);
	signals_stop(s);
	signals_stop(NULL);
	assert_int_equal(pthread_sigmask(SIG_BLOCK, NULL, &mask), 0);
	assert_int_equal(sigismember(&mask, SIGTERM), 1);
	assert_int_equal(sigismember(&mask, SIGINT), 1);
	assert_int_equal(sigismember(&mask, SIGHUP), 1);
	assert_int_equal(sigismember(&mask, SIGPIPE), 1);
	assert_int_equal(kill(getpid(), SIGPIPE), 0);
	assert_int_equal(atomic_load(&calls), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_sighup_then_sigterm, setup),
		cmocka_unit_test_setup(test_sighups_coalesce_and_stop_first, setup),
		cmocka_unit_test_setup(test_signal_to_the_main_thread, setup),
		cmocka_unit_test_setup(test_stop_without_signal, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
