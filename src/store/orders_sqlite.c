/* SQLite orders repository: its table and statements over the shared
 * connection pool (store/sqlite_pool.h), which holds the durability and
 * sharing rules and the write state. */
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "store/drivers.h"
#include "store/sqlite_pool.h"

enum stmt {
	ST_INSERT,
	ST_GET,
	ST_LIST,
	ST_EVENT_INSERT,
	ST_PENDING,
	ST_MARK_SENT,
	ST_STATS,
	ST_PRUNE,
	ST_COUNT
};

const char *const orders_sqlite_stmts[ST_COUNT] = {
	[ST_INSERT] = "INSERT INTO orders (user_id, product, quantity) VALUES (?1, ?2, ?3)",
	[ST_GET] = "SELECT id, user_id, product, quantity FROM orders WHERE id = ?1",
	[ST_LIST] = "SELECT id, user_id, product, quantity FROM orders ORDER BY id"
		    " LIMIT ?1 OFFSET ?2",
	[ST_EVENT_INSERT] = "INSERT INTO events_outbox (event_id, type, body, created_ms)"
			    " VALUES (?1, ?2, ?3, ?4)",
	[ST_PENDING] = "SELECT id, event_id, type, body, created_ms FROM events_outbox"
		       " WHERE sent_ms IS NULL ORDER BY id LIMIT ?1",
	[ST_MARK_SENT] = "UPDATE events_outbox SET sent_ms = ?2 WHERE id = ?1 AND sent_ms IS NULL",
	/* The oldest pending is the first by id, the one waiting longest:
	 * ids follow commits, created_ms follows a clock that may step. */
	[ST_STATS] = "SELECT (SELECT count(*) FROM events_outbox WHERE sent_ms IS NULL),"
		     " (SELECT count(*) FROM events_outbox WHERE sent_ms IS NOT NULL),"
		     " coalesce((SELECT created_ms FROM events_outbox WHERE sent_ms IS NULL"
		     " ORDER BY id LIMIT 1), 0),"
		     " coalesce((SELECT sent_ms FROM events_outbox WHERE sent_ms IS NOT NULL"
		     " ORDER BY sent_ms, id LIMIT 1), 0)",
	/* The oldest sent first, a range of the index events_outbox_sent
	 * (migration 3): a batch costs its own rows, not the table's. */
	[ST_PRUNE] = "DELETE FROM events_outbox WHERE id IN (SELECT id FROM events_outbox"
		     " WHERE sent_ms IS NOT NULL AND sent_ms < ?1 ORDER BY sent_ms, id LIMIT ?2)",
};

const size_t orders_sqlite_stmt_count = ST_COUNT;

/* The tables are made by the store's migrations (store/migrate.h). */

struct sqlite_repo {
	struct orders_repo base;
	struct outbox outbox; /* over the same tables */
	struct sqlite_pool *pool; /* the store's, borrowed */
	size_t first;		  /* of its statements in the pool's */
};

static struct sqlite_repo *outbox_repo(struct outbox *o)
{
	return (struct sqlite_repo *)((char *)o - offsetof(struct sqlite_repo, outbox));
}

static enum mn_err row_to_order(sqlite3_stmt *st, void *out)
{
	const char *product = (const char *)sqlite3_column_text(st, 2);

	/* NULL only when SQLite ran out of memory converting the value. */
	if (product == NULL)
		return MN_NOMEM;
	return order_set(out, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), product,
			 sqlite3_column_int64(st, 3));
}

static char *column_dup(sqlite3_stmt *st, int col)
{
	const char *v = (const char *)sqlite3_column_text(st, col);

	return v ? strdup(v) : NULL;
}

/* The event of ST_PENDING's row into *out (zeroed), NULL-safe to free. */
static enum mn_err row_to_event(sqlite3_stmt *st, struct outbox_event *out)
{
	out->id = sqlite3_column_int64(st, 0);
	out->event_id = column_dup(st, 1);
	out->type = column_dup(st, 2);
	out->body = column_dup(st, 3);
	out->created_ms = sqlite3_column_int64(st, 4);
	if (out->event_id == NULL || out->type == NULL || out->body == NULL)
		return MN_NOMEM;
	return MN_OK;
}

/* An order, with its OrderCreated event when event_id is set, for
 * sqlite_pool_write(): one transaction holds both, and the pool's group
 * commit keeps ids in commit order (the publisher's order). */
