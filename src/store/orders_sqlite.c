/* SQLite orders repository, built as the users one is: a small pool of
 * connections, each with its statements prepared once, serves the civetweb
 * worker threads; a connection is used by one thread at a time. WAL with
 * synchronous=NORMAL: a committed write is in the WAL file before the call
 * returns, so it survives kill -9 of the process (only an OS crash or power
 * loss may lose the last commits). busy_timeout lets several nodes, and the
 * users repository, share one file. */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"
#include "store/orders_repo.h"

#define POOL_SIZE	4
#define BUSY_TIMEOUT_MS 5000

enum stmt { ST_INSERT, ST_GET, ST_LIST, ST_PING, ST_COUNT };

static const char *const stmt_sql[ST_COUNT] = {
	[ST_INSERT] = "INSERT INTO orders (user_id, product, quantity) VALUES (?1, ?2, ?3)",
	[ST_GET] = "SELECT id, user_id, product, quantity FROM orders WHERE id = ?1",
	[ST_LIST] = "SELECT id, user_id, product, quantity FROM orders ORDER BY id"
		    " LIMIT ?1 OFFSET ?2",
	[ST_PING] = "SELECT 1",
};

struct conn {
	sqlite3 *db;
	sqlite3_stmt *stmt[ST_COUNT];
};

struct sqlite_repo {
	struct orders_repo base;
	struct conn conns[POOL_SIZE];
	struct conn *idle[POOL_SIZE]; /* stack of free connections */
	size_t n_idle;
	pthread_mutex_t lock;
	pthread_cond_t available;
};

static struct conn *conn_acquire(struct sqlite_repo *s)
{
	struct conn *c;

	pthread_mutex_lock(&s->lock);
	while (s->n_idle == 0)
		pthread_cond_wait(&s->available, &s->lock);
	c = s->idle[--s->n_idle];
	pthread_mutex_unlock(&s->lock);
	return c;
}

static void conn_release(struct sqlite_repo *s, struct conn *c)
{
	pthread_mutex_lock(&s->lock);
	s->idle[s->n_idle++] = c;
	pthread_cond_signal(&s->available);
	pthread_mutex_unlock(&s->lock);
}

/* Maps a failed step to our errors; logs what the caller must not show. */
static enum mn_err step_error(struct conn *c, int rc, const char *what)
{
	log_error("store", "sqlite orders %s failed: %s", what, sqlite3_errmsg(c->db));
	if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
		return MN_UNAVAILABLE;
	return MN_IO;
}

static enum mn_err row_to_order(sqlite3_stmt *st, struct order *out)
{
	const char *product = (const char *)sqlite3_column_text(st, 2);

	/* NULL only when SQLite ran out of memory converting the value. */
	if (product == NULL)
		return MN_NOMEM;
	return order_set(out, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), product,
			 sqlite3_column_int64(st, 3));
}

static enum mn_err sq_create(struct orders_repo *r, int64_t user_id, const char *product,
			     int64_t quantity, struct order *out)
{
	struct sqlite_repo *s = (struct sqlite_repo *)r;
	struct conn *c = conn_acquire(s);
	sqlite3_stmt *st = c->stmt[ST_INSERT];
	enum mn_err err;
	int rc;

	sqlite3_bind_int64(st, 1, user_id);
	sqlite3_bind_text(st, 2, product, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, quantity);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		err = order_set(out, sqlite3_last_insert_rowid(c->db), user_id, product, quantity);
	else
		err = step_error(c, rc, "insert");
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	conn_release(s, c);
	return err;
}

static enum mn_err sq_get(struct orders_repo *r, int64_t id, struct order *out)
{
	struct sqlite_repo *s = (struct sqlite_repo *)r;
	struct conn *c = conn_acquire(s);
	sqlite3_stmt *st = c->stmt[ST_GET];
	enum mn_err err;
	int rc;

	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		err = row_to_order(st, out);
	else if (rc == SQLITE_DONE)
		err = MN_NOT_FOUND;
	else
		err = step_error(c, rc, "select");
	sqlite3_reset(st);
	conn_release(s, c);
	return err;
}

