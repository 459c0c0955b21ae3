#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "peers/balancer.h"

/* What the strategies see of an instance, in an array. */
struct cand {
	bool eligible;
	unsigned inflight;
};


static bool cand_eligible(void *ctx, size_t i) { return ((struct cand *)ctx)[i].eligible; }
static unsigned cand_inflight(void *ctx, size_t i) { return ((struct cand *)ctx)[i].inflight; }

static size_t pick(const struct lb_strategy *lb, struct lb_state *st, struct cand *c, size_t n)
{
	struct lb_view v = {n, cand_eligible, cand_inflight, c};

	return lb->pick(st, &v);
}

static void test_find(void **state)
{
	(void)state;
	assert_non_null(lb_find("round_robin"));
	assert_non_null(lb_find("random"));
	assert_non_null(lb_find("least_inflight"));
	assert_null(lb_find("weighted"));
	assert_null(lb_find(""));
}

static void test_round_robin_cycles_and_skips_ineligible(void **state)
{
	const struct lb_strategy *rr = lb_find("round_robin");
	struct cand c[3] = {{true, 0}, {true, 0}, {true, 0}};
	struct lb_state st;
	(void)state;

	lb_state_init(&st, 1);
	assert_int_equal(pick(rr, &st, c, 3), 0);
	assert_int_equal(pick(rr, &st, c, 3), 1);
	assert_int_equal(pick(rr, &st, c, 3), 2);
	assert_int_equal(pick(rr, &st, c, 3), 0);
	c[1].eligible = false;
	/* position 1 falls to the next eligible one */
	assert_int_equal(pick(rr, &st, c, 3), 2);
	assert_int_equal(pick(rr, &st, c, 3), 2);
	assert_int_equal(pick(rr, &st, c, 3), 0);
	c[0].eligible = c[2].eligible = false;
	assert_int_equal(pick(rr, &st, c, 3), LB_NONE);
	assert_int_equal(pick(rr, &st, c, 0), LB_NONE);
}

static void test_random_spreads_over_eligible_only(void **state)
{
	const struct lb_strategy *rnd = lb_find("random");
	struct cand c[4] = {{true, 0}, {false, 0}, {true, 0}, {true, 0}};
	unsigned seen[4] = {0};
	struct lb_state st;
	(void)state;

	lb_state_init(&st, 42);
	for (int i = 0; i < 3000; i++) {
		size_t k = pick(rnd, &st, c, 4);

		assert_true(k < 4);
		seen[k]++;
	}
	assert_int_equal(seen[1], 0);
	for (int k = 0; k < 4; k += k == 0 ? 2 : 1)
		assert_in_range(seen[k], 800, 1200); /* about a third each */
}

static void test_least_inflight_prefers_idle_and_breaks_ties(void **state)
{
	const struct lb_strategy *li = lb_find("least_inflight");
	struct cand c[3] = {{true, 5}, {true, 1}, {true, 3}};
	unsigned seen[3] = {0};
	struct lb_state st;
	(void)state;

	lb_state_init(&st, 7);
	assert_int_equal(pick(li, &st, c, 3), 1);
	c[1].eligible = false;
	assert_int_equal(pick(li, &st, c, 3), 2);
	/* equal load: both get picks */
	c[1] = (struct cand){true, 0};
	c[2] = (struct cand){true, 0};
	for (int i = 0; i < 1000; i++)
		seen[pick(li, &st, c, 3)]++;
	assert_int_equal(seen[0], 0);
	assert_in_range(seen[1], 350, 650);
	assert_in_range(seen[2], 350, 650);
}

/* ---- thousands of instances -------------------------------------------- */

#define MANY 10000

static struct cand *cands(size_t n, bool eligible)
{
	struct cand *c = calloc(n, sizeof(*c));

	assert_non_null(c);
	for (size_t i = 0; i < n; i++)
		c[i].eligible = eligible;
	return c;
}

static void test_few_eligible_among_ten_thousand_are_found(void **state)
{
	static const char *const names[] = {"round_robin", "random", "least_inflight"};
	static const size_t eligible[] = {17, 3350, 6700};
	struct cand *c = cands(MANY, false);
	struct lb_state st;
	(void)state;

	for (size_t k = 0; k < 3; k++)
		c[eligible[k]].eligible = true;
	for (size_t s = 0; s < 3; s++) {
		const struct lb_strategy *lb = lb_find(names[s]);
		unsigned seen[3] = {0};
		/* round robin: one full turn of positions */
		int picks = s == 0 ? MANY : 600;

		lb_state_init(&st, 11 + s);
		for (int i = 0; i < picks; i++) {
			size_t got = pick(lb, &st, c, MANY), k;

			for (k = 0; k < 3 && eligible[k] != got; k++)
				;
			if (k == 3)
				fail_msg("%s picked %zu, not an eligible instance", names[s], got);
			seen[k]++;
		}
		for (size_t k = 0; k < 3; k++)
			assert_true(seen[k] > 0);
		if (s == 0) {
			/* each position falls to the next eligible instance */
			assert_int_equal(seen[0], 18 + (MANY - 6701));
			assert_int_equal(seen[1], 3350 - 17);
			assert_int_equal(seen[2], 6700 - 3350);
		}
	}

	/* one left, the last one; then none */
	for (size_t k = 0; k < 3; k++)
		c[eligible[k]].eligible = false;
	c[MANY - 1].eligible = true;
	for (size_t s = 0; s < 3; s++) {
		lb_state_init(&st, 5);
		for (int i = 0; i < 50; i++)
			assert_int_equal(pick(lb_find(names[s]), &st, c, MANY), MANY - 1);
	}
	c[MANY - 1].eligible = false;
	for (size_t s = 0; s < 3; s++)
		assert_int_equal(pick(lb_find(names[s]), &st, c, MANY), LB_NONE);
	free(c);
}

