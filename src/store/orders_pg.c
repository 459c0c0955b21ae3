/* PostgreSQL orders repository: its statements over the shared connection
 * pool (store/pg_pool.h); ids from an identity column (store/migrate.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "store/drivers.h"
#include "store/pg_pool.h"

static const struct pg_stmt st_insert = {
	"orders_insert",
	"INSERT INTO orders (user_id, product, quantity) VALUES ($1, $2, $3) RETURNING id", 3};
static const struct pg_stmt st_get = {
	"orders_get", "SELECT id, user_id, product, quantity FROM orders WHERE id = $1", 1};
static const struct pg_stmt st_list = {
	"orders_list",
	"SELECT id, user_id, product, quantity FROM orders ORDER BY id LIMIT $1 OFFSET $2", 2};

static const struct pg_stmt st_event_insert = {
	"outbox_insert",
	"INSERT INTO events_outbox (event_id, type, body, created_ms) VALUES ($1, $2, $3, $4)", 4};
/* Any constant that no other advisory lock of the database uses; held to
 * the end of the transaction (see insert_event()). */
static const struct pg_stmt st_outbox_lock = {
	"outbox_lock", "SELECT pg_advisory_xact_lock(7882833615148508262)", 0};
static const struct pg_stmt st_pending = {
	"outbox_pending",
	"SELECT id, event_id, type, body, created_ms FROM events_outbox WHERE sent_ms IS NULL"
	" ORDER BY id LIMIT $1 OFFSET $2",
	2};
static const struct pg_stmt st_mark_sent = {
	"outbox_mark_sent",
	"UPDATE events_outbox SET sent_ms = $2 WHERE id = ANY($1::bigint[]) AND sent_ms IS NULL",
	2};
/* As in orders_sqlite.c: the oldest pending is the first by id. */
static const struct pg_stmt st_stats = {
	"outbox_stats",
	"SELECT (SELECT count(*) FROM events_outbox WHERE sent_ms IS NULL),"
	" (SELECT count(*) FROM events_outbox WHERE sent_ms IS NOT NULL),"
	" coalesce((SELECT created_ms FROM events_outbox WHERE sent_ms IS NULL"
	" ORDER BY id LIMIT 1), 0),"
	" coalesce((SELECT sent_ms FROM events_outbox WHERE sent_ms IS NOT NULL"
	" ORDER BY sent_ms, id LIMIT 1), 0)",
	0};
/* The oldest sent first, as in orders_sqlite.c: the LIMIT in a subselect
 * on the index events_outbox_sent (migration 3), so that a batch locks
 * and costs its own rows only. */
static const struct pg_stmt st_prune = {
	"outbox_prune",
	"DELETE FROM events_outbox WHERE id IN (SELECT id FROM events_outbox"
	" WHERE sent_ms IS NOT NULL AND sent_ms < $1 ORDER BY sent_ms, id LIMIT $2)",
	2};

struct pg_repo {
	struct orders_repo base;
	struct outbox outbox; /* over the same tables */
	struct pg_repo_base pg;
};

static struct pg_repo *outbox_repo(struct outbox *o)
{
	return (struct pg_repo *)((char *)o - offsetof(struct pg_repo, outbox));
}

static enum mn_err row_to_order(const PGresult *r, int row, void *out)
{
	return order_set(out, pg_cell_int(r, row, 0), pg_cell_int(r, row, 1),
			 PQgetvalue(r, row, 2), pg_cell_int(r, row, 3));
}

static void orders_release(void *orders, size_t n)
{
	order_list_free(orders, n);
}

/* Stores the order of a transaction open on 'c' into *o. */
static enum mn_err insert_order(struct pg_repo *s, struct pg_conn *c, int64_t user_id,
				const char *product, int64_t quantity, struct order *o,
				char *errbuf, size_t errlen)
{
	struct pg_num u, q;
	const char *params[] = {pg_num(&u, user_id), product, pg_num(&q, quantity)};
	PGresult *r;
	enum mn_err err = pg_conn_exec(s->pg.pool, c, &st_insert, params, s->pg.writes,
				       "orders insert", &r, errbuf, errlen);

	if (err == MN_OK)
		err = PQntuples(r) == 1
			      ? order_set(o, pg_cell_int(r, 0, 0), user_id, product, quantity)
			      : MN_INTERNAL;
	PQclear(r);
	return err;
}