static enum mn_err sq_list(struct orders_repo *r, size_t limit, size_t offset, struct order **out,
			   size_t *n)
{
	struct sqlite_repo *s = (struct sqlite_repo *)r;
	struct conn *c = conn_acquire(s);
	sqlite3_stmt *st = c->stmt[ST_LIST];
	struct order *orders = NULL;
	enum mn_err err = MN_OK;
	size_t count = 0;
	int rc = SQLITE_DONE;

	*out = NULL;
	*n = 0;
	if (limit == 0)
		goto out_release;
	orders = calloc(limit, sizeof(*orders));
	if (orders == NULL) {
		err = MN_NOMEM;
		goto out_release;
	}
	sqlite3_bind_int64(st, 1, limit > INT64_MAX ? INT64_MAX : (sqlite3_int64)limit);
	sqlite3_bind_int64(st, 2, offset > INT64_MAX ? INT64_MAX : (sqlite3_int64)offset);
	while (count < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		err = row_to_order(st, &orders[count]);
		if (err != MN_OK)
			break;
		count++;
	}
	if (err == MN_OK && count < limit && rc != SQLITE_DONE)
		err = step_error(c, rc, "list");
	sqlite3_reset(st);
	if (err != MN_OK || count == 0) {
		order_list_free(orders, count);
		goto out_release;
	}
	*out = orders;
	*n = count;
out_release:
	conn_release(s, c);
	return err;
}

static enum mn_err sq_ping(struct orders_repo *r)
{
	struct sqlite_repo *s = (struct sqlite_repo *)r;
	struct conn *c = conn_acquire(s);
	sqlite3_stmt *st = c->stmt[ST_PING];
	enum mn_err err = sqlite3_step(st) == SQLITE_ROW ? MN_OK : MN_UNAVAILABLE;

	sqlite3_reset(st);
	conn_release(s, c);
	return err;
}

static void conn_close(struct conn *c)
{
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(c->stmt[i]);
	sqlite3_close(c->db);
}

static void sq_destroy(struct orders_repo *r)
{
	struct sqlite_repo *s = (struct sqlite_repo *)r;

	for (size_t i = 0; i < POOL_SIZE; i++)
		conn_close(&s->conns[i]);
	pthread_cond_destroy(&s->available);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const struct orders_repo_ops sqlite_ops = {
	sq_create, sq_get, sq_list, sq_ping, sq_destroy,
};

/* mkdir -p of the directory part of 'path'. */
static int make_parents(const char *path)
{
	char dir[4096];
	char *slash;

	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return -1;
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(dir, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static int conn_open(struct conn *c, const char *path, bool first, char *err, size_t errlen)
{
	/* No foreign key to users: the user lives in the users service,
	 * which may have its own database; the service checks it exists. */
	static const char schema[] = "CREATE TABLE IF NOT EXISTS orders ("
				     " id INTEGER PRIMARY KEY AUTOINCREMENT,"
				     " user_id INTEGER NOT NULL,"
				     " product TEXT NOT NULL,"
				     " quantity INTEGER NOT NULL)";
	int rc;

	rc = sqlite3_open_v2(path, &c->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK)
		goto out_error;
	sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
	rc = sqlite3_exec(c->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto out_error;
	if (first) {
		rc = sqlite3_exec(c->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(c->db, schema, NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			goto out_error;
	}
	for (int i = 0; i < ST_COUNT; i++) {
		rc = sqlite3_prepare_v3(c->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					&c->stmt[i], NULL);
		if (rc != SQLITE_OK)
			goto out_error;
	}
	return 0;

out_error:
	mn_error(err, errlen, MN_IO, "%s", c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
	return -1;
}

struct orders_repo *orders_repo_sqlite_open(const char *path, char *err, size_t errlen)
{
	struct sqlite_repo *s;

	if (make_parents(path) != 0) {
		mn_error(err, errlen, MN_IO, "cannot create the directory of '%s': %s", path,
			 strerror(errno));
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		mn_error(err, errlen, MN_NOMEM, "out of memory");
		return NULL;
	}
	s->base.ops = &sqlite_ops;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->available, NULL);
	for (size_t i = 0; i < POOL_SIZE; i++) {
		if (conn_open(&s->conns[i], path, i == 0, err, errlen) != 0) {
			sq_destroy(&s->base);
			return NULL;
		}
		s->idle[s->n_idle++] = &s->conns[i];
	}
	return &s->base;
}
