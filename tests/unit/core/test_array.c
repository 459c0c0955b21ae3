#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

#include "core/array.h"

static void test_grows_by_doubling_and_keeps_content(void **state)
{
	int *items = NULL;
	size_t alloc = 0, n = 0;
	(void)state;

	for (int i = 0; i < 100; i++) {
		assert_true(array_reserve(&items, &alloc, n, sizeof(*items), 4));
		assert_true(alloc > n);
		items[n++] = i;
	}
	assert_int_equal(alloc, 128); /* 4, 8, ..., 128 */
	for (int i = 0; i < 100; i++)
		assert_int_equal(items[i], i);
	free(items);
}

static void test_no_growth_when_room(void **state)
{
	int *items = malloc(8 * sizeof(*items));
	int *before = items;
	size_t alloc = 8;
	(void)state;

	assert_true(array_reserve(&items, &alloc, 7, sizeof(*items), 4));
	assert_ptr_equal(items, before);
	assert_int_equal(alloc, 8);
	free(items);
}

static void test_overflow_refused_and_state_kept(void **state)
{
	char *items = malloc(16);
	size_t alloc = SIZE_MAX / 2 + 1;
	(void)state;

	/* doubling would wrap: refused, nothing changed */
	assert_false(array_reserve(&items, &alloc, alloc, 1, 4));
	assert_int_equal(alloc, SIZE_MAX / 2 + 1);
	assert_non_null(items);
	free(items);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grows_by_doubling_and_keeps_content),
		cmocka_unit_test(test_no_growth_when_room),
		cmocka_unit_test(test_overflow_refused_and_state_kept),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