struct order_write {
	struct sqlite_write base;
	size_t first; /* the repository's first statement */
	int64_t user_id;
	const char *product;
	int64_t quantity;
	const char *event_id;
	int64_t id;
};

static int run_order_write(struct sqlite_conn *c, struct sqlite_write *w)
{
	struct order_write *ow = (struct order_write *)w;
	sqlite3_stmt *st = c->stmt[ow->first + ST_INSERT];
	struct order o;
	char *body;
	int rc;

	sqlite3_bind_int64(st, 1, ow->user_id);
	sqlite3_bind_text(st, 2, ow->product, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, ow->quantity);
	rc = sqlite3_step(st);
	ow->id = sqlite3_last_insert_rowid(c->db);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE || ow->event_id == NULL)
		return rc;

	o = (struct order){.id = ow->id, .user_id = ow->user_id, .product = (char *)ow->product,
			   .quantity = ow->quantity};
	body = order_created_json(&o);
	if (body == NULL)
		return SQLITE_NOMEM;
	st = c->stmt[ow->first + ST_EVENT_INSERT];
	sqlite3_bind_text(st, 1, ow->event_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, "OrderCreated", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, body, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, clock_wall_ms());
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	free(body);
	return rc;
}

static enum mn_err sq_create(struct orders_repo *r, int64_t user_id, const char *product,
			     int64_t quantity, const char *event_id, struct order *out,
			     char *errbuf, size_t errlen)
{
	struct sqlite_repo *s = (struct sqlite_repo *)r;
	struct order_write ow = {
		.base = {.run = run_order_write,
			 .what = event_id ? "orders insert with event" : "orders insert"},
		.first = s->first,
		.user_id = user_id,
		.product = product,
		.quantity = quantity,
		.event_id = event_id,
	};
	enum mn_err err = sqlite_pool_write(s->pool, &ow.base, errbuf, errlen);

	if (err != MN_OK)
		return err;
	return order_set(out, ow.id, user_id, product, quantity);
}

static enum mn_err sq_outbox_pending(struct outbox *o, size_t limit, struct outbox_event **out,
				     size_t *n, char *errbuf, size_t errlen)
{
	struct sqlite_repo *s = outbox_repo(o);
	struct sqlite_conn *c;
	sqlite3_stmt *st;
	struct outbox_event *events;
	enum mn_err err = MN_OK;
	size_t count = 0;
	int rc = SQLITE_DONE;

	*out = NULL;
	*n = 0;
	if (limit == 0)
		return MN_OK;
	events = calloc(limit, sizeof(*events));
	if (events == NULL)
		return mn_error(errbuf, errlen, MN_NOMEM, "internal error");
	c = sqlite_pool_acquire(s->pool);
	st = c->stmt[s->first + ST_PENDING];
	sqlite3_bind_int64(st, 1, limit > INT64_MAX ? INT64_MAX : (sqlite3_int64)limit);
	while (count < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		/* counted first: a half-filled event is freed with the rest */
		err = row_to_event(st, &events[count++]);
		if (err != MN_OK)
			break;
	}
	if (err == MN_OK && count < limit && rc != SQLITE_DONE)
		err = sqlite_pool_read_error(c, rc, "outbox pending");
	sqlite3_reset(st);
	sqlite_pool_release(s->pool, c);
	if (err != MN_OK || count == 0) {
		outbox_events_free(events, count);
		return err == MN_OK ? MN_OK : mn_error(errbuf, errlen, err, "internal error");
	}
	*out = events;
	*n = count;
	return MN_OK;
}

/* The publisher's batch of ids, marked sent in one write. */
struct mark_sent_write {
	struct sqlite_write base;
	size_t first; /* the repository's first statement */
	const int64_t *ids;
	size_t n;
	int64_t now_ms;
};

static int run_mark_sent(struct sqlite_conn *c, struct sqlite_write *w)
{
	struct mark_sent_write *m = (struct mark_sent_write *)w;
	sqlite3_stmt *st = c->stmt[m->first + ST_MARK_SENT];
	int rc = SQLITE_DONE;

	for (size_t i = 0; i < m->n && rc == SQLITE_DONE; i++) {
		sqlite3_bind_int64(st, 1, m->ids[i]);
		sqlite3_bind_int64(st, 2, m->now_ms);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
	}
	return rc;
}

