/* The one place that talks to PostgreSQL (libpq): a bounded pool of
 * connections to one database, shared by the users and orders
 * repositories of a node, each connection with its statements prepared
 * once (PQprepare on first use, PQexecPrepared's protocol after), used by
 * one thread at a time.
 *
 * Size. database.pool_size connections at most (8 by default). A request
 * holds a connection for one statement, or for the short transaction that
 * stores an order with its outbox event (no transaction spans a peer call),
 * a fraction of a millisecond on a near server, so 8 connections carry far
 * more than a node's 512 workers make of a small host's CPU; PostgreSQL's
 * throughput stops growing past a few active connections per core anyway,
 * and its max_connections (100 by default, 3 kept for superusers) is
 * shared by every node on the server: two users nodes and an orders node
 * take 24.
 *
 * Waiting is bounded and shed (issue 21). A worker that finds every
 * connection busy waits for one at most database.acquire_timeout_ms (1000
 * by default), and at most database.max_waiters workers (128) wait at once;
 * past either it gets MN_UNAVAILABLE ("the database is busy; try again",
 * 503 with Retry-After) at once, counted by reason (pg_pool_stats()). So a
 * stuck database parks at most pool_size + max_waiters of the node's
 * workers, and /health, /ready and /metrics, which never take a
 * connection, keep answering.
 *
 * The deadline a caller knows. A request's time in the store, waiting
 * included, stays within server.read_timeout_ms (5000), what a peer gives
 * up after: the session's statement_timeout is server.read_timeout_ms less
 * database.acquire_timeout_ms less PG_POOL_STATEMENT_MARGIN_MS (3750 by
 * default; never under PG_POOL_MIN_STATEMENT_MS), so the server cancels a
 * statement before the caller's time is over; a connection's holder has a
 * client-side deadline of read_timeout_ms from the start of its wait (a
 * server that stops answering costs no more), and a COMMIT is never sent
 * once it has passed: the transaction is rolled back instead (the
 * connection is closed). No write commits after its caller gave up.
 *
 * Connections. Opened on demand by the pool's own thread (workers never
 * run a handshake: TLS on a civetweb worker's 100 KiB stack is not worth
 * the risk), with application_name=meshnode and client_encoding UTF8, and
 * the session's statement_timeout set as above unless the server gives the
 * role or the database a lower one (a DBA's stricter rule stays in
 * force). The handshake is polled with database.connect_timeout_ms as its
 * deadline, in milliseconds (libpq's own connect_timeout only bounds the
 * blocking PQconnectdb, in whole seconds; a host name is resolved before
 * the deadline starts). Every query has a deadline of its own on the
 * client side too, statement_timeout plus a second, so a server host that
 * vanishes mid-query costs a worker seconds, not TCP's minutes. A
 * connection whose query fails because it broke (PQstatus not
 * CONNECTION_OK, a connection error, an administrator's shutdown, a
 * deadline passed) is closed, never used again.
 *
 * Start. pg_pool_start() only starts the pool's thread, which connects and
 * migrates; it waits PG_POOL_START_WAIT_MS for that first attempt, so a
 * refused login on a reachable server is still known at start (exit 2),
 * and a server that does not answer costs the start no more: the node
 * listens, answers /health and registers meanwhile. A refusal known only
 * later is logged at error, and /ready says so, while the thread keeps
 * trying. A pool that closes gives up a handshake in progress within
 * PG_POOL_STOP_POLL_MS.
 *
 * Down and up. When a connection cannot be opened or breaks, the pool is
 * down: its idle connections are closed (after a restart they are all
 * dead), requests fail at once with MN_UNAVAILABLE instead of waiting, and
 * the pool's thread tries again with capped, jittered backoff (at once,
 * then 100 ms doubling to 2 s). The first connection it makes applies the
 * store's migrations (store/migrate.h) if they were not yet applied; then
 * the pool is up. A committed write is acknowledged only after
 * PostgreSQL's COMMIT answered (each statement is its own transaction,
 * but for an order and its event, which share one), so
 * a 201 is durable by the server's rules; a request whose connection broke
 * before the answer gets 503 whatever the server did with it.
 *
 * Errors. No libpq text reaches a client: pg_sqlstate_map() turns each
 * failure into an error code and a short reason for the client, and the
 * detail is logged at warn (escaped by the log module). The password
 * never appears in a log line: it is one of libpq's parameters and
 * nothing else prints them.
 *
 * Files. src/store/pg_conn.c: one connection (options, SQLSTATE mapping,
 * the handshake and statements with their deadlines); pg_pool.c: the
 * pool (acquire and put, waiters, its thread, start, probe and stats);
 * pg_migrate.c: the schema (migrations, --check-config); pg_query.c: the
 * repositories' statements (exec, transactions, pages, write faults);
 * pg_internal.h: what they share. */
