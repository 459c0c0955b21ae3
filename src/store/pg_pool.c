#include "store/pg_pool.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backoff.h"
#include "core/clock.h"
#include "core/log.h"
#include "store/migrate.h"

/* The key of pg_advisory_xact_lock() taken by every node before it looks
 * at the schema: "meshnode" in ASCII, as a bigint. */
#define MIGRATE_LOCK_KEY "7882833615148508261"
#define DETAIL_MAX	 512
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

/* A worker waiting for a connection, on its own stack: served in the
 * order they came (a connection given back goes to the first), so that
 * none waits behind later ones. */
struct pg_waiter {
	pthread_cond_t cond;
	struct pg_conn *conn; /* handed over by give_locked() */
	struct pg_waiter *next;
};

struct pg_pool {
	atomic_int refs;
	char *host, *user, *password, *dbname, *sslmode;
	struct pg_pool_opts opts; /* its strings are the copies above */
	struct pg_params params;
	char describe[400];
	char where[300]; /* "localhost:5432", for /ready */

	pthread_mutex_t lock;
	pthread_cond_t available; /* a connection went idle, or the pool went down */
	pthread_cond_t wake;	  /* the pool's thread: a waiter, down, closing */
	struct pg_conn **idle;	  /* stack of 'size' slots */
	size_t n_idle;
	size_t n_open; /* idle, in use, and being opened */
	size_t size;
	size_t waiters;
	struct pg_waiter *waiter_head, *waiter_tail;
	size_t max_waiters;
	uint64_t shed[STORE_SHED_COUNT]; /* requests refused busy, by reason */
	uint64_t last_ok_ms;	      /* the last statement that succeeded */
	atomic_bool stop;	      /* closing: a handshake in progress gives up */
	bool attempted;		      /* the first attempt ended (pg_pool_start) */
	bool start_waiting;	      /* pg_pool_start() waits for it */
	struct pg_failure first_failure;
	bool up;
	bool migrated;
	bool closing;
	bool thread_started;
	unsigned generation; /* goes up each time the pool goes down */
	pthread_t thread;
	struct backoff backoff;
	uint64_t next_attempt_ms;
	uint64_t down_since_ms;
	unsigned long failed_attempts;
	char down_reason[400];	      /* for /ready: no libpq text */
	char last_logged[DETAIL_MAX]; /* the last failure to connect logged */
	uint64_t busy_refusals;	      /* since busy_logged_ms */
	uint64_t busy_logged_ms;
};

/* ---- pure parts --------------------------------------------------------- */

void pg_pool_opts_from_config(const struct config *cfg, struct pg_pool_opts *out)
{
	*out = (struct pg_pool_opts){
		.host = cfg->database_host,
		.port = cfg->database_port,
		.user = cfg->database_user,
		.password = cfg->database_password,
		.dbname = cfg->database_name,
		.sslmode = cfg->database_sslmode,
		.pool_size = cfg->database_pool_size,
		.connect_timeout_ms = cfg->database_connect_timeout_ms,
		.acquire_timeout_ms = cfg->database_acquire_timeout_ms,
		.max_waiters = cfg->database_max_waiters,
		.request_timeout_ms = cfg->read_timeout_ms,
	};
	out->statement_timeout_ms = pg_statement_timeout_ms(out->request_timeout_ms,
							    out->acquire_timeout_ms);
}

int pg_statement_timeout_ms(int request_timeout_ms, int acquire_timeout_ms)
{
	int ms = request_timeout_ms - acquire_timeout_ms - PG_POOL_STATEMENT_MARGIN_MS;

	return ms < PG_POOL_MIN_STATEMENT_MS ? PG_POOL_MIN_STATEMENT_MS : ms;
}

static void param_add(struct pg_params *out, size_t *i, const char *key, const char *value)
{
	out->keys[*i] = key;
	out->values[*i] = value;
	(*i)++;
}

