#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "peers/breaker.h"

/* The clock is a number the test moves by hand. */

static void test_opens_after_threshold_consecutive_failures(void **state)
{
	struct breaker b;
	(void)state;

	breaker_init(&b);
	for (int i = 0; i < 4; i++) {
		breaker_failure(&b, 100, 5);
		assert_int_equal(b.state, BREAKER_CLOSED);
		assert_true(breaker_allow(&b, 100, 1000));
	}
	breaker_success(&b); /* a success in between starts the count over */
	for (int i = 0; i < 4; i++)
		breaker_failure(&b, 100, 5);
	assert_int_equal(b.state, BREAKER_CLOSED);
	breaker_failure(&b, 100, 5);
	assert_int_equal(b.state, BREAKER_OPEN);
	assert_false(breaker_allow(&b, 100, 1000));
	assert_false(breaker_allow(&b, 1099, 1000));
}

static void test_half_open_lets_one_probe_through(void **state)
{
	struct breaker b;
	(void)state;

	breaker_init(&b);
	breaker_trip(&b, 1000);
	assert_false(breaker_would_allow(&b, 1500, 1000));
	assert_true(breaker_would_allow(&b, 2000, 1000));
	assert_true(breaker_allow(&b, 2000, 1000));   /* the probe */
	assert_int_equal(b.state, BREAKER_HALF_OPEN);
	assert_false(breaker_allow(&b, 2001, 1000));  /* only one */
	assert_false(breaker_would_allow(&b, 2001, 1000));
	breaker_success(&b);
	assert_int_equal(b.state, BREAKER_CLOSED);
	assert_true(breaker_allow(&b, 2002, 1000));
	assert_true(breaker_allow(&b, 2002, 1000));
}

static void test_failed_probe_reopens_at_once(void **state)
{
	struct breaker b;
	(void)state;

	breaker_init(&b);
	breaker_trip(&b, 0);
	assert_true(breaker_allow(&b, 500, 500));
	breaker_failure(&b, 600, 5); /* one failure is enough in half-open */
	assert_int_equal(b.state, BREAKER_OPEN);
	assert_int_equal(b.opened_at, 600);
	assert_false(breaker_allow(&b, 1099, 500));
	assert_true(breaker_allow(&b, 1100, 500));
}

static void test_late_failure_while_open_changes_nothing(void **state)
{
	struct breaker b;
	(void)state;

	breaker_init(&b);
	breaker_trip(&b, 100);
	breaker_failure(&b, 900, 1); /* a call started before it opened */
	assert_int_equal(b.state, BREAKER_OPEN);
	assert_int_equal(b.opened_at, 100);
}

static void test_state_names(void **state)
{
	(void)state;
	assert_string_equal(breaker_state_name(BREAKER_CLOSED), "closed");
	assert_string_equal(breaker_state_name(BREAKER_OPEN), "open");
	assert_string_equal(breaker_state_name(BREAKER_HALF_OPEN), "half_open");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_opens_after_threshold_consecutive_failures),
		cmocka_unit_test(test_half_open_lets_one_probe_through),
		cmocka_unit_test(test_failed_probe_reopens_at_once),
		cmocka_unit_test(test_late_failure_while_open_changes_nothing),
		cmocka_unit_test(test_state_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
