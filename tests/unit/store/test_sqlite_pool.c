/* The pool's write state: which SQLite failures are a store that cannot
 * write, the answer and message each gets, one log line per kind until a
 * write succeeds, the counts, and the probe that brings readiness back.
 * Failures are injected by a VFS shim over the real unix VFS, so SQLite
 * itself meets them where it writes, as it would meet a full disk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "store/sqlite_pool.h"
#include "store/vfs_shim.h" /* tests/unit/store/ */

/* ---- fixture -------------------------------------------------------------- */

enum { ST_INSERT, ST_DELETE, ST_COUNT };

static const char *const stmts[ST_COUNT] = {
	[ST_INSERT] = "INSERT INTO t (v) VALUES (?1)",
	[ST_DELETE] = "DELETE FROM t WHERE v = ?1",
};

struct fixture {
	struct sqlite_pool *pool;
	struct mn_clock clock;
	uint64_t now;
	char dir[64];
	char path[96];
	char log[96];
	int log_fd;
};

static uint64_t fake_now(void *ctx)
{
	return *(uint64_t *)ctx;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	*state = f;
	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/meshnode-pool.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/pool.db", f->dir);
	snprintf(f->log, sizeof(f->log), "%s/log", f->dir);
	f->pool = sqlite_pool_open(f->path,
				   "CREATE TABLE IF NOT EXISTS t"
				   " (id INTEGER PRIMARY KEY, v TEXT UNIQUE)",
				   stmts, ST_COUNT, err, sizeof(err));
	if (f->pool == NULL)
		return -1;
	f->now = 5000;
	f->clock = (struct mn_clock){fake_now, &f->now};
	sqlite_pool_set_clock(f->pool, &f->clock);
	f->log_fd = open(f->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	if (f->log_fd < 0)
		return -1;
	log_set_fd(f->log_fd);
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	inject(0, 0);
	log_set_fd(2);
	if (f->log_fd > 0)
		close(f->log_fd);
	sqlite_pool_close(f->pool);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

/* One write through the pool, as a repository makes it. */
static enum mn_err write_one(struct fixture *f, int which, const char *v, char *err, size_t errlen)
{
	struct sqlite_conn *c = sqlite_pool_acquire(f->pool);
	sqlite3_stmt *st = c->stmt[which];
	enum mn_err e;

	sqlite3_bind_text(st, 1, v, -1, SQLITE_TRANSIENT);
	e = sqlite_pool_write_result(f->pool, c, sqlite3_step(st), "test write", err, errlen);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	sqlite_pool_release(f->pool, c);
	return e;
}

/* Lines of the log holding 'needle'. */
static int log_lines(struct fixture *f, const char *needle)
{
	char line[2048];
	FILE *fp = fopen(f->log, "r");
	int n = 0;

	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp))
		if (strstr(line, needle))
			n++;
	fclose(fp);
	return n;
}

