/* PostgreSQL orders repository: its statements over the shared connection
 * pool (store/pg_pool.h); ids from an identity column (store/migrate.h). */
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
	struct pg_repo_base pg;
};

static enum mn_err row_to_order(const PGresult *r, int row, void *out)
{
	return order_set(out, pg_cell_int(r, row, 0), pg_cell_int(r, row, 1),
			 PQgetvalue(r, row, 2), pg_cell_int(r, row, 3));
}

static void orders_release(void *orders, size_t n)
{
	order_list_free(orders, n);
}

static enum mn_err pg_create(struct orders_repo *repo, int64_t user_id, const char *product,
			     int64_t quantity, struct order *out, char *errbuf, size_t errlen)
{
	struct pg_repo *s = (struct pg_repo *)repo;
	struct pg_num u, q;
	const char *params[] = {pg_num(&u, user_id), product, pg_num(&q, quantity)};
	PGresult *r;
	enum mn_err err = pg_pool_exec(s->pg.pool, &st_insert, params, &s->pg.writes,
				       "orders insert", &r, errbuf, errlen);

	if (err == MN_OK)
		err = PQntuples(r) == 1
			      ? order_set(out, pg_cell_int(r, 0, 0), user_id, product, quantity)
			      : MN_INTERNAL;
	PQclear(r);
	return err;
}

static enum mn_err pg_get(struct orders_repo *repo, int64_t id, struct order *out)
{
	struct pg_repo *s = (struct pg_repo *)repo;
	struct pg_num n;
	const char *params[] = {pg_num(&n, id)};
	PGresult *r;
	enum mn_err err = pg_pool_exec(s->pg.pool, &st_get, params, NULL, "orders select", &r,
				       NULL, 0);

	if (err == MN_OK)
		err = PQntuples(r) == 1 ? row_to_order(r, 0, out) : MN_NOT_FOUND;
	PQclear(r);
	return err;
}

static enum mn_err pg_list(struct orders_repo *repo, size_t limit, size_t offset,
			   struct order **out, size_t *n)
{
	struct pg_repo *s = (struct pg_repo *)repo;

	return pg_pool_page(s->pg.pool, &st_list, limit, offset, "orders list", sizeof(**out),
			    row_to_order, orders_release, (void **)out, n);
}

static enum mn_err pg_ping(struct orders_repo *repo, char *err, size_t errlen)
{
	return pg_pool_ping(((struct pg_repo *)repo)->pg.pool, err, errlen);
}

static void pg_health(struct orders_repo *repo, struct store_health *out)
{
	pg_writes_health(&((struct pg_repo *)repo)->pg.writes, out);
}

static void pg_destroy(struct orders_repo *repo)
{
	struct pg_repo *s = (struct pg_repo *)repo;

	pg_repo_base_release(&s->pg);
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
	pg_repo_base_init(&s->pg, pool);
	return &s->base;
}
