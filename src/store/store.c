#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "store/drivers.h"
#include "store/pg_pool.h"
#include "store/sqlite_pool.h"

enum mn_err store_open_memory(struct store *s, unsigned modules)
{
	*s = (struct store){0};
	if ((modules & STORE_USERS) && (s->users = users_repo_memory_create()) == NULL)
		return MN_NOMEM;
	if ((modules & STORE_ORDERS) && (s->orders = orders_repo_memory_create(&s->outbox)) == NULL)
		return MN_NOMEM;
	return MN_OK;
}

/* One pool for the file, preparing the statements of both repositories
 * (the migrations make both tables), so that the file has one group-commit
 * writer whichever modules run. */
enum mn_err store_open_sqlite(struct store *s, const char *path, const struct store_limits *limits,
			      unsigned modules, char *err, size_t errlen)
{
	const char *stmts[SQLITE_POOL_MAX_STMTS];
	size_t n = 0;

	*s = (struct store){0};
	if (modules == 0)
		return MN_OK;
	for (size_t i = 0; i < users_sqlite_stmt_count; i++)
		stmts[n++] = users_sqlite_stmts[i];
	for (size_t i = 0; i < orders_sqlite_stmt_count; i++)
		stmts[n++] = orders_sqlite_stmts[i];
	s->sqlite = sqlite_pool_open_with(path, NULL, stmts, n, limits, err, errlen);
	if (s->sqlite == NULL)
		return MN_IO;
	if ((modules & STORE_USERS) &&
	    (s->users = users_repo_sqlite_new(s->sqlite, 0, path)) == NULL)
		goto out_nomem;
	if ((modules & STORE_ORDERS) &&
	    (s->orders = orders_repo_sqlite_new(s->sqlite, users_sqlite_stmt_count, &s->outbox)) ==
		    NULL)
		goto out_nomem;
	return MN_OK;

out_nomem:
	return mn_error(err, errlen, MN_NOMEM, "out of memory");
}

enum mn_err store_open_pg(struct store *s, struct pg_pool *pool, unsigned modules)
{
	*s = (struct store){0};
	s->pg_pool = pg_pool_ref(pool);
	s->pg_writes = malloc(sizeof(*s->pg_writes));
	if (s->pg_writes == NULL)
		return MN_NOMEM;
	pg_writes_init(s->pg_writes);
	if ((modules & STORE_USERS) && (s->users = users_repo_pg_new(pool, s->pg_writes)) == NULL)
		return MN_NOMEM;
	if ((modules & STORE_ORDERS) &&
	    (s->orders = orders_repo_pg_new(pool, s->pg_writes, &s->outbox)) == NULL)
		return MN_NOMEM;
	return MN_OK;
}

/* The background probe's look at the store: on PostgreSQL the pool's
 * ping, on SQLite the file's (none waits for a busy pool). */
static enum mn_err probe_ping(void *ctx, char *why, size_t len)
{
	return store_ping(ctx, why, len);
}

enum mn_err store_ping(struct store *s, char *err, size_t errlen)
{
	if (s->pg_pool)
		return pg_pool_ping(s->pg_pool, err, errlen);
	if (s->sqlite)
		return sqlite_pool_ping(s->sqlite, err, errlen);
	return MN_OK;
}

static enum mn_err store_probe_setup(struct store *s)
{
	struct store_probe_opts o = {
		.ping = probe_ping,
		.ctx = s,
		.interval_ms = STORE_PROBE_INTERVAL_MS,
		.stale_ms = STORE_PROBE_STALE_MS,
	};

	if (!s->users && !s->orders)
		return MN_OK;
	s->probe = store_probe_create(&o);
	if (s->probe == NULL)
		return MN_NOMEM;
	return store_probe_start(s->probe);
}

/* The settings of how long a request may wait in the store. */
static struct store_limits store_limits_of(const struct config *cfg)
{
	return (struct store_limits){
		.acquire_timeout_ms = cfg->database_acquire_timeout_ms,
		.max_waiters = cfg->database_max_waiters,
		.request_timeout_ms = cfg->read_timeout_ms,
	};
}

