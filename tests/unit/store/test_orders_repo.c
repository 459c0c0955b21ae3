/* The same repository tests run against the memory and the SQLite store;
 * then what only SQLite promises: sharing one file between repositories,
 * with the users table, and keeping an acknowledged order through kill -9. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/orders_repo.h"
#include "store/users_repo.h"

struct fixture {
	struct orders_repo *repo;
	char dir[64];
	char path[128];
};

static int setup_memory(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->repo = orders_repo_memory_create();
	*state = f;
	return f->repo ? 0 : -1;
}

static int setup_sqlite(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	snprintf(f->dir, sizeof(f->dir), "/tmp/meshnode-orders.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	/* a parent that does not exist yet: the store creates it */
	snprintf(f->path, sizeof(f->path), "%s/sub/node.db", f->dir);
	f->repo = orders_repo_sqlite_open(f->path, err, sizeof(err));
	*state = f;
	return f->repo ? 0 : -1;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[160];

	orders_repo_destroy(f->repo);
	if (f->dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
		if (system(cmd) != 0)
			return -1;
	}
	free(f);
	return 0;
}

static void test_create_and_get(void **state)
{
	struct orders_repo *r = ((struct fixture *)*state)->repo;
	struct order a, b, got;

	order_init(&a);
	order_init(&b);
	order_init(&got);
	assert_int_equal(orders_repo_create_order(r, 42, "tea", 3, &a, NULL, 0), MN_OK);
	assert_true(a.id >= 1);
	assert_int_equal(a.user_id, 42);
	assert_string_equal(a.product, "tea");
	assert_int_equal(a.quantity, 3);
	assert_int_equal(orders_repo_create_order(r, 7, "a \"quoted\" pot", 1000000, &b, NULL, 0),
			 MN_OK);
	assert_true(b.id > a.id);
	assert_int_equal(orders_repo_get(r, a.id, &got), MN_OK);
	assert_int_equal(got.id, a.id);
	assert_int_equal(got.user_id, 42);
	assert_string_equal(got.product, "tea");
	assert_int_equal(got.quantity, 3);
	assert_int_equal(orders_repo_get(r, b.id, &got), MN_OK);
	assert_int_equal(got.user_id, 7);
	assert_string_equal(got.product, "a \"quoted\" pot");
	assert_int_equal(got.quantity, 1000000);
	assert_int_equal(orders_repo_get(r, b.id + 1, &got), MN_NOT_FOUND);
	assert_int_equal(orders_repo_get(r, 0, &got), MN_NOT_FOUND);
	assert_int_equal(orders_repo_ping(r, NULL, 0), MN_OK);
	order_release(&a);
	order_release(&b);
	order_release(&got);
}

static void test_list_paging(void **state)
{
	struct orders_repo *r = ((struct fixture *)*state)->repo;
	struct order o, *list;
	char product[16];
	size_t n;

	order_init(&o);
	assert_int_equal(orders_repo_list(r, 10, 0, &list, &n), MN_OK);
	assert_int_equal(n, 0);
	assert_null(list);
	for (int i = 0; i < 5; i++) {
		snprintf(product, sizeof(product), "p%d", i);
		assert_int_equal(orders_repo_create_order(r, 1, product, i + 1, &o, NULL, 0),
				 MN_OK);
	}
	assert_int_equal(orders_repo_list(r, 2, 1, &list, &n), MN_OK);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].product, "p1");
	assert_int_equal(list[0].quantity, 2);
	assert_string_equal(list[1].product, "p2");
	assert_true(list[0].id < list[1].id);
	order_list_free(list, n);
	assert_int_equal(orders_repo_list(r, 100, 3, &list, &n), MN_OK);
	assert_int_equal(n, 2);
	assert_string_equal(list[1].product, "p4");
	order_list_free(list, n);
	assert_int_equal(orders_repo_list(r, 100, 5, &list, &n), MN_OK);
	assert_int_equal(n, 0);
	assert_null(list);
	assert_int_equal(orders_repo_list(r, 0, 0, &list, &n), MN_OK);
	assert_int_equal(n, 0);
	order_release(&o);
}

struct worker {
	struct orders_repo *repo;
	int index;
	int ok;
};

static void *create_many(void *arg)
{
	struct worker *w = arg;
	struct order o, got;

	order_init(&o);
	order_init(&got);
	for (int i = 0; i < 200; i++) {
		if (orders_repo_create_order(w->repo, w->index + 1, "T", i + 1, &o, NULL, 0) !=
		    MN_OK)
			continue;
		if (orders_repo_get(w->repo, o.id, &got) == MN_OK && got.user_id == w->index + 1 &&
		    got.quantity == i + 1)
			w->ok++;
	}
	order_release(&o);
	order_release(&got);
	return NULL;
}

static void test_concurrent_creates(void **state)
{
	struct orders_repo *r = ((struct fixture *)*state)->repo;
	struct worker w[4];
	pthread_t t[4];
	struct order *list;
	size_t n;

	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){r, i, 0};
		assert_int_equal(pthread_create(&t[i], NULL, create_many, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].ok, 200);
	}
	assert_int_equal(orders_repo_list(r, 1000, 0, &list, &n), MN_OK);
	assert_int_equal(n, 800);
	for (size_t i = 1; i < n; i++)
		assert_true(list[i - 1].id < list[i].id);
	order_list_free(list, n);
}

static void test_sqlite_survives_reopen(void **state)
{
	struct fixture *f = *state;
	struct order o;
	char err[256];
	int64_t id;

	order_init(&o);
	assert_int_equal(orders_repo_create_order(f->repo, 9, "durable", 2, &o, NULL, 0), MN_OK);
	id = o.id;
	orders_repo_destroy(f->repo);
	f->repo = orders_repo_sqlite_open(f->path, err, sizeof(err));
	assert_non_null(f->repo);
	assert_int_equal(orders_repo_get(f->repo, id, &o), MN_OK);
	assert_string_equal(o.product, "durable");
	assert_int_equal(o.user_id, 9);
	assert_int_equal(o.quantity, 2);
	order_release(&o);
}

