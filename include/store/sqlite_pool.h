/* The one place that opens SQLite: a small pool of connections to one file,
 * each with its statements prepared once, shared by the repositories'
 * callers (civetweb worker threads); a connection is used by one thread at
 * a time. WAL with synchronous=NORMAL: a committed write is in the WAL file
 * before the call returns, so it survives kill -9 of the process (only an
 * OS crash or power loss may lose the last commits). busy_timeout lets
 * several nodes, and several repositories, share one file.
 *
 * Files: a database file the pool creates is 0600 whatever the umask, and
 * SQLite gives its -wal and -shm the database file's mode; directories the
 * pool creates are 0700. Existing files and directories keep their modes (a
 * database that others may read is reported in the log).
 *
 * Writes: the pool keeps the store's write state. A write that fails
 * because the disk is full, the file or its file system is read-only, or of
 * an I/O error is answered MN_UNAVAILABLE with a message for the client
 * ("the store cannot write: disk full"), logged once per kind until a write
 * succeeds again (which is logged too), and counted by kind. While the last
 * write failed, sqlite_pool_ping() reports it and, at most once per
 * SQLITE_POOL_PROBE_INTERVAL_MS, tries a one-row write of its own, so
 * readiness comes back when the disk does even if no client writes.
 *
 * Waiting is bounded and shed (issue 21; struct store_limits). A request's
 * read waits for a connection (sqlite_pool_take()) at most
 * acquire_timeout_ms, with at most max_waiters waiting; a write waits for
 * its turn in the group-commit queue at most acquire_timeout_ms, with at
 * most max(max_waiters, 128) queued (one group always fits); past either,
 * MN_UNAVAILABLE "the store is busy; try again" at once (503 with
 * Retry-After), counted by reason in store_health.shed. SQLite's busy
 * handler (a write lock held by another process: a second node, a sqlite3
 * shell in BEGIN IMMEDIATE) waits request_timeout_ms less
 * acquire_timeout_ms (4000 ms by default), so a write's waiting and its
 * commit stay within server.read_timeout_ms. */
#ifndef MESHNODE_STORE_SQLITE_POOL_H
#define MESHNODE_STORE_SQLITE_POOL_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/clock.h"
#include "core/error.h"
#include "store/store_fault.h"

/* Statements of a pool: those of every repository over the file. */
#define SQLITE_POOL_MAX_STMTS	      16
/* Connections of a pool: reads take one each (16 keep the workers of a
 * busy node from queueing for one: bench/RESULTS.md, issue 14). */
#define SQLITE_POOL_SIZE 16
#define SQLITE_POOL_PROBE_INTERVAL_MS 1000
/* The busy handler's wait never goes under this. */
#define SQLITE_POOL_MIN_BUSY_MS 100

struct sqlite_conn {
	sqlite3 *db;
	sqlite3_stmt *stmt[SQLITE_POOL_MAX_STMTS]; /* in the order given to open */
	sqlite3_stmt *ping;                         /* SELECT 1, the pool's own */
};

struct sqlite_pool;

/* Opens 'path' (creating it 0600 and its parent directories 0700 when
 * missing), switches it to WAL, brings it to the store's schema
 * (store/migrate.h: a file made before versioning is adopted as version
 * 1), runs 'schema' (may be NULL) once and prepares the n_stmts statements
 * (at most SQLITE_POOL_MAX_STMTS) on every connection. NULL on failure
 * with the reason in err, among them a file SQLite could open only
 * read-only and a schema newer than this node knows. */
struct sqlite_pool *sqlite_pool_open(const char *path, const char *schema,
				     const char *const *stmts, size_t n_stmts, char *err,
				     size_t errlen);
/* The same with the limits of struct store_limits (NULL:
 * STORE_LIMITS_DEFAULT); sqlite_pool_open() takes the defaults. */
struct sqlite_pool *sqlite_pool_open_with(const char *path, const char *schema,
					  const char *const *stmts, size_t n_stmts,
					  const struct store_limits *limits, char *err,
					  size_t errlen);
/* Closes every connection and frees; NULL is a no-op. */
void sqlite_pool_close(struct sqlite_pool *p);

/* The clock that paces the write probes (tests); 'clock' is borrowed and
 * must outlive the pool. The system clock until then. */
void sqlite_pool_set_clock(struct sqlite_pool *p, const struct mn_clock *clock);

/* A write of a repository, made with sqlite_pool_write(). 'run' steps its
 * statements on 'c', inside a transaction the pool opened, and returns the
 * result of the first step that failed, or SQLITE_DONE. It keeps in its own
 * struct (around this one) what the caller needs afterwards, such as
 * sqlite3_last_insert_rowid(): it may be run a second time, on a fresh
 * transaction, when another write of its group failed, and nothing of a
 * run that was rolled back may count. 'what' names it in the log. */
struct sqlite_write {
	int (*run)(struct sqlite_conn *c, struct sqlite_write *w);
	const char *what;
	int changes; /* set by the pool: sqlite3_changes() after 'run' */
};

