#include "app_connect.h"

#include <stdio.h>
#include <stdlib.h>

#include "connect/authz.h"
#include "connect/connect_tls.h"
#include "connect/identity.h"
#include "core/clock.h"
#include "core/log.h"
#include "http/tls_runtime.h"

/* The agent is local: an identity or intentions watch that failed tries
 * again within a second. */
#define CONNECT_BACKOFF_CAP_MS 1000

struct app_connect {
	struct config_store *store;
	struct connect_metrics *metrics;
	struct connect_identity *identity;
	struct connect_authorizer *authz;
	struct connect_tls *tls;
	char agent[256]; /* for the messages */
};

/* connect.authz_fail_open in force, read at each decision the agent could
 * not give. */
static bool fail_open(void *ctx)
{
	struct config_store *store = ctx;
	const struct config *cfg = config_store_get(store);
	bool open = cfg->connect_authz_fail_open;

	config_store_put(store, cfg);
	return open;
}

static bool authz_check(void *ctx, const struct spiffe_id *caller, const char *caller_uri,
			const char *serial, struct connect_authz_decision *out)
{
	return connect_authz_check(ctx, caller, caller_uri, serial, out);
}

static uint64_t authz_generation(void *ctx)
{
	return connect_authz_generation(ctx);
}

struct app_connect *app_connect_start(const struct app_connect_opts *o, char *err, size_t errlen)
{
	const struct config *cfg = o->cfg;
	char dir[TLS_RUNTIME_DIR_MAX + 1];
	struct app_connect *c;

	if (tls_runtime_shim_dir(o->tls_dir, dir, sizeof(dir), err, errlen) != MN_OK ||
	    http_server_tls_init(dir, err, errlen) != MN_OK)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		mn_error(err, errlen, MN_NOMEM, "out of memory");
		return NULL;
	}
	c->store = o->store;
	c->metrics = o->metrics;
	snprintf(c->agent, sizeof(c->agent), "%s", cfg->consul_address);
	c->identity = connect_identity_start(
		&(struct connect_identity_opts){
			.consul = o->consul,
			.service = cfg->service_name,
			.wait_ms = (uint64_t)cfg->consul_watch_wait_ms,
			.backoff_cap_ms = CONNECT_BACKOFF_CAP_MS,
		},
		err, errlen);
	if (c->identity == NULL)
		goto out_free;
	c->authz = connect_authz_create(
		&(struct connect_authz_opts){
			.consul = o->consul,
			.target = cfg->service_name,
			.watch_wait_ms = (uint64_t)cfg->consul_watch_wait_ms,
			.fail_open = fail_open,
			.fail_open_ctx = o->store,
			.metric = o->metrics->authz,
		},
		err, errlen);
	if (c->authz == NULL)
		goto out_identity;
	c->tls = connect_tls_create(
		&(struct connect_tls_opts){
			.identity = c->identity,
			.authz = {authz_check, authz_generation, c->authz},
			.handshakes = o->metrics->handshakes,
		},
		err, errlen);
	if (c->tls == NULL)
		goto out_authz;
	atomic_store(&o->metrics->identity, c->identity);
	return c;

out_authz:
	connect_authz_destroy(c->authz);
out_identity:
	connect_identity_destroy(c->identity);
out_free:
	free(c);
	return NULL;
}

enum mn_err app_connect_wait(struct app_connect *c, uint64_t ms, const atomic_bool *cancel,
			     char *err, size_t errlen)
{
	for (uint64_t waited = 0; waited < ms; waited += 100) {
		if (cancel && atomic_load(cancel))
			return MN_OK;
		if (connect_identity_wait_ready(c->identity, 100) == MN_OK)
			return MN_OK;
	}
	return mn_error(
		err, errlen, MN_TIMEOUT,
		"no leaf certificate and roots from the agent at %s within %llu ms: the "
		"agent must be reachable, with Connect on, and sign a leaf for this service",
		c->agent, (unsigned long long)ms);
}

void app_connect_server(struct app_connect *c, struct http_server_opts *o)
{
	o->tls_setup = connect_tls_setup;
	o->tls_ctx = c->tls;
	o->gate = connect_tls_gate;
	o->gate_ctx = c->tls;
}

struct connect_identity *app_connect_identity(struct app_connect *c)
{
	return c->identity;
}

json_t *app_connect_health(void *ctx)
{
	struct app_connect *c = ctx;
	struct connect_snapshot *s = connect_identity_get(c->identity);
	json_t *view = connect_snapshot_view(s, clock_wall_ms());

	connect_snapshot_release(s);
	return view;
}

void app_connect_destroy(struct app_connect *c)
{
	if (c == NULL)
		return;
	atomic_store(&c->metrics->identity, NULL);
	connect_tls_destroy(c->tls);
	connect_authz_destroy(c->authz);
	connect_identity_destroy(c->identity);
	free(c);
}
