/* The store object: one database, its repositories handed out over one
 * pool, its readiness and write state asked of it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "store/sqlite_pool.h"
#include "store/store.h"

struct fixture {
	char dir[64];
	char path[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/meshnode-store.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/node.db", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

/* Both repositories of a SQLite file write through the one pool of the
 * file: one group-commit writer counts both writes. */
static void test_sqlite_one_pool(void **state)
{
	struct fixture *f = *state;
	struct sqlite_write_stats ws;
	struct store_health h;
	struct store s;
	struct user u;
	struct order o;
	char err[256];

	assert_int_equal(
		store_open_sqlite(&s, f->path, NULL, STORE_USERS | STORE_ORDERS, err, sizeof(err)),
		MN_OK);
	assert_non_null(s.sqlite);
	assert_non_null(s.users);
	assert_non_null(s.orders);
	assert_non_null(s.outbox);
	assert_null(s.pg_pool);
	user_init(&u);
	order_init(&o);
	assert_int_equal(users_repo_create_user(s.users, "Ada", "ada@example.com", &u, NULL, 0),
			 MN_OK);
	assert_int_equal(
		orders_repo_create_order_event(s.orders, u.id, "tea", 2, "ev-1", &o, NULL, 0),
		MN_OK);
	sqlite_pool_write_stats(s.sqlite, &ws);
	assert_int_equal(ws.writes, 2);

	struct outbox_stats st;

	assert_int_equal(outbox_stats(s.outbox, &st, NULL, 0), MN_OK);
	assert_int_equal(st.pending, 1);
	assert_int_equal(store_ping(&s, err, sizeof(err)), MN_OK);
	store_health_read(&s, &h);
	assert_int_equal(h.fault, STORE_FAULT_NONE);
	for (int k = 0; k < STORE_FAULT_COUNT; k++)
		assert_int_equal(h.write_failures[k], 0);
	user_release(&u);
	order_release(&o);
	store_close(&s);
	assert_null(s.sqlite);
	assert_null(s.users);
	store_close(&s); /* twice: nothing */
}

/* Only the modules asked for get a repository (and the outbox goes with
 * the orders). */
static void test_sqlite_modules(void **state)
{
	struct fixture *f = *state;
	struct store s;
	char err[256];

	assert_int_equal(store_open_sqlite(&s, f->path, NULL, STORE_USERS, err, sizeof(err)),
			 MN_OK);
	assert_non_null(s.users);
	assert_null(s.orders);
	assert_null(s.outbox);
	store_close(&s);
	assert_int_equal(store_open_sqlite(&s, f->path, NULL, STORE_ORDERS, err, sizeof(err)),
			 MN_OK);
	assert_null(s.users);
	assert_non_null(s.orders);
	assert_non_null(s.outbox);
	store_close(&s);
}

static void test_sqlite_open_failure(void **state)
{
	struct store s;
	char err[256] = "";

	(void)state;
	assert_int_equal(store_open_sqlite(&s, "/proc/self/no/such/place/node.db", NULL,
					   STORE_USERS | STORE_ORDERS, err, sizeof(err)),
			 MN_IO);
	assert_true(err[0] != '\0');
	assert_null(s.users);
	store_close(&s);
}

static void test_memory(void **state)
{
	struct store_health h;
	struct store s;

	(void)state;
	assert_int_equal(store_open_memory(&s, STORE_USERS | STORE_ORDERS), MN_OK);
	assert_non_null(s.users);
	assert_non_null(s.orders);
	assert_non_null(s.outbox);
	assert_null(s.sqlite);
	assert_int_equal(store_ping(&s, NULL, 0), MN_OK);
	store_health_read(&s, &h);
	assert_int_equal(h.fault, STORE_FAULT_NONE);
	store_close(&s);
}

static void test_close_zeroed(void **state)
{
	struct store s = {0};

	(void)state;
	store_close(&s);
	store_probe_stop(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sqlite_one_pool, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sqlite_modules, setup, teardown),
		cmocka_unit_test(test_sqlite_open_failure),
		cmocka_unit_test(test_memory),
		cmocka_unit_test(test_close_zeroed),
	};

	log_set_level(MN_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