#ifndef MESHNODE_STORE_PG_POOL_H
#define MESHNODE_STORE_PG_POOL_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/error.h"
#include "store/store_fault.h"

#define PG_POOL_MAX_STMTS	32
#define PG_POOL_BACKOFF_BASE_MS 100
#define PG_POOL_BACKOFF_CAP_MS	2000
/* How long past statement_timeout a query is waited for on the client
 * side before its connection is given up. */
#define PG_POOL_QUERY_GRACE_MS 1000
/* A migration may wait for another node's, holding the lock. */
#define PG_POOL_MIGRATE_TIMEOUT_MS 60000
/* How long pg_pool_start() waits for the first attempt's outcome. */
#define PG_POOL_START_WAIT_MS 500
/* How often a handshake in progress looks whether the pool closes. */
#define PG_POOL_STOP_POLL_MS 100
/* statement_timeout never goes under this. */
#define PG_POOL_MIN_STATEMENT_MS 100
/* What statement_timeout leaves of server.read_timeout_ms beyond the wait
 * for a connection: the round trips around the statement and a loaded
 * server's lateness in cancelling it (without it, 11 of 14,771 requests
 * under a table lock and 300 clients on two cores took a little over
 * read_timeout_ms). */
#define PG_POOL_STATEMENT_MARGIN_MS 250


/* Where and how to connect. The strings are borrowed. */
struct pg_pool_opts {
	const char *host; /* a host name, an address or a socket directory */
	int port;
	const char *user;
	const char *password; /* "": libpq's own sources (PGPASSWORD, ~/.pgpass) */
	const char *dbname;
	const char *sslmode;
	int pool_size;
	int connect_timeout_ms;
	int acquire_timeout_ms; /* the longest wait for a connection */
	int max_waiters;	/* how many may wait at once (0: none) */
	int request_timeout_ms; /* waiting and statements together */
	int statement_timeout_ms;
};

/* The database.* settings of 'cfg', request_timeout from
 * server.read_timeout_ms and statement_timeout from
 * pg_statement_timeout_ms() (strings borrowed from cfg). */
void pg_pool_opts_from_config(const struct config *cfg, struct pg_pool_opts *out);

/* request_timeout_ms less acquire_timeout_ms less
 * PG_POOL_STATEMENT_MARGIN_MS, at least PG_POOL_MIN_STATEMENT_MS. */
int pg_statement_timeout_ms(int request_timeout_ms, int acquire_timeout_ms);

/* libpq's keyword/value arrays for 'o', NULL-terminated. Values are
 * passed as they are, never parsed as a connection string (expand_dbname
 * is 0), so no value needs quoting and none can add a parameter. The
 * password is among them only when set. */
#define PG_PARAMS_MAX 12
struct pg_params {
	const char *keys[PG_PARAMS_MAX + 1];
	const char *values[PG_PARAMS_MAX + 1];
	char port[12];
};
void pg_params_build(const struct pg_pool_opts *o, struct pg_params *out);

/* Names the database for messages, never with the password:
 * "postgres database 'myapp' at localhost:5432 as user 'postgres'". */
void pg_describe(const struct pg_pool_opts *o, char *buf, size_t len);

/* How a failure is answered. */
struct pg_failure {
	enum mn_err err;	/* MN_CONFLICT, MN_UNAVAILABLE, MN_CONFIG, MN_INTERNAL */
	bool broken;		/* the connection must not be used again */
	bool server_gone;	/* the server cannot be reached or is stopping: the pool is down */
	enum store_fault fault; /* a write failure of the store's kinds, or NONE */
	const char *client;	/* the reason a client may see */
};

