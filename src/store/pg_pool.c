/* The pool: connections opened by its own thread (and reconnected with
 * backoff while the pool is down), handed out to waiters in turn, taken
 * back, and the probe and counters readiness and /metrics read. */
#include "pg_internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backoff.h"
#include "core/clock.h"
#include "core/log.h"

/* A worker waiting for a connection, on its own stack: served in the
 * order they came (a connection given back goes to the first), so that
 * none waits behind later ones. */
struct pg_waiter {
	pthread_cond_t cond;
	struct pg_conn *conn; /* handed over by give_locked() */
	struct pg_waiter *next;
};

/* ---- the pool ------------------------------------------------------------ */

/* The session's statement_timeout: the pool's, unless the server already
 * gives this role or database a lower one (a DBA's stricter rule stays);
 * not a startup option, which would override theirs. */
static bool conn_session(struct pg_pool *p, struct pg_conn *c, struct pg_failure *f, char *detail,
			 size_t dlen)
{
	uint64_t deadline = clock_monotonic_ms() + (uint64_t)p->opts.connect_timeout_ms;
	char sql[300];

	snprintf(sql, sizeof(sql),
		 "SELECT set_config('statement_timeout', '%d', false) FROM pg_settings"
		 " WHERE name = 'statement_timeout'"
		 " AND (setting::bigint = 0 OR setting::bigint > %d)",
		 p->opts.statement_timeout_ms, p->opts.statement_timeout_ms);
	return pg_conn_simple_ok(c, sql, deadline, f, detail, dlen);
}

/* A new connection, migrating first when asked. */
static struct pg_conn *conn_open(struct pg_pool *p, bool migrate, struct pg_failure *f,
				 char *detail, size_t dlen)
{
	struct pg_conn *c;
	PGconn *pc;

	pc = pg_connect(&p->params, p->opts.connect_timeout_ms, &p->worker.cancel, f, detail, dlen);
	if (pc == NULL)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		PQfinish(pc);
		*f = (struct pg_failure){MN_NOMEM, true, false, STORE_FAULT_NONE, "internal error"};
		snprintf(detail, dlen, "out of memory");
		return NULL;
	}
	c->conn = pc;
	if (!conn_session(p, c, f, detail, dlen) ||
	    (migrate && pg_migrate(p, c, f, detail, dlen) != 0)) {
		pg_conn_free(c);
		return NULL;
	}
	return c;
}

/* The words /ready shows for a failure to connect: never libpq's. */
static void down_reason_set(struct pg_pool *p, const struct pg_failure *f)
{
	if (f->err == MN_CONFIG)
		snprintf(p->down_reason, sizeof(p->down_reason),
			 "database at %s refused this node (a configuration error: see the log)",
			 p->where);
	else if (f->server_gone)
		snprintf(p->down_reason, sizeof(p->down_reason), "database unreachable at %s",
			 p->where);
	else
		snprintf(p->down_reason, sizeof(p->down_reason), "database at %s not usable: %s",
			 p->where, mn_strerror(f->err));
}

/* A connection free for use: to the first waiter, else idle. Lock held. */
static void give_locked(struct pg_pool *p, struct pg_conn *c)
{
	struct pg_waiter *w = p->waiter_head;

	if (w == NULL) {
		p->idle[p->n_idle++] = c;
		return;
	}
	p->waiter_head = w->next;
	if (p->waiter_head == NULL)
		p->waiter_tail = NULL;
	w->next = NULL;
	w->conn = c;
	pthread_cond_signal(&w->cond);
}

/* Wakes every waiter (the pool went down or closes). Lock held. */
static void wake_waiters_locked(struct pg_pool *p)
{
	for (struct pg_waiter *w = p->waiter_head; w; w = w->next)
		pthread_cond_signal(&w->cond);
}

/* Takes 'me' out of the queue if it is still there. Lock held. */
static void waiter_remove_locked(struct pg_pool *p, struct pg_waiter *me)
{
	struct pg_waiter **q = &p->waiter_head, *prev = NULL;

	while (*q && *q != me) {
		prev = *q;
		q = &(*q)->next;
	}
	if (*q == NULL)
		return;
	*q = me->next;
	if (p->waiter_tail == me)
		p->waiter_tail = prev;
}