/* Group commit: writes that arrive while one is being committed wait and
 * are committed together, up to 128 in one transaction (one append to the
 * WAL, one round of locks), and each caller returns only when its
 * transaction has committed, or failed. A write whose own statement fails
 * (a constraint) is not committed with the others: the group is rolled
 * back and each of its writes is run again on its own, so the others still
 * commit and each gets its own answer. A COMMIT that fails (disk full)
 * fails every write of its group, each counted. The answer is mapped as
 * sqlite_pool_write_result() maps a step's. Only one connection of the
 * pool writes at a time, so a node's own writers never wait in SQLite's
 * busy handler (which sleeps); other processes on the same file still do. */
enum mn_err sqlite_pool_write(struct sqlite_pool *p, struct sqlite_write *w, char *err,
			      size_t errlen);

struct sqlite_write_stats {
	uint64_t writes;       /* writes committed or failed */
	uint64_t groups;       /* groups they went in (one transaction each) */
	size_t queued;	       /* writes waiting now */
	uint64_t shed[STORE_SHED_COUNT]; /* requests refused busy, by reason */
};
void sqlite_pool_write_stats(struct sqlite_pool *p, struct sqlite_write_stats *out);

/* A connection for the node's own threads (start, the events publisher);
 * waits while all are in use. Never on a request's path: there,
 * sqlite_pool_take(). */
struct sqlite_conn *sqlite_pool_acquire(struct sqlite_pool *p);
/* A connection for a request: waits at most acquire_timeout_ms, with at
 * most max_waiters waiting; else MN_UNAVAILABLE ("the store is busy; try
 * again" in err, optional), counted. */
enum mn_err sqlite_pool_take(struct sqlite_pool *p, struct sqlite_conn **out, char *err,
			     size_t errlen);
void sqlite_pool_release(struct sqlite_pool *p, struct sqlite_conn *c);

/* For readiness: MN_OK when the file answers a query now and the store can
 * write. Otherwise MN_UNAVAILABLE and err says why: "unavailable", or
 * "cannot write: disk full" while the last write failed (see the write
 * probe above). */
enum mn_err sqlite_pool_ping(struct sqlite_pool *p, char *err, size_t errlen);

/* MN_UNAVAILABLE ("busy: a write has waited 1200 ms for the file's write
 * lock") while the write being committed has waited longer than
 * acquire_timeout_ms (another process holds the write lock); else MN_OK.
 * Never waits. */
enum mn_err sqlite_pool_stuck(struct sqlite_pool *p, char *err, size_t errlen);

/* The write state: the fault of the last write and the failures by kind. */
void sqlite_pool_health(struct sqlite_pool *p, struct store_health *out);

/* Reads the row of statement 'stmt' (its ?1 the id) on a connection
 * taken for a request (sqlite_pool_take()) into 'out' with row(); a
 * statement is its index in the list given to open. MN_NOT_FOUND when
 * there is none; a failed step as sqlite_pool_read_error() maps it
 * ('what' names the read in the log). */
enum mn_err sqlite_pool_get(struct sqlite_pool *p, size_t stmt, int64_t id, const char *what,
			    enum mn_err (*row)(sqlite3_stmt *st, void *out), void *out);

/* A page of rows from statement 'stmt' (its ?1 the limit, ?2 the offset):
 * *out a new array of *n elements of 'size' bytes, each filled by
 * row(st, element) (NULL and 0 for no row); when one fails,
 * release(elements, filled) frees those filled and its error is
 * returned. As pg_pool_page() for PostgreSQL. */
enum mn_err sqlite_pool_page(struct sqlite_pool *p, size_t stmt, size_t limit, size_t offset,
			     const char *what, size_t size,
			     enum mn_err (*row)(sqlite3_stmt *st, void *element),
			     void (*release)(void *elements, size_t n), void **out, size_t *n);

/* Maps a failed read (sqlite3_step() gave neither SQLITE_ROW nor
 * SQLITE_DONE): MN_UNAVAILABLE when the file is busy, MN_NOMEM, MN_IO
 * otherwise; logs what the caller must not show ('what' names the
 * operation). */
enum mn_err sqlite_pool_read_error(struct sqlite_conn *c, int rc, const char *what);

/* Reports the result 'rc' of the last sqlite3_step() of a write on 'c' to
 * the pool's write state, before the statement is reset, and maps it:
 *   SQLITE_DONE  MN_OK; when it changed a row, the store can write again
 *   constraint   MN_CONFLICT
 *   busy         MN_UNAVAILABLE, err "the store is busy; try again"
 *   disk full, read-only, I/O error (sqlite_fault_classify())
 *                MN_UNAVAILABLE, err "the store cannot write: disk full";
 *                counted, logged once per kind until a write succeeds
 *   other        MN_NOMEM or MN_IO, logged; err "internal error".
 * err (optional) is for the client: it never holds SQLite's words. */
enum mn_err sqlite_pool_write_result(struct sqlite_pool *p, struct sqlite_conn *c, int rc,
				     const char *what, char *err, size_t errlen);

/* Which write fault an (extended) SQLite result code is, given the errno
 * of the system call that failed (0 when unknown), which tells SQLite's
 * I/O errors apart (EROFS, ENOSPC): STORE_FAULT_NONE for results that are
 * not one (success, constraint, busy, out of memory, misuse). */
enum store_fault sqlite_fault_classify(int rc, int sys_errno);

#endif