void pg_params_build(const struct pg_pool_opts *o, struct pg_params *out)
{
	size_t i = 0;

	snprintf(out->port, sizeof(out->port), "%d", o->port);
	param_add(out, &i, "host", o->host);
	param_add(out, &i, "port", out->port);
	param_add(out, &i, "user", o->user);
	if (o->password && o->password[0])
		param_add(out, &i, "password", o->password);
	param_add(out, &i, "dbname", o->dbname);
	param_add(out, &i, "sslmode", o->sslmode);
	param_add(out, &i, "application_name", "meshnode");
	param_add(out, &i, "client_encoding", "UTF8");
	out->keys[i] = NULL;
	out->values[i] = NULL;
}

void pg_describe(const struct pg_pool_opts *o, char *buf, size_t len)
{
	snprintf(buf, len, "postgres database '%s' at %s:%d as user '%s'", o->dbname, o->host,
		 o->port, o->user);
}

void pg_sqlstate_map(const char *s, struct pg_failure *out)
{
	static const char unavailable[] = "the database is unavailable";
	static const char busy[] = "the database is busy; try again";

	*out = (struct pg_failure){MN_INTERNAL, false, false, STORE_FAULT_NONE, "internal error"};
	if (s == NULL || strlen(s) != 5 || strncmp(s, "08", 2) == 0 || strcmp(s, "57P01") == 0 ||
	    strcmp(s, "57P02") == 0 || strcmp(s, "57P03") == 0) {
		*out = (struct pg_failure){MN_UNAVAILABLE, true, true, STORE_FAULT_NONE,
					   unavailable};
	} else if (strcmp(s, "23505") == 0) {
		*out = (struct pg_failure){MN_CONFLICT, false, false, STORE_FAULT_NONE, "conflict"};
	} else if (strcmp(s, "57014") == 0) {
		out->err = MN_UNAVAILABLE;
		out->client = unavailable;
	} else if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0 || strcmp(s, "55P03") == 0) {
		out->err = MN_UNAVAILABLE;
		out->client = busy;
	} else if (strcmp(s, "53100") == 0) {
		*out = (struct pg_failure){MN_UNAVAILABLE, false, false, STORE_FAULT_DISK_FULL,
					   "the store cannot write: disk full"};
	} else if (strcmp(s, "25006") == 0) {
		*out = (struct pg_failure){MN_UNAVAILABLE, false, false, STORE_FAULT_READ_ONLY,
					   "the store cannot write: read-only"};
	} else if (strcmp(s, "58030") == 0) {
		*out = (struct pg_failure){MN_UNAVAILABLE, false, false, STORE_FAULT_IO,
					   "the store cannot write: input/output error"};
	} else if (strncmp(s, "53", 2) == 0) {
		out->err = MN_UNAVAILABLE;
		out->client = unavailable;
	} else if (strncmp(s, "28", 2) == 0 || strcmp(s, "3D000") == 0) {
		*out = (struct pg_failure){MN_CONFIG, true, false, STORE_FAULT_NONE, unavailable};
	}
}

static bool sqlstate_char(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z');
}

bool pg_message_sqlstate(const char *msg, char out[6])
{
	/* verbose style: "<severity>:  <SQLSTATE>: <message>" */
	for (const char *p = msg ? strstr(msg, ":  ") : NULL; p; p = strstr(p + 1, ":  ")) {
		const char *q = p + 3;
		int i;

		for (i = 0; i < 5 && sqlstate_char(q[i]); i++)
			;
		if (i == 5 && q[5] == ':') {
			memcpy(out, q, 5);
			out[5] = '\0';
			return true;
		}
	}
	return false;
}

/* ---- the wire ------------------------------------------------------------ */

/* libpq's messages end with a newline and may hold several lines (one per
 * address tried): the log escapes the inner ones. */
static void copy_detail(char *dst, size_t len, const char *msg)
{
	char *loc;
	size_t n;

	snprintf(dst, len, "%s", msg && *msg ? msg : "no message from libpq");
	/* the server's source file and line: nothing an operator acts on */
	loc = strstr(dst, "\nLOCATION:  ");
	if (loc) {
		const char *rest = strchr(loc + 1, '\n');

		if (rest)
			memmove(loc, rest, strlen(rest) + 1);
		else
			*loc = '\0';
	}
	n = strlen(dst);
	while (n > 0 && (dst[n - 1] == '\n' || dst[n - 1] == ' '))
		dst[--n] = '\0';
}

