/* The store: one database (a SQLite file, a PostgreSQL server, or memory)
 * with its pool, readiness and write state, handing out the repositories
 * of the modules a node runs (service.modules), and the background probe
 * that /ready and /metrics read. */
#ifndef MESHNODE_STORE_STORE_H
#define MESHNODE_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "core/error.h"
#include "orders/orders_repo.h"
#include "orders/outbox.h"
#include "store/store_fault.h"
#include "store/store_probe.h"
#include "users/users_repo.h"

struct sqlite_pool;
struct pg_pool;
struct pg_writes;

/* The modules whose repositories a store hands out. */
enum store_module {
	STORE_USERS = 1u << 0,
	STORE_ORDERS = 1u << 1,
};

/* One database, a value embedded in its owner: zeroed, it is a closed
 * store (store_close() does nothing). The repositories are the store's,
 * borrowed by their users until store_close(); each NULL when its module
 * does not run. The rest is the store's own. */
struct store {
	struct users_repo *users;    /* the 'users' module's */
	struct orders_repo *orders;  /* the 'orders' module's */
	struct outbox *outbox;	     /* its events outbox, for the publisher */
	struct sqlite_pool *sqlite;  /* database.driver sqlite: the file's one pool */
	struct pg_pool *pg_pool;     /* database.driver postgres: its pool */
	struct pg_writes *pg_writes; /* PostgreSQL's write state, for both repositories */
	struct store_probe *probe;   /* /ready's view of the store, or NULL */
};

/* Opens the repositories of the modules in service.modules in one
 * database, then starts the probe (none without a repository), logging
 * what it did at info and any failure at error. PostgreSQL's pool
 * connects (and migrates) in its own thread: a server that does not answer
 * yet is no failure (/ready says why meanwhile), a login or database it
 * refuses at once is MN_CONFIG. Otherwise MN_OK, MN_NOMEM or MN_IO; on
 * failure what was opened is in 'out' for store_close(). */
enum mn_err store_open(const struct config *cfg, struct store *out);

/* The drivers' opens, without the probe or the log (store_open() and the
 * tests): the repositories of 'modules' (enum store_module) over one pool.
 * SQLite opens 'path' (creating it when missing, with its parent
 * directories; WAL, migrations: store/sqlite_pool.h) once for both
 * repositories, with 'limits' (NULL: STORE_LIMITS_DEFAULT), MN_IO with the
 * reason in err when it cannot. PostgreSQL takes a reference to 'pool'.
 * MN_NOMEM when out of memory. On failure 's' is ready for store_close(). */
enum mn_err store_open_sqlite(struct store *s, const char *path, const struct store_limits *limits,
			      unsigned modules, char *err, size_t errlen);
enum mn_err store_open_memory(struct store *s, unsigned modules);
enum mn_err store_open_pg(struct store *s, struct pg_pool *pool, unsigned modules);

/* The database's readiness, asked now (the probe's ping; never on a
 * request's path): MN_OK, or MN_UNAVAILABLE with why in err (optional):
 * "cannot write: disk full", "database unreachable at ...". The memory
 * store is always ready. */
enum mn_err store_ping(struct store *s, char *err, size_t errlen);

/* The write state: the fault of the last write, the write failures by
 * kind and the requests shed by reason (SQLite's pool, or PostgreSQL's
 * repositories and pool); zeros for memory. */
void store_health_read(struct store *s, struct store_health *out);

/* Stops the probe (before what it pings goes); safe twice. */
void store_probe_stop(struct store *s);

/* Stops the probe, frees the repositories and closes the database; the
 * store is zeroed. Safe on a zeroed store and twice. */
void store_close(struct store *s);

/* The store's readiness from the probe's record (never a query): true, or
 * false with why in 'why'. A SQLite write that just failed shows at once
 * (its write state is in memory). Only for a store with a probe. */
bool store_ready(struct store *s, char *why, size_t len);

#endif
