/* The schema of a PostgreSQL database: the store's migrations applied
 * under an advisory lock (store/migrate.h decides which), and the version
 * read for --check-config. */
#include "pg_internal.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/clock.h"
#include "core/log.h"
#include "store/migrate.h"

/* The key of pg_advisory_xact_lock() taken by every node before it looks
 * at the schema: "meshnode" in ASCII, as a bigint. */
#define MIGRATE_LOCK_KEY "7882833615148508261"

/* Brings the database to the store's schema in one transaction, under an
 * advisory lock: of several nodes starting at once on an empty database
 * one migrates, the others wait on the lock and then find it done. DDL is
 * transactional in PostgreSQL, so a migration is applied whole or not. */
int pg_migrate(struct pg_pool *p, struct pg_conn *c, struct pg_failure *f, char *detail,
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
	if (!pg_conn_simple_ok(c, sql, deadline, f, detail, dlen))
		goto out_rollback;
	r = pg_conn_simple(c,
			   "SELECT coalesce(max(version), 0), to_regclass('users') IS NOT NULL"
			   " OR to_regclass('orders') IS NOT NULL FROM " MIGRATE_TABLE,
			   deadline, &why);
	if (r == NULL || pg_conn_res_failed(r) || PQntuples(r) != 1) {
		pg_conn_query_failure(c, r, why, PG_POOL_MIGRATE_TIMEOUT_MS, f, detail, dlen);
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
		if (!pg_conn_simple_ok(c, m[i].postgres, deadline, f, detail, dlen) ||
		    !pg_conn_simple_ok(c, sql, deadline, f, detail, dlen))
			goto out_rollback;
	}
	if (!pg_conn_simple_ok(c, "COMMIT", deadline, f, detail, dlen))
		goto out_rollback;
	for (size_t i = plan.first; i < n; i++)
		log_info("store", "%s: schema migration %d applied (%s)", p->describe, m[i].version,
			 m[i].what);
	return 0;

out_rollback:
	if (!c->broken) {
		r = pg_conn_simple(c, "ROLLBACK", deadline, &why);
		PQclear(r);
	}
	return -1;
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
	r = pg_conn_simple(&c, "SELECT to_regclass('" MIGRATE_TABLE "') IS NOT NULL", deadline,
			   &why);
	if (r && !pg_conn_res_failed(r) && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't') {
		PQclear(r);
		r = pg_conn_simple(&c, "SELECT coalesce(max(version), 0) FROM " MIGRATE_TABLE,
				   deadline, &why);
	} else if (r && !pg_conn_res_failed(r) && PQntuples(r) == 1) {
		PQclear(r);
		r = pg_conn_simple(&c, "SELECT 0", deadline, &why);
	}
	if (r == NULL || pg_conn_res_failed(r) || PQntuples(r) != 1) {
		pg_conn_query_failure(&c, r, why, 0, &f, detail, sizeof(detail));
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
