#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/resource.h>

#include "core/fd_limit.h"

static struct rlimit saved;

static int setup(void **state)
{
	(void)state;
	return getrlimit(RLIMIT_NOFILE, &saved);
}

static int teardown(void **state)
{
	(void)state;
	return setrlimit(RLIMIT_NOFILE, &saved);
}

/* The soft limit is lowered (any process may) and raised again to the
 * hard one (any process may too: no root needed). */
static void test_soft_raised_to_hard(void **state)
{
	struct rlimit rl = saved;
	unsigned long long limit = 0;
	(void)state;

	if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max < 256)
		skip();
	rl.rlim_cur = 128;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	assert_true(fd_limit_raise(1, &limit));
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	assert_true(rl.rlim_cur == rl.rlim_max);
	assert_int_equal(limit, 0); /* enough: untouched */
}

/* Two descriptors a thread and 64 more: the bound at the limit itself. */
static void test_low_for_the_threads(void **state)
{
	struct rlimit rl = saved;
	unsigned long long limit = 0;
	int fit;
	(void)state;

	if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max < 256 || rl.rlim_max > (1u << 30))
		skip();
	fit = (int)((rl.rlim_max - 64) / 2);
	assert_true(fd_limit_raise(fit, &limit));
	assert_int_equal(limit, 0);
	assert_false(fd_limit_raise(fit + 1, &limit));
	assert_int_equal(limit, (unsigned long long)rl.rlim_max);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_soft_raised_to_hard, setup, teardown),
		cmocka_unit_test_setup_teardown(test_low_for_the_threads, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
