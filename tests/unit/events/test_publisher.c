#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>

#include "events/publisher.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_confirmed_prefix),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