/* The event of the order 'o', in the transaction open on 'c'. The lock,
 * held to the commit, gives the events' ids in commit order: an identity
 * value is drawn at insert, and without it a transaction that drew 11
 * could commit before the one that drew 10, and the publisher, reading by
 * id, would send 11 first. Only the event's insert waits on it, not the
 * order's. */
static enum mn_err insert_event(struct pg_repo *s, struct pg_conn *c, const char *event_id,
				const struct order *o, char *errbuf, size_t errlen)
{
	struct pg_num at;
	char *body = order_created_json(o);
	const char *params[] = {event_id, "OrderCreated", body, pg_num(&at, clock_wall_ms())};
	PGresult *r;
	enum mn_err err;

	if (body == NULL)
		return mn_error(errbuf, errlen, MN_NOMEM, "internal error");
	err = pg_conn_exec(s->pg.pool, c, &st_outbox_lock, NULL, NULL, "outbox lock", &r, errbuf,
			   errlen);
	PQclear(r);
	if (err == MN_OK) {
		err = pg_conn_exec(s->pg.pool, c, &st_event_insert, params, s->pg.writes,
				   "outbox insert", &r, errbuf, errlen);
		PQclear(r);
	}
	free(body);
	return err;
}

static enum mn_err pg_create(struct orders_repo *repo, int64_t user_id, const char *product,
			     int64_t quantity, const char *event_id, struct order *out,
			     char *errbuf, size_t errlen)
{
	struct pg_repo *s = (struct pg_repo *)repo;
	struct pg_conn *c;
	enum mn_err err;
	struct order o;

	if (event_id == NULL) {
		/* one statement, its own transaction */
		err = pg_pool_acquire(s->pg.pool, &c, errbuf, errlen);
		if (err != MN_OK)
			return err;
		err = insert_order(s, c, user_id, product, quantity, out, errbuf, errlen);
		pg_pool_put(s->pg.pool, c);
		return err;
	}
	order_init(&o);
	err = pg_pool_acquire(s->pg.pool, &c, errbuf, errlen);
	if (err != MN_OK)
		return err;
	err = pg_conn_begin(s->pg.pool, c, "orders begin", errbuf, errlen);
	if (err == MN_OK)
		err = insert_order(s, c, user_id, product, quantity, &o, errbuf, errlen);
	if (err == MN_OK)
		err = insert_event(s, c, event_id, &o, errbuf, errlen);
	if (err == MN_OK)
		err = pg_conn_commit(s->pg.pool, c, s->pg.writes, "orders insert with event",
				     errbuf, errlen);
	if (err != MN_OK) {
		pg_conn_rollback(s->pg.pool, c);
		order_release(&o);
	} else {
		order_release(out);
		*out = o;
	}
	pg_pool_put(s->pg.pool, c);
	return err;
}

static enum mn_err row_to_event(const PGresult *r, int row, void *element)
{
	struct outbox_event *e = element;

	e->id = pg_cell_int(r, row, 0);
	e->event_id = strdup(PQgetvalue(r, row, 1));
	e->type = strdup(PQgetvalue(r, row, 2));
	e->body = strdup(PQgetvalue(r, row, 3));
	e->created_ms = pg_cell_int(r, row, 4);
	if (e->event_id == NULL || e->type == NULL || e->body == NULL) {
		/* counted as filled by no one: freed here */
		free(e->event_id);
		free(e->type);
		free(e->body);
		return MN_NOMEM;
	}
	return MN_OK;
}

static void events_release(void *events, size_t n)
{
	outbox_events_free(events, n);
}

static enum mn_err pg_outbox_pending(struct outbox *o, size_t limit,
				     struct outbox_event **out, size_t *n, char *errbuf,
				     size_t errlen)
{
	struct pg_repo *s = outbox_repo(o);
	enum mn_err err =
		pg_pool_page(s->pg.pool, &st_pending, limit, 0, "outbox pending", sizeof(**out),
			     row_to_event, events_release, (void **)out, n);

	return err == MN_OK ? MN_OK : mn_error(errbuf, errlen, err, "internal error");
}

