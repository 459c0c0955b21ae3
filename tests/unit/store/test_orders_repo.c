/* The same repository tests run against the memory and the SQLite store;
 * the events outbox too; then what only SQLite promises: sharing one file
 * between repositories, with the users table, and keeping an acknowledged
 * order, and pending events, through kill -9 and a reopen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "orders/orders_repo.h"
#include "users/users_repo.h"
#include "store/store_fixture.h" /* tests/unit/store/ */
#include "store/vfs_shim.h" /* tests/unit/store/ */

struct fixture {
	struct orders_repo *repo;
	char dir[64];
	char path[128];
};

static int setup_memory(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->repo = test_orders_memory();
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
	f->repo = test_orders_sqlite(f->path, err, sizeof(err));
	*state = f;
	return f->repo ? 0 : -1;
}

static int setup_pg(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->repo = test_orders_pg();
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
	assert_int_equal(test_store_ping(r, NULL, 0), MN_OK);
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
	test_store_close(f->repo);
	f->repo = test_orders_sqlite(f->path, err, sizeof(err));
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
	other = test_orders_sqlite(f->path, err, sizeof(err));
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
	test_store_close(other);
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
	users = test_users_sqlite(f->path, err, sizeof(err));
	assert_non_null(users);
	assert_int_equal(users_repo_create_user(users, "Ada", "ada@example.com", &u, NULL, 0),
			 MN_OK);
	assert_int_equal(orders_repo_create_order(f->repo, u.id, "tea", 1, &o, NULL, 0), MN_OK);
	assert_int_equal(test_store_ping(f->repo, NULL, 0), MN_OK);
	assert_int_equal(test_store_ping(users, NULL, 0), MN_OK);

	/* and the other way round: users first, then orders */
	test_store_close(f->repo);
	test_store_close(users);
	users = test_users_sqlite(f->path, err, sizeof(err));
	assert_non_null(users);
	f->repo = test_orders_sqlite(f->path, err, sizeof(err));
	assert_non_null(f->repo);
	assert_int_equal(users_repo_get(users, u.id, &u), MN_OK);
	assert_string_equal(u.name, "Ada");
	assert_int_equal(orders_repo_get(f->repo, o.id, &o), MN_OK);
	assert_string_equal(o.product, "tea");
	assert_int_equal(o.user_id, u.id);
	assert_int_equal(users_repo_create_user(users, "Bob", NULL, &u, NULL, 0), MN_OK);
	assert_int_equal(orders_repo_create_order(f->repo, u.id, "cake", 2, &o, NULL, 0), MN_OK);
	test_store_close(users);
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
	test_store_close(f->repo);
	f->repo = NULL;
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct orders_repo *r = test_orders_sqlite(f->path, err, sizeof(err));

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

	f->repo = test_orders_sqlite(f->path, err, sizeof(err));
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
		test_orders_sqlite("/proc/self/no/such/place/orders.db", err, sizeof(err)));
	assert_true(strlen(err) > 0);
}

/* ---- the events outbox --------------------------------------------------- */

/* The pending events, at most 'limit' (asserted to succeed). */
static struct outbox_event *pending(struct orders_repo *r, size_t limit, size_t *n)
{
	struct outbox_event *v;

	assert_int_equal(outbox_pending(test_outbox(r), limit, &v, n, NULL, 0), MN_OK);
	assert_true(*n <= limit);
	if (*n == 0)
		assert_null(v);
	for (size_t i = 1; i < *n; i++)
		assert_true(v[i - 1].id < v[i].id);
	return v;
}

static struct outbox_stats stats(struct orders_repo *r)
{
	struct outbox_stats s;

	assert_int_equal(outbox_stats(test_outbox(r), &s, NULL, 0), MN_OK);
	return s;
}

/* Creates n orders with the events ev-0 .. ev-(n-1); ids[i] their rows. */
static void create_events(struct orders_repo *r, int n, int64_t *ids)
{
	struct outbox_event *v;
	struct order o;
	char event_id[32];
	size_t got;

	order_init(&o);
	for (int i = 0; i < n; i++) {
		snprintf(event_id, sizeof(event_id), "ev-%d", i);
		assert_int_equal(
			orders_repo_create_order_event(r, 1, "tea", i + 1, event_id, &o, NULL, 0),
			MN_OK);
	}
	order_release(&o);
	v = pending(r, (size_t)n + 10, &got);
	assert_int_equal(got, n);
	for (int i = 0; i < n; i++)
		ids[i] = v[i].id;
	outbox_events_free(v, got);
}

