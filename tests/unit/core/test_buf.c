#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

static void test_append_and_printf(void **state)
{
	struct buf b;
	(void)state;

	buf_init(&b, 1024);
	assert_int_equal(buf_puts(&b, "status="), MN_OK);
	assert_int_equal(buf_printf(&b, "%d %s", 201, "Created"), MN_OK);
	assert_string_equal(b.data, "status=201 Created");
	assert_int_equal(b.len, strlen("status=201 Created"));
	buf_release(&b);
}

static void test_grows_across_many_appends(void **state)
{
	struct buf b;
	(void)state;

	buf_init(&b, 1 << 20);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(buf_printf(&b, "%04d", i), MN_OK);
	assert_int_equal(b.len, 4000);
	assert_memory_equal(b.data + 3996, "0999", 4);
	buf_release(&b);
}

static void test_cap_refuses_and_frees(void **state)
{
	struct buf b;
	(void)state;

	buf_init(&b, 8);
	assert_int_equal(buf_puts(&b, "12345678"), MN_OK);
	assert_int_equal(buf_puts(&b, "9"), MN_TOO_LARGE);
	assert_null(b.data);
	assert_int_equal(b.len, 0);

	buf_init(&b, 8);
	assert_int_equal(buf_printf(&b, "%s", "123456789"), MN_TOO_LARGE);
	assert_null(b.data);
}

static void test_printf_cap_when_room_exists(void **state)
{
	struct buf b;
	(void)state;

	/* The first append allocates 64 bytes; a printf that fits the
	 * allocation but not the cap must still be refused. */
	buf_init(&b, 10);
	assert_int_equal(buf_puts(&b, "abc"), MN_OK);
	assert_int_equal(buf_printf(&b, "%s", "defghijklmn"), MN_TOO_LARGE);
	assert_null(b.data);
}

static void test_reserve_then_commit(void **state)
{
	struct buf b;
	enum mn_err err;
	char *w;
	(void)state;

	buf_init(&b, 10);
	w = buf_reserve(&b, 4, &err);
	assert_non_null(w);
	assert_int_equal(err, MN_OK);
	memcpy(w, "abc", 3);
	buf_commit(&b, 3);
	assert_int_equal(b.len, 3);
	assert_string_equal(b.data, "abc");
	w = buf_reserve(&b, 7, &err);
	assert_non_null(w);
	buf_commit(&b, 0);
	assert_string_equal(b.data, "abc");
	assert_null(buf_reserve(&b, 8, &err)); /* 3 + 8 > cap: refused, freed */
	assert_int_equal(err, MN_TOO_LARGE);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	buf_release(&b);
}

static void test_steal_leaves_empty(void **state)
{
	struct buf b;
	size_t len;
	char *s;
	(void)state;

	buf_init(&b, 64);
	s = buf_steal(&b, &len);
	assert_non_null(s);
	assert_string_equal(s, "");
	assert_int_equal(len, 0);
	free(s);
	buf_puts(&b, "x");
	s = buf_steal(&b, &len);
	assert_string_equal(s, "x");
	assert_null(b.data);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_and_printf),
		cmocka_unit_test(test_grows_across_many_appends),
		cmocka_unit_test(test_cap_refuses_and_frees),
		cmocka_unit_test(test_printf_cap_when_room_exists),
		cmocka_unit_test(test_reserve_then_commit),
		cmocka_unit_test(test_steal_leaves_empty),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