/* One statement for the batch: the ids as an array literal, "{1,2,3}". */
static enum mn_err pg_outbox_mark_sent(struct outbox *o, const int64_t *ids, size_t n,
				       int64_t now_ms, char *errbuf, size_t errlen)
{
	struct pg_repo *s = outbox_repo(o);
	struct pg_num at;
	size_t cap, len = 0;
	const char *params[2];
	char *list;
	PGresult *r;
	enum mn_err err;

	if (n == 0)
		return MN_OK;
	if (n > (SIZE_MAX - 3) / 22)
		return mn_error(errbuf, errlen, MN_NOMEM, "internal error");
	cap = n * 22 + 3; /* an int64 is 20 characters at most, and a comma */
	list = malloc(cap);
	if (list == NULL)
		return mn_error(errbuf, errlen, MN_NOMEM, "internal error");
	list[len++] = '{';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(list + len, cap - len, "%s%" PRId64, i ? "," : "", ids[i]);
	list[len++] = '}';
	list[len] = '\0';
	params[0] = list;
	params[1] = pg_num(&at, now_ms);
	err = pg_pool_exec(s->pg.pool, &st_mark_sent, params, s->pg.writes, "outbox mark sent", &r,
			   errbuf, errlen);
	PQclear(r);
	free(list);
	return err;
}

static enum mn_err pg_outbox_stats(struct outbox *o, struct outbox_stats *out, char *errbuf,
				   size_t errlen)
{
	struct pg_repo *s = outbox_repo(o);
	PGresult *r;
	enum mn_err err =
		pg_pool_exec(s->pg.pool, &st_stats, NULL, NULL, "outbox stats", &r, errbuf, errlen);

	*out = (struct outbox_stats){0};
	if (err == MN_OK && PQntuples(r) == 1) {
		out->pending = pg_cell_int(r, 0, 0);
		out->sent = pg_cell_int(r, 0, 1);
		out->oldest_pending_ms = pg_cell_int(r, 0, 2);
		out->oldest_sent_ms = pg_cell_int(r, 0, 3);
	} else if (err == MN_OK) {
		err = mn_error(errbuf, errlen, MN_INTERNAL, "internal error");
	}
	PQclear(r);
	return err;
}

static enum mn_err pg_outbox_prune(struct outbox *o, int64_t sent_before_ms,
				   size_t max_rows, size_t *pruned, char *errbuf, size_t errlen)
{
	struct pg_repo *s = outbox_repo(o);
	struct pg_num before, rows;
	const char *params[] = {
		pg_num(&before, sent_before_ms),
		pg_num(&rows, max_rows > INT64_MAX ? INT64_MAX : (int64_t)max_rows)};
	PGresult *r;
	enum mn_err err;

	*pruned = 0;
	if (max_rows == 0)
		return MN_OK;
	err = pg_pool_exec(s->pg.pool, &st_prune, params, s->pg.writes, "outbox prune", &r, errbuf,
			   errlen);
	if (err == MN_OK)
		*pruned = (size_t)strtoull(PQcmdTuples(r), NULL, 10);
	PQclear(r);
	return err;
}

static enum mn_err pg_get(struct orders_repo *repo, int64_t id, struct order *out)
{
	struct pg_repo *s = (struct pg_repo *)repo;

	return pg_pool_get(s->pg.pool, &st_get, id, "orders select", row_to_order, out);
}

static enum mn_err pg_list(struct orders_repo *repo, size_t limit, size_t offset,
			   struct order **out, size_t *n)
{
	struct pg_repo *s = (struct pg_repo *)repo;

	return pg_pool_page(s->pg.pool, &st_list, limit, offset, "orders list", sizeof(**out),
			    row_to_order, orders_release, (void **)out, n);
}

static void pg_destroy(struct orders_repo *repo)
{
	struct pg_repo *s = (struct pg_repo *)repo;

	pg_repo_base_release(&s->pg);
	free(s);
}

static const struct orders_repo_ops pg_ops = {
	.create = pg_create,
	.get = pg_get,
	.list = pg_list,
	.destroy = pg_destroy,
};

static const struct outbox_ops pg_outbox_ops = {
	.pending = pg_outbox_pending,
	.mark_sent = pg_outbox_mark_sent,
	.stats = pg_outbox_stats,
	.prune = pg_outbox_prune,
};

struct orders_repo *orders_repo_pg_new(struct pg_pool *pool, struct pg_writes *writes,
				       struct outbox **outbox)
{
	struct pg_repo *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->base.ops = &pg_ops;
	s->outbox.ops = &pg_outbox_ops;
	if (outbox)
		*outbox = &s->outbox;
	pg_repo_base_init(&s->pg, pool, writes);
	return &s->base;
}
