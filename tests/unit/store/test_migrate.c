/* The migration plan (which versions a database needs), and the SQLite
 * driver applying it: new files, files made before versioning (adopted as
 * version 1), files newer than the node. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "store/migrate.h"
#include "orders/orders_repo.h"
#include "users/users_repo.h"
#include "store/store_fixture.h" /* tests/unit/store/ */

static const struct migration three[] = {
	{1, "one", "s1", "p1"},
	{2, "two", "s2", "p2"},
	{3, "three", "s3", "p3"},
};

static void test_versions_follow_each_other(void **state)
{
	(void)state;
	assert_true(store_migrations_count > 0);
	for (size_t i = 0; i < store_migrations_count; i++) {
		assert_int_equal(store_migrations[i].version, (int)i + 1);
		assert_non_null(store_migrations[i].what);
		assert_non_null(store_migrations[i].sqlite);
		assert_non_null(store_migrations[i].postgres);
	}
	assert_int_equal(migrate_latest(store_migrations, store_migrations_count),
			 (int)store_migrations_count);
	assert_int_equal(migrate_latest(three, 0), 0);
}

static void test_plan(void **state)
{
	struct migrate_plan p;
	char err[256] = "";

	(void)state;
	/* empty database: everything */
	assert_int_equal(migrate_plan(three, 3, 0, false, false, &p, err, sizeof(err)), MN_OK);
	assert_int_equal(p.first, 0);
	assert_false(p.adopt);
	/* part way: the rest */
	assert_int_equal(migrate_plan(three, 3, 1, true, false, &p, err, sizeof(err)), MN_OK);
	assert_int_equal(p.first, 1);
	assert_false(p.adopt);
	/* up to date: nothing */
	assert_int_equal(migrate_plan(three, 3, 3, true, true, &p, err, sizeof(err)), MN_OK);
	assert_int_equal(p.first, 3);
	/* made before versioning: adopted, version 1 (idempotent) and on */
	assert_int_equal(migrate_plan(three, 3, 0, true, true, &p, err, sizeof(err)), MN_OK);
	assert_int_equal(p.first, 0);
	assert_true(p.adopt);
	assert_string_equal(err, "");
}

static void test_plan_refusals(void **state)
{
	struct migrate_plan p;
	char err[256] = "";

	(void)state;
	assert_int_equal(migrate_plan(three, 3, 4, true, true, &p, err, sizeof(err)), MN_CONFIG);
	assert_string_equal(err, "the schema is at version 4, newer than this node knows (3): "
				 "run a node at least as new");
	assert_int_equal(p.first, 3);
	assert_int_equal(migrate_plan(three, 3, 0, true, false, &p, err, sizeof(err)), MN_CONFIG);
	assert_non_null(strstr(err, "tables that no meshnode migration made"));
	assert_int_equal(migrate_plan(three, 3, -1, false, true, &p, NULL, 0), MN_CONFIG);
}

/* ---- SQLite ------------------------------------------------------------ */