/* Waits until 'fd' is ready for 'events' or the monotonic 'deadline'
 * passes: the revents, 0 on timeout, -1 on error. */
static int wait_socket(int fd, short events, uint64_t deadline)
{
	struct pollfd pfd = {.fd = fd, .events = events};

	if (fd < 0)
		return -1;
	for (;;) {
		uint64_t now = clock_monotonic_ms();
		int rc;

		if (now >= deadline)
			return 0;
		rc = poll(&pfd, 1, (int)(deadline - now > 60000 ? 60000 : deadline - now));
		if (rc > 0)
			return pfd.revents ? pfd.revents : events;
		if (rc < 0 && errno != EINTR)
			return -1;
	}
}

static void on_notice(void *arg, const char *message)
{
	char text[DETAIL_MAX];

	(void)arg;
	copy_detail(text, sizeof(text), message);
	log_debug("store", "postgres: %s", text);
}

/* The failure of a handshake that did not end OK: its SQLSTATE is only in
 * the message (verbose style), and a password the server asked for and
 * was not given has none at all. */
static void connect_failure(PGconn *c, struct pg_failure *f, char *detail, size_t dlen)
{
	const char *msg = PQerrorMessage(c);
	char state[6];

	copy_detail(detail, dlen, msg);
	if (pg_message_sqlstate(msg, state)) {
		pg_sqlstate_map(state, f);
	} else if (PQconnectionNeedsPassword(c)) {
		pg_sqlstate_map("28P01", f);
	} else {
		pg_sqlstate_map(NULL, f);
	}
}

/* Opens a connection, polling the handshake until 'timeout_ms' passes. */
static PGconn *pg_connect(const struct pg_params *params, int timeout_ms, atomic_bool *stop,
			  struct pg_failure *f, char *detail, size_t dlen)
{
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	uint64_t deadline;
	PGconn *c;

	c = PQconnectStartParams(params->keys, params->values, 0);
	if (c == NULL) {
		*f = (struct pg_failure){MN_NOMEM, true, false, STORE_FAULT_NONE, "internal error"};
		snprintf(detail, dlen, "out of memory");
		return NULL;
	}
	PQsetErrorVerbosity(c, PQERRORS_VERBOSE);
	PQsetNoticeProcessor(c, on_notice, NULL);
	if (PQstatus(c) == CONNECTION_BAD)
		goto out_fail;
	deadline = clock_monotonic_ms() + (uint64_t)timeout_ms;
	while (st != PGRES_POLLING_OK) {
		int ready;

		if (st == PGRES_POLLING_FAILED)
			goto out_fail;
		/* in slices, so that a pool that closes does not wait for a
		 * silent server's whole deadline */
		uint64_t slice = clock_monotonic_ms() + PG_POOL_STOP_POLL_MS;

		ready = wait_socket(PQsocket(c), st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
				    slice < deadline ? slice : deadline);
		if (ready == 0 && stop && atomic_load(stop)) {
			pg_sqlstate_map(NULL, f);
			snprintf(detail, dlen, "the pool closed while connecting");
			PQfinish(c);
			return NULL;
		}
		if (ready == 0 && clock_monotonic_ms() < deadline)
			continue;
		if (ready == 0) {
			pg_sqlstate_map(NULL, f);
			snprintf(detail, dlen,
				 "no answer within %d ms (database.connect_timeout_ms)",
				 timeout_ms);
			PQfinish(c);
			return NULL;
		}
		if (ready < 0)
			goto out_fail;
		st = PQconnectPoll(c);
	}
	if (PQsetnonblocking(c, 1) != 0)
		goto out_fail;
	/* the SQLSTATE of a query's failure is in its result: its message
	 * need not carry the code, nor the server's source file and line */
	PQsetErrorVerbosity(c, PQERRORS_DEFAULT);
	return c;

out_fail:
	connect_failure(c, f, detail, dlen);
	PQfinish(c);
	return NULL;
}

