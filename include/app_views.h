/* The configuration as each module reads it: the composition root's
 * adapters, beside app.c, which hands them to the modules. The modules
 * never see the configuration: they take callbacks and plain option
 * structs, and these fill them from the config store (the config in
 * force: dynamic settings apply at the next call) or from a config (static
 * settings, read once at start). One module's view beside another's, so
 * that a setting's way into its module is found in one file. */
#ifndef MESHNODE_APP_VIEWS_H
#define MESHNODE_APP_VIEWS_H

#include <stdbool.h>
#include <stddef.h>

#include "config/store.h"
#include "consul/agent.h"
#include "consul/registrar.h"
#include "events/publisher.h"
#include "http/server.h"
#include "orders/orders_service.h"
#include "peers/peer_client.h"
#include "peers/resolver.h"
#include "peers/users_peer_http.h"

/* ---- peers ---------------------------------------------------------------- */

/* The services a node with 'cfg' may call: "users" when it runs the orders
 * module, those named under peers.<name>, and the broker's service when
 * the publisher finds the broker through Consul (orders, events.enabled,
 * no events.broker_address). */
bool config_view_peer_allowed(const struct config *cfg, const char *service);

/* peers.<name>.* in force, for each peer call: the settings' strings stay
 * the config's until put() ('store' borrowed, must outlive the source). */
struct peer_settings_source config_view_peer_settings(struct config_store *store);

/* The resolver's options: its bounds from consul.watch_* and
 * consul.dns_address of 'cfg' (static; the strings borrowed from it), and
 * its four callbacks over one ctx, 'v', which the caller keeps (borrowed
 * by the resolver): allowed (config_view_peer_allowed() on the config in
 * force) and panic_threshold (peers.<name>.panic_threshold in force) read
 * v->store; prepare and release are v->client's. The rest of *o (consul,
 * clock, backoff) is left to the caller. */
struct config_view_resolver {
	struct config_store *store;
	struct peer_client *client;
};
void config_view_resolver_opts(const struct config *cfg, struct config_view_resolver *v,
			       struct resolver_opts *o);

/* ---- events ---------------------------------------------------------------- */

/* events.* of 'cfg' copied into *s. */
void config_view_events_from(const struct config *cfg, struct events_settings *s);

/* events.* in force for the publisher's each round (settings, ctx = the
 * store), and events.enabled for the orders service (enabled; its stored
 * hook is left to the caller). */
void config_view_events_settings(void *store, struct events_settings *s);
bool config_view_events_enabled(void *store);

/* ---- http ------------------------------------------------------------------ */

/* The listener's settings (service.address, service.port, server.*) of
 * 'cfg' in *o (strings borrowed); the rest of *o is left to the caller. */
void config_view_http_server(const struct config *cfg, struct http_server_opts *o);

/* The admin listener's settings: those of config_view_http_server() with
 * admin.address, admin.port and admin.threads in their place. false, *o
 * untouched, when admin.port is 0 (the listener is off). */
bool config_view_admin_server(const struct config *cfg, struct http_server_opts *o);

/* ---- consul ---------------------------------------------------------------- */

/* The URL of the agent's HTTP check into url[len]: /health on the admin
 * listener when it is on (an unspecified admin.address, 0.0.0.0 or ::, is
 * reached on the loopback of its family), else on service.address and
 * service.port as given. */
void config_view_check_url(const struct config *cfg, char *url, size_t len);

/* The service the registrar registers, from service.* and consul.* of
 * 'cfg'; its strings are borrowed from 'cfg', and its check URL
 * (config_view_check_url()) is written to check_url. Its Address and Port
 * are the service port's, whether the admin listener is on or not; with
 * connect.enabled it registers as Connect native. */
void config_view_consul_service(const struct config *cfg, struct consul_service *svc,
				char *check_url, size_t check_url_len);

/* The live configuration's apply hook (config_live_opts.apply): a changed
 * maintenance goes to the registrar '*ctx' points to (a struct
 * registrar *_Atomic, NULL while none runs). */
void config_view_apply_maintenance(void *ctx, const struct config *old, const struct config *next);

#endif