static void test_outbox_create_stores_order_and_event(void **state)
{
	struct orders_repo *r = ((struct fixture *)*state)->repo;
	struct outbox_event *v;
	struct order o, got;
	int64_t before, after;
	char *body;
	size_t n;

	order_init(&o);
	order_init(&got);
	before = clock_wall_ms();
	assert_int_equal(
		orders_repo_create_order_event(r, 42, "a \"quoted\" pot", 3, "ev-1", &o, NULL, 0),
		MN_OK);
	after = clock_wall_ms();
	assert_true(o.id >= 1);
	assert_int_equal(o.user_id, 42);
	assert_string_equal(o.product, "a \"quoted\" pot");
	assert_int_equal(o.quantity, 3);
	assert_int_equal(orders_repo_get(r, o.id, &got), MN_OK);
	assert_string_equal(got.product, "a \"quoted\" pot");

	v = pending(r, 10, &n);
	assert_int_equal(n, 1);
	assert_true(v[0].id >= 1);
	assert_string_equal(v[0].event_id, "ev-1");
	assert_string_equal(v[0].type, "OrderCreated");
	body = order_created_json(&got);
	assert_non_null(body);
	assert_string_equal(v[0].body, body);
	assert_true(v[0].created_ms >= before && v[0].created_ms <= after);
	free(body);
	outbox_events_free(v, n);
	outbox_events_free(NULL, 0);
	order_release(&o);
	order_release(&got);
}

static void test_outbox_plain_create_stores_no_event(void **state)
{
	struct orders_repo *r = ((struct fixture *)*state)->repo;
	struct outbox_stats s;
	struct order o;
	size_t n;

	order_init(&o);
	assert_int_equal(orders_repo_create_order(r, 1, "tea", 1, &o, NULL, 0), MN_OK);
	assert_null(pending(r, 10, &n));
	assert_int_equal(n, 0);
	s = stats(r);
	assert_int_equal(s.pending, 0);
	assert_int_equal(s.sent, 0);
	assert_int_equal(s.oldest_pending_ms, 0);
	order_release(&o);
}

static void test_outbox_pending_in_id_order_with_limit(void **state)
{
	struct orders_repo *r = ((struct fixture *)*state)->repo;
	struct outbox_event *v;
	int64_t ids[5];
	size_t n;

	create_events(r, 5, ids);
	v = pending(r, 3, &n);
	assert_int_equal(n, 3);
	assert_string_equal(v[0].event_id, "ev-0");
	assert_string_equal(v[1].event_id, "ev-1");
	assert_string_equal(v[2].event_id, "ev-2");
	outbox_events_free(v, n);
	assert_null(pending(r, 0, &n));
	assert_int_equal(n, 0);
	v = pending(r, 100, &n);
	assert_int_equal(n, 5);
	assert_string_equal(v[4].event_id, "ev-4");
	outbox_events_free(v, n);
}

static void test_outbox_mark_sent(void **state)
{
	struct orders_repo *r = ((struct fixture *)*state)->repo;
	struct outbox_event *v;
	int64_t ids[4], batch[3];
	size_t n, pruned;

	create_events(r, 4, ids);
	batch[0] = ids[2];
	batch[1] = ids[0];
	batch[2] = ids[3] + 1000; /* unknown: ignored */
	assert_int_equal(outbox_mark_sent(test_outbox(r), batch, 3, 1000, NULL, 0), MN_OK);
	v = pending(r, 10, &n);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].id, ids[1]);
	assert_int_equal(v[1].id, ids[3]);
	outbox_events_free(v, n);

	/* again, later: nothing changes, not even when they were sent */
	assert_int_equal(outbox_mark_sent(test_outbox(r), batch, 3, 9000, NULL, 0), MN_OK);
	assert_int_equal(outbox_mark_sent(test_outbox(r), batch, 0, 9000, NULL, 0), MN_OK);
	v = pending(r, 10, &n);
	assert_int_equal(n, 2);
	outbox_events_free(v, n);
	assert_int_equal(stats(r).sent, 2);
	assert_int_equal(outbox_prune(test_outbox(r), 1001, 10, &pruned, NULL, 0), MN_OK);
	assert_int_equal(pruned, 2);
}