static void conn_free(struct pg_conn *c)
{
	if (c == NULL)
		return;
	PQfinish(c->conn);
	free(c);
}

enum wait_result { WAIT_OK, WAIT_TIMEOUT, WAIT_BROKEN };

/* Sends what libpq holds, reading meanwhile as libpq asks. */
static enum wait_result conn_flush(PGconn *c, uint64_t deadline)
{
	int rc, ready;

	while ((rc = PQflush(c)) == 1) {
		ready = wait_socket(PQsocket(c), POLLIN | POLLOUT, deadline);
		if (ready == 0)
			return WAIT_TIMEOUT;
		if (ready < 0 || ((ready & POLLIN) && !PQconsumeInput(c)))
			return WAIT_BROKEN;
	}
	return rc == 0 ? WAIT_OK : WAIT_BROKEN;
}

static bool res_failed(const PGresult *r)
{
	ExecStatusType s = PQresultStatus(r);

	return s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_EMPTY_QUERY;
}

/* Reads every result of what was sent, until libpq says the server is
 * ready for the next query: only then has the implicit transaction of a
 * statement committed (an error at commit comes after the statement's own
 * result), so a success here is a durable one. Keeps the first failed
 * result, else the last; NULL when the connection broke or the deadline
 * passed (*why says which). */
static PGresult *conn_results(PGconn *c, uint64_t deadline, enum wait_result *why)
{
	PGresult *keep = NULL, *r;
	enum wait_result w = conn_flush(c, deadline);

	while (w == WAIT_OK) {
		while (PQisBusy(c)) {
			int ready = wait_socket(PQsocket(c), POLLIN, deadline);

			if (ready == 0) {
				w = WAIT_TIMEOUT;
				break;
			}
			if (ready < 0 || !PQconsumeInput(c)) {
				w = WAIT_BROKEN;
				break;
			}
		}
		if (w != WAIT_OK)
			break;
		r = PQgetResult(c);
		if (r == NULL)
			break;
		if (keep != NULL && res_failed(keep)) {
			PQclear(r);
			continue;
		}
		PQclear(keep);
		keep = r;
	}
	if (w != WAIT_OK || keep == NULL) {
		PQclear(keep);
		*why = w == WAIT_OK ? WAIT_BROKEN : w;
		return NULL;
	}
	*why = WAIT_OK;
	return keep;
}

/* One statement of the simple protocol (migrations, checks). */
static PGresult *conn_simple(struct pg_conn *c, const char *sql, uint64_t deadline,
			     enum wait_result *why)
{
	if (!PQsendQuery(c->conn, sql)) {
		*why = WAIT_BROKEN;
		return NULL;
	}
	return conn_results(c->conn, deadline, why);
}

/* 'st' on 'c', prepared there first if it was not yet. */
static PGresult *conn_prepared(struct pg_conn *c, const struct pg_stmt *st,
			       const char *const *params, uint64_t deadline, enum wait_result *why)
{
	size_t i;

	for (i = 0; i < c->n_prepared && c->prepared[i] != st; i++)
		;
	if (i == c->n_prepared && c->n_prepared == PG_POOL_MAX_STMTS) {
		/* more statements than the pool keeps: a programming error,
		 * still answered, just not prepared */
		log_error("store", "statement '%s' not prepared: more than %d statements", st->name,
			  PG_POOL_MAX_STMTS);
		if (!PQsendQueryParams(c->conn, st->sql, st->n_params, NULL, params, NULL, NULL,
				       0)) {
			*why = WAIT_BROKEN;
			return NULL;
		}
		return conn_results(c->conn, deadline, why);
	}
	if (i == c->n_prepared) {
		PGresult *r;

		if (!PQsendPrepare(c->conn, st->name, st->sql, st->n_params, NULL)) {
			*why = WAIT_BROKEN;
			return NULL;
		}
		r = conn_results(c->conn, deadline, why);
		if (r == NULL || res_failed(r))
			return r;
		PQclear(r);
		c->prepared[c->n_prepared++] = st;
	}
	if (!PQsendQueryPrepared(c->conn, st->name, st->n_params, params, NULL, NULL, 0)) {
		*why = WAIT_BROKEN;
		return NULL;
	}
	return conn_results(c->conn, deadline, why);
}

