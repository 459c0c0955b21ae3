/* Statements of the repositories on the pool's connections: one
 * statement, a transaction, a page of rows, each with its deadline, its
 * failure logged and mapped, and the write faults counted; and the small
 * helpers around them (text parameters, cells, a repository's base). */
#include "pg_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"

void pg_writes_init(struct pg_writes *w)
{
	pthread_mutex_init(&w->lock, NULL);
	memset(&w->health, 0, sizeof(w->health));
}

void pg_writes_release(struct pg_writes *w)
{
	pthread_mutex_destroy(&w->lock);
}

void pg_writes_health(struct pg_writes *w, struct store_health *out)
{
	pthread_mutex_lock(&w->lock);
	*out = w->health;
	pthread_mutex_unlock(&w->lock);
}

static void writes_note(struct pg_writes *w, enum store_fault f)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	w->health.fault = f;
	if (f != STORE_FAULT_NONE)
		w->health.write_failures[f]++;
	pthread_mutex_unlock(&w->lock);
}

/* The client-side deadline of a query on 'c': its statement's, and never
 * past its holder's (then *holder is true). */
static uint64_t query_deadline(const struct pg_conn *c, int timeout_ms, bool *holder)
{
	uint64_t d = clock_monotonic_ms() + (uint64_t)timeout_ms;

	*holder = c->deadline_ms && c->deadline_ms < d;
	return *holder ? c->deadline_ms : d;
}

/* Reports a statement that failed on 'c' (r: its result, if any) as
 * pg_conn_exec() says, and returns its error. 'holder': its deadline was
 * the holder's, not the statement's. */
static enum mn_err exec_failure(struct pg_pool *p, struct pg_conn *c, const PGresult *r,
				enum wait_result why, int timeout_ms, bool holder,
				struct pg_writes *writes, const char *what, char *err,
				size_t errlen)
{
	char detail[DETAIL_MAX];
	struct pg_failure f;

	pg_conn_query_failure(c, r, why, timeout_ms, &f, detail, sizeof(detail));
	/* the holder's own time ran out on a connection still up: only this
	 * one is closed (the server rolls back), the pool stays up */
	if (r == NULL && why == WAIT_TIMEOUT && holder && PQstatus(c->conn) == CONNECTION_OK) {
		pg_timeout_map(true, &f);
		snprintf(detail, sizeof(detail),
			 "no answer within server.read_timeout_ms (%d ms) of the request",
			 p->opts.request_timeout_ms);
		c->broken = true;
	}
	if (f.err == MN_INTERNAL)
		log_error("store", "%s: %s failed: %s", p->describe, what, detail);
	else if (f.err != MN_CONFLICT && !f.server_gone)
		log_warn("store", "%s: %s failed: %s", p->describe, what, detail);
	if (f.fault != STORE_FAULT_NONE)
		writes_note(writes, f.fault);
	/* the pool logs the outage itself, once */
	if (f.server_gone)
		pg_pool_down(p, c->generation, &f, detail);
	return mn_error(err, errlen, f.err, "%s", f.client);
}

enum mn_err pg_conn_exec(struct pg_pool *p, struct pg_conn *c, const struct pg_stmt *st,
			 const char *const *params, struct pg_writes *writes, const char *what,
			 PGresult **res, char *err, size_t errlen)
{
	int timeout_ms = p->opts.statement_timeout_ms + PG_POOL_QUERY_GRACE_MS;
	bool holder;
	uint64_t deadline = query_deadline(c, timeout_ms, &holder);
	enum wait_result why;
	enum mn_err e;
	PGresult *r;

	*res = NULL;
	r = pg_conn_prepared(c, st, params, deadline, &why);
	if (r && !pg_conn_res_failed(r)) {
		pg_pool_note_ok(p);
		/* inside a transaction nothing is durable before COMMIT, which
		 * reports the write itself */
		if (writes && PQtransactionStatus(c->conn) == PQTRANS_IDLE)
			writes_note(writes, STORE_FAULT_NONE);
		*res = r;
		return MN_OK;
	}
	e = exec_failure(p, c, r, why, timeout_ms, holder, writes, what, err, errlen);
	PQclear(r);
	return e;
}

/* One transaction-control command ("BEGIN", "COMMIT") in the simple
 * protocol: nothing to prepare, and no slot of PG_POOL_MAX_STMTS taken. */