static unsigned store_modules_of(const struct config *cfg)
{
	return (config_has_module(cfg, "users") ? STORE_USERS : 0u) |
	       (config_has_module(cfg, "orders") ? STORE_ORDERS : 0u);
}

/* PostgreSQL: one pool for both repositories. A server that does not
 * answer is not fatal, nor a wait: the pool connects (and migrates) in
 * its own thread, the node listens, answers /health and registers
 * meanwhile, and /ready says why until the store is up. A login or
 * database the server refuses within the pool's first moments
 * (PG_POOL_START_WAIT_MS) is a configuration error (MN_CONFIG), which no
 * retry fixes; one known only later is logged at error and /ready says
 * so. */
static enum mn_err store_open_pg_config(const struct config *cfg, struct store *s)
{
	struct pg_pool_opts o;
	struct pg_pool *pool;
	char err[1024];
	enum mn_err e;

	pg_pool_opts_from_config(cfg, &o);
	pool = pg_pool_create(&o);
	if (pool == NULL)
		return MN_NOMEM;
	e = pg_pool_start(pool, err, sizeof(err));
	if (e == MN_UNAVAILABLE) {
		log_warn("store", "%s; serving, with /ready answering 503, until it answers", err);
	} else if (e != MN_OK) {
		log_error("store", "%s", err);
		pg_pool_unref(pool);
		return e;
	}
	/* the store keeps its own reference, and the node the pool's counts */
	e = store_open_pg(s, pool, store_modules_of(cfg));
	pg_pool_unref(pool);
	/* "connected, schema up to date" is the pool's thread's to log */
	return e;
}

static enum mn_err store_open_repos(const struct config *cfg, struct store *s)
{
	const char *path = cfg->database_path;
	char err[256];

	if (strcmp(cfg->database_driver, "postgres") == 0)
		return store_open_pg_config(cfg, s);
	if (strcmp(cfg->database_driver, "memory") == 0) {
		if (store_open_memory(s, store_modules_of(cfg)) == MN_OK)
			return MN_OK;
		log_error("store", "cannot create the in-memory store");
		return MN_NOMEM;
	}
	struct store_limits limits = store_limits_of(cfg);

	if (store_open_sqlite(s, path, &limits, store_modules_of(cfg), err, sizeof(err)) != MN_OK) {
		log_error("store", "cannot open '%s': %s", path, err);
		return MN_IO;
	}
	log_info("store", "sqlite database '%s' open", path);
	return MN_OK;
}

enum mn_err store_open(const struct config *cfg, struct store *out)
{
	enum mn_err e;

	*out = (struct store){0};
	e = store_open_repos(cfg, out);
	if (e != MN_OK)
		return e;
	return store_probe_setup(out);
}

void store_probe_stop(struct store *s)
{
	store_probe_destroy(s->probe);
	s->probe = NULL;
}

void store_close(struct store *s)
{
	store_probe_stop(s);
	users_repo_destroy(s->users);
	orders_repo_destroy(s->orders);
	sqlite_pool_close(s->sqlite);
	pg_pool_unref(s->pg_pool);
	if (s->pg_writes) {
		pg_writes_release(s->pg_writes);
		free(s->pg_writes);
	}
	*s = (struct store){0};
}

bool store_ready(struct store *s, char *why, size_t len)
{
	struct store_health h = {0};

	if (!store_probe_ok(s->probe, why, len, NULL))
		return false;
	if (!s->sqlite)
		return true;
	sqlite_pool_health(s->sqlite, &h);
	if (h.fault != STORE_FAULT_NONE) {
		snprintf(why, len, "cannot write: %s", store_fault_text(h.fault));
		return false;
	}
	return true;
}

void store_health_read(struct store *s, struct store_health *out)
{
	*out = (struct store_health){0};
	if (s->sqlite)
		sqlite_pool_health(s->sqlite, out);
	if (s->pg_writes)
		pg_writes_health(s->pg_writes, out);
	if (s->pg_pool) {
		struct pg_pool_stats ps;

		pg_pool_stats(s->pg_pool, &ps);
		for (int k = 0; k < STORE_SHED_COUNT; k++)
			out->shed[k] += ps.shed[k];
	}
}
