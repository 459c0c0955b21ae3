/* One PostgreSQL connection, with no pool in sight: the options and libpq's
 * parameters, SQLSTATE mapping, the handshake with its deadline, and
 * statements (simple or prepared) whose results are read to a deadline.
 * The pool (pg_pool.c), the migrations (pg_migrate.c) and the statements
 * of repositories (pg_query.c) are built on it. */
#include "pg_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"

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
	out->statement_timeout_ms =
		pg_statement_timeout_ms(out->request_timeout_ms, out->acquire_timeout_ms);
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

void pg_timeout_map(bool holder, struct pg_failure *out)
{
	pg_sqlstate_map(NULL, out);
	if (holder)
		*out = (struct pg_failure){MN_UNAVAILABLE, true, false, STORE_FAULT_NONE,
					   "the database is busy; try again"};
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
PGconn *pg_connect(const struct pg_params *params, int timeout_ms, atomic_bool *stop,
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

void pg_conn_free(struct pg_conn *c)
{
	if (c == NULL)
		return;
	PQfinish(c->conn);
	free(c);
}

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

bool pg_conn_res_failed(const PGresult *r)
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
		if (keep != NULL && pg_conn_res_failed(keep)) {
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
PGresult *pg_conn_simple(struct pg_conn *c, const char *sql, uint64_t deadline,
			 enum wait_result *why)
{
	if (!PQsendQuery(c->conn, sql)) {
		*why = WAIT_BROKEN;
		return NULL;
	}
	return conn_results(c->conn, deadline, why);
}

/* 'st' on 'c', prepared there first if it was not yet. */
PGresult *pg_conn_prepared(struct pg_conn *c, const struct pg_stmt *st, const char *const *params,
			   uint64_t deadline, enum wait_result *why)
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
		if (r == NULL || pg_conn_res_failed(r))
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
void pg_conn_query_failure(struct pg_conn *c, const PGresult *r, enum wait_result why,
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

bool pg_conn_simple_ok(struct pg_conn *c, const char *sql, uint64_t deadline, struct pg_failure *f,
		       char *detail, size_t dlen)
{
	enum wait_result why;
	PGresult *r = pg_conn_simple(c, sql, deadline, &why);
	bool ok = r && !pg_conn_res_failed(r);

	if (!ok)
		pg_conn_query_failure(c, r, why, 0, f, detail, dlen);
	PQclear(r);
	return ok;
}
