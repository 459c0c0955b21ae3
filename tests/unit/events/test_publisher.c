#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "events/publisher.h"
#include "orders/orders_repo.h"
#include "store/store_fixture.h" /* tests/unit/store/ */

struct fixture {
	struct orders_repo *repo;
	char dir[64];
	int64_t next_event;
};

static int setup_memory(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->repo = test_orders_memory();
	*state = f;
	return f->repo ? 0 : -1;
}

static int setup_sqlite(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char path[128], err[256];

	snprintf(f->dir, sizeof(f->dir), "/tmp/meshnode-prune.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/node.db", f->dir);
	f->repo = test_orders_sqlite(path, err, sizeof(err));
	*state = f;
	return f->repo ? 0 : -1;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[160];

	test_store_close(f->repo);
	if (f->dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
		if (system(cmd) != 0)
			return -1;
	}
	free(f);
	return 0;
}

/* n orders with their events, all sent at once at sent_ms (what the
 * publisher does when the broker keeps up). */
static void orders_sent(struct fixture *f, size_t n, int64_t sent_ms)
{
	struct outbox_event *v;
	int64_t *ids = calloc(n, sizeof(*ids));
	struct order o;
	char event_id[32];
	size_t got;

	assert_non_null(ids);
	order_init(&o);
	for (size_t i = 0; i < n; i++) {
		snprintf(event_id, sizeof(event_id), "ev-%lld", (long long)f->next_event++);
		assert_int_equal(
			orders_repo_create_order_event(f->repo, 1, "tea", 1, event_id, &o, NULL, 0),
			MN_OK);
	}
	order_release(&o);
	assert_int_equal(outbox_pending(test_outbox(f->repo), n, &v, &got, NULL, 0), MN_OK);
	assert_int_equal(got, n);
	for (size_t i = 0; i < n; i++)
		ids[i] = v[i].id;
	assert_int_equal(outbox_mark_sent(test_outbox(f->repo), ids, n, sent_ms, NULL, 0), MN_OK);
	outbox_events_free(v, got);
	free(ids);
}

static struct outbox_stats stats(struct orders_repo *r)
{
	struct outbox_stats s;

	assert_int_equal(outbox_stats(test_outbox(r), &s, NULL, 0), MN_OK);
	return s;
}

/* What a batch's confirms make sent: the acked ones from the start, up to
 * the first that failed or is missing. Those after go again, in order. */
static void test_confirmed_prefix(void **state)
{
	bool all[4] = {true, true, true, true}, none[4] = {false, false, false, false};
	bool gap[4] = {true, false, true, true}, nack2[4] = {false, false, true, false};

	(void)state;
	assert_int_equal(events_confirmed_prefix(all, none, 4), 4);
	assert_int_equal(events_confirmed_prefix(none, none, 4), 0);
	/* the second unconfirmed: the third and fourth, though confirmed, go
	 * again after it (order before uniqueness: duplicates are allowed) */
	assert_int_equal(events_confirmed_prefix(gap, none, 4), 1);
	/* a nack or a return of the third */
	assert_int_equal(events_confirmed_prefix(all, nack2, 4), 2);
	assert_int_equal(events_confirmed_prefix(all, none, 0), 0);
}

/* A backlog (a node that pruned nothing for a while, or a retention just
 * made shorter) goes batch after batch, each bounded, the next due at
 * once; the first batch that is not full puts the next a period later. */
static void test_prune_backlog_in_bounded_batches(void **state)
{
	struct fixture *f = *state;
	struct events_prune pr = {0};
	size_t pruned, backlog = 2 * EVENTS_PRUNE_BATCH + 500;
	uint64_t now = 5000;

	orders_sent(f, backlog, 1000);
	orders_sent(f, 10, 9000); /* within the retention: kept */
	assert_int_equal(stats(f->repo).oldest_sent_ms, 1000);
	events_prune_observe(&pr, stats(f->repo).oldest_sent_ms);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(
			events_prune_step(&pr, test_outbox(f->repo), now, 10000, 5000, &pruned, NULL, 0), MN_OK);
		assert_int_equal(pruned, EVENTS_PRUNE_BATCH);
		assert_int_equal(pr.next_ms, now); /* more may wait: due at once */
	}
	assert_int_equal(events_prune_step(&pr, test_outbox(f->repo), now, 10000, 5000, &pruned, NULL, 0),
			 MN_OK);
	assert_int_equal(pruned, 500);
	assert_int_equal(pr.next_ms, now + EVENTS_PRUNE_EVERY_MS);
	assert_int_equal(pr.total, backlog);
	/* not due: nothing is asked of the store */
	assert_int_equal(events_prune_step(&pr, test_outbox(f->repo), now + EVENTS_PRUNE_EVERY_MS - 1, 99999,
					   5000, &pruned, NULL, 0),
			 MN_OK);
	assert_int_equal(pruned, 0);
	assert_int_equal(stats(f->repo).sent, 10);
	assert_int_equal(stats(f->repo).oldest_sent_ms, 9000);
	events_prune_observe(&pr, stats(f->repo).oldest_sent_ms);
	/* due, and the last ten aged past the retention */
	assert_int_equal(events_prune_step(&pr, test_outbox(f->repo), now + EVENTS_PRUNE_EVERY_MS, 14001, 5000,
					   &pruned, NULL, 0),
			 MN_OK);
	assert_int_equal(pruned, 10);
	assert_int_equal(stats(f->repo).sent, 0);
	assert_int_equal(stats(f->repo).oldest_sent_ms, 0);
}