static void test_outbox_stats(void **state)
{
	struct orders_repo *r = ((struct fixture *)*state)->repo;
	struct outbox_event *v;
	struct outbox_stats s;
	int64_t ids[3];
	size_t n;

	s = stats(r);
	assert_int_equal(s.pending, 0);
	assert_int_equal(s.sent, 0);
	assert_int_equal(s.oldest_pending_ms, 0);
	create_events(r, 3, ids);
	v = pending(r, 10, &n);
	s = stats(r);
	assert_int_equal(s.pending, 3);
	assert_int_equal(s.sent, 0);
	assert_int_equal(s.oldest_pending_ms, v[0].created_ms);
	assert_int_equal(s.oldest_sent_ms, 0);
	assert_int_equal(outbox_mark_sent(test_outbox(r), ids, 1, 5000, NULL, 0), MN_OK);
	s = stats(r);
	assert_int_equal(s.pending, 2);
	assert_int_equal(s.sent, 1);
	assert_int_equal(s.oldest_pending_ms, v[1].created_ms);
	assert_int_equal(s.oldest_sent_ms, 5000);
	assert_int_equal(outbox_mark_sent(test_outbox(r), ids, 3, 7000, NULL, 0), MN_OK);
	s = stats(r);
	assert_int_equal(s.pending, 0);
	assert_int_equal(s.sent, 3);
	assert_int_equal(s.oldest_pending_ms, 0);
	assert_int_equal(s.oldest_sent_ms, 5000); /* the first stays sent at 5000 */
	outbox_events_free(v, n);
}

static void test_outbox_prune(void **state)
{
	struct orders_repo *r = ((struct fixture *)*state)->repo;
	struct outbox_event *v;
	struct outbox_stats s;
	struct order o;
	int64_t ids[6];
	size_t n, pruned = 99;

	create_events(r, 6, ids);
	/* sent out of id order: ev-0 late, ev-1 and ev-2 early, ev-3 later */
	assert_int_equal(outbox_mark_sent(test_outbox(r), &ids[1], 2, 1000, NULL, 0), MN_OK);
	assert_int_equal(outbox_mark_sent(test_outbox(r), &ids[0], 1, 4000, NULL, 0), MN_OK);
	assert_int_equal(outbox_mark_sent(test_outbox(r), &ids[3], 1, 3000, NULL, 0), MN_OK);

	assert_int_equal(outbox_prune(test_outbox(r), 2000, 0, &pruned, NULL, 0), MN_OK);
	assert_int_equal(pruned, 0);
	/* at most one, the oldest first: ev-1 */
	assert_int_equal(outbox_prune(test_outbox(r), 2000, 1, &pruned, NULL, 0), MN_OK);
	assert_int_equal(pruned, 1);
	assert_int_equal(stats(r).sent, 3);
	/* only those sent before the cutoff: ev-2, not ev-0 (4000), ev-3 (3000) */
	assert_int_equal(outbox_prune(test_outbox(r), 2000, 10, &pruned, NULL, 0), MN_OK);
	assert_int_equal(pruned, 1);
	/* sent exactly at the cutoff is not before it */
	assert_int_equal(outbox_prune(test_outbox(r), 3000, 10, &pruned, NULL, 0), MN_OK);
	assert_int_equal(pruned, 0);
	assert_int_equal(outbox_prune(test_outbox(r), 3001, 10, &pruned, NULL, 0), MN_OK);
	assert_int_equal(pruned, 1);
	/* pending events are never pruned, whatever the cutoff */
	assert_int_equal(outbox_prune(test_outbox(r), INT64_MAX, 100, &pruned, NULL, 0), MN_OK);
	assert_int_equal(pruned, 1);
	s = stats(r);
	assert_int_equal(s.sent, 0);
	assert_int_equal(s.pending, 2);
	v = pending(r, 10, &n);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].id, ids[4]);
	assert_int_equal(v[1].id, ids[5]);
	outbox_events_free(v, n);
	/* an event stored after a prune still comes after the pending ones */
	order_init(&o);
	assert_int_equal(orders_repo_create_order_event(r, 1, "tea", 1, "ev-after", &o, NULL, 0),
			 MN_OK);
	order_release(&o);
	v = pending(r, 10, &n);
	assert_int_equal(n, 3);
	assert_true(v[2].id > ids[5]);
	assert_string_equal(v[2].event_id, "ev-after");
	outbox_events_free(v, n);
}