/* Maps a SQLSTATE (NULL: none, a failure on the client's side, such as a
 * lost connection) to how it is answered:
 *   23505 unique_violation           MN_CONFLICT
 *   class 08 (connection), 57P01 admin_shutdown, 57P02 crash_shutdown,
 *   57P03 cannot_connect_now, none   MN_UNAVAILABLE, broken, server gone
 *   57014 query_canceled (statement_timeout), 40001, 40P01, 55P03,
 *   class 53 (resources)             MN_UNAVAILABLE
 *   53100 disk_full, 25006 read-only transaction (a standby), 58030 io
 *                                    MN_UNAVAILABLE with the store's fault
 *   class 28 (authorization), 3D000 (no such database)
 *                                    MN_CONFIG, broken
 *   anything else                    MN_INTERNAL ("internal error")
 * The client reasons are "the database is unavailable", "the database is
 * busy; try again", "the store cannot write: <fault>", "conflict",
 * "internal error". */
void pg_sqlstate_map(const char *sqlstate, struct pg_failure *out);

/* The SQLSTATE in a libpq message of verbose style ("...failed: FATAL:
 * 28P01: password authentication failed ..."), copied into out[6]; false
 * when there is none. A handshake's failure has no PGresult to ask. */
bool pg_message_sqlstate(const char *msg, char out[6]);

/* Maps a statement that got no answer in time: past its holder's own
 * deadline ('holder': server.read_timeout_ms from the start of its wait,
 * the earlier of the two) only that connection is broken (closed, so the
 * server rolls its transaction back) and the client is told "busy": a
 * slow but healthy server is not down. Past the statement's deadline
 * (statement_timeout and its grace: the server did not even cancel it) as
 * pg_sqlstate_map(NULL): the server is gone. */
void pg_timeout_map(bool holder, struct pg_failure *out);

/* A statement of a repository: prepared on each connection the first time
 * it runs there. 'name' is unique among the statements of a pool. */
struct pg_stmt {
	const char *name;
	const char *sql;
	int n_params;
};

/* Writes of one repository: the fault of the last one and failures by
 * kind (store_health), as the SQLite pool keeps them. */
struct pg_writes {
	pthread_mutex_t lock;
	struct store_health health;
};
void pg_writes_init(struct pg_writes *w);
void pg_writes_release(struct pg_writes *w);
void pg_writes_health(struct pg_writes *w, struct store_health *out);

struct pg_pool;
struct pg_conn;

/* A pool for 'o' (copied), not connected yet: new reference. NULL when out
 * of memory. */
struct pg_pool *pg_pool_create(const struct pg_pool_opts *o);

/* Another reference to 'p' (returned). */
struct pg_pool *pg_pool_ref(struct pg_pool *p);

/* Drops a reference; the last one stops the pool's thread and closes
 * every connection (none may be in use). NULL does nothing. */
void pg_pool_unref(struct pg_pool *p);

/* Connects once now, applies the migrations, and starts the pool's
 * thread. MN_OK: up. MN_UNAVAILABLE: the server cannot be reached now; the
 * pool is down and its thread keeps trying (the node serves meanwhile).
 * MN_CONFIG: the server refused the user or the password, the database
 * does not exist, or its schema is newer than this node: a configuration
 * error, which retrying would not fix (the thread is not started). Other
 * codes: the thread could not start, a migration failed. err says why,
 * with the database named (pg_describe()) and libpq's words. */
enum mn_err pg_pool_start(struct pg_pool *p, char *err, size_t errlen);

/* --check-config: connects once to 'o' and reads the schema version.
 * MN_OK with what it found in msg ("... : connected, schema version 1");
 * MN_CONFIG as for pg_pool_start(); MN_UNAVAILABLE when the server cannot
 * be reached (only reported). */
enum mn_err pg_pool_check(const struct pg_pool_opts *o, char *msg, size_t len);

/* A connection for the calling thread: an idle one, or one the pool opens,
 * waited for at most acquire_timeout_ms, with at most max_waiters waiting
 * (else MN_UNAVAILABLE "the database is busy; try again" at once).
 * MN_UNAVAILABLE at once while the pool is down, with err (optional) for
 * the client. */
enum mn_err pg_pool_acquire(struct pg_pool *p, struct pg_conn **out, char *err, size_t errlen);

struct pg_pool_stats {
	size_t size, idle, open, waiters;
	bool up;
	uint64_t shed[STORE_SHED_COUNT]; /* requests refused busy, by reason */
};
void pg_pool_stats(struct pg_pool *p, struct pg_pool_stats *out);

