#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/backoff.h"
#include "core/error.h"

static void test_delays_double_within_jitter_and_cap(void **state)
{
	struct backoff b;
	uint64_t expect[] = {100, 200, 400, 800, 1600, 2000, 2000, 2000};
	(void)state;

	backoff_init(&b, 100, 2000, 42);
	for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
		uint64_t d = backoff_next(&b);
		assert_in_range(d, expect[i] / 2, expect[i]);
	}
}

static void test_reset_starts_over(void **state)
{
	struct backoff b;
	(void)state;

	backoff_init(&b, 100, 30000, 7);
	for (int i = 0; i < 10; i++)
		backoff_next(&b);
	backoff_reset(&b);
	assert_in_range(backoff_next(&b), 50, 100);
}

static void test_jitter_spreads(void **state)
{
	struct backoff a, b;
	int differ = 0;
	(void)state;

	/* Two nodes with different seeds must not retry in lock step. */
	backoff_init(&a, 1000, 1000, 1);
	backoff_init(&b, 1000, 1000, 2);
	for (int i = 0; i < 20; i++)
		differ += backoff_next(&a) != backoff_next(&b);
	assert_true(differ > 10);
}

static void test_huge_attempt_count_does_not_overflow(void **state)
{
	struct backoff b;
	(void)state;

	backoff_init(&b, 1, UINT64_MAX / 2, 3);
	for (int i = 0; i < 200; i++)
		assert_true(backoff_next(&b) <= UINT64_MAX / 2);
}

static void test_error_map(void **state)
{
	(void)state;
	assert_int_equal(mn_err_http_status(MN_NOT_FOUND), 404);
	assert_int_equal(mn_err_http_status(MN_TOO_LARGE), 413);
	assert_string_equal(mn_strerror(MN_INVALID), "invalid argument");
	assert_string_equal(mn_http_reason(405), "Method Not Allowed");
	assert_int_equal(mn_err_http_status((enum mn_err)999), 500);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delays_double_within_jitter_and_cap),
		cmocka_unit_test(test_reset_starts_over),
		cmocka_unit_test(test_jitter_spreads),
		cmocka_unit_test(test_huge_attempt_count_does_not_overflow),
		cmocka_unit_test(test_error_map),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