/* A duplicate event id fails the event's insert: the order of that
 * transaction is not stored either, and the store goes on. */
static void test_outbox_failed_event_stores_no_order(void **state)
{
	struct orders_repo *r = ((struct fixture *)*state)->repo;
	struct outbox_event *v;
	struct order a, b, c, *list;
	char err[128] = "";
	size_t n;

	order_init(&a);
	order_init(&b);
	order_init(&c);
	assert_int_equal(orders_repo_create_order_event(r, 1, "first", 1, "ev-dup", &a, NULL, 0),
			 MN_OK);
	assert_int_equal(
		orders_repo_create_order_event(r, 2, "second", 2, "ev-dup", &b, err, sizeof(err)),
		MN_CONFLICT);
	assert_string_equal(err, "conflict");
	assert_int_equal(b.id, 0); /* 'out' untouched */
	assert_null(b.product);
	assert_int_equal(orders_repo_list(r, 10, 0, &list, &n), MN_OK);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].product, "first");
	order_list_free(list, n);

	/* the connection is usable again: no transaction left open */
	assert_int_equal(orders_repo_create_order_event(r, 3, "third", 3, "ev-3", &c, NULL, 0),
			 MN_OK);
	assert_true(c.id > a.id);
	assert_int_equal(orders_repo_create_order(r, 4, "plain", 4, &b, NULL, 0), MN_OK);
	assert_int_equal(orders_repo_list(r, 10, 0, &list, &n), MN_OK);
	assert_int_equal(n, 3);
	order_list_free(list, n);
	v = pending(r, 10, &n);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].event_id, "ev-dup");
	assert_string_equal(v[1].event_id, "ev-3");
	outbox_events_free(v, n);
	order_release(&a);
	order_release(&b);
	order_release(&c);
}

#define EVENT_THREADS 4
#define EVENTS_EACH   100

static void *create_many_events(void *arg)
{
	struct worker *w = arg;
	char event_id[32];
	struct order o;

	order_init(&o);
	for (int i = 0; i < EVENTS_EACH; i++) {
		snprintf(event_id, sizeof(event_id), "t%d-%d", w->index, i);
		/* the quantity says which of the thread's creates this is */
		if (orders_repo_create_order_event(w->repo, w->index, "T", i + 1, event_id, &o,
						   NULL, 0) == MN_OK)
			w->ok++;
	}
	order_release(&o);
	return NULL;
}

/* Every order has exactly one event, and the events' ids follow the order
 * of the commits: the orders' ids (each order's transaction holds the
 * write lock from its order to its commit), and each thread's own
 * sequence. */
static void test_outbox_concurrent_creates(void **state)
{
	struct orders_repo *r = ((struct fixture *)*state)->repo;
	struct worker w[EVENT_THREADS];
	pthread_t t[EVENT_THREADS];
	int last[EVENT_THREADS];
	struct outbox_event *v;
	struct order *list;
	size_t n, n_orders;

	for (int i = 0; i < EVENT_THREADS; i++) {
		w[i] = (struct worker){r, i, 0};
		last[i] = 0;
		assert_int_equal(pthread_create(&t[i], NULL, create_many_events, &w[i]), 0);
	}
	for (int i = 0; i < EVENT_THREADS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].ok, EVENTS_EACH);
	}
	assert_int_equal(orders_repo_list(r, 1000, 0, &list, &n_orders), MN_OK);
	assert_int_equal(n_orders, EVENT_THREADS * EVENTS_EACH);
	v = pending(r, 1000, &n);
	assert_int_equal(n, n_orders);
	for (size_t i = 0; i < n; i++) {
		char *body = order_created_json(&list[i]);
		int thread, seq;

		/* the i-th event is the i-th order's */
		assert_string_equal(v[i].body, body);
		free(body);
		assert_int_equal(sscanf(v[i].event_id, "t%d-%d", &thread, &seq), 2);
		assert_int_equal(thread, list[i].user_id);
		assert_int_equal(seq + 1, list[i].quantity);
		assert_int_equal(seq, last[thread]);
		last[thread]++;
	}
	outbox_events_free(v, n);
	order_list_free(list, n_orders);
}

