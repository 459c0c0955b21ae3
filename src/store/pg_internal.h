/* What the PostgreSQL files of the store share and nothing else sees: a
 * connection, the pool's state, and the functions that cross between
 * pg_conn.c (a connection), pg_pool.c (the pool), pg_migrate.c (the
 * schema) and pg_query.c (the repositories' statements). The public
 * interface is store/pg_pool.h. */
#ifndef MESHNODE_STORE_PG_INTERNAL_H
#define MESHNODE_STORE_PG_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/backoff.h"
#include "core/worker.h"
#include "store/pg_pool.h"

#define DETAIL_MAX 512
/* What follows a refused login, at start and in --check-config. */
#define CONFIG_HINT                                                                                \
	"a configuration error: check database.user, database.password, database.name "            \
	"and the server's pg_hba.conf"

struct pg_conn {
	PGconn *conn;
	const struct pg_stmt *prepared[PG_POOL_MAX_STMTS];
	size_t n_prepared;
	unsigned generation; /* the pool's when opened: an older one is closed */
	bool broken;
	/* The holder's deadline on the client's side (pg_pool_acquire(): the
	 * start of its wait plus request_timeout_ms and the grace): no query
	 * waits past it, and no COMMIT is sent once request_timeout_ms is
	 * over. */
	uint64_t deadline_ms;
	uint64_t commit_by_ms;
};

/* The pool's state: pg_pool.c changes it under 'lock'; the other files
 * read only what pg_pool_create() set (opts, describe, where). */
struct pg_pool {
	atomic_int refs;
	char *host, *user, *password, *dbname, *sslmode;
	struct pg_pool_opts opts; /* its strings are the copies above */
	struct pg_params params;
	char describe[400];
	char where[300]; /* "localhost:5432", for /ready */

	pthread_mutex_t lock;
	pthread_cond_t available; /* a connection went idle, or the pool went down */
	struct worker worker;	  /* the pool's thread, woken by a waiter or
				     down; stopped when closing, its cancel
				     flag makes a handshake in progress give up */
	struct pg_conn **idle;	  /* stack of 'size' slots */
	size_t n_idle;
	size_t n_open; /* idle, in use, and being opened */
	size_t size;
	size_t waiters;
	struct pg_waiter *waiter_head, *waiter_tail;
	size_t max_waiters;
	uint64_t shed[STORE_SHED_COUNT]; /* requests refused busy, by reason */
	_Atomic uint64_t last_ok_ms;	 /* the last statement that succeeded: no lock */
	bool attempted;			 /* the first attempt ended (pg_pool_start) */
	bool start_waiting;		 /* pg_pool_start() waits for it */
	struct pg_failure first_failure;
	bool up;
	bool migrated;
	unsigned generation; /* goes up each time the pool goes down */
	struct backoff backoff;
	uint64_t next_attempt_ms;
	uint64_t down_since_ms;
	unsigned long failed_attempts;
	char down_reason[400];	      /* for /ready: no libpq text */
	char last_logged[DETAIL_MAX]; /* the last failure to connect logged */
	uint64_t busy_refusals;	      /* since busy_logged_ms */
	uint64_t busy_logged_ms;
};

/* ---- a connection (pg_conn.c) --------------------------------------------- */

enum wait_result { WAIT_OK, WAIT_TIMEOUT, WAIT_BROKEN };

/* Opens a connection, polling the handshake until 'timeout_ms' passes;
 * 'stop' (optional) set gives up. NULL with *f and detail on failure. */
PGconn *pg_connect(const struct pg_params *params, int timeout_ms, atomic_bool *stop,
		   struct pg_failure *f, char *detail, size_t dlen);

/* Closes 'c' and frees it; NULL does nothing. */
void pg_conn_free(struct pg_conn *c);

/* Whether 'r' is a failure (neither a command, rows nor an empty query). */
bool pg_conn_res_failed(const PGresult *r);

/* One statement of the simple protocol, its result read by 'deadline':
 * new, or NULL with *why. */
PGresult *pg_conn_simple(struct pg_conn *c, const char *sql, uint64_t deadline,
			 enum wait_result *why);

/* 'st' on 'c', prepared there first if it was not yet: as pg_conn_simple(). */
PGresult *pg_conn_prepared(struct pg_conn *c, const struct pg_stmt *st, const char *const *params,
			   uint64_t deadline, enum wait_result *why);

/* What a failed query means, into *f and detail; marks 'c' broken when it
 * is. */
void pg_conn_query_failure(struct pg_conn *c, const PGresult *r, enum wait_result why,
			   int timeout_ms, struct pg_failure *f, char *detail, size_t dlen);

/* pg_conn_simple() that succeeded, else false with *f and detail. */
bool pg_conn_simple_ok(struct pg_conn *c, const char *sql, uint64_t deadline, struct pg_failure *f,
		       char *detail, size_t dlen);

/* ---- the schema (pg_migrate.c) -------------------------------------------- */

/* Applies the store's migrations on 'c': 0, or -1 with *f and detail. */
int pg_migrate(struct pg_pool *p, struct pg_conn *c, struct pg_failure *f, char *detail,
	       size_t dlen);

/* ---- the pool (pg_pool.c) ------------------------------------------------- */

/* The pool goes down, once for the connections of 'generation'. */
void pg_pool_down(struct pg_pool *p, unsigned generation, const struct pg_failure *f,
		  const char *detail);

/* A statement answered: the pool is not stuck. */
void pg_pool_note_ok(struct pg_pool *p);

#endif
