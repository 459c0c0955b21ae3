/* The repository tests' way to a repository: each opened in a store of its
 * own (store/store.h), which the tests find again from the repository to
 * ask for its readiness and write state and to close it. Two repositories
 * opened on one file are two stores, as two nodes sharing it are. */
#ifndef MESHNODE_TESTS_STORE_FIXTURE_H
#define MESHNODE_TESTS_STORE_FIXTURE_H

#include <stdlib.h>

#include "store/drivers.h"
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