/* Gives the connection back; one that broke is closed. */
void pg_pool_put(struct pg_pool *p, struct pg_conn *c);

/* Runs 'st' on 'c' with the text parameters 'params' (NULL entries are
 * SQL NULL). MN_OK with *res the result (new: PQclear() it). Otherwise
 * *res is NULL, the detail is logged ('what' names the operation), err
 * (optional) receives the client's reason, and a write failure of the
 * store's kinds is counted in 'writes' (NULL for reads); a success of a
 * write clears the fault there. */
enum mn_err pg_conn_exec(struct pg_pool *p, struct pg_conn *c, const struct pg_stmt *st,
			 const char *const *params, struct pg_writes *writes, const char *what,
			 PGresult **res, char *err, size_t errlen);

/* A transaction of several statements on one connection (an order and its
 * outbox event): pg_conn_begin(), pg_conn_exec() for each statement, then
 * pg_conn_commit(); on any failure pg_conn_rollback() before
 * pg_pool_put(). Statements inside the transaction report only their
 * failures to 'writes'; the commit reports the write's success, since only
 * then is it durable. Errors and err as pg_conn_exec(); a COMMIT that the
 * server answers with a rollback is MN_INTERNAL. */
enum mn_err pg_conn_begin(struct pg_pool *p, struct pg_conn *c, const char *what, char *err,
			  size_t errlen);
enum mn_err pg_conn_commit(struct pg_pool *p, struct pg_conn *c, struct pg_writes *writes,
			   const char *what, char *err, size_t errlen);
/* Rolls back the transaction open on 'c', if any; a connection that
 * cannot is closed by pg_pool_put() (the server rolls back then). */
void pg_conn_rollback(struct pg_pool *p, struct pg_conn *c);

/* pg_conn_exec() on a connection taken for it and given back at once
 * (pg_pool_acquire(), pg_pool_put()): what one statement of a repository
 * needs. *res as pg_conn_exec() (a result outlives its connection). */
enum mn_err pg_pool_exec(struct pg_pool *p, const struct pg_stmt *st, const char *const *params,
			 struct pg_writes *writes, const char *what, PGresult **res, char *err,
			 size_t errlen);

/* The row of 'st' (its $1 the id) into 'out' with row(res, 0, out), on a
 * connection taken for it; MN_NOT_FOUND when there is none. As
 * sqlite_pool_get() for SQLite. */
enum mn_err pg_pool_get(struct pg_pool *p, const struct pg_stmt *st, int64_t id, const char *what,
			enum mn_err (*row)(const PGresult *res, int i, void *out), void *out);

/* A page of rows from 'st' (its $1 the limit, $2 the offset): *out a new
 * array of *n elements of 'size' bytes, element i filled by row(res, i,
 * element) (NULL and 0 for no row); when one fails, release(elements,
 * filled) frees those filled and its error is returned. */
enum mn_err pg_pool_page(struct pg_pool *p, const struct pg_stmt *st, size_t limit,
			 size_t offset, const char *what, size_t size,
			 enum mn_err (*row)(const PGresult *res, int i, void *element),
			 void (*release)(void *elements, size_t n), void **out, size_t *n);

/* An integer as a text parameter, in the caller's storage. */
struct pg_num {
	char s[24];
};
const char *pg_num(struct pg_num *n, int64_t v);

/* The integer in a cell of a result. */
int64_t pg_cell_int(const PGresult *res, int row, int col);

/* The repository state every PostgreSQL repository has: the shared pool
 * (a reference) and the write faults of its statements (the store's,
 * borrowed: one per database). */
struct pg_repo_base {
	struct pg_pool *pool;
	struct pg_writes *writes;
};
void pg_repo_base_init(struct pg_repo_base *b, struct pg_pool *pool, struct pg_writes *writes);
void pg_repo_base_release(struct pg_repo_base *b);

/* For readiness, from a background probe (never a request's thread):
 * MN_OK when the pool is up and, if a connection is idle, it answers a
 * query; MN_UNAVAILABLE with why in err ("database unreachable at
 * localhost:5432", "database refused user 'x'", "database busy: all 8
 * connections in use and none answered for 1200 ms": every connection in
 * use and no statement answered for longer than acquire_timeout_ms),
 * which holds no libpq text. Never waits for a busy pool. */
enum mn_err pg_pool_ping(struct pg_pool *p, char *err, size_t errlen);

#endif
