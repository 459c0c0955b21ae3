#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strmap.h"

static void test_empty_map_finds_nothing(void **state)
{
	struct strmap m;
	size_t v = 7;
	(void)state;

	strmap_init(&m);
	assert_false(strmap_get(&m, "a", &v));
	assert_false(strmap_get(&m, "", NULL));
	assert_int_equal(v, 7);
	strmap_release(&m);
	strmap_release(&m); /* twice is harmless */
}

static void test_put_get_and_replace(void **state)
{
	struct strmap m;
	char a1[] = "peers.users.lb", a2[] = "peers.users.lb";
	size_t v;
	(void)state;

	strmap_init(&m);
	assert_int_equal(strmap_put(&m, a1, 1), MN_OK);
	assert_int_equal(strmap_put(&m, "", 2), MN_OK);
	assert_true(strmap_get(&m, "peers.users.lb", &v));
	assert_int_equal(v, 1);
	assert_true(strmap_get(&m, "", &v));
	assert_int_equal(v, 2);
	assert_false(strmap_get(&m, "peers.users", NULL));
	assert_false(strmap_get(&m, "peers.users.lbx", NULL));
	/* an equal key replaces the value and keeps the first key */
	assert_int_equal(strmap_put(&m, a2, 3), MN_OK);
	assert_int_equal(m.map.n, 2);
	assert_true(strmap_get(&m, a1, &v));
	assert_int_equal(v, 3);
	strmap_release(&m);
}

/* Many keys: the table grows, stays at most half full, and every key
 * still maps to its own value. */
static void test_many_keys_survive_growth(void **state)
{
	enum { N = 20000 };
	char (*keys)[32] = calloc(N, sizeof(*keys));
	struct strmap m;
	size_t v;
	(void)state;

	assert_non_null(keys);
	strmap_init(&m);
	for (size_t i = 0; i < N; i++) {
		snprintf(keys[i], sizeof(keys[i]), "peers.p%zu.timeout_ms", i);
		assert_int_equal(strmap_put(&m, keys[i], i), MN_OK);
	}
	assert_int_equal(m.map.n, N);
	assert_true(m.map.cap >= 2 * m.map.n);
	assert_true((m.map.cap & (m.map.cap - 1)) == 0);
	for (size_t i = 0; i < N; i++) {
		assert_true(strmap_get(&m, keys[i], &v));
		assert_int_equal(v, i);
	}
	assert_false(strmap_get(&m, "peers.p20000.timeout_ms", NULL));
	strmap_release(&m);
	free(keys);
}

/* Reserving makes room once: the puts that follow do not move the table. */
static void test_reserve_allocates_once(void **state)
{
	char keys[1000][16];
	struct strmap_entry *table;
	struct strmap m;
	size_t v;
	(void)state;

	strmap_init(&m);
	assert_int_equal(strmap_put(&m, "first", 0), MN_OK);
	assert_int_equal(strmap_reserve(&m, 1001), MN_OK);
	assert_true(m.map.cap >= 2002);
	table = m.map.entries;
	for (size_t i = 0; i < 1000; i++) {
		snprintf(keys[i], sizeof(keys[i]), "k%zu", i);
		assert_int_equal(strmap_put(&m, keys[i], i + 1), MN_OK);
	}
	assert_ptr_equal(m.map.entries, table);
	assert_true(strmap_get(&m, "first", &v));
	assert_int_equal(v, 0);
	assert_true(strmap_get(&m, "k999", &v));
	assert_int_equal(v, 1000);
	/* a smaller reservation changes nothing */
	assert_int_equal(strmap_reserve(&m, 10), MN_OK);
	assert_ptr_equal(m.map.entries, table);
	strmap_release(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_map_finds_nothing),
		cmocka_unit_test(test_put_get_and_replace),
		cmocka_unit_test(test_many_keys_survive_growth),
		cmocka_unit_test(test_reserve_allocates_once),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
