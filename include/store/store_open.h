/* Choosing and opening the store: the repositories of the modules a node
 * runs (service.modules), in the database database.driver names, and the
 * background probe that /ready and /metrics read. */
#ifndef MESHNODE_STORE_STORE_OPEN_H
#define MESHNODE_STORE_STORE_OPEN_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "core/error.h"
#include "orders/orders_repo.h"
#include "store/pg_pool.h"
#include "store/store_probe.h"
#include "users/users_repo.h"

/* What store_open() opened; each NULL when not opened. Owned: released by
 * store_close(). */
struct store_repos {
	struct users_repo *users;   /* the 'users' module's */
	struct orders_repo *orders; /* the 'orders' module's */
	struct pg_pool *pg_pool;    /* PostgreSQL's, for its counts; or NULL */
	struct store_probe *probe;  /* /ready's view of the store */
	bool sqlite;		    /* database.driver is sqlite */
};

/* Opens the repositories of the modules in service.modules in one
 * database, then starts the probe (none without a repository), logging
 * what it did at info and any failure at error. PostgreSQL's pool
 * connects (and migrates) in its own thread: a server that does not answer
 * yet is no failure (/ready says why meanwhile), a login or database it
 * refuses at once is MN_CONFIG. Otherwise MN_OK, MN_NOMEM or MN_IO; on
 * failure what was opened is in 'out' for store_close(). */
enum mn_err store_open(const struct config *cfg, struct store_repos *out);

/* Stops the probe (before what it pings goes); safe twice. */
void store_probe_stop(struct store_repos *s);

/* Stops the probe and closes the repositories and the pool. */
void store_close(struct store_repos *s);

/* The store's readiness from the probe's record (never a query): true, or
 * false with why in 'why'. A SQLite write that just failed shows at once
 * (its write state is in memory). Only for a store with a probe. */
bool store_ready(struct store_repos *s, char *why, size_t len);

/* Adds up the repositories' write failures and the requests shed (the
 * pool's too). */
void store_health_sum(struct store_repos *s, struct store_health *sum);

#endif