/* The same on PostgreSQL, where an order's id is drawn before its
 * transaction takes the outbox's lock (orders_pg.c, insert_event()): the
 * events follow the commits, and each thread's in its own sequence, but
 * across threads the orders' ids need not follow the events. Every order
 * still has exactly one event, with its body. */
static void test_outbox_concurrent_creates_pg(void **state)
{
	struct orders_repo *r = ((struct fixture *)*state)->repo;
	struct worker w[EVENT_THREADS];
	pthread_t t[EVENT_THREADS];
	int last[EVENT_THREADS];
	struct outbox_event *v;
	struct order *list;
	size_t n, n_orders;

	for (int i = 0; i < EVENT_THREADS; i++) {
		w[i] = (struct worker){r, i, 0};
		last[i] = 0;
		assert_int_equal(pthread_create(&t[i], NULL, create_many_events, &w[i]), 0);
	}
	for (int i = 0; i < EVENT_THREADS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].ok, EVENTS_EACH);
	}
	assert_int_equal(orders_repo_list(r, 1000, 0, &list, &n_orders), MN_OK);
	assert_int_equal(n_orders, EVENT_THREADS * EVENTS_EACH);
	v = pending(r, 1000, &n);
	assert_int_equal(n, n_orders);
	for (size_t i = 0; i < n; i++) {
		const struct order *o = NULL;
		int thread, seq;
		char *body;

		assert_int_equal(sscanf(v[i].event_id, "t%d-%d", &thread, &seq), 2);
		assert_true(thread >= 0 && thread < EVENT_THREADS);
		assert_int_equal(seq, last[thread]);
		last[thread]++;
		/* the thread's create number seq + 1 stored one order */
		for (size_t k = 0; k < n_orders; k++) {
			if (list[k].user_id == thread && list[k].quantity == seq + 1) {
				assert_null(o);
				o = &list[k];
			}
		}
		assert_non_null(o);
		body = order_created_json(o);
		assert_string_equal(v[i].body, body);
		free(body);
	}
	for (int i = 0; i < EVENT_THREADS; i++)
		assert_int_equal(last[i], EVENTS_EACH);
	outbox_events_free(v, n);
	order_list_free(list, n_orders);
}

static void test_sqlite_outbox_survives_reopen(void **state)
{
	struct fixture *f = *state;
	struct outbox_event *before, *after;
	struct outbox_stats s;
	int64_t ids[3];
	char err[256];
	size_t n, m;

	create_events(f->repo, 3, ids);
	assert_int_equal(outbox_mark_sent(test_outbox(f->repo), &ids[1], 1, 1000, NULL, 0), MN_OK);
	before = pending(f->repo, 10, &n);
	assert_int_equal(n, 2);
	test_store_close(f->repo);
	f->repo = test_orders_sqlite(f->path, err, sizeof(err));
	assert_non_null(f->repo);
	after = pending(f->repo, 10, &m);
	assert_int_equal(m, n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(after[i].id, before[i].id);
		assert_string_equal(after[i].event_id, before[i].event_id);
		assert_string_equal(after[i].type, before[i].type);
		assert_string_equal(after[i].body, before[i].body);
		assert_int_equal(after[i].created_ms, before[i].created_ms);
	}
	s = stats(f->repo);
	assert_int_equal(s.pending, 2);
	assert_int_equal(s.sent, 1);
	outbox_events_free(before, n);
	outbox_events_free(after, m);
}

/* The disk fills up at the commit of an order with its event: neither is
 * stored, the client reads why as for any write, the failure is counted
 * once, and the store goes on when the disk is back. */