/* What a failed query means: from its result when there is one, else from
 * the connection. 'timeout_ms' is the deadline's, for the message (0: not
 * a statement's). */
static void query_failure(struct pg_conn *c, const PGresult *r, enum wait_result why,
			  int timeout_ms, struct pg_failure *f, char *detail, size_t dlen)
{
	if (r) {
		pg_sqlstate_map(PQresultErrorField(r, PG_DIAG_SQLSTATE), f);
		copy_detail(detail, dlen, PQresultErrorMessage(r));
	} else if (why == WAIT_TIMEOUT) {
		pg_sqlstate_map(NULL, f);
		if (timeout_ms > 0)
			snprintf(detail, dlen, "no answer within %d ms, statement_timeout included",
				 timeout_ms);
		else
			snprintf(detail, dlen, "no answer before the deadline");
	} else {
		pg_sqlstate_map(NULL, f);
		copy_detail(detail, dlen, PQerrorMessage(c->conn));
	}
	if (PQstatus(c->conn) != CONNECTION_OK) {
		f->broken = true;
		f->server_gone = true;
		if (f->err != MN_CONFIG)
			f->err = MN_UNAVAILABLE;
	}
	if (f->broken)
		c->broken = true;
}

/* ---- migrations --------------------------------------------------------- */

static bool simple_ok(struct pg_conn *c, const char *sql, uint64_t deadline, struct pg_failure *f,
		      char *detail, size_t dlen)
{
	enum wait_result why;
	PGresult *r = conn_simple(c, sql, deadline, &why);
	bool ok = r && !res_failed(r);

	if (!ok)
		query_failure(c, r, why, 0, f, detail, dlen);
	PQclear(r);
	return ok;
}

/* Brings the database to the store's schema in one transaction, under an
 * advisory lock: of several nodes starting at once on an empty database
 * one migrates, the others wait on the lock and then find it done. DDL is
 * transactional in PostgreSQL, so a migration is applied whole or not. */
static int pg_migrate(struct pg_pool *p, struct pg_conn *c, struct pg_failure *f, char *detail,
		      size_t dlen)
{
	const struct migration *m = store_migrations;
	size_t n = store_migrations_count;
	uint64_t deadline = clock_monotonic_ms() + PG_POOL_MIGRATE_TIMEOUT_MS;
	struct migrate_plan plan;
	enum wait_result why;
	char sql[320];
	PGresult *r;
	int current;
	bool tables;

	/* the lock before anything is read or made: CREATE TABLE IF NOT
	 * EXISTS itself is not safe against a concurrent one */
	snprintf(sql, sizeof(sql),
		 "BEGIN; SET LOCAL statement_timeout = %d;"
		 " SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ");"
		 " CREATE TABLE IF NOT EXISTS " MIGRATE_TABLE " (version integer PRIMARY KEY,"
		 " applied_at timestamptz NOT NULL DEFAULT now())",
		 PG_POOL_MIGRATE_TIMEOUT_MS);
	if (!simple_ok(c, sql, deadline, f, detail, dlen))
		goto out_rollback;
	r = conn_simple(c,
			"SELECT coalesce(max(version), 0), to_regclass('users') IS NOT NULL"
			" OR to_regclass('orders') IS NOT NULL FROM " MIGRATE_TABLE,
			deadline, &why);
	if (r == NULL || res_failed(r) || PQntuples(r) != 1) {
		query_failure(c, r, why, PG_POOL_MIGRATE_TIMEOUT_MS, f, detail, dlen);
		PQclear(r);
		goto out_rollback;
	}
	current = atoi(PQgetvalue(r, 0, 0));
	tables = PQgetvalue(r, 0, 1)[0] == 't';
	PQclear(r);
	if (migrate_plan(m, n, current, tables, false, &plan, detail, dlen) != MN_OK) {
		*f = (struct pg_failure){MN_CONFIG, false, false, STORE_FAULT_NONE,
					 "internal error"};
		goto out_rollback;
	}
	for (size_t i = plan.first; i < n; i++) {
		snprintf(sql, sizeof(sql), "INSERT INTO " MIGRATE_TABLE " (version) VALUES (%d)",
			 m[i].version);
		if (!simple_ok(c, m[i].postgres, deadline, f, detail, dlen) ||
		    !simple_ok(c, sql, deadline, f, detail, dlen))
			goto out_rollback;
	}
	if (!simple_ok(c, "COMMIT", deadline, f, detail, dlen))
		goto out_rollback;
	for (size_t i = plan.first; i < n; i++)
		log_info("store", "%s: schema migration %d applied (%s)", p->describe, m[i].version,
			 m[i].what);
	return 0;

