/* The store's background probe: /ready reads what it recorded, never the
 * store; a probe stuck in its ping is not "ok" after stale_ms. Driven by a
 * clock set by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "store/store_probe.h"

struct fake {
	uint64_t now;
	enum mn_err answer;
	const char *why;
	atomic_int calls;
	atomic_int block; /* the ping waits while set */
	atomic_int in_ping;
};

static uint64_t fake_now(void *ctx)
{
	return ((struct fake *)ctx)->now;
}

static enum mn_err fake_ping(void *ctx, char *why, size_t len)
{
	struct fake *f = ctx;

	atomic_fetch_add(&f->calls, 1);
	atomic_store(&f->in_ping, 1);
	while (atomic_load(&f->block))
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	atomic_store(&f->in_ping, 0);
	if (f->answer != MN_OK)
		snprintf(why, len, "%s", f->why);
	return f->answer;
}

static void *run_thread(void *arg)
{
	store_probe_run(arg);
	return NULL;
}

static void test_reads_the_record_only(void **state)
{
	struct fake f = {.now = 1000, .answer = MN_OK};
	struct mn_clock clock = {fake_now, &f};
	struct store_probe_opts o = {fake_ping, &f, 500, 2000, &clock};
	struct store_probe *p;
	char why[256];
	uint64_t age;

	(void)state;
	p = store_probe_create(&o);
	assert_non_null(p);
	assert_int_equal(atomic_load(&f.calls), 1); /* a first record at once */
	assert_true(store_probe_ok(p, why, sizeof(why), &age));
	assert_string_equal(why, "ok");
	assert_int_equal(age, 0);
	/* reading never pings */
	for (int i = 0; i < 5; i++)
		store_probe_ok(p, why, sizeof(why), NULL);
	assert_int_equal(atomic_load(&f.calls), 1);

	f.answer = MN_UNAVAILABLE;
	f.why = "database busy: all 8 connections in use and none answered for 1200 ms";
	store_probe_run(p);
	assert_false(store_probe_ok(p, why, sizeof(why), NULL));
	assert_string_equal(why, f.why);

	f.answer = MN_OK;
	store_probe_run(p);
	assert_true(store_probe_ok(p, why, sizeof(why), NULL));

	/* a record nobody renews goes stale */
	f.now += 2500;
	assert_true(store_probe_ok(p, why, sizeof(why), &age));
	f.now += 1;
	assert_false(store_probe_ok(p, why, sizeof(why), &age));
	assert_int_equal(age, 2501);
	assert_string_equal(why, "the store probe has not run for 2501 ms");
	store_probe_destroy(p);
}

/* A ping that does not come back (a query with no answer): the record
 * says ok until stale_ms, then busy, at once, while the ping still waits. */
static void test_stuck_ping_is_not_ok(void **state)
{
	struct fake f = {.now = 1000, .answer = MN_OK};
	struct mn_clock clock = {fake_now, &f};
	struct store_probe_opts o = {fake_ping, &f, 500, 2000, &clock};
	struct store_probe *p = store_probe_create(&o);
	char why[256];
	pthread_t th;

	(void)state;
	assert_non_null(p);
	atomic_store(&f.block, 1);
	assert_int_equal(pthread_create(&th, NULL, run_thread, p), 0);
	for (int i = 0; i < 5000 && !atomic_load(&f.in_ping); i++)
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	assert_true(atomic_load(&f.in_ping));
	f.now += 2000;
	assert_true(store_probe_ok(p, why, sizeof(why), NULL));
	f.now += 1;
	assert_false(store_probe_ok(p, why, sizeof(why), NULL));
	assert_string_equal(why, "busy: the store probe has had no answer for 2001 ms");
	atomic_store(&f.block, 0);
	pthread_join(th, NULL);
	assert_true(store_probe_ok(p, why, sizeof(why), NULL));
	store_probe_destroy(p);
}

/* The thread probes by itself, and stops when destroyed. */
static void test_thread_probes_and_stops(void **state)
{
	struct fake f = {.now = 1000, .answer = MN_OK};
	struct store_probe_opts o = {fake_ping, &f, 10, 2000, NULL};
	struct store_probe *p = store_probe_create(&o);

	(void)state;
	assert_non_null(p);
	assert_int_equal(store_probe_start(p), MN_OK);
	for (int i = 0; i < 5000 && atomic_load(&f.calls) < 3; i++)
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	assert_true(atomic_load(&f.calls) >= 3);
	store_probe_destroy(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reads_the_record_only),
		cmocka_unit_test(test_stuck_ping_is_not_ok),
		cmocka_unit_test(test_thread_probes_and_stops),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