static void test_sqlite_outbox_disk_full_stores_neither(void **state)
{
	struct fixture *f = *state;
	struct outbox_event *v;
	struct store_health h;
	struct order o, *list;
	char err[128] = "", log_path[160];
	size_t n;
	int fd;

	order_init(&o);
	snprintf(log_path, sizeof(log_path), "%s/log", f->dir);
	fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	log_set_fd(fd);
	assert_int_equal(
		orders_repo_create_order_event(f->repo, 1, "before", 1, "ev-0", &o, NULL, 0),
		MN_OK);
	inject(SQLITE_FULL, 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(orders_repo_create_order_event(f->repo, 2, "lost", 2, "ev-1", &o,
								err, sizeof(err)),
				 MN_UNAVAILABLE);
		assert_string_equal(err, "the store cannot write: disk full");
	}
	test_store_health(f->repo, &h);
	assert_int_equal(h.fault, STORE_FAULT_DISK_FULL);
	assert_int_equal(h.write_failures[STORE_FAULT_DISK_FULL], 3);
	assert_int_equal(test_store_ping(f->repo, err, sizeof(err)), MN_UNAVAILABLE);
	assert_string_equal(o.product, "before"); /* 'out' untouched */

	inject(0, 0);
	assert_int_equal(orders_repo_list(f->repo, 10, 0, &list, &n), MN_OK);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].product, "before");
	order_list_free(list, n);
	assert_int_equal(outbox_pending(test_outbox(f->repo), 10, &v, &n, NULL, 0), MN_OK);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].event_id, "ev-0");
	outbox_events_free(v, n);

	/* the disk is back: the same event id is free, since nothing of it
	 * was stored, and the commit says the store can write again */
	assert_int_equal(
		orders_repo_create_order_event(f->repo, 2, "after", 2, "ev-1", &o, NULL, 0), MN_OK);
	test_store_health(f->repo, &h);
	assert_int_equal(h.fault, STORE_FAULT_NONE);
	assert_int_equal(test_store_ping(f->repo, NULL, 0), MN_OK);
	log_set_fd(2);
	close(fd);
	order_release(&o);
}

static int setup_sqlite_shim(void **state)
{
	return install_shim(state) == 0 ? setup_sqlite(state) : -1;
}

static int teardown_shim(void **state)
{
	inject(0, 0);
	if (teardown(state) != 0)
		return -1;
	return remove_shim(NULL);
}

#define BOTH(fn)                                                                                   \
	cmocka_unit_test_setup_teardown(fn, setup_memory, teardown),                               \
		cmocka_unit_test_setup_teardown(fn, setup_sqlite, teardown)
#define SQLITE(fn) cmocka_unit_test_setup_teardown(fn, setup_sqlite, teardown)
#define PG(fn) cmocka_unit_test_setup_teardown(fn, setup_pg, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		BOTH(test_create_and_get),
		BOTH(test_list_paging),
		BOTH(test_concurrent_creates),
		BOTH(test_outbox_create_stores_order_and_event),
		BOTH(test_outbox_plain_create_stores_no_event),
		BOTH(test_outbox_pending_in_id_order_with_limit),
		BOTH(test_outbox_mark_sent),
		BOTH(test_outbox_stats),
		BOTH(test_outbox_prune),
		BOTH(test_outbox_failed_event_stores_no_order),
		BOTH(test_outbox_concurrent_creates),
		SQLITE(test_sqlite_outbox_survives_reopen),
		cmocka_unit_test_setup_teardown(test_sqlite_outbox_disk_full_stores_neither,
						setup_sqlite_shim, teardown_shim),
		SQLITE(test_sqlite_survives_reopen),
		SQLITE(test_sqlite_two_repos_share_a_file),
		SQLITE(test_sqlite_users_and_orders_in_one_file),
		SQLITE(test_sqlite_order_survives_kill9),
		cmocka_unit_test(test_sqlite_open_failure),
		/* the PostgreSQL group, last: run when MESHNODE_TEST_PG is set */
		PG(test_create_and_get),
		PG(test_list_paging),
		PG(test_concurrent_creates),
		PG(test_outbox_create_stores_order_and_event),
		PG(test_outbox_plain_create_stores_no_event),
		PG(test_outbox_pending_in_id_order_with_limit),
		PG(test_outbox_mark_sent),
		PG(test_outbox_stats),
		PG(test_outbox_prune),
		PG(test_outbox_failed_event_stores_no_order),
		PG(test_outbox_concurrent_creates_pg),
	};
	const size_t n_pg = 11, n = sizeof(tests) / sizeof(tests[0]);

	return _cmocka_run_group_tests("test_orders_repo", tests,
				       n - test_pg_skipped("test_orders_repo", n_pg), NULL, NULL);
}