/* Closes the idle connections; lock held. */
static void close_idle_locked(struct pg_pool *p)
{
	while (p->n_idle > 0) {
		pg_conn_free(p->idle[--p->n_idle]);
		p->n_open--;
	}
}

/* The pool goes down, once per generation: 'generation' is the one the
 * caller's connection was opened in, so only the first to notice acts. */
void pg_pool_down(struct pg_pool *p, unsigned generation, const struct pg_failure *f,
		  const char *detail)
{
	pthread_mutex_lock(&p->lock);
	if (!p->up || generation != p->generation) {
		pthread_mutex_unlock(&p->lock);
		return;
	}
	p->up = false;
	p->generation++;
	close_idle_locked(p);
	p->down_since_ms = clock_monotonic_ms();
	p->next_attempt_ms = p->down_since_ms; /* one backend killed: back at once */
	p->failed_attempts = 0;
	backoff_reset(&p->backoff);
	down_reason_set(p, f);
	snprintf(p->last_logged, sizeof(p->last_logged), "%s", detail);
	pthread_cond_broadcast(&p->available);
	wake_waiters_locked(p);
	worker_wake_locked(&p->worker);
	pthread_mutex_unlock(&p->lock);
	log_warn("store",
		 "%s: %s; requests get 503 until it answers again (tried again with backoff up to "
		 "%d ms)",
		 p->describe, detail, PG_POOL_BACKOFF_CAP_MS);
}

/* The pool's thread, while down: one attempt (with the migrations when
 * they were not applied yet). Lock held on entry and return. */
static void pool_reconnect_locked(struct pg_pool *p)
{
	char detail[DETAIL_MAX];
	bool migrate = !p->migrated;
	struct pg_failure f;
	struct pg_conn *c;
	uint64_t now;

	p->n_open++;
	pthread_mutex_unlock(&p->lock);
	c = conn_open(p, migrate, &f, detail, sizeof(detail));
	pthread_mutex_lock(&p->lock);
	now = clock_monotonic_ms();
	if (c && worker_stopping(&p->worker)) {
		p->n_open--;
		pg_conn_free(c);
		return;
	}
	if (c == NULL) {
		p->n_open--;
		p->failed_attempts++;
		p->next_attempt_ms = now + backoff_next(&p->backoff);
		down_reason_set(p, &f);
		p->first_failure = f;
		p->attempted = true;
		pthread_cond_broadcast(&p->available); /* pg_pool_start() */
		if (p->start_waiting) {
			/* pg_pool_start() reports it */
			snprintf(p->last_logged, sizeof(p->last_logged), "%s", detail);
		} else if (strcmp(detail, p->last_logged) != 0) {
			snprintf(p->last_logged, sizeof(p->last_logged), "%s", detail);
			if (f.err == MN_CONFIG)
				log_error("store",
					  "%s: %s (%s; the node keeps serving 503 and trying)",
					  p->describe, detail, CONFIG_HINT);
			else
				log_warn("store", "%s: %s; trying again", p->describe, detail);
		} else {
			log_debug("store", "%s: attempt %lu: %s", p->describe, p->failed_attempts,
				  detail);
		}
		return;
	}
	c->generation = p->generation;
	give_locked(p, c);
	p->up = true;
	p->attempted = true;
	p->migrated = true;
	atomic_store_explicit(&p->last_ok_ms, now, memory_order_relaxed);
	p->last_logged[0] = '\0';
	backoff_reset(&p->backoff);
	log_info("store", "%s: connected%s after %lu failed attempts in %.1f s", p->describe,
		 migrate ? ", schema up to date" : "", p->failed_attempts,
		 (double)(now - p->down_since_ms) / 1000.0);
	pthread_cond_broadcast(&p->available);
}

/* The pool's thread, while up: one more connection for a waiter. Lock
 * held on entry and return. */
static void pool_grow_locked(struct pg_pool *p)
{
	unsigned generation = p->generation;
	char detail[DETAIL_MAX];
	struct pg_failure f;
	struct pg_conn *c;

	p->n_open++;
	pthread_mutex_unlock(&p->lock);
	c = conn_open(p, false, &f, detail, sizeof(detail));
	pthread_mutex_lock(&p->lock);
	if (c && p->up && generation == p->generation && !worker_stopping(&p->worker)) {
		c->generation = generation;
		give_locked(p, c);
		return;
	}
	p->n_open--;
	pg_conn_free(c);
	if (c == NULL) {
		pthread_mutex_unlock(&p->lock);
		pg_pool_down(p, generation, &f, detail);
		pthread_mutex_lock(&p->lock);
	}
}