/* One transaction for the batch: one append to the WAL, not one per event. */
static enum mn_err sq_outbox_mark_sent(struct outbox *o, const int64_t *ids, size_t n,
				       int64_t now_ms, char *errbuf, size_t errlen)
{
	struct sqlite_repo *s = outbox_repo(o);
	struct mark_sent_write m = {
		.base = {.run = run_mark_sent, .what = "outbox mark sent"},
		.first = s->first,
		.ids = ids,
		.n = n,
		.now_ms = now_ms,
	};

	if (n == 0)
		return MN_OK;
	return sqlite_pool_write(s->pool, &m.base, errbuf, errlen);
}

static enum mn_err sq_outbox_stats(struct outbox *o, struct outbox_stats *out, char *errbuf,
				   size_t errlen)
{
	struct sqlite_repo *s = outbox_repo(o);
	struct sqlite_conn *c = sqlite_pool_acquire(s->pool);
	sqlite3_stmt *st = c->stmt[s->first + ST_STATS];
	enum mn_err err = MN_OK;
	int rc = sqlite3_step(st);

	*out = (struct outbox_stats){0};
	if (rc == SQLITE_ROW) {
		out->pending = sqlite3_column_int64(st, 0);
		out->sent = sqlite3_column_int64(st, 1);
		out->oldest_pending_ms = sqlite3_column_int64(st, 2);
		out->oldest_sent_ms = sqlite3_column_int64(st, 3);
	} else {
		err = mn_error(errbuf, errlen, sqlite_pool_read_error(c, rc, "outbox stats"),
			       "internal error");
	}
	sqlite3_reset(st);
	sqlite_pool_release(s->pool, c);
	return err;
}

struct prune_write {
	struct sqlite_write base;
	size_t first; /* the repository's first statement */
	int64_t sent_before_ms;
	size_t max_rows;
};

static int run_prune(struct sqlite_conn *c, struct sqlite_write *w)
{
	struct prune_write *pw = (struct prune_write *)w;
	sqlite3_stmt *st = c->stmt[pw->first + ST_PRUNE];
	int rc;

	sqlite3_bind_int64(st, 1, pw->sent_before_ms);
	sqlite3_bind_int64(st, 2,
			   pw->max_rows > INT64_MAX ? INT64_MAX : (sqlite3_int64)pw->max_rows);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc;
}

static enum mn_err sq_outbox_prune(struct outbox *o, int64_t sent_before_ms, size_t max_rows,
				   size_t *pruned, char *errbuf, size_t errlen)
{
	struct sqlite_repo *s = outbox_repo(o);
	struct prune_write pw = {
		.base = {.run = run_prune, .what = "outbox prune"},
		.first = s->first,
		.sent_before_ms = sent_before_ms,
		.max_rows = max_rows,
	};
	enum mn_err err;

	*pruned = 0;
	if (max_rows == 0)
		return MN_OK;
	err = sqlite_pool_write(s->pool, &pw.base, errbuf, errlen);
	if (err == MN_OK)
		*pruned = (size_t)pw.base.changes;
	return err;
}

static enum mn_err sq_get(struct orders_repo *r, int64_t id, struct order *out)
{
	struct sqlite_repo *s = (struct sqlite_repo *)r;

	return sqlite_pool_get(s->pool, s->first + ST_GET, id, "orders select", row_to_order, out);
}

static void orders_release(void *orders, size_t n)
{
	order_list_free(orders, n);
}

static enum mn_err sq_list(struct orders_repo *r, size_t limit, size_t offset, struct order **out,
			   size_t *n)
{
	struct sqlite_repo *s = (struct sqlite_repo *)r;

	return sqlite_pool_page(s->pool, s->first + ST_LIST, limit, offset, "orders list",
				sizeof(**out), row_to_order, orders_release, (void **)out, n);
}

static void sq_destroy(struct orders_repo *r)
{
	free(r);
}

static const struct orders_repo_ops sqlite_ops = {
	.create = sq_create,
	.get = sq_get,
	.list = sq_list,
	.destroy = sq_destroy,
};

static const struct outbox_ops sq_outbox_ops = {
	.pending = sq_outbox_pending,
	.mark_sent = sq_outbox_mark_sent,
	.stats = sq_outbox_stats,
	.prune = sq_outbox_prune,
};

struct orders_repo *orders_repo_sqlite_new(struct sqlite_pool *pool, size_t first,
					   struct outbox **outbox)
{
	struct sqlite_repo *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->base.ops = &sqlite_ops;
	s->outbox.ops = &sq_outbox_ops;
	if (outbox)
		*outbox = &s->outbox;
	s->pool = pool;
	s->first = first;
	return &s->base;
}
