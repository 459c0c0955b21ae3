#include "store/store_open.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"

/* The background probe's look at the store: each repository's ping, or
 * on PostgreSQL the one pool both share, once (none waits for a busy
 * pool). */
static enum mn_err store_ping(void *ctx, char *why, size_t len)
{
	struct store_repos *s = ctx;
	enum mn_err e = MN_OK;

	if (s->pg_pool)
		return pg_pool_ping(s->pg_pool, why, len);
	if (s->users)
		e = users_repo_ping(s->users, why, len);
	if (e == MN_OK && s->orders)
		e = orders_repo_ping(s->orders, why, len);
	return e;
}

static enum mn_err store_probe_setup(struct store_repos *s)
{
	struct store_probe_opts o = {
		.ping = store_ping,
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

/* PostgreSQL: one pool for both repositories. A server that does not
 * answer is not fatal, nor a wait: the pool connects (and migrates) in
 * its own thread, the node listens, answers /health and registers
 * meanwhile, and /ready says why until the store is up. A login or
 * database the server refuses within the pool's first moments
 * (PG_POOL_START_WAIT_MS) is a configuration error (MN_CONFIG), which no
 * retry fixes; one known only later is logged at error and /ready says
 * so. */
static enum mn_err store_open_pg(const struct config *cfg, struct store_repos *s)
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
	if (config_has_module(cfg, "users"))
		s->users = users_repo_pg_open(pool);
	if (config_has_module(cfg, "orders"))
		s->orders = orders_repo_pg_open(pool);
	s->pg_pool = pool; /* and the node its counts, until store_close() */
	if ((config_has_module(cfg, "users") && s->users == NULL) ||
	    (config_has_module(cfg, "orders") && s->orders == NULL))
		return MN_NOMEM;
	/* "connected, schema up to date" is the pool's thread's to log */
	return MN_OK;
}

static enum mn_err store_open_repos(const struct config *cfg, struct store_repos *s)
{
	bool memory = strcmp(cfg->database_driver, "memory") == 0;
	const char *path = cfg->database_path;
	char err[256];

	if (strcmp(cfg->database_driver, "postgres") == 0)
		return store_open_pg(cfg, s);
	struct store_limits limits = store_limits_of(cfg);

	if (config_has_module(cfg, "users")) {
		s->users = memory ? users_repo_memory_create()
				  : users_repo_sqlite_open_with(path, &limits, err, sizeof(err));
		if (s->users == NULL)
			goto out_fail;
	}
	if (config_has_module(cfg, "orders")) {
		s->orders = memory ? orders_repo_memory_create()
				   : orders_repo_sqlite_open_with(path, &limits, err, sizeof(err));
		if (s->orders == NULL)
			goto out_fail;
	}
	if (!memory)
		log_info("store", "sqlite database '%s' open", path);
	return MN_OK;

out_fail:
	if (memory)
		log_error("store", "cannot create the in-memory store");
	else
		log_error("store", "cannot open '%s': %s", path, err);
	return memory ? MN_NOMEM : MN_IO;
}

enum mn_err store_open(const struct config *cfg, struct store_repos *out)
{
	enum mn_err e;

	*out = (struct store_repos){.sqlite = strcmp(cfg->database_driver, "sqlite") == 0};
	e = store_open_repos(cfg, out);
	if (e != MN_OK)
		return e;
	return store_probe_setup(out);
}

void store_probe_stop(struct store_repos *s)
{
	store_probe_destroy(s->probe);
	s->probe = NULL;
}

void store_close(struct store_repos *s)
{
	store_probe_stop(s);
	users_repo_destroy(s->users);
	orders_repo_destroy(s->orders);
	pg_pool_unref(s->pg_pool);
	s->users = NULL;
	s->orders = NULL;
	s->pg_pool = NULL;
}

bool store_ready(struct store_repos *s, char *why, size_t len)
{
	struct store_health h = {0};

	if (!store_probe_ok(s->probe, why, len, NULL))
		return false;
	if (!s->sqlite)
		return true;
	if (s->users)
		users_repo_health(s->users, &h);
	if (h.fault == STORE_FAULT_NONE && s->orders)
		orders_repo_health(s->orders, &h);
	if (h.fault != STORE_FAULT_NONE) {
		snprintf(why, len, "cannot write: %s", store_fault_text(h.fault));
		return false;
	}
	return true;
}

void store_health_sum(struct store_repos *s, struct store_health *sum)
{
	struct store_health h;

	*sum = (struct store_health){0};
	if (s->users) {
		users_repo_health(s->users, &h);
		store_health_add(sum, &h);
	}
	if (s->orders) {
		orders_repo_health(s->orders, &h);
		store_health_add(sum, &h);
	}
	if (s->pg_pool) {
		struct pg_pool_stats ps;

		pg_pool_stats(s->pg_pool, &ps);
		for (int k = 0; k < STORE_SHED_COUNT; k++)
			sum->shed[k] += ps.shed[k];
	}
}