static void *pool_main(void *arg)
{
	struct pg_pool *p = arg;

	pthread_mutex_lock(&p->lock);
	while (!worker_stopping(&p->worker)) {
		uint64_t now = clock_monotonic_ms();

		if (!p->up && now >= p->next_attempt_ms) {
			pool_reconnect_locked(p);
		} else if (!p->up) {
			worker_wait_locked(&p->worker, p->next_attempt_ms - now, NULL, NULL);
		} else if (p->waiters > 0 && p->n_idle == 0 && p->n_open < p->size) {
			pool_grow_locked(p);
		} else {
			worker_wait_locked(&p->worker, WORKER_FOREVER, NULL, NULL);
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

/* The pool's copies of the options (the password wiped) and itself. */
static void pool_free(struct pg_pool *p)
{
	free(p->host);
	free(p->user);
	if (p->password)
		explicit_bzero(p->password, strlen(p->password));
	free(p->password);
	free(p->dbname);
	free(p->sslmode);
	free(p->idle);
	free(p);
}

struct pg_pool *pg_pool_create(const struct pg_pool_opts *o)
{
	struct pg_pool *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->size = o->pool_size > 0 ? (size_t)o->pool_size : 1;
	p->host = dup_or_empty(o->host);
	p->user = dup_or_empty(o->user);
	p->password = dup_or_empty(o->password);
	p->dbname = dup_or_empty(o->dbname);
	p->sslmode = dup_or_empty(o->sslmode);
	p->idle = calloc(p->size, sizeof(*p->idle));
	if (!p->host || !p->user || !p->password || !p->dbname || !p->sslmode || !p->idle) {
		pool_free(p);
		return NULL;
	}
	p->opts = *o;
	p->opts.host = p->host;
	p->opts.user = p->user;
	p->opts.password = p->password;
	p->opts.dbname = p->dbname;
	p->opts.sslmode = p->sslmode;
	pg_params_build(&p->opts, &p->params);
	pg_describe(&p->opts, p->describe, sizeof(p->describe));
	snprintf(p->where, sizeof(p->where), "%s:%d", p->host, o->port);
	snprintf(p->down_reason, sizeof(p->down_reason), "database at %s not connected yet",
		 p->where);
	atomic_init(&p->refs, 1);
	p->max_waiters = o->max_waiters > 0 ? (size_t)o->max_waiters : 0;
	if (p->opts.acquire_timeout_ms <= 0)
		p->opts.acquire_timeout_ms = 1;
	if (p->opts.request_timeout_ms <= 0)
		p->opts.request_timeout_ms =
			p->opts.statement_timeout_ms + p->opts.acquire_timeout_ms;
	pthread_mutex_init(&p->lock, NULL);
	clock_cond_init(&p->available);
	if (worker_init(&p->worker, &p->lock, NULL) != MN_OK) {
		pthread_cond_destroy(&p->available);
		pthread_mutex_destroy(&p->lock);
		pool_free(p);
		return NULL;
	}
	backoff_init(&p->backoff, PG_POOL_BACKOFF_BASE_MS, PG_POOL_BACKOFF_CAP_MS, 0);
	p->down_since_ms = clock_monotonic_ms();
	return p;
}

struct pg_pool *pg_pool_ref(struct pg_pool *p)
{
	atomic_fetch_add(&p->refs, 1);
	return p;
}

void pg_pool_unref(struct pg_pool *p)
{
	if (p == NULL || atomic_fetch_sub(&p->refs, 1) != 1)
		return;
	pthread_mutex_lock(&p->lock);
	worker_stop_locked(&p->worker);
	pthread_cond_broadcast(&p->available);
	wake_waiters_locked(p);
	pthread_mutex_unlock(&p->lock);
	worker_join(&p->worker, -1);
	close_idle_locked(p);
	pthread_cond_destroy(&p->available);
	worker_release(&p->worker);
	pthread_mutex_destroy(&p->lock);
	pool_free(p);
}

enum mn_err pg_pool_start(struct pg_pool *p, char *err, size_t errlen)
{
	struct timespec deadline = clock_deadline_ms(PG_POOL_START_WAIT_MS);
	struct pg_failure f;
	char detail[DETAIL_MAX];
	bool up, attempted;

	pthread_mutex_lock(&p->lock);
	p->next_attempt_ms = clock_monotonic_ms(); /* the thread's first attempt: at once */
	p->start_waiting = true;
	if (worker_start(&p->worker, pool_main, p) != MN_OK) {
		p->start_waiting = false;
		pthread_mutex_unlock(&p->lock);
		return mn_error(err, errlen, MN_NOMEM, "cannot start the postgres pool's thread");
	}
	while (!p->attempted &&
	       pthread_cond_timedwait(&p->available, &p->lock, &deadline) != ETIMEDOUT)
		;
	p->start_waiting = false;
	up = p->up;
	attempted = p->attempted;
	f = p->first_failure;
	snprintf(detail, sizeof(detail), "%s", p->last_logged);
	pthread_mutex_unlock(&p->lock);
	if (up)
		return MN_OK;
	if (!attempted)
		return mn_error(err, errlen, MN_UNAVAILABLE,
				"%s: no answer yet after %d ms; connecting in the background "
				"(database.connect_timeout_ms %d)",
				p->describe, PG_POOL_START_WAIT_MS, p->opts.connect_timeout_ms);
	if (f.err == MN_CONFIG)
		return mn_error(err, errlen, MN_CONFIG, "%s: %s (%s)", p->describe, detail,
				CONFIG_HINT);
	if (f.err != MN_UNAVAILABLE)
		return mn_error(err, errlen, f.err, "%s: %s", p->describe, detail);
	return mn_error(err, errlen, MN_UNAVAILABLE, "%s: %s", p->describe, detail);
}

/* A connection handed to a caller whose wait began at 'start'. */
static void conn_hand_out(struct pg_pool *p, struct pg_conn *c, uint64_t start)
{
	c->commit_by_ms = start + (uint64_t)p->opts.request_timeout_ms;
	c->deadline_ms = c->commit_by_ms;
}

enum mn_err pg_pool_acquire(struct pg_pool *p, struct pg_conn **out, char *err, size_t errlen)
{
	uint64_t start = clock_monotonic_ms();
	struct timespec deadline = clock_deadline_ms((uint64_t)p->opts.acquire_timeout_ms);
	enum store_shed why = STORE_SHED_TIMEOUT;
	struct pg_waiter me = {.conn = NULL};
	uint64_t refused = 0;
	int rc = 0;

	*out = NULL;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		if (worker_stopping(&p->worker) || !p->up) {
			pthread_mutex_unlock(&p->lock);
			return mn_error(err, errlen, MN_UNAVAILABLE, "the database is unavailable");
		}
		/* idle ones are taken only when no one waits before */
		if (p->n_idle > 0 && p->waiter_head == NULL) {
			struct pg_conn *c = p->idle[--p->n_idle];

			if (PQstatus(c->conn) != CONNECTION_OK || c->generation != p->generation) {
				pg_conn_free(c);
				p->n_open--;
				continue;
			}
			pthread_mutex_unlock(&p->lock);
			conn_hand_out(p, c, start);
			*out = c;
			return MN_OK;
		}
		if (rc == ETIMEDOUT)
			break;
		/* a bounded waiting room: past it, refused at once rather
		 * than one more worker parked */
		if (p->waiters >= p->max_waiters) {
			why = STORE_SHED_WAITERS;
			break;
		}
		clock_cond_init(&me.cond);
		if (p->waiter_tail)
			p->waiter_tail->next = &me;
		else
			p->waiter_head = &me;
		p->waiter_tail = &me;
		p->waiters++;
		worker_wake_locked(&p->worker);
		while (me.conn == NULL && !worker_stopping(&p->worker) && p->up && rc != ETIMEDOUT)
			rc = pthread_cond_timedwait(&me.cond, &p->lock, &deadline);
		if (me.conn == NULL)
			waiter_remove_locked(p, &me);
		p->waiters--;
		pthread_cond_destroy(&me.cond);
		if (me.conn) {
			struct pg_conn *c = me.conn;

			pthread_mutex_unlock(&p->lock);
			conn_hand_out(p, c, start);
			*out = c;
			return MN_OK;
		}
		me.next = NULL;
	}
	/* Every connection stayed busy: refused, and logged at most every
	 * ten seconds with the count since. */
	p->shed[why]++;
	p->busy_refusals++;
	if (clock_monotonic_ms() >= p->busy_logged_ms + 10000) {
		refused = p->busy_refusals;
		p->busy_refusals = 0;
		p->busy_logged_ms = clock_monotonic_ms();
	}
	pthread_mutex_unlock(&p->lock);
	if (refused)
		log_warn("store",
			 "%s: all %zu connections busy: %llu requests refused (503) since the last "
			 "such line, this one %s (database.pool_size, "
			 "database.acquire_timeout_ms %d, database.max_waiters %zu)",
			 p->describe, p->size, (unsigned long long)refused,
			 why == STORE_SHED_TIMEOUT ? "after waiting acquire_timeout_ms"
						   : "with max_waiters waiting already",
			 p->opts.acquire_timeout_ms, p->max_waiters);
	return mn_error(err, errlen, MN_UNAVAILABLE, "the database is busy; try again");
}

void pg_pool_stats(struct pg_pool *p, struct pg_pool_stats *out)
{
	pthread_mutex_lock(&p->lock);
	out->size = p->size;
	out->idle = p->n_idle;
	out->open = p->n_open;
	out->waiters = p->waiters;
	out->up = p->up;
	for (int i = 0; i < STORE_SHED_COUNT; i++)
		out->shed[i] = p->shed[i];
	pthread_mutex_unlock(&p->lock);
}

void pg_pool_put(struct pg_pool *p, struct pg_conn *c)
{
	bool bad = c->broken || PQstatus(c->conn) != CONNECTION_OK ||
		   PQtransactionStatus(c->conn) != PQTRANS_IDLE;

	pthread_mutex_lock(&p->lock);
	if (bad || c->generation != p->generation || worker_stopping(&p->worker) || !p->up) {
		p->n_open--;
		if (p->waiters > 0)
			worker_wake_locked(&p->worker);
		pthread_mutex_unlock(&p->lock);
		pg_conn_free(c);
		return;
	}
	give_locked(p, c);
	pthread_mutex_unlock(&p->lock);
}

/* A statement answered: the pool is not stuck. */
void pg_pool_note_ok(struct pg_pool *p)
{
	/* a stamp read only by pg_pool_ping(): no lock on every statement */
	atomic_store_explicit(&p->last_ok_ms, clock_monotonic_ms(), memory_order_relaxed);
}

enum mn_err pg_pool_ping(struct pg_pool *p, char *err, size_t errlen)
{
	static const struct pg_stmt ping = {"meshnode_ping", "SELECT 1", 0};
	struct pg_conn *c = NULL;
	enum mn_err e;
	PGresult *r;

	pthread_mutex_lock(&p->lock);
	if (!p->up) {
		e = mn_error(err, errlen, MN_UNAVAILABLE, "%s", p->down_reason);
		pthread_mutex_unlock(&p->lock);
		return e;
	}
	while (c == NULL && p->n_idle > 0) {
		c = p->idle[--p->n_idle];
		if (PQstatus(c->conn) != CONNECTION_OK || c->generation != p->generation) {
			pg_conn_free(c);
			p->n_open--;
			c = NULL;
		}
	}
	if (c == NULL) {
		/* all in use: working, unless none has answered for longer than
		 * a request may wait for one (a lock, a stalled server) */
		uint64_t last = atomic_load_explicit(&p->last_ok_ms, memory_order_relaxed);
		uint64_t now = clock_monotonic_ms();
		uint64_t quiet = now > last ? now - last : 0;

		e = MN_OK;
		if (quiet > (uint64_t)p->opts.acquire_timeout_ms)
			e = mn_error(err, errlen, MN_UNAVAILABLE,
				     "database busy: all %zu connections in use and none "
				     "answered for %llu ms",
				     p->size, (unsigned long long)quiet);
		pthread_mutex_unlock(&p->lock);
		return e;
	}
	pthread_mutex_unlock(&p->lock);
	conn_hand_out(p, c, clock_monotonic_ms());
	e = pg_conn_exec(p, c, &ping, NULL, NULL, "ping", &r, NULL, 0);
	PQclear(r);
	pg_pool_put(p, c);
	if (e != MN_OK)
		return mn_error(err, errlen, MN_UNAVAILABLE, "database not answering at %s",
				p->where);
	return MN_OK;
}
