#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/hashmap.h"

struct item {
	int key;
	int value;
};

static bool item_is(const void *entry, const void *key)
{
	return ((const struct item *)entry)->key == *(const int *)key;
}

static struct item *find(const struct hashmap *m, uint64_t h, int key)
{
	return hashmap_find(m, h, item_is, &key);
}

static void put(struct hashmap *m, uint64_t h, int key, int value)
{
	struct item *e = hashmap_insert(m, h);

	assert_non_null(e);
	assert_int_equal(e->key, 0); /* a new entry comes zeroed */
	e->key = key;
	e->value = value;
}

static uint64_t mixed(int key)
{
	return hash_mix(hash_bytes(HASH_START, &key, sizeof(key)));
}

static void test_empty_map(void **state)
{
	struct hashmap m;
	size_t i = 0;
	(void)state;

	hashmap_init(&m, sizeof(struct item));
	assert_null(find(&m, 1, 1));
	assert_null(hashmap_next(&m, &i));
	hashmap_release(&m);
	hashmap_release(&m); /* twice is harmless */
	assert_null(find(&m, 1, 1));
}

/* Every key on one hash: one cluster, told apart by the equality callback. */
static void test_constant_hash_collisions(void **state)
{
	enum { N = 200 };
	struct hashmap m;
	(void)state;

	hashmap_init(&m, sizeof(struct item));
	for (int k = 1; k <= N; k++)
		put(&m, 42, k, k * 10);
	assert_int_equal(m.n, N);
	for (int k = 1; k <= N; k++) {
		struct item *e = find(&m, 42, k);

		assert_non_null(e);
		assert_int_equal(e->value, k * 10);
	}
	assert_null(find(&m, 42, N + 1));
	assert_null(find(&m, 43, 1)); /* same key, another hash */
	hashmap_release(&m);
}

/* Hashes whose low bits put them in one run across the table's end: after
 * removing one in the middle (or at the start), every entry that probed
 * past it is found again, and the table holds no tombstone. */
static void test_remove_keeps_later_entries_reachable(void **state)
{
	struct hashmap m;
	uint64_t cap;
	(void)state;

	for (int victim = 1; victim <= 6; victim++) {
		hashmap_init(&m, sizeof(struct item));
		assert_int_equal(hashmap_reserve(&m, 8), MN_OK);
		cap = m.cap;
		/* keys 1-3 home at cap-2 (wrap to 0), 4-5 at cap-1, 6 at 0 */
		put(&m, cap - 2, 1, 1);
		put(&m, cap - 2, 2, 2);
		put(&m, cap - 2, 3, 3);
		put(&m, cap - 1, 4, 4);
		put(&m, cap - 1, 5, 5);
		put(&m, 0, 6, 6);
		hashmap_remove(&m, find(&m,
					victim <= 3   ? cap - 2
					: victim <= 5 ? cap - 1
						      : 0,
					victim));
		assert_int_equal(m.n, 5);
		for (int k = 1; k <= 6; k++) {
			uint64_t h = k <= 3 ? cap - 2 : k <= 5 ? cap - 1 : 0;
			struct item *e = find(&m, h, k);

			if (k == victim) {
				assert_null(e);
			} else {
				assert_non_null(e);
				assert_int_equal(e->value, k);
			}
		}
		/* backward shift: the run is contiguous again, one place shorter */
		size_t used = 0;
		for (size_t i = 0; i < m.cap; i++)
			used += m.hashes[i] != 0;
		assert_int_equal(used, 5);
		assert_int_equal(m.hashes[(cap - 2 + 5) & (cap - 1)], 0);
		hashmap_release(&m);
	}
}

/* Removing and inserting at random keeps the map equal to a plain array. */
static void test_random_insert_remove(void **state)
{
	enum { KEYS = 512, ROUNDS = 20000 };
	static bool present[KEYS];
	struct hashmap m;
	uint64_t rng = 12345;
	(void)state;

	memset(present, 0, sizeof(present));
	hashmap_init(&m, sizeof(struct item));
	for (int r = 0; r < ROUNDS; r++) {
		rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
		int k = (int)((rng >> 33) % KEYS);
		/* a weak hash (few distinct values) makes long clusters */
		uint64_t h = (uint64_t)(k % 37);
		struct item *e = find(&m, h, k);

		assert_true((e != NULL) == present[k]);
		if (e) {
			hashmap_remove(&m, e);
			present[k] = false;
		} else {
			put(&m, h, k, -k);
			present[k] = true;
		}
	}
	size_t n = 0;
	for (int k = 0; k < KEYS; k++) {
		struct item *e = find(&m, (uint64_t)(k % 37), k);

		assert_true((e != NULL) == present[k]);
		if (e)
			assert_int_equal(e->value, -k);
		n += present[k];
	}
	assert_int_equal(m.n, n);
	hashmap_release(&m);
}

