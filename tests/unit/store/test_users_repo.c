/* The same repository tests run against the memory and the SQLite store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "users/users_repo.h"
#include "store/store_fixture.h" /* tests/unit/store/ */

struct fixture {
	struct users_repo *repo;
	char dir[64];
	char path[128];
};

static int setup_memory(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->repo = test_users_memory();
	*state = f;
	return f->repo ? 0 : -1;
}

static int setup_sqlite(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	snprintf(f->dir, sizeof(f->dir), "/tmp/meshnode-repo.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	/* a parent that does not exist yet: the store creates it */
	snprintf(f->path, sizeof(f->path), "%s/sub/users.db", f->dir);
	f->repo = test_users_sqlite(f->path, err, sizeof(err));
	*state = f;
	return f->repo ? 0 : -1;
}

static int setup_pg(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->repo = test_users_pg();
	*state = f;
	return f->repo ? 0 : -1;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[160];

	test_store_close(f->repo);
	if (f->dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
		if (system(cmd) != 0)
			return -1;
	}
	free(f);
	return 0;
}

static void test_crud(void **state)
{
	struct users_repo *r = ((struct fixture *)*state)->repo;
	struct user a, b, got;

	user_init(&a);
	user_init(&b);
	user_init(&got);
	assert_int_equal(users_repo_create_user(r, "Ada", "ada@example.com", &a, NULL, 0), MN_OK);
	assert_int_equal(users_repo_create_user(r, "Bob", NULL, &b, NULL, 0), MN_OK);
	assert_true(b.id > a.id);
	assert_int_equal(users_repo_get(r, a.id, &got), MN_OK);
	assert_string_equal(got.name, "Ada");
	assert_string_equal(got.email, "ada@example.com");
	assert_int_equal(users_repo_get(r, b.id, &got), MN_OK);
	assert_null(got.email);
	assert_int_equal(users_repo_update(r, b.id, "Bobby", "bob@example.com", &got, NULL, 0),
			 MN_OK);
	assert_string_equal(got.name, "Bobby");
	assert_int_equal(users_repo_get(r, b.id, &got), MN_OK);
	assert_string_equal(got.email, "bob@example.com");
	assert_int_equal(users_repo_delete(r, a.id, NULL, 0), MN_OK);
	assert_int_equal(users_repo_get(r, a.id, &got), MN_NOT_FOUND);
	assert_int_equal(users_repo_delete(r, a.id, NULL, 0), MN_NOT_FOUND);
	assert_int_equal(users_repo_update(r, a.id, "x", NULL, &got, NULL, 0), MN_NOT_FOUND);
	assert_int_equal(test_store_ping(r, NULL, 0), MN_OK);
	user_release(&a);
	user_release(&b);
	user_release(&got);
}

static void test_email_conflicts(void **state)
{
	struct users_repo *r = ((struct fixture *)*state)->repo;
	struct user a, b;

	user_init(&a);
	user_init(&b);
	assert_int_equal(users_repo_create_user(r, "A", "same@example.com", &a, NULL, 0), MN_OK);
	assert_int_equal(users_repo_create_user(r, "B", "same@example.com", &b, NULL, 0),
			 MN_CONFLICT);
	assert_int_equal(users_repo_create_user(r, "C", NULL, &b, NULL, 0), MN_OK);
	assert_int_equal(users_repo_create_user(r, "D", NULL, &b, NULL, 0),
			 MN_OK); /* NULLs never clash */
	assert_int_equal(users_repo_update(r, b.id, "D", "same@example.com", &b, NULL, 0),
			 MN_CONFLICT);
	assert_int_equal(users_repo_update(r, a.id, "A2", "same@example.com", &a, NULL, 0),
			 MN_OK); /* own */
	user_release(&a);
	user_release(&b);
}

/* The service hands the repository trimmed emails; the repository folds
 * ASCII case, as SQLite's NOCASE does, and nothing else. */
static void test_email_conflicts_ignore_case(void **state)
{
	struct users_repo *r = ((struct fixture *)*state)->repo;
	struct user a, b;

	user_init(&a);
	user_init(&b);
	assert_int_equal(users_repo_create_user(r, "A", "DUP@x.com", &a, NULL, 0), MN_OK);
	assert_string_equal(a.email, "DUP@x.com"); /* stored as given */
	assert_int_equal(users_repo_create_user(r, "B", "dup@x.com", &b, NULL, 0), MN_CONFLICT);
	assert_int_equal(users_repo_create_user(r, "B", "dup@X.COM", &b, NULL, 0), MN_CONFLICT);
	assert_int_equal(users_repo_create_user(r, "B", "other@x.com", &b, NULL, 0), MN_OK);
	/* an update may change the case of its own email, not take another's */
	assert_int_equal(users_repo_update(r, b.id, "B", "Dup@X.Com", &b, NULL, 0), MN_CONFLICT);
	assert_int_equal(users_repo_update(r, a.id, "A", "dup@x.com", &a, NULL, 0), MN_OK);
	assert_string_equal(a.email, "dup@x.com");
	assert_int_equal(users_repo_update(r, 999999, "Z", "dup@x.com", &b, NULL, 0), MN_NOT_FOUND);
	/* only ASCII folds: these are two addresses */
	assert_int_equal(users_repo_create_user(r, "C", "\xc3\x89@x.com", &b, NULL, 0), MN_OK);
	assert_int_equal(users_repo_create_user(r, "D", "\xc3\xa9@x.com", &b, NULL, 0), MN_OK);
	/* once freed, the address may be taken in any case */
	assert_int_equal(users_repo_delete(r, a.id, NULL, 0), MN_OK);
	assert_int_equal(users_repo_create_user(r, "E", "DUP@X.COM", &b, NULL, 0), MN_OK);
	user_release(&a);
	user_release(&b);
}

/* Many users, deletes and email changes: each email is taken by one user at
 * a time whatever came before (the memory store's email index grows, and
 * reuses the places of removed emails). */
static void test_email_uniqueness_through_churn(void **state)
{
	struct users_repo *r = ((struct fixture *)*state)->repo;
	enum { N = 3000 };
	int64_t *ids = calloc(N, sizeof(*ids));
	char email[64], other[64];
	struct user u;

	assert_non_null(ids);
	user_init(&u);
	for (int i = 0; i < N; i++) {
		snprintf(email, sizeof(email), "user%d@x.com", i);
		assert_int_equal(users_repo_create_user(r, "U", email, &u, NULL, 0), MN_OK);
		ids[i] = u.id;
	}
	/* every third gone, every fifth moved to a new address */
	for (int i = 0; i < N; i += 3)
		assert_int_equal(users_repo_delete(r, ids[i], NULL, 0), MN_OK);
	for (int i = 1; i < N; i += 5) {
		if (i % 3 == 0)
			continue;
		snprintf(email, sizeof(email), "MOVED%d@X.com", i);
		assert_int_equal(users_repo_update(r, ids[i], "U", email, &u, NULL, 0), MN_OK);
	}
	for (int i = 0; i < N; i++) {
		bool gone = i % 3 == 0, moved = !gone && i % 5 == 1;

		/* the old address: free when its user is gone or moved */
		snprintf(email, sizeof(email), "USER%d@x.com", i);
		assert_int_equal(users_repo_create_user(r, "V", email, &u, NULL, 0),
				 gone || moved ? MN_OK : MN_CONFLICT);
		if (moved) {
			snprintf(other, sizeof(other), "moved%d@x.COM", i);
			assert_int_equal(users_repo_create_user(r, "V", other, &u, NULL, 0),
					 MN_CONFLICT);
			/* its own new address, in another case: still its own */
			assert_int_equal(users_repo_update(r, ids[i], "U", other, &u, NULL, 0),
					 MN_OK);
		}
	}
	/* a user may not take an address another holds, however it is written */
	assert_int_equal(users_repo_update(r, ids[2], "U", "User4@X.com", &u, NULL, 0),
			 MN_CONFLICT);
	user_release(&u);
	free(ids);
}

static void test_list_paging(void **state)
{
	struct users_repo *r = ((struct fixture *)*state)->repo;
	struct user u, *list;
	char name[16];
	size_t n;

	user_init(&u);
	assert_int_equal(users_repo_list(r, 10, 0, &list, &n), MN_OK);
	assert_int_equal(n, 0);
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "u%d", i);
		assert_int_equal(users_repo_create_user(r, name, NULL, &u, NULL, 0), MN_OK);
	}
	assert_int_equal(users_repo_list(r, 2, 1, &list, &n), MN_OK);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].name, "u1");
	assert_string_equal(list[1].name, "u2");
	assert_true(list[0].id < list[1].id);
	user_list_free(list, n);
	assert_int_equal(users_repo_list(r, 100, 3, &list, &n), MN_OK);
	assert_int_equal(n, 2);
	user_list_free(list, n);
	assert_int_equal(users_repo_list(r, 100, 5, &list, &n), MN_OK);
	assert_int_equal(n, 0);
	assert_null(list);
	user_release(&u);
}

