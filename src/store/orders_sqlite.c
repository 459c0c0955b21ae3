/* SQLite orders repository: its table and statements over the shared
 * connection pool (store/sqlite_pool.h), which holds the durability and
 * sharing rules and the write state. */
#include <sqlite3.h>
#include <stdlib.h>

#include "store/orders_repo.h"
#include "store/sqlite_pool.h"

enum stmt { ST_INSERT, ST_GET, ST_LIST, ST_COUNT };

static const char *const stmt_sql[ST_COUNT] = {
	[ST_INSERT] = "INSERT INTO orders (user_id, product, quantity) VALUES (?1, ?2, ?3)",
	[ST_GET] = "SELECT id, user_id, product, quantity FROM orders WHERE id = ?1",
	[ST_LIST] = "SELECT id, user_id, product, quantity FROM orders ORDER BY id"
		    " LIMIT ?1 OFFSET ?2",
};

/* The table is made by the store's migrations (store/migrate.h). */

struct sqlite_repo {
	struct orders_repo base;
	struct sqlite_pool *pool;
};

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
			     int64_t quantity, struct order *out, char *errbuf, size_t errlen)
{
	struct sqlite_repo *s = (struct sqlite_repo *)r;
	struct sqlite_conn *c = sqlite_pool_acquire(s->pool);
	sqlite3_stmt *st = c->stmt[ST_INSERT];
	enum mn_err err;
	int rc;

	sqlite3_bind_int64(st, 1, user_id);
	sqlite3_bind_text(st, 2, product, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, quantity);
	rc = sqlite3_step(st);
	err = sqlite_pool_write_result(s->pool, c, rc, "orders insert", errbuf, errlen);
	if (err == MN_OK)
		err = order_set(out, sqlite3_last_insert_rowid(c->db), user_id, product, quantity);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	sqlite_pool_release(s->pool, c);
	return err;
}

static enum mn_err sq_get(struct orders_repo *r, int64_t id, struct order *out)
{
	struct sqlite_repo *s = (struct sqlite_repo *)r;
	struct sqlite_conn *c = sqlite_pool_acquire(s->pool);
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
		err = sqlite_pool_read_error(c, rc, "orders select");
	sqlite3_reset(st);
	sqlite_pool_release(s->pool, c);
	return err;
}

static enum mn_err sq_list(struct orders_repo *r, size_t limit, size_t offset, struct order **out,
			   size_t *n)
{
	struct sqlite_repo *s = (struct sqlite_repo *)r;
	struct sqlite_conn *c = sqlite_pool_acquire(s->pool);
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
		err = sqlite_pool_read_error(c, rc, "orders list");
	sqlite3_reset(st);
	if (err != MN_OK || count == 0) {
		order_list_free(orders, count);
		goto out_release;
	}
	*out = orders;
	*n = count;
out_release:
	sqlite_pool_release(s->pool, c);
	return err;
}

static enum mn_err sq_ping(struct orders_repo *r, char *err, size_t errlen)
{
	return sqlite_pool_ping(((struct sqlite_repo *)r)->pool, err, errlen);
}

static void sq_health(struct orders_repo *r, struct store_health *out)
{
	sqlite_pool_health(((struct sqlite_repo *)r)->pool, out);
}

static void sq_destroy(struct orders_repo *r)
{
	struct sqlite_repo *s = (struct sqlite_repo *)r;

	sqlite_pool_close(s->pool);
	free(s);
}

static const struct orders_repo_ops sqlite_ops = {
	sq_create, sq_get, sq_list, sq_ping, sq_health, sq_destroy,
};

struct orders_repo *orders_repo_sqlite_open(const char *path, char *err, size_t errlen)
{
	struct sqlite_repo *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		mn_error(err, errlen, MN_NOMEM, "out of memory");
		return NULL;
	}
	s->base.ops = &sqlite_ops;
	s->pool = sqlite_pool_open(path, NULL, stmt_sql, ST_COUNT, err, errlen);
	if (s->pool == NULL) {
		free(s);
		return NULL;
	}
	return &s->base;
}
