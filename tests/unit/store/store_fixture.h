/* The repository tests' way to a repository: each opened in a store of its
 * own (store/store.h), which the tests find again from the repository to
 * ask for its readiness and write state and to close it. Two repositories
 * opened on one file are two stores, as two nodes sharing it are. */
#ifndef MESHNODE_TESTS_STORE_FIXTURE_H
#define MESHNODE_TESTS_STORE_FIXTURE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/drivers.h"
#include "store/pg_pool.h"
#include "store/store.h"

#define TEST_STORES_MAX 32

static struct store test_stores[TEST_STORES_MAX];

static struct store *test_store_new(void)
{
	for (size_t i = 0; i < TEST_STORES_MAX; i++)
		if (!test_stores[i].users && !test_stores[i].orders)
			return &test_stores[i];
	abort();
}

static struct store *test_store_of(const void *repo)
{
	for (size_t i = 0; i < TEST_STORES_MAX; i++)
		if (repo &&
		    (test_stores[i].users == repo || (const void *)test_stores[i].orders == repo))
			return &test_stores[i];
	abort();
}

/* The SQLite store of 'path' with its users (orders) repository; NULL
 * with the reason in err when it cannot open. */
static inline struct users_repo *test_users_sqlite(const char *path, char *err, size_t errlen)
{
	struct store *s = test_store_new();

	if (store_open_sqlite(s, path, NULL, STORE_USERS, err, errlen) != MN_OK) {
		store_close(s);
		return NULL;
	}
	return s->users;
}

static inline struct orders_repo *test_orders_sqlite(const char *path, char *err, size_t errlen)
{
	struct store *s = test_store_new();

	if (store_open_sqlite(s, path, NULL, STORE_ORDERS, err, errlen) != MN_OK) {
		store_close(s);
		return NULL;
	}
	return s->orders;
}

static inline struct users_repo *test_users_memory(void)
{
	struct store *s = test_store_new();

	if (store_open_memory(s, STORE_USERS) != MN_OK) {
		store_close(s);
		return NULL;
	}
	return s->users;
}

static inline struct orders_repo *test_orders_memory(void)
{
	struct store *s = test_store_new();

	if (store_open_memory(s, STORE_ORDERS) != MN_OK) {
		store_close(s);
		return NULL;
	}
	return s->orders;
}

/* The PostgreSQL group: MESHNODE_TEST_PG is the libpq conninfo (host, port,
 * user, password, dbname) of a database the group may empty
 * (tests/integration/test_store_contract.py starts a server and sets it).
 * NULL when unset: the group is skipped, and says so. */
static inline const char *test_pg_conninfo(void)
{
	const char *s = getenv("MESHNODE_TEST_PG");

	return s && *s ? s : NULL;
}

/* How many of a test list's last entries are the PostgreSQL group's to
 * leave out: 0 when MESHNODE_TEST_PG is set, else n_pg, said on stdout. */
static inline size_t test_pg_skipped(const char *program, size_t n_pg)
{
	if (test_pg_conninfo())
		return 0;
	printf("%s: PostgreSQL group skipped (%zu tests): MESHNODE_TEST_PG not set\n", program,
	       n_pg);
	return n_pg;
}

/* A PostgreSQL store of 'modules' on the database MESHNODE_TEST_PG names,
 * its tables emptied (ids from 1 again) once its pool is up and migrated;
 * NULL when it cannot be had within 20 s. */
static inline struct store *test_pg_store(unsigned modules)
{
	const char *conninfo = test_pg_conninfo();
	struct pg_pool_opts o = {
		.sslmode = "disable",
		.pool_size = 8,
		.connect_timeout_ms = 5000,
		.acquire_timeout_ms = 5000,
		.max_waiters = 128,
		.request_timeout_ms = 20000,
		.statement_timeout_ms = 10000,
	};
	PQconninfoOption *opts, *opt;
	struct store *s = NULL;
	struct pg_pool *pool;
	PGconn *conn;
	PGresult *res;
	bool emptied;
	char err[512];

	if (conninfo == NULL || (opts = PQconninfoParse(conninfo, NULL)) == NULL)
		return NULL;
	for (opt = opts; opt->keyword; opt++) {
		if (opt->val == NULL)
			continue;
		if (strcmp(opt->keyword, "host") == 0)
			o.host = opt->val;
		else if (strcmp(opt->keyword, "port") == 0)
			o.port = atoi(opt->val);
		else if (strcmp(opt->keyword, "user") == 0)
			o.user = opt->val;
		else if (strcmp(opt->keyword, "password") == 0)
			o.password = opt->val;
		else if (strcmp(opt->keyword, "dbname") == 0)
			o.dbname = opt->val;
	}
	pool = pg_pool_create(&o);
	PQconninfoFree(opts);
	if (pool == NULL)
		return NULL;
	if (pg_pool_start(pool, err, sizeof(err)) == MN_CONFIG)
		goto out_unref;
	for (int i = 0; i < 200 && pg_pool_ping(pool, err, sizeof(err)) != MN_OK; i++)
		nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
	if (pg_pool_ping(pool, err, sizeof(err)) != MN_OK)
		goto out_unref;
	conn = PQconnectdb(conninfo);
	res = PQexec(conn, "TRUNCATE users, orders, events_outbox RESTART IDENTITY");
	emptied = PQresultStatus(res) == PGRES_COMMAND_OK;
	PQclear(res);
	PQfinish(conn);
	if (!emptied)
		goto out_unref;
	s = test_store_new();
	if (store_open_pg(s, pool, modules) != MN_OK) {
		store_close(s);
		s = NULL;
	}
out_unref:
	pg_pool_unref(pool);
	return s;
}

static inline struct users_repo *test_users_pg(void)
{
	struct store *s = test_pg_store(STORE_USERS);

	return s ? s->users : NULL;
}

static inline struct orders_repo *test_orders_pg(void)
{
	struct store *s = test_pg_store(STORE_ORDERS);

	return s ? s->orders : NULL;
}

/* The store's ping and write state, for the store a repository is of. */
static inline enum mn_err test_store_ping(const void *repo, char *err, size_t errlen)
{
	return store_ping(test_store_of(repo), err, errlen);
}

static inline void test_store_health(const void *repo, struct store_health *out)
{
	store_health_read(test_store_of(repo), out);
}

/* The outbox of the orders repository 'repo' (its store's). */
static inline struct outbox *test_outbox(const void *repo)
{
	return test_store_of(repo)->outbox;
}

/* Closes the store of 'repo'; NULL is a no-op. */
static inline void test_store_close(const void *repo)
{
	if (repo)
		store_close(test_store_of(repo));
}

#endif