static void test_spread_over_ten_thousand(void **state)
{
	static const char *const names[] = {"round_robin", "random", "least_inflight"};
	struct cand *c = cands(MANY, true);
	unsigned *seen = calloc(MANY, sizeof(*seen));
	struct lb_state st;
	(void)state;

	assert_non_null(seen);
	for (size_t s = 0; s < 3; s++) {
		const struct lb_strategy *lb = lb_find(names[s]);
		int picks = s == 0 ? 3 * MANY : 20 * MANY;
		unsigned min = UINT32_MAX, max = 0;

		memset(seen, 0, MANY * sizeof(*seen));
		lb_state_init(&st, 1234 + s);
		for (int i = 0; i < picks; i++) {
			size_t got = pick(lb, &st, c, MANY);

			assert_true(got < MANY);
			seen[got]++;
		}
		for (size_t i = 0; i < MANY; i++) {
			min = seen[i] < min ? seen[i] : min;
			max = seen[i] > max ? seen[i] : max;
		}
		if (s == 0) {
			assert_int_equal(min, 3); /* exactly three turns */
			assert_int_equal(max, 3);
		} else {
			/* Poisson(20) each: none left out (P(0) = 2e-9 per
			 * instance), none above 60 (P = 1e-13) */
			assert_true(min >= 1);
			assert_true(max <= 60);
		}
	}
	free(seen);
	free(c);
}

/* A view that records which instances a pick asked the load of. */
struct asked {
	struct cand *c;
	size_t idx[8];
	size_t n;
};

static bool asked_eligible(void *ctx, size_t i) { return ((struct asked *)ctx)->c[i].eligible; }

static unsigned asked_inflight(void *ctx, size_t i)
{
	struct asked *a = ctx;
	size_t k;

	for (k = 0; k < a->n && a->idx[k] != i; k++)
		;
	if (k == a->n && a->n < 8)
		a->idx[a->n++] = i;
	return a->c[i].inflight;
}

/* One least_inflight pick over n instances: it compared two distinct
 * instances and took the less loaded (the first drawn on a tie). */
static size_t pick_two_choices(struct lb_state *st, struct cand *c, size_t n)
{
	struct asked a = {.c = c};
	struct lb_view v = {n, asked_eligible, asked_inflight, &a};
	size_t got = lb_find("least_inflight")->pick(st, &v), other;

	assert_int_equal(a.n, 2);
	assert_int_not_equal(a.idx[0], a.idx[1]);
	assert_true(got == a.idx[0] || got == a.idx[1]);
	other = got == a.idx[0] ? a.idx[1] : a.idx[0];
	assert_true(c[got].inflight <= c[other].inflight);
	return got;
}

static void test_least_inflight_two_choices_above_four(void **state)
{
	const struct lb_strategy *li = lb_find("least_inflight");
	struct cand four[4] = {{true, 3}, {true, 3}, {true, 0}, {true, 3}};
	struct cand five[5] = {{true, 3}, {true, 3}, {true, 3}, {true, 3}, {true, 0}};
	struct cand *many = cands(MANY, true);
	unsigned idle = 0, sum = 0;
	struct lb_state st;
	(void)state;

	lb_state_init(&st, 99);
	/* up to four: all compared, the idle one every time */
	for (int i = 0; i < 100; i++)
		assert_int_equal(pick(li, &st, four, 4), 2);

	/* five: two drawn; the idle one wins whenever it is drawn, 2/5 */
	for (int i = 0; i < 5000; i++)
		idle += pick_two_choices(&st, five, 5) == 4;
	assert_in_range(idle, 1700, 2300);

	/* ten thousand with loads 0..6: the lower of two, so the load taken is
	 * 91/49 = 1.86 on average where a random pick takes 3 */
	for (size_t i = 0; i < MANY; i++)
		many[i].inflight = (unsigned)(i % 7);
	for (int i = 0; i < 20000; i++)
		sum += many[pick_two_choices(&st, many, MANY)].inflight;
	assert_true(sum < 20000 * 21 / 10);
	assert_true(sum > 20000 * 16 / 10);
	free(many);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_round_robin_cycles_and_skips_ineligible),
		cmocka_unit_test(test_random_spreads_over_eligible_only),
		cmocka_unit_test(test_least_inflight_prefers_idle_and_breaks_ties),
		cmocka_unit_test(test_few_eligible_among_ten_thousand_are_found),
		cmocka_unit_test(test_spread_over_ten_thousand),
		cmocka_unit_test(test_least_inflight_two_choices_above_four),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