out_rollback:
	if (!c->broken) {
		r = conn_simple(c, "ROLLBACK", deadline, &why);
		PQclear(r);
	}
	return -1;
}

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
	return simple_ok(c, sql, deadline, f, detail, dlen);
}

/* A new connection, migrating first when asked. */
static struct pg_conn *conn_open(struct pg_pool *p, bool migrate, struct pg_failure *f,
				 char *detail, size_t dlen)
{
	struct pg_conn *c;
	PGconn *pc;

	pc = pg_connect(&p->params, p->opts.connect_timeout_ms, &p->stop, f, detail, dlen);
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
		conn_free(c);
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
		conn_free(p->idle[--p->n_idle]);
		p->n_open--;
	}
}

/* The pool goes down, once per generation: 'generation' is the one the
 * caller's connection was opened in, so only the first to notice acts. */
static void pool_down(struct pg_pool *p, unsigned generation, const struct pg_failure *f,
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
	pthread_cond_signal(&p->wake);
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
	if (c && p->closing) {
		p->n_open--;
		conn_free(c);
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
	p->last_ok_ms = now;
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
	if (c && p->up && generation == p->generation && !p->closing) {
		c->generation = generation;
		give_locked(p, c);
		return;
	}
	p->n_open--;
	conn_free(c);
	if (c == NULL) {
		pthread_mutex_unlock(&p->lock);
		pool_down(p, generation, &f, detail);
		pthread_mutex_lock(&p->lock);
	}
}

static void *pool_main(void *arg)
{
	struct pg_pool *p = arg;

	pthread_mutex_lock(&p->lock);
	while (!p->closing) {
		uint64_t now = clock_monotonic_ms();

		if (!p->up && now >= p->next_attempt_ms) {
			pool_reconnect_locked(p);
		} else if (!p->up) {
			struct timespec ts = clock_deadline_ms(p->next_attempt_ms - now);

			pthread_cond_timedwait(&p->wake, &p->lock, &ts);
		} else if (p->waiters > 0 && p->n_idle == 0 && p->n_open < p->size) {
			pool_grow_locked(p);
		} else {
			pthread_cond_wait(&p->wake, &p->lock);
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
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
		free(p->host);
		free(p->user);
		free(p->password);
		free(p->dbname);
		free(p->sslmode);
		free(p->idle);
		free(p);
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
	atomic_init(&p->stop, false);
	p->max_waiters = o->max_waiters > 0 ? (size_t)o->max_waiters : 0;
	if (p->opts.acquire_timeout_ms <= 0)
		p->opts.acquire_timeout_ms = 1;
	if (p->opts.request_timeout_ms <= 0)
		p->opts.request_timeout_ms =
			p->opts.statement_timeout_ms + p->opts.acquire_timeout_ms;
	pthread_mutex_init(&p->lock, NULL);
	clock_cond_init(&p->available);
	clock_cond_init(&p->wake);
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
	p->closing = true;
	atomic_store(&p->stop, true);
	pthread_cond_broadcast(&p->wake);
	pthread_cond_broadcast(&p->available);
	wake_waiters_locked(p);
	pthread_mutex_unlock(&p->lock);
	if (p->thread_started)
		pthread_join(p->thread, NULL);
	close_idle_locked(p);
	pthread_cond_destroy(&p->available);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p->idle);
	free(p->host);
	free(p->user);
	explicit_bzero(p->password, strlen(p->password));
	free(p->password);
	free(p->dbname);
	free(p->sslmode);
	free(p);
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
	if (pthread_create(&p->thread, NULL, pool_main, p) != 0) {
		p->start_waiting = false;
		pthread_mutex_unlock(&p->lock);
		return mn_error(err, errlen, MN_NOMEM, "cannot start the postgres pool's thread");
	}
	p->thread_started = true;
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

enum mn_err pg_pool_check(const struct pg_pool_opts *o, char *msg, size_t len)
{
	char what[400], detail[DETAIL_MAX];
	uint64_t deadline;
	struct pg_params params;
	struct pg_failure f;
	struct pg_conn c = {0};
	enum wait_result why;
	int latest = migrate_latest(store_migrations, store_migrations_count), version = 0;
	PGresult *r;

	pg_describe(o, what, sizeof(what));
	pg_params_build(o, &params);
	c.conn = pg_connect(&params, o->connect_timeout_ms, NULL, &f, detail, sizeof(detail));
	if (c.conn == NULL) {
		if (f.err == MN_CONFIG)
			return mn_error(msg, len, MN_CONFIG, "%s: %s (%s)", what, detail,
					CONFIG_HINT);
		return mn_error(msg, len, f.err,
				"%s: cannot connect: %s (the node would start, answer /ready "
				"with 503 and keep trying)",
				what, detail);
	}
	deadline = clock_monotonic_ms() + (uint64_t)o->connect_timeout_ms;
	r = conn_simple(&c, "SELECT to_regclass('" MIGRATE_TABLE "') IS NOT NULL", deadline, &why);
	if (r && !res_failed(r) && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't') {
		PQclear(r);
		r = conn_simple(&c, "SELECT coalesce(max(version), 0) FROM " MIGRATE_TABLE,
				deadline, &why);
	} else if (r && !res_failed(r) && PQntuples(r) == 1) {
		PQclear(r);
		r = conn_simple(&c, "SELECT 0", deadline, &why);
	}
	if (r == NULL || res_failed(r) || PQntuples(r) != 1) {
		query_failure(&c, r, why, 0, &f, detail, sizeof(detail));
		PQclear(r);
		PQfinish(c.conn);
		return mn_error(msg, len, f.err == MN_CONFIG ? MN_CONFIG : MN_UNAVAILABLE,
				"%s: connected, but cannot read the schema version: %s", what,
				detail);
	}
	version = atoi(PQgetvalue(r, 0, 0));
	PQclear(r);
	PQfinish(c.conn);
	if (version > latest)
		return mn_error(msg, len, MN_CONFIG,
				"%s: the schema is at version %d, newer than this node knows (%d)",
				what, version, latest);
	return mn_error(msg, len, MN_OK, "%s: connected, schema version %d (this node's: %d)", what,
			version, latest);
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
		if (p->closing || !p->up) {
			pthread_mutex_unlock(&p->lock);
			return mn_error(err, errlen, MN_UNAVAILABLE, "the database is unavailable");
		}
		/* idle ones are taken only when no one waits before */
		if (p->n_idle > 0 && p->waiter_head == NULL) {
			struct pg_conn *c = p->idle[--p->n_idle];

			if (PQstatus(c->conn) != CONNECTION_OK || c->generation != p->generation) {
				conn_free(c);
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
		pthread_cond_signal(&p->wake);
		while (me.conn == NULL && !p->closing && p->up && rc != ETIMEDOUT)
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
	if (bad || c->generation != p->generation || p->closing || !p->up) {
		p->n_open--;
		if (p->waiters > 0)
			pthread_cond_signal(&p->wake);
		pthread_mutex_unlock(&p->lock);
		conn_free(c);
		return;
	}
	give_locked(p, c);
	pthread_mutex_unlock(&p->lock);
}

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
 * past its holder's. */
static uint64_t query_deadline(const struct pg_conn *c, int timeout_ms)
{
	uint64_t d = clock_monotonic_ms() + (uint64_t)timeout_ms;

	return c->deadline_ms && c->deadline_ms < d ? c->deadline_ms : d;
}

/* A statement answered: the pool is not stuck. */
static void note_ok(struct pg_pool *p)
{
	uint64_t now = clock_monotonic_ms();

	pthread_mutex_lock(&p->lock);
	p->last_ok_ms = now;
	pthread_mutex_unlock(&p->lock);
}

/* Reports a statement that failed on 'c' (r: its result, if any) as
 * pg_conn_exec() says, and returns its error. */
static enum mn_err exec_failure(struct pg_pool *p, struct pg_conn *c, const PGresult *r,
				enum wait_result why, int timeout_ms, struct pg_writes *writes,
				const char *what, char *err, size_t errlen)
{
	char detail[DETAIL_MAX];
	struct pg_failure f;

	query_failure(c, r, why, timeout_ms, &f, detail, sizeof(detail));
	if (f.err == MN_INTERNAL)
		log_error("store", "%s: %s failed: %s", p->describe, what, detail);
	else if (f.err != MN_CONFLICT && !f.server_gone)
		log_warn("store", "%s: %s failed: %s", p->describe, what, detail);
	if (f.fault != STORE_FAULT_NONE)
		writes_note(writes, f.fault);
	/* the pool logs the outage itself, once */
	if (f.server_gone)
		pool_down(p, c->generation, &f, detail);
	return mn_error(err, errlen, f.err, "%s", f.client);
}

enum mn_err pg_conn_exec(struct pg_pool *p, struct pg_conn *c, const struct pg_stmt *st,
			 const char *const *params, struct pg_writes *writes, const char *what,
			 PGresult **res, char *err, size_t errlen)
{
	int timeout_ms = p->opts.statement_timeout_ms + PG_POOL_QUERY_GRACE_MS;
	uint64_t deadline = query_deadline(c, timeout_ms);
	enum wait_result why;
	enum mn_err e;
	PGresult *r;

	*res = NULL;
	r = conn_prepared(c, st, params, deadline, &why);
	if (r && !res_failed(r)) {
		note_ok(p);
		/* inside a transaction nothing is durable before COMMIT, which
		 * reports the write itself */
		if (writes && PQtransactionStatus(c->conn) == PQTRANS_IDLE)
			writes_note(writes, STORE_FAULT_NONE);
		*res = r;
		return MN_OK;
	}
	e = exec_failure(p, c, r, why, timeout_ms, writes, what, err, errlen);
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
	uint64_t deadline = query_deadline(c, timeout_ms);
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
	r = conn_simple(c, sql, deadline, &why);
	if (r && !res_failed(r)) {
		note_ok(p);
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
	e = exec_failure(p, c, r, why, timeout_ms, writes, what, err, errlen);
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
			conn_free(c);
			p->n_open--;
			c = NULL;
		}
	}
	if (c == NULL) {
		/* all in use: working, unless none has answered for longer than
		 * a request may wait for one (a lock, a stalled server) */
		uint64_t quiet = clock_monotonic_ms() - p->last_ok_ms;

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

enum mn_err pg_pool_page(struct pg_pool *p, const struct pg_stmt *st, size_t limit,
			 size_t offset, const char *what, size_t size,
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

void pg_repo_base_init(struct pg_repo_base *b, struct pg_pool *pool)
{
	b->pool = pg_pool_ref(pool);
	pg_writes_init(&b->writes);
}

void pg_repo_base_release(struct pg_repo_base *b)
{
	pg_pool_unref(b->pool);
	pg_writes_release(&b->writes);
}