/* The table grows by doubling, stays at most half full, and every entry is
 * still found; next() visits each once. */
static void test_growth_and_next(void **state)
{
	enum { N = 5000 };
	static bool seen[N];
	struct hashmap m;
	struct item *e;
	size_t i = 0, count = 0;
	(void)state;

	memset(seen, 0, sizeof(seen));
	hashmap_init(&m, sizeof(struct item));
	for (int k = 0; k < N; k++)
		put(&m, mixed(k), k, k + 1);
	assert_int_equal(m.n, N);
	assert_true(m.cap >= 2 * m.n);
	assert_true((m.cap & (m.cap - 1)) == 0);
	for (int k = 0; k < N; k++) {
		e = find(&m, mixed(k), k);
		assert_non_null(e);
		assert_int_equal(e->value, k + 1);
	}
	while ((e = hashmap_next(&m, &i)) != NULL) {
		assert_false(seen[e->key]);
		seen[e->key] = true;
		count++;
	}
	assert_int_equal(count, N);
	hashmap_release(&m);
}

/* Reserving makes room once: the inserts that follow do not move the
 * table; a smaller reservation changes nothing. */
static void test_reserve(void **state)
{
	struct hashmap m;
	uint64_t *table;
	(void)state;

	hashmap_init(&m, sizeof(struct item));
	assert_int_equal(hashmap_reserve(&m, 1000), MN_OK);
	assert_true(m.cap >= 2000);
	table = m.hashes;
	for (int k = 0; k < 1000; k++)
		put(&m, mixed(k), k, k);
	assert_ptr_equal(m.hashes, table);
	assert_int_equal(hashmap_reserve(&m, 10), MN_OK);
	assert_ptr_equal(m.hashes, table);
	hashmap_release(&m);
}

/* Entry sizes are rounded up to 8 bytes, so every entry is aligned. */
static void test_odd_entry_size(void **state)
{
	struct hashmap m;
	char *e;
	(void)state;

	hashmap_init(&m, 3);
	assert_int_equal(m.size, 8);
	for (int k = 0; k < 100; k++) {
		e = hashmap_insert(&m, (uint64_t)k);
		assert_non_null(e);
		assert_int_equal((uintptr_t)e % 8, 0);
		memcpy(e, "ab", 3);
	}
	hashmap_release(&m);
}

/* Out of memory: an insert or a reserve that must grow the table fails
 * and leaves the map as it was. The allocation is refused by asking for
 * more than SIZE_MAX / 4 places, which hashmap_reserve() refuses before
 * calling calloc, and by an entry size no table of the next size fits. */
static void test_nomem_leaves_map_unchanged(void **state)
{
	struct hashmap m;
	uint64_t *table;
	size_t cap;
	(void)state;

	hashmap_init(&m, sizeof(struct item));
	for (int k = 0; k < 8; k++)
		put(&m, mixed(k), k, k);
	table = m.hashes;
	cap = m.cap;
	assert_int_equal(hashmap_reserve(&m, SIZE_MAX / 2), MN_NOMEM);
	assert_ptr_equal(m.hashes, table);
	assert_int_equal(m.cap, cap);
	assert_int_equal(m.n, 8);
	for (int k = 0; k < 8; k++)
		assert_non_null(find(&m, mixed(k), k));
	hashmap_release(&m);

	/* entries so large that the first table cannot be allocated */
	hashmap_init(&m, SIZE_MAX / 8);
	assert_null(hashmap_insert(&m, 1));
	assert_int_equal(m.n, 0);
	assert_int_equal(m.cap, 0);
	assert_null(m.hashes);
	hashmap_release(&m);
}

/* Two maps get different seeds (a colliding set for one is not for the
 * other). */
static void test_seeds_differ(void **state)
{
	struct hashmap a, b;
	(void)state;

	hashmap_init(&a, 8);
	hashmap_init(&b, 8);
	assert_true(a.seed != b.seed);
	hashmap_release(&a);
	hashmap_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_map),
		cmocka_unit_test(test_constant_hash_collisions),
		cmocka_unit_test(test_remove_keeps_later_entries_reachable),
		cmocka_unit_test(test_random_insert_remove),
		cmocka_unit_test(test_growth_and_next),
		cmocka_unit_test(test_reserve),
		cmocka_unit_test(test_odd_entry_size),
		cmocka_unit_test(test_nomem_leaves_map_unchanged),
		cmocka_unit_test(test_seeds_differ),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