struct worker {
	struct users_repo *repo;
	int index;
	int ok;
};

static void *create_many(void *arg)
{
	struct worker *w = arg;
	struct user u;
	char email[64];

	user_init(&u);
	for (int i = 0; i < 200; i++) {
		snprintf(email, sizeof(email), "t%d-%d@example.com", w->index, i);
		if (users_repo_create_user(w->repo, "T", email, &u, NULL, 0) == MN_OK)
			w->ok++;
		if (users_repo_get(w->repo, u.id, &u) != MN_OK)
			w->ok--;
	}
	user_release(&u);
	return NULL;
}

static void test_concurrent_creates(void **state)
{
	struct users_repo *r = ((struct fixture *)*state)->repo;
	struct worker w[4];
	pthread_t t[4];
	struct user *list;
	size_t n;

	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){r, i, 0};
		assert_int_equal(pthread_create(&t[i], NULL, create_many, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].ok, 200);
	}
	assert_int_equal(users_repo_list(r, 1000, 0, &list, &n), MN_OK);
	assert_int_equal(n, 800);
	for (size_t i = 1; i < n; i++)
		assert_true(list[i - 1].id < list[i].id);
	user_list_free(list, n);
}

static void test_sqlite_survives_reopen(void **state)
{
	struct fixture *f = *state;
	struct user u;
	char err[256];
	int64_t id;

	user_init(&u);
	assert_int_equal(users_repo_create_user(f->repo, "Durable", "d@example.com", &u, NULL, 0),
			 MN_OK);
	id = u.id;
	test_store_close(f->repo);
	f->repo = test_users_sqlite(f->path, err, sizeof(err));
	assert_non_null(f->repo);
	assert_int_equal(users_repo_get(f->repo, id, &u), MN_OK);
	assert_string_equal(u.name, "Durable");
	/* ids never come back after a delete (AUTOINCREMENT) */
	assert_int_equal(users_repo_delete(f->repo, id, NULL, 0), MN_OK);
	assert_int_equal(users_repo_create_user(f->repo, "Next", NULL, &u, NULL, 0), MN_OK);
	assert_true(u.id > id);
	user_release(&u);
}

