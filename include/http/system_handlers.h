/* The node's own endpoints: /health, /ready, /metrics and /config. They
 * read the sources the composition root hands them (the config in force,
 * the metrics registry, the store's probe, the registrar, the events
 * publisher, the stopping flag) and build their bodies here; they never
 * wait on any of them. */
#ifndef MESHNODE_HTTP_SYSTEM_HANDLERS_H
#define MESHNODE_HTTP_SYSTEM_HANDLERS_H

#include <stdatomic.h>

#include "config/store.h"
#include "consul/registrar.h"
#include "events/publisher.h"
#include "http/router.h"
#include "metrics/metrics.h"
#include "store/store.h"

/* All borrowed. The pointers that may be NULL may also be set after
 * system_handlers_register(), as what they point to is started. */
struct system_handlers {
	struct config_store *config;	 /* the config in force: /config, /ready */
	struct metrics *metrics;	 /* rendered by /metrics */
	const atomic_bool *stopping;	 /* true: /ready answers 503 "stopping" */
	struct store *store;	 /* NULL, or no probe: /ready says nothing of it */
	struct registrar *_Atomic registrar; /* NULL: this node does not register; set
					      * while the server runs */
	struct events_publisher *events; /* NULL: no events; /health's "events" */
	/* NULL: no Connect; else /health's "connect", a new reference (NULL
	 * when out of memory: left out) */
	json_t *(*connect_view)(void *ctx);
	void *connect_ctx;
};

/* Registers GET /health, /ready, /metrics and /config. 's' is borrowed and
 * must outlive the router. */
enum mn_err system_handlers_register(struct http_router *r, const struct system_handlers *s);

/* GET /ready's detail, added to 'body' (a JSON object): maintenance,
 * pending_restart, reason, store, consul and consul_error. true when the
 * node is ready to take traffic. */
bool system_handlers_ready(const struct system_handlers *s, json_t *body);

/* What system_handlers_ready() answers, without building its body: for
 * the meshnode_ready gauge, read at each /metrics scrape. */
bool system_handlers_is_ready(const struct system_handlers *s);

/* The server's explain_not_found hook (http_server_opts), ctx = the
 * system_handlers: a 404 for a path of a module this node does not run
 * says so in msg[len], "/orders is served by the 'orders' module, which
 * this node does not run (service.modules)". false for any other path. */
bool system_handlers_explain_not_found(void *ctx, const char *path, char *msg, size_t len);

#endif
