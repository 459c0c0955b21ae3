#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_round_robin_cycles_and_skips_ineligible),
		cmocka_unit_test(test_random_spreads_over_eligible_only),
		cmocka_unit_test(test_least_inflight_prefers_idle_and_breaks_ties),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