static void test_sqlite_two_repos_share_a_file(void **state)
{
	struct fixture *f = *state;
	struct orders_repo *other;
	struct order a, b, got, *list;
	char err[256];
	size_t n;

	order_init(&a);
	order_init(&b);
	order_init(&got);
	other = orders_repo_sqlite_open(f->path, err, sizeof(err));
	assert_non_null(other);
	assert_int_equal(orders_repo_create_order(f->repo, 1, "from one", 1, &a, NULL, 0), MN_OK);
	assert_int_equal(orders_repo_create_order(other, 2, "from other", 2, &b, NULL, 0), MN_OK);
	assert_int_not_equal(a.id, b.id);
	assert_int_equal(orders_repo_get(other, a.id, &got), MN_OK);
	assert_string_equal(got.product, "from one");
	assert_int_equal(orders_repo_get(f->repo, b.id, &got), MN_OK);
	assert_string_equal(got.product, "from other");
	assert_int_equal(orders_repo_list(f->repo, 10, 0, &list, &n), MN_OK);
	assert_int_equal(n, 2);
	order_list_free(list, n);
	orders_repo_destroy(other);
	order_release(&a);
	order_release(&b);
	order_release(&got);
}

static void test_sqlite_users_and_orders_in_one_file(void **state)
{
	struct fixture *f = *state;
	struct users_repo *users;
	struct user u;
	struct order o;
	char err[256];

	user_init(&u);
	order_init(&o);
	/* orders created the file first; users adds its table beside */
	users = users_repo_sqlite_open(f->path, err, sizeof(err));
	assert_non_null(users);
	assert_int_equal(users_repo_create_user(users, "Ada", "ada@example.com", &u, NULL, 0),
			 MN_OK);
	assert_int_equal(orders_repo_create_order(f->repo, u.id, "tea", 1, &o, NULL, 0), MN_OK);
	assert_int_equal(orders_repo_ping(f->repo, NULL, 0), MN_OK);
	assert_int_equal(users_repo_ping(users, NULL, 0), MN_OK);

	/* and the other way round: users first, then orders */
	orders_repo_destroy(f->repo);
	users_repo_destroy(users);
	users = users_repo_sqlite_open(f->path, err, sizeof(err));
	assert_non_null(users);
	f->repo = orders_repo_sqlite_open(f->path, err, sizeof(err));
	assert_non_null(f->repo);
	assert_int_equal(users_repo_get(users, u.id, &u), MN_OK);
	assert_string_equal(u.name, "Ada");
	assert_int_equal(orders_repo_get(f->repo, o.id, &o), MN_OK);
	assert_string_equal(o.product, "tea");
	assert_int_equal(o.user_id, u.id);
	assert_int_equal(users_repo_create_user(users, "Bob", NULL, &u, NULL, 0), MN_OK);
	assert_int_equal(orders_repo_create_order(f->repo, u.id, "cake", 2, &o, NULL, 0), MN_OK);
	users_repo_destroy(users);
	user_release(&u);
	order_release(&o);
}

static void test_sqlite_order_survives_kill9(void **state)
{
	struct fixture *f = *state;
	struct order o;
	char err[256], wal[160];
	struct stat st;
	int64_t id = 0;
	int fds[2], status;
	pid_t pid;

	order_init(&o);
	/* the child is the only process with the file open, so no clean
	 * close anywhere checkpoints the WAL for it */
	orders_repo_destroy(f->repo);
	f->repo = NULL;
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct orders_repo *r = orders_repo_sqlite_open(f->path, err, sizeof(err));

		if (r && orders_repo_create_order(r, 5, "acknowledged", 4, &o, NULL, 0) == MN_OK)
			id = o.id;
		if (write(fds[1], &id, sizeof(id)) != (ssize_t)sizeof(id))
			_exit(1);
		kill(getpid(), SIGKILL);
		_exit(1);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], &id, sizeof(id)), sizeof(id));
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_true(id >= 1);
	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	assert_int_equal(stat(wal, &st), 0); /* left behind by the killed writer */
	assert_true(st.st_size > 0);

	f->repo = orders_repo_sqlite_open(f->path, err, sizeof(err));
	assert_non_null(f->repo);
	assert_int_equal(orders_repo_get(f->repo, id, &o), MN_OK);
	assert_string_equal(o.product, "acknowledged");
	assert_int_equal(o.user_id, 5);
	assert_int_equal(o.quantity, 4);
	order_release(&o);
}

static void test_sqlite_open_failure(void **state)
{
	char err[256] = "";
	(void)state;

	assert_null(
		orders_repo_sqlite_open("/proc/self/no/such/place/orders.db", err, sizeof(err)));
	assert_true(strlen(err) > 0);
}

#define BOTH(fn)                                                                                   \
	cmocka_unit_test_setup_teardown(fn, setup_memory, teardown),                               \
		cmocka_unit_test_setup_teardown(fn, setup_sqlite, teardown)
#define SQLITE(fn) cmocka_unit_test_setup_teardown(fn, setup_sqlite, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		BOTH(test_create_and_get),
		BOTH(test_list_paging),
		BOTH(test_concurrent_creates),
		SQLITE(test_sqlite_survives_reopen),
		SQLITE(test_sqlite_two_repos_share_a_file),
		SQLITE(test_sqlite_users_and_orders_in_one_file),
		SQLITE(test_sqlite_order_survives_kill9),
		cmocka_unit_test(test_sqlite_open_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