struct fixture {
	char dir[64];
	char path[128];
	char log[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	*state = f;
	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/meshnode-migrate.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/store.db", f->dir);
	snprintf(f->log, sizeof(f->log), "%s/log", f->dir);
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

static void exec_sql(const char *path, const char *sql)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	chmod(path, 0600); /* as the node makes them: no warning in the output */
}

static int count_sql(const char *path, const char *sql)
{
	sqlite3_stmt *st;
	sqlite3 *db;
	int n;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

static const char *read_text(const char *path)
{
	static char text[8192];
	FILE *fp = fopen(path, "r");
	size_t n = fp ? fread(text, 1, sizeof(text) - 1, fp) : 0;

	if (fp)
		fclose(fp);
	text[n] = '\0';
	return text;
}

/* Opens the users repository with the log going to f->log. */
static struct users_repo *open_users(struct fixture *f, char *err, size_t errlen)
{
	int fd = open(f->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	struct users_repo *r;

	assert_true(fd >= 0);
	log_set_fd(fd);
	r = test_users_sqlite(f->path, err, errlen);
	log_set_fd(2);
	close(fd);
	return r;
}

static void test_sqlite_new_file(void **state)
{
	struct fixture *f = *state;
	struct users_repo *r;
	char err[256];

	r = open_users(f, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(count_sql(f->path, "SELECT max(version) FROM " MIGRATE_TABLE),
			 (int)store_migrations_count);
	assert_int_equal(count_sql(f->path, "SELECT count(*) FROM " MIGRATE_TABLE
					    " WHERE applied_at LIKE '20%Z'"),
			 (int)store_migrations_count);
	assert_non_null(strstr(read_text(f->log), "schema migration 1 applied (users and orders)"));
	test_store_close(r);

	/* the next open has nothing to do and says nothing */
	r = open_users(f, err, sizeof(err));
	assert_non_null(r);
	assert_null(strstr(read_text(f->log), "schema migration"));
	assert_int_equal(count_sql(f->path, "SELECT count(*) FROM " MIGRATE_TABLE),
			 (int)store_migrations_count);
	test_store_close(r);
}

/* A file as the node made it before versioning: both tables, the email
 * index, rows, no schema_migrations. It is adopted as version 1, its rows
 * and ids kept. */
static void test_sqlite_file_from_before_versioning(void **state)
{
	struct fixture *f = *state;
	struct orders_repo *o;
	struct users_repo *r;
	struct user u;
	struct order ord;
	char err[256];

	exec_sql(f->path,
		 "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT,"
		 " name TEXT NOT NULL, email TEXT);"
		 "CREATE UNIQUE INDEX users_email_nocase ON users (email COLLATE NOCASE);"
		 "CREATE TABLE orders (id INTEGER PRIMARY KEY AUTOINCREMENT,"
		 " user_id INTEGER NOT NULL, product TEXT NOT NULL,"
		 " quantity INTEGER NOT NULL);"
		 "INSERT INTO users (name, email) VALUES ('A', 'a@x.com'), ('B', 'b@x.com');"
		 "INSERT INTO orders (user_id, product, quantity) VALUES (1, 'p', 2)");
	r = open_users(f, err, sizeof(err));
	assert_non_null(r);
	assert_non_null(strstr(read_text(f->log), "made before schema versions were recorded: "
						  "adopted as version 1 (users and orders)"));
	assert_int_equal(count_sql(f->path, "SELECT max(version) FROM " MIGRATE_TABLE),
			 (int)store_migrations_count);
	user_init(&u);
	assert_int_equal(users_repo_get(r, 2, &u), MN_OK);
	assert_string_equal(u.email, "b@x.com");
	assert_int_equal(users_repo_create_user(r, "C", "A@X.COM", &u, NULL, 0), MN_CONFLICT);
	assert_int_equal(users_repo_create_user(r, "C", "c@x.com", &u, NULL, 0), MN_OK);
	assert_int_equal(u.id, 3);
	user_release(&u);
	o = test_orders_sqlite(f->path, err, sizeof(err));
	assert_non_null(o);
	order_init(&ord);
	assert_int_equal(orders_repo_get(o, 1, &ord), MN_OK);
	assert_string_equal(ord.product, "p");
	order_release(&ord);
	test_store_close(o);
	test_store_close(r);
}

/* A users node's file of before: the users table only. Adopted, and the
 * orders table is made (version 1 holds both), so the same file serves
 * an orders module. */
static void test_sqlite_users_only_file_completed(void **state)
{
	struct fixture *f = *state;
	struct orders_repo *o;
	struct order ord;
	char err[256];

	exec_sql(f->path, "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT,"
			  " name TEXT NOT NULL, email TEXT UNIQUE);"
			  "INSERT INTO users (name, email) VALUES ('A', 'a@x.com')");
	o = test_orders_sqlite(f->path, err, sizeof(err));
	assert_non_null(o);
	order_init(&ord);
	assert_int_equal(orders_repo_create_order(o, 1, "p", 1, &ord, NULL, 0), MN_OK);
	assert_int_equal(ord.id, 1);
	order_release(&ord);
	test_store_close(o);
	assert_int_equal(count_sql(f->path, "SELECT count(*) FROM users"), 1);
	assert_int_equal(count_sql(f->path, "SELECT max(version) FROM " MIGRATE_TABLE),
			 (int)store_migrations_count);
}

/* A file a node of schema version 1 made: migration 2 alone is applied,
 * the outbox table with the partial index that reading the pending events
 * uses, the orders kept. */
static void test_sqlite_version_1_file_gets_the_outbox(void **state)
{
	struct fixture *f = *state;
	struct outbox_event *v;
	struct orders_repo *o;
	struct order ord;
	char err[256], plan[256] = "";
	const char *log;
	sqlite3_stmt *st;
	sqlite3 *db;
	size_t n;
	int fd;

	exec_sql(f->path, "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT,"
			  " name TEXT NOT NULL, email TEXT);"
			  "CREATE TABLE orders (id INTEGER PRIMARY KEY AUTOINCREMENT,"
			  " user_id INTEGER NOT NULL, product TEXT NOT NULL,"
			  " quantity INTEGER NOT NULL);"
			  "INSERT INTO orders (user_id, product, quantity) VALUES (1, 'p', 2);"
			  "CREATE TABLE " MIGRATE_TABLE " (version INTEGER PRIMARY KEY,"
			  " applied_at TEXT NOT NULL);"
			  "INSERT INTO " MIGRATE_TABLE " VALUES (1, 'x')");
	fd = open(f->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	log_set_fd(fd);
	o = test_orders_sqlite(f->path, err, sizeof(err));
	log_set_fd(2);
	close(fd);
	assert_non_null(o);
	log = read_text(f->log);
	assert_non_null(strstr(log, "schema migration 2 applied (events outbox)"));
	assert_null(strstr(log, "schema migration 1"));
	assert_non_null(
		strstr(log, "schema migration 3 applied (events outbox index of sent rows)"));
	assert_int_equal(count_sql(f->path, "SELECT max(version) FROM " MIGRATE_TABLE),
			 (int)store_migrations_count);
	assert_int_equal(count_sql(f->path,
				   "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
				   " AND name = 'events_outbox_pending'"
				   " AND sql LIKE '%WHERE sent_ms IS NULL'"),
			 1);

	/* the publisher's read walks the partial index */
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "EXPLAIN QUERY PLAN SELECT id, event_id, type, body,"
					    " created_ms FROM events_outbox WHERE sent_ms IS NULL"
					    " ORDER BY id LIMIT 10",
					    -1, &st, NULL),
			 SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW)
		snprintf(plan + strlen(plan), sizeof(plan) - strlen(plan), "%s;",
			 (const char *)sqlite3_column_text(st, 3));
	sqlite3_finalize(st);
	assert_non_null(strstr(plan, "events_outbox_pending"));
	assert_null(strstr(plan, "TEMP B-TREE")); /* no sort */

	/* a prune batch is a range of the index of sent rows: no scan of
	 * the table, no sort (migration 3; the statement of orders_sqlite.c) */
	plan[0] = '\0';
	assert_int_equal(
		sqlite3_prepare_v2(db,
				   "EXPLAIN QUERY PLAN DELETE FROM events_outbox WHERE id IN"
				   " (SELECT id FROM events_outbox WHERE sent_ms IS NOT NULL"
				   " AND sent_ms < ?1 ORDER BY sent_ms, id LIMIT ?2)",
				   -1, &st, NULL),
		SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW)
		snprintf(plan + strlen(plan), sizeof(plan) - strlen(plan), "%s;",
			 (const char *)sqlite3_column_text(st, 3));
	sqlite3_finalize(st);
	sqlite3_close(db);
	assert_non_null(
		strstr(plan, "SEARCH events_outbox USING COVERING INDEX events_outbox_sent"));
	assert_null(strstr(plan, "SCAN events_outbox"));
	assert_null(strstr(plan, "TEMP B-TREE"));

	order_init(&ord);
	assert_int_equal(orders_repo_get(o, 1, &ord), MN_OK);
	assert_string_equal(ord.product, "p");
	assert_int_equal(orders_repo_create_order_event(o, 1, "q", 1, "ev", &ord, NULL, 0), MN_OK);
	assert_int_equal(ord.id, 2);
	assert_int_equal(outbox_pending(test_outbox(o), 10, &v, &n, NULL, 0), MN_OK);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].id, 1);
	outbox_events_free(v, n);
	order_release(&ord);
	test_store_close(o);
}

/* A file a newer node migrated: refused with the versions, untouched. */
static void test_sqlite_newer_file_refused(void **state)
{
	struct fixture *f = *state;
	char err[256] = "", want[200];

	exec_sql(f->path, "CREATE TABLE " MIGRATE_TABLE " (version INTEGER PRIMARY KEY,"
			  " applied_at TEXT NOT NULL);"
			  "INSERT INTO " MIGRATE_TABLE " VALUES (1, 'x'), (99, 'y')");
	assert_null(open_users(f, err, sizeof(err)));
	snprintf(want, sizeof(want), "the schema is at version 99, newer than this node knows (%d)",
		 (int)store_migrations_count);
	assert_non_null(strstr(err, want));
	assert_int_equal(count_sql(f->path, "SELECT count(*) FROM sqlite_master"
					    " WHERE name IN ('users', 'orders')"),
			 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_versions_follow_each_other),
		cmocka_unit_test(test_plan),
		cmocka_unit_test(test_plan_refusals),
		cmocka_unit_test_setup_teardown(test_sqlite_new_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sqlite_file_from_before_versioning, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sqlite_users_only_file_completed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sqlite_version_1_file_gets_the_outbox, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sqlite_newer_file_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