static void assert_health(struct fixture *f, enum store_fault fault, uint64_t full,
			  uint64_t read_only, uint64_t io)
{
	struct store_health h;

	sqlite_pool_health(f->pool, &h);
	assert_int_equal(h.fault, fault);
	assert_int_equal(h.write_failures[STORE_FAULT_NONE], 0);
	assert_int_equal(h.write_failures[STORE_FAULT_DISK_FULL], full);
	assert_int_equal(h.write_failures[STORE_FAULT_READ_ONLY], read_only);
	assert_int_equal(h.write_failures[STORE_FAULT_IO], io);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_classify(void **state)
{
	static const struct {
		int rc, sys_errno;
		enum store_fault want;
	} cases[] = {
		{SQLITE_DONE, 0, STORE_FAULT_NONE},
		{SQLITE_CONSTRAINT_UNIQUE, 0, STORE_FAULT_NONE},
		{SQLITE_BUSY, 0, STORE_FAULT_NONE},
		{SQLITE_LOCKED, 0, STORE_FAULT_NONE},
		{SQLITE_NOMEM, 0, STORE_FAULT_NONE},
		{SQLITE_IOERR_NOMEM, 0, STORE_FAULT_NONE},
		{SQLITE_MISUSE, 0, STORE_FAULT_NONE},
		{SQLITE_ERROR, EROFS, STORE_FAULT_NONE},
		{SQLITE_FULL, 0, STORE_FAULT_DISK_FULL},
		{SQLITE_FULL, EIO, STORE_FAULT_DISK_FULL},
		{SQLITE_IOERR_WRITE, ENOSPC, STORE_FAULT_DISK_FULL},
		{SQLITE_IOERR_SHMSIZE, ENOSPC, STORE_FAULT_DISK_FULL},
		{SQLITE_IOERR_WRITE, EDQUOT, STORE_FAULT_DISK_FULL},
		{SQLITE_READONLY, 0, STORE_FAULT_READ_ONLY},
		{SQLITE_READONLY_DBMOVED, 0, STORE_FAULT_READ_ONLY},
		{SQLITE_IOERR_WRITE, EROFS, STORE_FAULT_READ_ONLY},
		{SQLITE_IOERR_FSYNC, EROFS, STORE_FAULT_READ_ONLY},
		{SQLITE_CANTOPEN, EACCES, STORE_FAULT_READ_ONLY},
		{SQLITE_IOERR_WRITE, EPERM, STORE_FAULT_READ_ONLY},
		{SQLITE_IOERR_WRITE, EIO, STORE_FAULT_IO},
		{SQLITE_IOERR_WRITE, 0, STORE_FAULT_IO},
		{SQLITE_IOERR, 0, STORE_FAULT_IO},
		{SQLITE_IOERR_FSYNC, EIO, STORE_FAULT_IO},
		{SQLITE_CANTOPEN, ENOENT, STORE_FAULT_IO},
		{SQLITE_CORRUPT, 0, STORE_FAULT_IO},
		{SQLITE_NOTADB, 0, STORE_FAULT_IO},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (sqlite_fault_classify(cases[i].rc, cases[i].sys_errno) != cases[i].want)
			fail_msg("rc %d errno %d: %s, not %s", cases[i].rc, cases[i].sys_errno,
				 store_fault_label(
					 sqlite_fault_classify(cases[i].rc, cases[i].sys_errno)),
				 store_fault_label(cases[i].want));
	assert_string_equal(store_fault_label(STORE_FAULT_DISK_FULL), "disk_full");
	assert_string_equal(store_fault_text(STORE_FAULT_READ_ONLY), "read-only");
	assert_string_equal(store_fault_label(STORE_FAULT_COUNT), "unknown");
}

static void test_failed_writes_are_503_logged_once_and_counted(void **state)
{
	struct fixture *f = *state;
	char err[128], v[16];

	assert_int_equal(write_one(f, ST_INSERT, "ok", err, sizeof(err)), MN_OK);
	assert_int_equal(sqlite_pool_ping(f->pool, err, sizeof(err)), MN_OK);
	assert_health(f, STORE_FAULT_NONE, 0, 0, 0);

	inject(SQLITE_FULL, 0);
	for (int i = 0; i < 50; i++) {
		snprintf(v, sizeof(v), "full%d", i);
		err[0] = '\0';
		assert_int_equal(write_one(f, ST_INSERT, v, err, sizeof(err)), MN_UNAVAILABLE);
		assert_string_equal(err, "the store cannot write: disk full");
	}
	assert_health(f, STORE_FAULT_DISK_FULL, 50, 0, 0);
	assert_int_equal(log_lines(f, "cannot write to"), 1);
	assert_int_equal(log_lines(f, "disk full"), 1);
	assert_int_equal(sqlite_pool_ping(f->pool, err, sizeof(err)), MN_UNAVAILABLE);
	assert_string_equal(err, "cannot write: disk full");

	/* another kind: its own line, once; a kind seen already: none */
	inject(SQLITE_IOERR_WRITE, EROFS);
	assert_int_equal(write_one(f, ST_INSERT, "ro1", err, sizeof(err)), MN_UNAVAILABLE);
	assert_string_equal(err, "the store cannot write: read-only");
	assert_int_equal(write_one(f, ST_INSERT, "ro2", err, sizeof(err)), MN_UNAVAILABLE);
	inject(SQLITE_IOERR_WRITE, EIO);
	assert_int_equal(write_one(f, ST_INSERT, "io1", err, sizeof(err)), MN_UNAVAILABLE);
	assert_string_equal(err, "the store cannot write: input/output error");
	inject(SQLITE_FULL, 0);
	assert_int_equal(write_one(f, ST_INSERT, "full-again", err, sizeof(err)), MN_UNAVAILABLE);
	assert_health(f, STORE_FAULT_DISK_FULL, 51, 2, 1);
	assert_int_equal(log_lines(f, "cannot write to"), 3);
	assert_int_equal(log_lines(f, "Read-only file system"), 1); /* the errno, in the log */
	/* SQLite's words never reach the client */
	assert_null(strstr(err, "database or disk"));

	/* a constraint is the caller's: no fault, nothing counted */
	inject(0, 0);
	assert_int_equal(write_one(f, ST_INSERT, "ok", err, sizeof(err)), MN_CONFLICT);
	/* nor does a write that changed nothing prove the disk is back */
	assert_int_equal(write_one(f, ST_DELETE, "no-such-row", err, sizeof(err)), MN_OK);
	assert_health(f, STORE_FAULT_DISK_FULL, 51, 2, 1);
	assert_int_equal(log_lines(f, "can write again"), 0);

	/* a write that succeeds ends it, with one line */
	assert_int_equal(write_one(f, ST_INSERT, "back", err, sizeof(err)), MN_OK);
	assert_health(f, STORE_FAULT_NONE, 51, 2, 1);
	assert_int_equal(log_lines(f, "can write again"), 1);
	assert_int_equal(log_lines(f, "after 54 failed writes"), 1);
	assert_int_equal(sqlite_pool_ping(f->pool, err, sizeof(err)), MN_OK);
	assert_int_equal(write_one(f, ST_INSERT, "more", err, sizeof(err)), MN_OK);
	assert_int_equal(log_lines(f, "can write again"), 1);

	/* the next failure starts over: logged again */
	inject(SQLITE_FULL, 0);
	assert_int_equal(write_one(f, ST_INSERT, "full-later", err, sizeof(err)), MN_UNAVAILABLE);
	assert_int_equal(log_lines(f, "cannot write to"), 4);
	assert_health(f, STORE_FAULT_DISK_FULL, 52, 2, 1);
}

/* With no client writing, readiness comes back through the probe: one
 * write of the pool's own, at most once per SQLITE_POOL_PROBE_INTERVAL_MS,
 * not counted as a failed write. */
static void test_probe_brings_readiness_back(void **state)
{
	struct fixture *f = *state;
	char err[128];
	int before;

	inject(SQLITE_FULL, 0);
	assert_int_equal(write_one(f, ST_INSERT, "a", err, sizeof(err)), MN_UNAVAILABLE);

	/* within the interval: no probe, however often asked */
	before = atomic_load(&write_calls);
	for (int i = 0; i < 20; i++) {
		f->now += SQLITE_POOL_PROBE_INTERVAL_MS / 20 - 1;
		assert_int_equal(sqlite_pool_ping(f->pool, err, sizeof(err)), MN_UNAVAILABLE);
	}
	assert_int_equal(atomic_load(&write_calls), before);

	/* due: one probe, which fails while the disk is full */
	f->now += 20;
	assert_int_equal(sqlite_pool_ping(f->pool, err, sizeof(err)), MN_UNAVAILABLE);
	assert_string_equal(err, "cannot write: disk full");
	assert_true(atomic_load(&write_calls) > before);
	before = atomic_load(&write_calls);
	assert_int_equal(sqlite_pool_ping(f->pool, err, sizeof(err)), MN_UNAVAILABLE);
	assert_int_equal(atomic_load(&write_calls), before);
	assert_health(f, STORE_FAULT_DISK_FULL, 1, 0, 0); /* probes are not counted */
	assert_int_equal(log_lines(f, "cannot write to"), 1);

	/* space is back: the next due probe succeeds */
	inject(0, 0);
	assert_int_equal(sqlite_pool_ping(f->pool, err, sizeof(err)), MN_UNAVAILABLE);
	f->now += SQLITE_POOL_PROBE_INTERVAL_MS;
	assert_int_equal(sqlite_pool_ping(f->pool, err, sizeof(err)), MN_OK);
	assert_health(f, STORE_FAULT_NONE, 1, 0, 0);
	assert_int_equal(log_lines(f, "can write again (write probe succeeded after 1 failed"), 1);

	/* healthy: pings never write */
	before = atomic_load(&write_calls);
	f->now += 10 * SQLITE_POOL_PROBE_INTERVAL_MS;
	assert_int_equal(sqlite_pool_ping(f->pool, err, sizeof(err)), MN_OK);
	assert_int_equal(atomic_load(&write_calls), before);
}

/* ---- group commit ------------------------------------------------------- */

/* A write through sqlite_pool_write(): one insert of 'v'; 'hold' makes the
 * run wait, inside its transaction, until 'hold' writes are queued behind
 * it, then turn on the injected failure 'then_rc' (0: none). */
struct test_write {
	struct sqlite_write base;
	struct fixture *f;
	const char *v;
	size_t hold;
	int then_rc;
	atomic_int running; /* the holder is in its run */
	enum mn_err result;
	char err[128];
};

static int run_test_write(struct sqlite_conn *c, struct sqlite_write *w)
{
	struct test_write *t = (struct test_write *)w;
	sqlite3_stmt *st = c->stmt[ST_INSERT];
	struct sqlite_write_stats stats;
	int rc;

	if (t->hold) {
		atomic_store(&t->running, 1);
		for (int i = 0; i < 10000; i++) { /* 10 s at most */
			sqlite_pool_write_stats(t->f->pool, &stats);
			if (stats.queued >= t->hold)
				break;
			nanosleep(&(struct timespec){0, 1000000}, NULL);
		}
		inject(t->then_rc, 0);
		return SQLITE_DONE; /* writes nothing itself */
	}
	sqlite3_bind_text(st, 1, t->v, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

static void *test_writer(void *arg)
{
	struct test_write *t = arg;

	t->result = sqlite_pool_write(t->f->pool, &t->base, t->err, sizeof(t->err));
	return NULL;
}

static void test_write_init(struct test_write *t, struct fixture *f, const char *v)
{
	memset(t, 0, sizeof(*t));
	t->base = (struct sqlite_write){.run = run_test_write, .what = "test write"};
	t->f = f;
	t->v = v;
}

static long long rows(struct fixture *f, const char *where)
{
	struct sqlite_conn *c = sqlite_pool_acquire(f->pool);
	char sql[128];
	sqlite3_stmt *st;
	long long n = -1;

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM t %s", where);
	if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite_pool_release(f->pool, c);
	return n;
}

/* A first write holds the writer until 'n' more are queued; they are then
 * committed as one group. Returns after every thread is done. */
static void write_group(struct fixture *f, struct test_write *w, size_t n, int then_rc)
{
	struct test_write holder;
	pthread_t th[8], hth;

	test_write_init(&holder, f, NULL);
	assert_true(n <= 8);
	holder.hold = n;
	holder.then_rc = then_rc;
	assert_int_equal(pthread_create(&hth, NULL, test_writer, &holder), 0);
	/* the holder is writing before the others queue */
	for (int i = 0; i < 10000 && !atomic_load(&holder.running); i++)
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	assert_true(atomic_load(&holder.running));
	for (size_t i = 0; i < n; i++)
		assert_int_equal(pthread_create(&th[i], NULL, test_writer, &w[i]), 0);
	for (size_t i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	pthread_join(hth, NULL);
	assert_int_equal(holder.result, MN_OK);
}

/* Writers that come while one commits are committed together, and each
 * caller gets its own answer: a constraint fails its own write only. */
static void test_group_commit_groups_writes_and_isolates_a_failure(void **state)
{
	struct fixture *f = *state;
	struct test_write w[4];
	struct sqlite_write_stats st;
	char err[128];

	assert_int_equal(write_one(f, ST_INSERT, "taken", err, sizeof(err)), MN_OK);
	test_write_init(&w[0], f, "a");
	test_write_init(&w[1], f, "b");
	test_write_init(&w[2], f, "taken"); /* v is UNIQUE */
	test_write_init(&w[3], f, "c");
	write_group(f, w, 4, 0);

	sqlite_pool_write_stats(f->pool, &st);
	assert_int_equal(st.writes, 5);
	assert_int_equal(st.groups, 2); /* the holder's, then the four together */
	assert_int_equal(st.queued, 0);
	assert_int_equal(w[0].result, MN_OK);
	assert_int_equal(w[1].result, MN_OK);
	assert_int_equal(w[2].result, MN_CONFLICT);
	assert_int_equal(w[3].result, MN_OK);
	assert_int_equal(w[0].base.changes, 1);
	assert_int_equal(rows(f, "WHERE v IN ('a', 'b', 'c')"), 3);
	assert_int_equal(rows(f, ""), 4);
	assert_health(f, STORE_FAULT_NONE, 0, 0, 0);
}

/* A group the disk refuses fails every write in it, each counted, with
 * one log line; none of them is in the file. */
static void test_group_commit_disk_full_fails_the_whole_group(void **state)
{
	struct fixture *f = *state;
	struct test_write w[3];

	test_write_init(&w[0], f, "x");
	test_write_init(&w[1], f, "y");
	test_write_init(&w[2], f, "z");
	write_group(f, w, 3, SQLITE_FULL);
	inject(0, 0);

	for (int i = 0; i < 3; i++) {
		assert_int_equal(w[i].result, MN_UNAVAILABLE);
		assert_string_equal(w[i].err, "the store cannot write: disk full");
	}
	assert_health(f, STORE_FAULT_DISK_FULL, 3, 0, 0);
	assert_int_equal(log_lines(f, "cannot write to"), 1);
	assert_int_equal(rows(f, ""), 0);
}

/* Many writers at once: every write committed exactly once. How many
 * groups they made depends on timing, so only the bounds are asserted. */
struct many_arg {
	struct fixture *f;
	int thread;
	int failed;
};

static void *many_writer(void *arg)
{
	struct many_arg *a = arg;
	char v[32];

	for (int i = 0; i < 200; i++) {
		struct test_write w;

		test_write_init(&w, a->f, v);
		snprintf(v, sizeof(v), "t%d-%d", a->thread, i);
		if (sqlite_pool_write(a->f->pool, &w.base, w.err, sizeof(w.err)) != MN_OK ||
		    w.base.changes != 1)
			a->failed++;
	}
	return NULL;
}

static void test_group_commit_many_writers_every_write_once(void **state)
{
	struct fixture *f = *state;
	struct many_arg a[8];
	pthread_t th[8];
	struct sqlite_write_stats st;

	for (int i = 0; i < 8; i++) {
		a[i] = (struct many_arg){.f = f, .thread = i};
		assert_int_equal(pthread_create(&th[i], NULL, many_writer, &a[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(a[i].failed, 0);
	}
	assert_int_equal(rows(f, ""), 1600);
	sqlite_pool_write_stats(f->pool, &st);
	assert_int_equal(st.writes, 1600);
	assert_true(st.groups >= 1 && st.groups <= 1600);
	assert_int_equal(st.queued, 0);
}

/* ---- bounded waits (issue 21) ------------------------------------------ */

/* The fixture's pool again, with 'limits', on the fixture's clock. */
static void reopen_with(struct fixture *f, const struct store_limits *limits)
{
	char err[256];

	sqlite_pool_close(f->pool);
	f->pool = sqlite_pool_open_with(f->path, NULL, stmts, ST_COUNT, limits, err, sizeof(err));
	assert_non_null(f->pool);
	sqlite_pool_set_clock(f->pool, &f->clock);
}

struct taker {
	struct fixture *f;
	atomic_int done;
	enum mn_err result;
	char err[128];
};

static void *take_thread(void *arg)
{
	struct taker *t = arg;
	struct sqlite_conn *c = NULL;

	t->result = sqlite_pool_take(t->f->pool, &c, t->err, sizeof(t->err));
	if (c)
		sqlite_pool_release(t->f->pool, c);
	atomic_store(&t->done, 1);
	return NULL;
}

static bool wait_done(atomic_int *done, int ms)
{
	for (int i = 0; i < ms && !atomic_load(done); i++)
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	return atomic_load(done);
}

/* A read waits for a connection acquire_timeout_ms by the pool's clock,
 * not forever; with max_waiters waiting, the next is refused at once. */
static void test_take_is_bounded_and_shed(void **state)
{
	struct fixture *f = *state;
	struct store_limits limits = {.acquire_timeout_ms = 1000, .max_waiters = 1,
				      .request_timeout_ms = 5000};
	struct sqlite_conn *held[SQLITE_POOL_SIZE];
	struct sqlite_write_stats st;
	struct taker a = {.f = f}, b = {.f = f};
	pthread_t th;

	reopen_with(f, &limits);
	for (int i = 0; i < SQLITE_POOL_SIZE; i++)
		held[i] = sqlite_pool_acquire(f->pool);

	assert_int_equal(pthread_create(&th, NULL, take_thread, &a), 0);
	assert_false(wait_done(&a.done, 200)); /* the clock has not moved: waiting */
	/* a second waiter is one too many: refused at once, clock unmoved */
	take_thread(&b);
	assert_int_equal(b.result, MN_UNAVAILABLE);
	assert_string_equal(b.err, "the store is busy; try again");

	f->now += 999;
	assert_false(wait_done(&a.done, 200));
	f->now += 1;
	assert_true(wait_done(&a.done, 2000));
	pthread_join(th, NULL);
	assert_int_equal(a.result, MN_UNAVAILABLE);
	assert_string_equal(a.err, "the store is busy; try again");

	sqlite_pool_write_stats(f->pool, &st);
	assert_int_equal(st.shed[STORE_SHED_TIMEOUT], 1);
	assert_int_equal(st.shed[STORE_SHED_WAITERS], 1);

	/* a connection given back is taken at once */
	sqlite_pool_release(f->pool, held[0]);
	memset(&a, 0, sizeof(a));
	a.f = f;
	take_thread(&a);
	assert_int_equal(a.result, MN_OK);
	for (int i = 1; i < SQLITE_POOL_SIZE; i++)
		sqlite_pool_release(f->pool, held[i]);
}

/* Another process holds the file's write lock (BEGIN IMMEDIATE, as the
 * sqlite3 shell would): the write being committed waits in SQLite's busy
 * handler only request_timeout_ms less acquire_timeout_ms; the writes
 * queued behind it leave the queue after acquire_timeout_ms by the
 * pool's clock, refused busy; the probe's look says the store is busy. */
static void test_writes_behind_a_stuck_writer_are_shed(void **state)
{
	struct fixture *f = *state;
	struct store_limits limits = {.acquire_timeout_ms = 1000, .max_waiters = 32,
				      .request_timeout_ms = 3000}; /* busy handler: 2 s */
	struct test_write first, behind;
	struct sqlite_write_stats st;
	pthread_t t1, t2;
	sqlite3 *other;
	char err[128];
	uint64_t t0;

	reopen_with(f, &limits);
	assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

	test_write_init(&first, f, "first");
	test_write_init(&behind, f, "behind");
	t0 = clock_monotonic_ms();
	assert_int_equal(pthread_create(&t1, NULL, test_writer, &first), 0);
	/* the first is the writer, in the busy handler */
	for (int i = 0; i < 2000; i++) {
		if (sqlite_pool_stuck(f->pool, err, sizeof(err)) == MN_OK) {
			f->now += 1001; /* it has been writing since the old 'now' */
			if (sqlite_pool_stuck(f->pool, err, sizeof(err)) != MN_OK)
				break;
			f->now -= 1001;
		}
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	}
	assert_non_null(strstr(err, "busy: a write has waited 1001 ms for the file's write lock"));
	f->now -= 1001;

	assert_int_equal(pthread_create(&t2, NULL, test_writer, &behind), 0);
	for (int i = 0; i < 2000; i++) {
		sqlite_pool_write_stats(f->pool, &st);
		if (st.queued == 1)
			break;
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	}
	assert_int_equal(st.queued, 1);
	f->now += 1000; /* the queued write's whole wait */
	pthread_join(t2, NULL);
	assert_int_equal(behind.result, MN_UNAVAILABLE);
	assert_string_equal(behind.err, "the store is busy; try again");
	assert_true(clock_monotonic_ms() - t0 < 1900); /* before the writer's busy handler ended */

	pthread_join(t1, NULL);
	assert_int_equal(first.result, MN_UNAVAILABLE);
	assert_string_equal(first.err, "the store is busy; try again");
	assert_true(clock_monotonic_ms() - t0 >= 1900); /* SQLite's 2 s, real time */
	assert_true(clock_monotonic_ms() - t0 < 10000);

	sqlite_pool_write_stats(f->pool, &st);
	assert_int_equal(st.queued, 0);
	assert_int_equal(st.shed[STORE_SHED_TIMEOUT], 1);
	assert_int_equal(sqlite_pool_stuck(f->pool, err, sizeof(err)), MN_OK);

	/* the lock released: writes go through again */
	assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);
	test_write_init(&first, f, "after");
	test_writer(&first);
	assert_int_equal(first.result, MN_OK);
	assert_int_equal(rows(f, ""), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),
		cmocka_unit_test_setup_teardown(test_failed_writes_are_503_logged_once_and_counted,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_probe_brings_readiness_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit_groups_writes_and_isolates_a_failure,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit_disk_full_fails_the_whole_group,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit_many_writers_every_write_once,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_take_is_bounded_and_shed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writes_behind_a_stuck_writer_are_shed, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, install_shim, remove_shim);
}
