#include "app_views.h"

#include <stdio.h>
#include <string.h>

#include "core/ipaddr.h"

bool config_view_peer_allowed(const struct config *cfg, const char *service)
{
	return (config_has_module(cfg, "orders") && strcmp(service, "users") == 0) ||
	       config_peer_get(cfg, service)->name != NULL ||
	       /* the broker, found through Consul by the publisher */
	       (config_has_module(cfg, "orders") && cfg->events_enabled &&
		!cfg->events_broker_address[0] && strcmp(service, cfg->events_broker_service) == 0);
}

static const void *peer_settings_get(void *ctx, const char *service, struct peer_settings *s)
{
	const struct config *cfg = config_store_get(ctx);

	/* its strings stay the config's, held until peer_settings_put() */
	*s = *config_peer_get(cfg, service);
	return cfg;
}

static void peer_settings_put(void *ctx, const void *token)
{
	config_store_put(ctx, token);
}

struct peer_settings_source config_view_peer_settings(struct config_store *store)
{
	return (struct peer_settings_source){peer_settings_get, peer_settings_put, store};
}

static bool resolver_allowed(void *ctx, const char *service)
{
	struct config_store *store = ((struct config_view_resolver *)ctx)->store;
	const struct config *cfg = config_store_get(store);
	bool ok = config_view_peer_allowed(cfg, service);

	config_store_put(store, cfg);
	return ok;
}

/* the resolver asks at each answer and every second */
static unsigned resolver_panic_threshold(void *ctx, const char *service)
{
	struct config_store *store = ((struct config_view_resolver *)ctx)->store;
	const struct config *cfg = config_store_get(store);
	unsigned threshold = (unsigned)config_peer_get(cfg, service)->panic_threshold;

	config_store_put(store, cfg);
	return threshold;
}

static void *resolver_prepare(void *ctx, const struct peer_snapshot *snap)
{
	return peer_client_prepare(((struct config_view_resolver *)ctx)->client, snap);
}

static void resolver_release(void *ctx, void *prepared)
{
	peer_client_release(((struct config_view_resolver *)ctx)->client, prepared);
}

void config_view_resolver_opts(const struct config *cfg, struct config_view_resolver *v,
			       struct resolver_opts *o)
{
	o->wait_ms = (uint64_t)cfg->consul_watch_wait_ms;
	o->max_services = (size_t)cfg->consul_watch_max_services;
	o->max_response = (size_t)cfg->consul_watch_max_bytes;
	o->dns_server = cfg->consul_dns_address;
	o->idle_ms = (uint64_t)cfg->consul_watch_idle_ms;
	o->allowed = resolver_allowed;
	o->panic_threshold = resolver_panic_threshold;
	o->prepare = resolver_prepare;
	o->release = resolver_release;
	o->ctx = v;
}

void config_view_events_from(const struct config *cfg, struct events_settings *s)
{
	s->enabled = cfg->events_enabled;
	snprintf(s->broker_service, sizeof(s->broker_service), "%s", cfg->events_broker_service);
	snprintf(s->broker_address, sizeof(s->broker_address), "%s", cfg->events_broker_address);
	snprintf(s->vhost, sizeof(s->vhost), "%s", cfg->events_vhost);
	snprintf(s->user, sizeof(s->user), "%s", cfg->events_user);
	snprintf(s->password, sizeof(s->password), "%s", cfg->events_password);
	snprintf(s->queue, sizeof(s->queue), "%s", cfg->events_queue);
	s->batch_size = (unsigned)cfg->events_batch_size;
	s->retention_ms = (uint64_t)cfg->events_retention_ms;
}

void config_view_events_settings(void *store, struct events_settings *s)
{
	const struct config *cfg = config_store_get(store);

	config_view_events_from(cfg, s);
	config_store_put(store, cfg);
}

bool config_view_events_enabled(void *store)
{
	const struct config *cfg = config_store_get(store);
	bool on = cfg->events_enabled;

	config_store_put(store, cfg);
	return on;
}

void config_view_http_server(const struct config *cfg, struct http_server_opts *o)
{
	o->address = cfg->service_address;
	o->port = cfg->service_port;
	o->threads = cfg->threads;
	o->read_timeout_ms = cfg->read_timeout_ms;
	o->idle_timeout_ms = cfg->idle_timeout_ms;
	o->max_body_bytes = cfg->max_body_bytes;
}

bool config_view_admin_server(const struct config *cfg, struct http_server_opts *o)
{
	if (cfg->admin_port == 0)
		return false;
	config_view_http_server(cfg, o);
	o->address = cfg->admin_address;
	o->port = cfg->admin_port;
	o->threads = cfg->admin_threads;
	return true;
}

void config_view_check_url(const struct config *cfg, char *url, size_t len)
{
	char host[64]; /* an IPv6 address in brackets */

	if (cfg->admin_port == 0) {
		snprintf(url, len, "http://%s:%d/health", cfg->service_address, cfg->service_port);
		return;
	}
	/* admin.address is numeric (the settings table): it always fits */
	if (!ipaddr_url_host(cfg->admin_address, host, sizeof(host)))
		snprintf(host, sizeof(host), "127.0.0.1");
	snprintf(url, len, "http://%s:%d/health", host, cfg->admin_port);
}

void config_view_consul_service(const struct config *cfg, struct consul_service *svc,
				char *check_url, size_t check_url_len)
{
	config_view_check_url(cfg, check_url, check_url_len);
	*svc = (struct consul_service){
		.id = cfg->service_id,
		.name = cfg->service_name,
		.tags = (const char *const *)cfg->service_tags,
		.n_tags = cfg->n_service_tags,
		.meta_keys = (const char *const *)cfg->service_meta_keys,
		.meta_values = (const char *const *)cfg->service_meta_values,
		.n_meta = cfg->n_service_meta,
		.version = MESHNODE_VERSION,
		.address = cfg->service_address,
		.port = cfg->service_port,
		.check_url = check_url,
		.check_interval_ms = cfg->consul_check_interval_ms,
		.check_timeout_ms = cfg->consul_check_timeout_ms,
		.deregister_after_ms = cfg->consul_deregister_critical_after_ms,
		.connect_native = cfg->connect_enabled,
	};
}

void config_view_apply_maintenance(void *ctx, const struct config *old, const struct config *next)
{
	struct registrar *r = atomic_load((struct registrar * _Atomic *)ctx);

	if (r && next->maintenance != old->maintenance)
		registrar_set_maintenance(r, next->maintenance);
}
