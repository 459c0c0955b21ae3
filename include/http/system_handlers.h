/* The node's own endpoints: /health, /ready, /metrics and /config. What they
 * report comes from the composition root through callbacks, so this module
 * knows nothing of Consul, the store or the config loader. */
#ifndef MESHNODE_HTTP_SYSTEM_HANDLERS_H
#define MESHNODE_HTTP_SYSTEM_HANDLERS_H

#include "http/router.h"

struct system_handlers {
	/* Adds readiness detail to 'body' (a JSON object) and returns true
	 * when the node is ready to take traffic. */
	bool (*ready)(void *ctx, json_t *body);
	/* One page of the effective configuration for GET /config: the
	 * settings named from 'prefix' (may be "") from 'offset', at most
	 * 'limit' (new reference). */
	json_t *(*config_json)(void *ctx, const char *prefix, size_t offset, size_t limit);
	/* Appends the Prometheus text of every metric. */
	enum mn_err (*metrics_text)(void *ctx, struct buf *out);
	/* Adds detail to GET /health's body ({"status":"ok"}, always 200);
	 * may be NULL. */
	void (*health)(void *ctx, json_t *body);
	void *ctx;
};

/* Registers GET /health, /ready, /metrics and /config. 's' is borrowed and
 * must outlive the router. */
enum mn_err system_handlers_register(struct http_router *r, const struct system_handlers *s);

#endif