/* Orders at a steady rate, sent as they come, the clock stepped 10 ms at
 * a time as the publisher's rounds would, one prune step per round: once
 * the retention has passed, the sent rows kept never exceed retention x
 * rate + one batch, and the oldest kept is never much older than the
 * retention. (Issue 21: at most 10,000 rows a minute were pruned, so any
 * rate above 167/s grew the outbox without end; here the rate is 3,000/s
 * of the injected clock.) Then the orders stop: a retention later,
 * nothing sent is left. */
static void test_prune_keeps_up_with_the_rate(void **state)
{
	struct fixture *f = *state;
	struct events_prune pr = {0};
	const uint64_t retention = 1000, step = 10, per_step = 30; /* 3,000/s */
	const uint64_t run = 4000, t0 = 1000000;
	const int64_t wall0 = 1700000000000;
	int64_t bound = (int64_t)(retention / step * per_step) + EVENTS_PRUNE_BATCH;
	int64_t most = 0;
	size_t pruned;

	/* the schedule's own constants stay out of the time bounds: 500 ms
	 * is two periods, and a minute-long one fails here */
	for (uint64_t t = 0; t <= run + retention + 500; t += step) {
		struct outbox_stats st;

		if (t < run)
			orders_sent(f, per_step, wall0 + (int64_t)t);
		events_prune_observe(&pr, stats(f->repo).oldest_sent_ms);
		assert_int_equal(events_prune_step(&pr, test_outbox(f->repo), t0 + t, wall0 + (int64_t)t,
						   retention, &pruned, NULL, 0),
				 MN_OK);
		if (t < retention || t % 100)
			continue;
		st = stats(f->repo);
		if (st.sent > most)
			most = st.sent;
		assert_true(st.sent <= bound);
		if (st.sent)
			assert_true(wall0 + (int64_t)t - st.oldest_sent_ms <=
				    (int64_t)(retention + 500));
	}
	/* it did hold a retention's worth: the bound is not met by emptiness */
	assert_true(most >= (int64_t)(retention / step * per_step));
	assert_int_equal(stats(f->repo).sent, 0);
	assert_int_equal(pr.total, run / step * per_step);
}

/* While nothing sent is observed older than the retention, the store is
 * not asked: rows older than the cutoff that the last observation did not
 * see (it predates them, or said none) stay, round after round. (Before,
 * after a partial batch a DELETE ran every 250 ms, forever.) */
static void test_prune_none_while_nothing_due(void **state)
{
	struct fixture *f = *state;
	struct events_prune pr = {0};
	size_t pruned;

	orders_sent(f, 5, 1000);
	/* observed nothing sent, then only a row within the retention */
	for (int phase = 0; phase < 2; phase++) {
		events_prune_observe(&pr, phase ? 9000 : 0);
		for (uint64_t t = 0; t < 10 * EVENTS_PRUNE_EVERY_MS; t += 10) {
			assert_int_equal(events_prune_step(&pr, test_outbox(f->repo), 5000 + t, 10000, 5000,
							   &pruned, NULL, 0),
					 MN_OK);
			assert_int_equal(pruned, 0);
		}
		assert_int_equal(stats(f->repo).sent, 5);
	}
	/* after a partial batch, the same until the next observation */
	events_prune_observe(&pr, stats(f->repo).oldest_sent_ms);
	assert_int_equal(events_prune_step(&pr, test_outbox(f->repo), 6000, 10000, 5000, &pruned, NULL, 0),
			 MN_OK);
	assert_int_equal(pruned, 5);
	orders_sent(f, 3, 2000); /* sent late, stamped old: unseen */
	for (uint64_t t = 0; t < 10 * EVENTS_PRUNE_EVERY_MS; t += 10) {
		assert_int_equal(
			events_prune_step(&pr, test_outbox(f->repo), 6000 + t, 10000, 5000, &pruned, NULL, 0),
			MN_OK);
		assert_int_equal(pruned, 0);
	}
	assert_int_equal(stats(f->repo).sent, 3);
	assert_int_equal(pr.total, 5);
}

/* Pending events are not pruned, however old the cutoff. */
static void test_prune_never_pending(void **state)
{
	struct fixture *f = *state;
	struct events_prune pr = {0};
	struct order o;
	size_t pruned;

	order_init(&o);
	assert_int_equal(orders_repo_create_order_event(f->repo, 1, "tea", 1, "ev-p", &o, NULL, 0),
			 MN_OK);
	order_release(&o);
	events_prune_observe(&pr, 1); /* as if one were sent long ago: the store is asked */
	assert_int_equal(events_prune_step(&pr, test_outbox(f->repo), 1, INT64_MAX / 2, 1000, &pruned, NULL, 0),
			 MN_OK);
	assert_int_equal(pruned, 0);
	assert_int_equal(stats(f->repo).pending, 1);
}

#define BOTH(fn)                                                                                   \
	cmocka_unit_test_setup_teardown(fn, setup_memory, teardown),                               \
		cmocka_unit_test_setup_teardown(fn, setup_sqlite, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_confirmed_prefix),
		BOTH(test_prune_backlog_in_bounded_batches),
		BOTH(test_prune_keeps_up_with_the_rate),
		BOTH(test_prune_none_while_nothing_due),
		BOTH(test_prune_never_pending),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
