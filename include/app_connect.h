/* The composition of Connect for a node with connect.enabled
 * (docs/connect.md, "Running a Connect native node"), beside app.c, which
 * calls it: the TLS runtime, the identity followed from the agent, the
 * authorizer, the service port's mutual TLS and per-request gate, and
 * /health's "connect". Builds and tears down only; the work is the
 * connect/ modules'.
 *
 * In app.c's order: app_connect_start() before any listener starts (the
 * TLS runtime must come first), the admin listener, app_connect_wait()
 * for the first leaf, app_connect_server() on the service port's options,
 * the service listener; app_connect_destroy() once the listeners are
 * stopped (no handshake or request can reach it any more). */
#ifndef MESHNODE_APP_CONNECT_H
#define MESHNODE_APP_CONNECT_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config/store.h"
#include "connect/connect_metrics.h"
#include "consul/client.h"
#include "core/error.h"
#include "http/server.h"

/* How long a start waits for the agent's first leaf and roots. */
#define APP_CONNECT_FIRST_LEAF_MS 30000

struct app_connect;

struct app_connect_opts {
	const char *tls_dir;		 /* MESHNODE_TLS_DIR: "" for build/meshnode
					    (tls/ next to the executable) */
	struct consul *consul;		 /* borrowed, outlives the handle */
	const struct config *cfg;	 /* the boot config (static settings), borrowed */
	struct config_store *store;	 /* the config in force: connect.authz_fail_open */
	struct connect_metrics *metrics; /* registered (connect_metrics_register),
					    borrowed; its identity is set here */
};

/* Initializes the TLS runtime (http_server_tls_init() from the shim
 * directory), starts following the identity of service.name and its
 * intentions, and makes the service port's TLS. NULL with the reason in
 * 'err' ("cannot load '/usr/lib/meshnode/libssl.so': ...") on any
 * failure, nothing left running. */
struct app_connect *app_connect_start(const struct app_connect_opts *o, char *err, size_t errlen);

/* Waits for the first identity (a leaf and its roots accepted), up to
 * 'ms', looking at '*cancel' (may be NULL) every 100 ms. MN_OK when it
 * came or '*cancel' turned true (the caller looks); MN_TIMEOUT with the
 * reason in 'err'. */
enum mn_err app_connect_wait(struct app_connect *c, uint64_t ms, const atomic_bool *cancel,
			     char *err, size_t errlen);

/* The service port's TLS and gate into *o (tls_setup, tls_ctx, gate,
 * gate_ctx); the rest of *o untouched. */
void app_connect_server(struct app_connect *c, struct http_server_opts *o);

/* The identity followed (borrowed, lives until app_connect_destroy()):
 * for the peer client's calls out (peer_client_set_connect()). */
struct connect_identity *app_connect_identity(struct app_connect *c);

/* system_handlers.connect_view, ctx = the handle: /health's "connect"
 * (connect_snapshot_view() of the current identity), a new reference. */
json_t *app_connect_health(void *ctx);

/* Stops the watches and frees everything; the metrics' identity is reset
 * to NULL first. Only once no listener configured with it runs. NULL does
 * nothing. */
void app_connect_destroy(struct app_connect *c);

#endif
