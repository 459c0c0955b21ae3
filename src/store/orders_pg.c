/* PostgreSQL orders repository: its statements over the shared connection
 * pool (store/pg_pool.h); ids from an identity column (store/migrate.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/orders_repo.h"
#include "store/pg_pool.h"

static const struct pg_stmt st_insert = {
	"orders_insert",
	"INSERT INTO orders (user_id, product, quantity) VALUES ($1, $2, $3) RETURNING id", 3};
static const struct pg_stmt st_get = {
	"orders_get", "SELECT id, user_id, product, quantity FROM orders WHERE id = $1", 1};
static const struct pg_stmt st_list = {
	"orders_list",
	"SELECT id, user_id, product, quantity FROM orders ORDER BY id LIMIT $1 OFFSET $2", 2};

struct pg_repo {
	struct orders_repo base;
	struct pg_pool *pool;
	struct pg_writes writes;
};

struct num {
	char s[24];
};

static const char *num(struct num *n, int64_t v)
{
	snprintf(n->s, sizeof(n->s), "%" PRId64, v);
	return n->s;
}

static int64_t cell_int(const PGresult *r, int row, int col)
{
	return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static enum mn_err row_to_order(const PGresult *r, int row, struct order *out)
{
	return order_set(out, cell_int(r, row, 0), cell_int(r, row, 1), PQgetvalue(r, row, 2),
			 cell_int(r, row, 3));
}

static enum mn_err pg_create(struct orders_repo *repo, int64_t user_id, const char *product,
			     int64_t quantity, struct order *out, char *errbuf, size_t errlen)
{
	struct pg_repo *s = (struct pg_repo *)repo;
	struct num u, q;
	const char *params[] = {num(&u, user_id), product, num(&q, quantity)};
	struct pg_conn *c;
	enum mn_err err;
	PGresult *r;

	err = pg_pool_acquire(s->pool, &c, errbuf, errlen);
	if (err != MN_OK)
		return err;
	err = pg_conn_exec(s->pool, c, &st_insert, params, &s->writes, "orders insert", &r, errbuf,
			   errlen);
	if (err == MN_OK)
		err = PQntuples(r) == 1
			      ? order_set(out, cell_int(r, 0, 0), user_id, product, quantity)
			      : MN_INTERNAL;
	PQclear(r);
	pg_pool_put(s->pool, c);
	return err;
}

static enum mn_err pg_get(struct orders_repo *repo, int64_t id, struct order *out)
{
	struct pg_repo *s = (struct pg_repo *)repo;
	struct num n;
	const char *params[] = {num(&n, id)};
	struct pg_conn *c;
	enum mn_err err;
	PGresult *r;

	err = pg_pool_acquire(s->pool, &c, NULL, 0);
	if (err != MN_OK)
		return err;
	err = pg_conn_exec(s->pool, c, &st_get, params, NULL, "orders select", &r, NULL, 0);
	if (err == MN_OK)
		err = PQntuples(r) == 1 ? row_to_order(r, 0, out) : MN_NOT_FOUND;
	PQclear(r);
	pg_pool_put(s->pool, c);
	return err;
}

static enum mn_err pg_list(struct orders_repo *repo, size_t limit, size_t offset,
			   struct order **out, size_t *n)
{
	struct pg_repo *s = (struct pg_repo *)repo;
	struct num a, b;
	const char *params[] = {num(&a, limit > INT64_MAX ? INT64_MAX : (int64_t)limit),
				num(&b, offset > INT64_MAX ? INT64_MAX : (int64_t)offset)};
	struct order *orders = NULL;
	struct pg_conn *c;
	enum mn_err err;
	size_t count = 0, rows;
	PGresult *r;

	*out = NULL;
	*n = 0;
	if (limit == 0)
		return MN_OK;
	err = pg_pool_acquire(s->pool, &c, NULL, 0);
	if (err != MN_OK)
		return err;
	err = pg_conn_exec(s->pool, c, &st_list, params, NULL, "orders list", &r, NULL, 0);
	pg_pool_put(s->pool, c);
	if (err != MN_OK)
		return err;
	rows = (size_t)PQntuples(r);
	if (rows > 0 && (orders = calloc(rows, sizeof(*orders))) == NULL)
		err = MN_NOMEM;
	for (; err == MN_OK && count < rows; count++)
		err = row_to_order(r, (int)count, &orders[count]);
	PQclear(r);
	if (err != MN_OK || count == 0) {
		order_list_free(orders, count);
		return err;
	}
	*out = orders;
	*n = count;
	return MN_OK;
}

static enum mn_err pg_ping(struct orders_repo *repo, char *err, size_t errlen)
{
	return pg_pool_ping(((struct pg_repo *)repo)->pool, err, errlen);
}

static void pg_health(struct orders_repo *repo, struct store_health *out)
{
	pg_writes_health(&((struct pg_repo *)repo)->writes, out);
}

static void pg_destroy(struct orders_repo *repo)
{
	struct pg_repo *s = (struct pg_repo *)repo;

	pg_pool_unref(s->pool);
	pg_writes_release(&s->writes);
	free(s);
}

static const struct orders_repo_ops pg_ops = {
	pg_create, pg_get, pg_list, pg_ping, pg_health, pg_destroy,
};

struct orders_repo *orders_repo_pg_open(struct pg_pool *pool)
{
	struct pg_repo *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->base.ops = &pg_ops;
	s->pool = pg_pool_ref(pool);
	pg_writes_init(&s->writes);
	return &s->base;
}