static enum mn_err conn_command(struct pg_pool *p, struct pg_conn *c, const char *sql,
				struct pg_writes *writes, const char *what, char *err,
				size_t errlen)
{
	int timeout_ms = p->opts.statement_timeout_ms + PG_POOL_QUERY_GRACE_MS;
	bool holder;
	uint64_t deadline = query_deadline(c, timeout_ms, &holder);
	enum wait_result why;
	enum mn_err e;
	PGresult *r;

	/* the caller's deadline is over: what it waits for must not commit
	 * now (the connection is closed, and the server rolls back) */
	if (strcmp(sql, "COMMIT") == 0 && c->commit_by_ms &&
	    clock_monotonic_ms() >= c->commit_by_ms) {
		log_warn("store", "%s: %s not committed: over server.read_timeout_ms (%d ms)",
			 p->describe, what, p->opts.request_timeout_ms);
		c->broken = true;
		return mn_error(err, errlen, MN_UNAVAILABLE, "the database is busy; try again");
	}
	r = pg_conn_simple(c, sql, deadline, &why);
	if (r && !pg_conn_res_failed(r)) {
		pg_pool_note_ok(p);
		/* COMMIT of a transaction that had failed answers ROLLBACK,
		 * successfully: nothing was stored */
		if (strcmp(sql, "COMMIT") == 0 && strcmp(PQcmdStatus(r), "COMMIT") != 0) {
			log_error("store", "%s: %s failed: the transaction was rolled back",
				  p->describe, what);
			PQclear(r);
			return mn_error(err, errlen, MN_INTERNAL, "internal error");
		}
		PQclear(r);
		if (writes)
			writes_note(writes, STORE_FAULT_NONE);
		return MN_OK;
	}
	e = exec_failure(p, c, r, why, timeout_ms, holder, writes, what, err, errlen);
	PQclear(r);
	return e;
}

enum mn_err pg_conn_begin(struct pg_pool *p, struct pg_conn *c, const char *what, char *err,
			  size_t errlen)
{
	return conn_command(p, c, "BEGIN", NULL, what, err, errlen);
}

enum mn_err pg_conn_commit(struct pg_pool *p, struct pg_conn *c, struct pg_writes *writes,
			   const char *what, char *err, size_t errlen)
{
	return conn_command(p, c, "COMMIT", writes, what, err, errlen);
}

void pg_conn_rollback(struct pg_pool *p, struct pg_conn *c)
{
	/* a connection that broke, or whose ROLLBACK fails, is left not
	 * idle, and pg_pool_put() closes it: the server rolls back then */
	if (c->broken || PQstatus(c->conn) != CONNECTION_OK ||
	    PQtransactionStatus(c->conn) == PQTRANS_IDLE)
		return;
	conn_command(p, c, "ROLLBACK", NULL, "rollback", NULL, 0);
}

enum mn_err pg_pool_exec(struct pg_pool *p, const struct pg_stmt *st, const char *const *params,
			 struct pg_writes *writes, const char *what, PGresult **res, char *err,
			 size_t errlen)
{
	struct pg_conn *c;
	enum mn_err e;

	*res = NULL;
	e = pg_pool_acquire(p, &c, err, errlen);
	if (e != MN_OK)
		return e;
	e = pg_conn_exec(p, c, st, params, writes, what, res, err, errlen);
	pg_pool_put(p, c);
	return e;
}

enum mn_err pg_pool_get(struct pg_pool *p, const struct pg_stmt *st, int64_t id, const char *what,
			enum mn_err (*row)(const PGresult *res, int i, void *out), void *out)
{
	struct pg_num n;
	const char *params[] = {pg_num(&n, id)};
	PGresult *r;
	enum mn_err err = pg_pool_exec(p, st, params, NULL, what, &r, NULL, 0);

	if (err == MN_OK)
		err = PQntuples(r) == 1 ? row(r, 0, out) : MN_NOT_FOUND;
	PQclear(r);
	return err;
}

enum mn_err pg_pool_page(struct pg_pool *p, const struct pg_stmt *st, size_t limit, size_t offset,
			 const char *what, size_t size,
			 enum mn_err (*row)(const PGresult *res, int i, void *element),
			 void (*release)(void *elements, size_t n), void **out, size_t *n)
{
	struct pg_num a, b;
	const char *params[] = {pg_num(&a, limit > INT64_MAX ? INT64_MAX : (int64_t)limit),
				pg_num(&b, offset > INT64_MAX ? INT64_MAX : (int64_t)offset)};
	char *elements = NULL;
	size_t filled = 0, rows;
	PGresult *res;
	enum mn_err e;

	*out = NULL;
	*n = 0;
	if (limit == 0)
		return MN_OK;
	e = pg_pool_exec(p, st, params, NULL, what, &res, NULL, 0);
	if (e != MN_OK)
		return e;
	rows = (size_t)PQntuples(res);
	if (rows > 0 && (elements = calloc(rows, size)) == NULL)
		e = MN_NOMEM;
	for (; e == MN_OK && filled < rows; filled++)
		e = row(res, (int)filled, elements + filled * size);
	PQclear(res);
	if (e != MN_OK || filled == 0) {
		release(elements, filled);
		return e;
	}
	*out = elements;
	*n = filled;
	return MN_OK;
}

const char *pg_num(struct pg_num *n, int64_t v)
{
	snprintf(n->s, sizeof(n->s), "%" PRId64, v);
	return n->s;
}

int64_t pg_cell_int(const PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

void pg_repo_base_init(struct pg_repo_base *b, struct pg_pool *pool, struct pg_writes *writes)
{
	b->pool = pg_pool_ref(pool);
	b->writes = writes;
}

void pg_repo_base_release(struct pg_repo_base *b)
{
	pg_pool_unref(b->pool);
}