/* A file written before emails were compared without case, holding two
 * that collide that way: it opens (saying so in the log), keeps both rows,
 * refuses new collisions, and gets its unique index at the first open
 * after they are fixed. */
static void exec_sql(const char *path, const char *sql)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
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

static char *read_text(const char *path)
{
	static char text[8192];
	FILE *fp = fopen(path, "r");
	size_t n = fp ? fread(text, 1, sizeof(text) - 1, fp) : 0;

	if (fp)
		fclose(fp);
	text[n] = '\0';
	return text;
}

static void test_sqlite_old_rows_colliding_without_case(void **state)
{
	struct fixture *f = *state;
	char err[256], logpath[160];
	struct user u, *list;
	size_t n;
	int fd;

	user_init(&u);
	test_store_close(f->repo);
	f->repo = NULL;
	unlink(f->path);
	exec_sql(f->path, "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT,"
			  " name TEXT NOT NULL, email TEXT UNIQUE);"
			  "INSERT INTO users (name, email) VALUES ('A', 'ada@x.com'),"
			  " ('B', 'ADA@x.com'), ('C', 'c@x.com'), ('D', NULL), ('E', NULL)");
	snprintf(logpath, sizeof(logpath), "%s/log", f->dir);
	fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	log_set_fd(fd);
	f->repo = test_users_sqlite(f->path, err, sizeof(err));
	log_set_fd(2);
	close(fd);
	assert_non_null(f->repo);
	assert_non_null(strstr(read_text(logpath), "emails differ only in case (1 addresses"));

	assert_int_equal(users_repo_list(f->repo, 10, 0, &list, &n), MN_OK);
	assert_int_equal(n, 5);
	user_list_free(list, n);
	assert_int_equal(users_repo_create_user(f->repo, "F", "Ada@X.com", &u, NULL, 0),
			 MN_CONFLICT);
	assert_int_equal(users_repo_create_user(f->repo, "F", "C@X.COM", &u, NULL, 0), MN_CONFLICT);
	assert_int_equal(users_repo_update(f->repo, 3, "C", "ada@X.COM", &u, NULL, 0), MN_CONFLICT);
	assert_int_equal(users_repo_update(f->repo, 3, "C", "C@x.com", &u, NULL, 0), MN_OK);
	assert_int_equal(users_repo_create_user(f->repo, "F", "f@x.com", &u, NULL, 0), MN_OK);
	assert_int_equal(count_sql(f->path, "SELECT count(*) FROM sqlite_master WHERE"
					    " name = 'users_email_nocase_lookup'"),
			 1);
	assert_int_equal(count_sql(f->path, "SELECT count(*) FROM sqlite_master WHERE"
					    " name = 'users_email_nocase'"),
			 0);

	/* fixed: the next open makes the unique index and drops the other */
	assert_int_equal(users_repo_delete(f->repo, 2, NULL, 0), MN_OK);
	test_store_close(f->repo);
	f->repo = test_users_sqlite(f->path, err, sizeof(err));
	assert_non_null(f->repo);
	assert_int_equal(count_sql(f->path, "SELECT count(*) FROM sqlite_master WHERE"
					    " name = 'users_email_nocase'"),
			 1);
	assert_int_equal(count_sql(f->path, "SELECT count(*) FROM sqlite_master WHERE"
					    " name = 'users_email_nocase_lookup'"),
			 0);
	assert_int_equal(users_repo_create_user(f->repo, "G", "ADA@X.COM", &u, NULL, 0),
			 MN_CONFLICT);
	user_release(&u);
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

/* Whatever the umask: the database, its -wal and -shm 0600, the
 * directories made for it 0700; what existed keeps its mode. */
static void test_sqlite_file_modes(void **state)
{
	struct fixture *f = *state;
	char err[256], path[160], wal[170], shm[170], sub[160];
	struct users_repo *r;
	struct user u;
	mode_t old;
	int fd;

	user_init(&u);
	snprintf(sub, sizeof(sub), "%s/made", f->dir);
	snprintf(path, sizeof(path), "%s/made/deeper/users.db", f->dir);
	snprintf(wal, sizeof(wal), "%s-wal", path);
	snprintf(shm, sizeof(shm), "%s-shm", path);
	old = umask(0);
	r = test_users_sqlite(path, err, sizeof(err));
	umask(old);
	assert_non_null(r);
	assert_int_equal(users_repo_create_user(r, "Ada", NULL, &u, NULL, 0), MN_OK);
	assert_int_equal(mode_of(sub), 0700);
	snprintf(sub, sizeof(sub), "%s/made/deeper", f->dir);
	assert_int_equal(mode_of(sub), 0700);
	assert_int_equal(mode_of(path), 0600);
	assert_int_equal(mode_of(wal), 0600);
	assert_int_equal(mode_of(shm), 0600);
	test_store_close(r);

	/* an existing directory and file keep their modes */
	assert_int_equal(chmod(sub, 0755), 0);
	snprintf(path, sizeof(path), "%s/made/deeper/old.db", f->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(fchmod(fd, 0644), 0);
	close(fd);
	old = umask(0);
	r = test_users_sqlite(path, err, sizeof(err));
	umask(old);
	assert_non_null(r);
	test_store_close(r);
	assert_int_equal(mode_of(sub), 0755);
	assert_int_equal(mode_of(path), 0644);
	user_release(&u);
}

static void test_sqlite_open_failure(void **state)
{
	char err[256] = "";
	(void)state;

	assert_null(test_users_sqlite("/proc/self/no/such/place/users.db", err, sizeof(err)));
	assert_true(strlen(err) > 0);
}

#define BOTH(fn)                                                    \
	cmocka_unit_test_setup_teardown(fn, setup_memory, teardown), \
	cmocka_unit_test_setup_teardown(fn, setup_sqlite, teardown)
#define PG(fn) cmocka_unit_test_setup_teardown(fn, setup_pg, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		BOTH(test_crud),
		BOTH(test_email_conflicts),
		BOTH(test_email_conflicts_ignore_case),
		BOTH(test_email_uniqueness_through_churn),
		BOTH(test_list_paging),
		BOTH(test_concurrent_creates),
		cmocka_unit_test_setup_teardown(test_sqlite_survives_reopen, setup_sqlite,
						teardown),
		cmocka_unit_test_setup_teardown(test_sqlite_old_rows_colliding_without_case,
						setup_sqlite, teardown),
		cmocka_unit_test_setup_teardown(test_sqlite_file_modes, setup_sqlite, teardown),
		cmocka_unit_test(test_sqlite_open_failure),
		/* the PostgreSQL group, last: run when MESHNODE_TEST_PG is set */
		PG(test_crud),
		PG(test_email_conflicts),
		PG(test_email_conflicts_ignore_case),
		PG(test_email_uniqueness_through_churn),
		PG(test_list_paging),
		PG(test_concurrent_creates),
	};
	const size_t n_pg = 6, n = sizeof(tests) / sizeof(tests[0]);

	return _cmocka_run_group_tests("test_users_repo", tests,
				       n - test_pg_skipped("test_users_repo", n_pg), NULL, NULL);
}
