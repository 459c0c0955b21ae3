#include "http/system_handlers.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "http/params.h"

static const char prometheus_type[] = "text/plain; version=0.0.4; charset=utf-8";

/* GET /health's "events": the backlog, while events are on (the check
 * stays 200: events are asynchronous, a broker away is no reason to take
 * the node out). */
static void health_events(struct events_publisher *events, json_t *body)
{
	struct events_status st;

	if (events == NULL)
		return;
	events_publisher_status(events, &st);
	if (!st.enabled)
		return;
	json_object_set_new(body, "events",
			    json_pack("{s:b, s:s, s:I, s:I, s:f, s:f, s:I, s:I, s:I, s:s}",
				      "connected", st.connected, "broker", st.broker, "pending",
				      (json_int_t)st.pending, "sent", (json_int_t)st.sent,
				      "oldest_pending_age_s",
				      (double)st.oldest_pending_age_ms / 1000.0, "oldest_sent_age_s",
				      (double)st.oldest_sent_age_ms / 1000.0, "pruned",
				      (json_int_t)st.pruned, "confirmed", (json_int_t)st.confirmed,
				      "failed", (json_int_t)st.failed, "last_error", st.last_error));
}

static void health(const struct http_request *req, struct http_response *res, void *ctx)
{
	const struct system_handlers *s = ctx;
	json_t *body = json_pack("{s:s}", "status", "ok");

	(void)req;
	if (body)
		health_events(s->events, body);
	if (body && s->connect_view) {
		json_t *connect = s->connect_view(s->connect_ctx);

		if (connect)
			json_object_set_new(body, "connect", connect);
	}
	http_reply_json(res, 200, body);
}

bool system_handlers_is_ready(const struct system_handlers *s)
{
	char why[64]; /* not shown */

	/* the verdict of system_handlers_ready(), without its body */
	return !atomic_load(s->stopping) &&
	       (!s->store || !s->store->probe || store_ready(s->store, why, sizeof(why)));
}

bool system_handlers_ready(const struct system_handlers *s, json_t *body)
{
	const struct config *cfg = config_store_get(s->config);
	struct registrar *registrar = atomic_load(&s->registrar);
	json_t *pending = json_array();
	bool ok = true;
	char err[256];

	/* what an operator looks for: still ready in maintenance (Consul
	 * takes the node out of ?passing), and what waits for a restart */
	json_object_set_new(body, "maintenance", json_boolean(cfg->maintenance));
	for (size_t i = 0; pending && i < cfg->n_pending_restart; i++)
		json_array_append_new(pending, json_string(cfg->pending_restart[i]));
	json_object_set_new(body, "pending_restart", pending);
	config_store_put(s->config, cfg);
	if (atomic_load(s->stopping)) {
		json_object_set_new(body, "reason", json_string("stopping"));
		ok = false;
	}
	if (s->store && s->store->probe) {
		/* what the background probe saw: never a query from here */
		char why[256];
		bool store_ok = store_ready(s->store, why, sizeof(why));

		json_object_set_new(body, "store", json_string(store_ok ? "ok" : why));
		ok = ok && store_ok;
	}
	if (registrar) {
		bool registered = registrar_registered(registrar);

		json_object_set_new(body, "consul",
				    json_string(registered ? "registered" : "not registered"));
		registrar_last_error(registrar, err, sizeof(err));
		if (!registered && err[0])
			json_object_set_new(body, "consul_error", json_string(err));
	}
	return ok;
}

static void ready(const struct http_request *req, struct http_response *res, void *ctx)
{
	const struct system_handlers *s = ctx;
	json_t *body = json_object();
	bool ok;

	(void)req;
	if (body == NULL) {
		http_reply_error(res, 503, "out of memory");
		return;
	}
	ok = system_handlers_ready(s, body);
	json_object_set_new(body, "status", json_string(ok ? "ready" : "not ready"));
	http_reply_json(res, ok ? 200 : 503, body);
}

static void metrics(const struct http_request *req, struct http_response *res, void *ctx)
{
	const struct system_handlers *s = ctx;

	(void)req;
	buf_reset(&res->body);
	if (metrics_render(s->metrics, &res->body) != MN_OK) {
		log_error("http", "cannot render metrics");
		http_reply_error(res, 500, "cannot render metrics");
		return;
	}
	res->status = 200;
	res->content_type = prometheus_type;
}

/* GET /config is unauthenticated and a KV listing may hold thousands of
 * peers.* settings: a page, as /peers and /users are. */
#define CONFIG_PAGE_DEFAULT 200
#define CONFIG_PAGE_MAX 1000

static void config(const struct http_request *req, struct http_response *res, void *ctx)
{
	const struct system_handlers *s = ctx;
	char prefix[256] = "", err[128];
	const struct config *cfg;
	size_t limit, offset;
	json_t *o;

	if (http_param_page(req->query, CONFIG_PAGE_DEFAULT, CONFIG_PAGE_MAX, &limit, &offset, err,
			    sizeof(err)) != MN_OK) {
		http_reply_error(res, 400, "%s", err);
		return;
	}
	if (req->query && !http_query_get(req->query, "prefix", prefix, sizeof(prefix))) {
		if (http_query_has(req->query, "prefix")) {
			/* not all settings in place of the ones asked for */
			http_reply_error(res, 400, "prefix: over %zu bytes", sizeof(prefix) - 1);
			return;
		}
		prefix[0] = '\0';
	}
	cfg = config_store_get(s->config);
	o = config_document_page(cfg, prefix, offset, limit);
	config_store_put(s->config, cfg);
	if (o == NULL) {
		http_reply_error(res, 500, "cannot show the configuration");
		return;
	}
	http_reply_json(res, 200, o);
}

enum mn_err system_handlers_register(struct http_router *r, const struct system_handlers *s)
{
	enum mn_err err;

	if ((err = http_router_add(r, "GET", "/health", health, (void *)s)) != MN_OK ||
	    (err = http_router_add(r, "GET", "/ready", ready, (void *)s)) != MN_OK ||
	    (err = http_router_add(r, "GET", "/metrics", metrics, (void *)s)) != MN_OK ||
	    (err = http_router_add(r, "GET", "/config", config, (void *)s)) != MN_OK)
		return err;
	return MN_OK;
}

bool system_handlers_explain_not_found(void *ctx, const char *path, char *msg, size_t len)
{
	static const char *const modules[] = {"users", "orders"};
	const struct system_handlers *s = ctx;
	const struct config *cfg = config_store_get(s->config);
	bool found = false;

	for (size_t i = 0; i < sizeof(modules) / sizeof(modules[0]) && !found; i++) {
		size_t n = strlen(modules[i]);

		if (path[0] != '/' || strncmp(path + 1, modules[i], n) != 0 ||
		    (path[1 + n] != '\0' && path[1 + n] != '/') ||
		    config_has_module(cfg, modules[i]))
			continue;
		snprintf(msg, len, "/%s is served by the '%s' module, which this node does not "
			 "run (service.modules)", modules[i], modules[i]);
		found = true;
	}
	config_store_put(s->config, cfg);
	return found;
}
