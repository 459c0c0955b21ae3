/* The repositories' drivers, for the store (store/store.h) and the tests:
 * each makes a repository over a database the store opened and owns (a
 * SQLite file's one pool, the PostgreSQL pool, or nothing for memory).
 * The store answers for the database's readiness and write state; a
 * repository is only its table's part. */
#ifndef MESHNODE_STORE_DRIVERS_H
#define MESHNODE_STORE_DRIVERS_H

#include <stddef.h>

#include "orders/orders_repo.h"
#include "orders/outbox.h"
#include "users/users_repo.h"

struct sqlite_pool;
struct pg_pool;
struct pg_writes;

/* Each orders repository carries the events outbox over its tables: its
 * constructor sets *outbox (when 'outbox' is not NULL) to it, which lives
 * and goes with the repository. */

/* A new in-memory repository (database.driver = "memory"); NULL when out
 * of memory. */
struct users_repo *users_repo_memory_create(void);
struct orders_repo *orders_repo_memory_create(struct outbox **outbox);

/* The statements each SQLite repository prepares on every connection of
 * the file's pool (store/sqlite_pool.h): the store gives the pool the
 * lists one after the other, and each repository the index of its first. */
extern const char *const users_sqlite_stmts[];
extern const size_t users_sqlite_stmt_count;
extern const char *const orders_sqlite_stmts[];
extern const size_t orders_sqlite_stmt_count;

/* A repository over the SQLite pool 'pool' (borrowed: it must outlive the
 * repository), its statements from index 'first'. Emails are unique
 * without regard to ASCII case: a unique index on email COLLATE NOCASE is
 * made here, and when rows already in the file 'path' (for the log)
 * collide that way the repository still opens (saying so in the log) and
 * the writes themselves refuse any new collision. NULL when out of
 * memory. */
struct users_repo *users_repo_sqlite_new(struct sqlite_pool *pool, size_t first, const char *path);
struct orders_repo *orders_repo_sqlite_new(struct sqlite_pool *pool, size_t first,
					   struct outbox **outbox);

/* A repository over a PostgreSQL pool (store/pg_pool.h), which it keeps a
 * reference to, noting its writes' faults in 'writes' (the store's,
 * borrowed): the pool's migrations made its table and the unique index on
 * the email folded to ASCII lower case. A store that cannot answer gives
 * MN_UNAVAILABLE ("the database is unavailable"). NULL when out of
 * memory. */
struct users_repo *users_repo_pg_new(struct pg_pool *pool, struct pg_writes *writes);
struct orders_repo *orders_repo_pg_new(struct pg_pool *pool, struct pg_writes *writes,
				       struct outbox **outbox);

#endif
