/* The one place that opens SQLite: a small pool of connections to one file,
 * each with its statements prepared once, shared by the repositories'
 * callers (civetweb worker threads); a connection is used by one thread at
 * a time. WAL with synchronous=NORMAL: a committed write is in the WAL file
 * before the call returns, so it survives kill -9 of the process (only an
 * OS crash or power loss may lose the last commits). busy_timeout lets
 * several nodes, and several repositories, share one file. */
#ifndef MESHNODE_STORE_SQLITE_POOL_H
#define MESHNODE_STORE_SQLITE_POOL_H

#include <sqlite3.h>
#include <stddef.h>

#include "core/error.h"

#define SQLITE_POOL_MAX_STMTS 8

struct sqlite_conn {
	sqlite3 *db;
	sqlite3_stmt *stmt[SQLITE_POOL_MAX_STMTS]; /* in the order given to open */
	sqlite3_stmt *ping;                         /* SELECT 1, the pool's own */
};

struct sqlite_pool;

/* Opens 'path' (creating it and its parent directories when missing),
 * switches it to WAL, runs 'schema' once and prepares the n_stmts
 * statements (at most SQLITE_POOL_MAX_STMTS) on every connection. NULL
 * on failure with the reason in err. */
struct sqlite_pool *sqlite_pool_open(const char *path, const char *schema,
				     const char *const *stmts, size_t n_stmts, char *err,
				     size_t errlen);
void sqlite_pool_close(struct sqlite_pool *p);

/* A connection for the calling thread; waits while all are in use. */
struct sqlite_conn *sqlite_pool_acquire(struct sqlite_pool *p);
void sqlite_pool_release(struct sqlite_pool *p, struct sqlite_conn *c);

/* MN_OK when the file answers a query now, MN_UNAVAILABLE otherwise (for
 * readiness). */
enum mn_err sqlite_pool_ping(struct sqlite_pool *p);

/* Maps a failed sqlite3_step() to our errors: MN_CONFLICT for a
 * constraint, MN_UNAVAILABLE when the file is busy, MN_IO otherwise; logs
 * what the caller must not show ('what' names the operation). */
enum mn_err sqlite_step_error(struct sqlite_conn *c, int rc, const char *what);

#endif
