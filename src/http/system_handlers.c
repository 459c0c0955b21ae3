#include "http/system_handlers.h"

#include "core/log.h"
#include "http/params.h"

static const char prometheus_type[] = "text/plain; version=0.0.4; charset=utf-8";

static void health(const struct http_request *req, struct http_response *res, void *ctx)
{
	const struct system_handlers *s = ctx;
	json_t *body = json_pack("{s:s}", "status", "ok");

	(void)req;
	if (body && s->health)
		s->health(s->ctx, body);
	http_reply_json(res, 200, body);
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
	ok = s->ready(s->ctx, body);
	json_object_set_new(body, "status", json_string(ok ? "ready" : "not ready"));
	http_reply_json(res, ok ? 200 : 503, body);
}

static void metrics(const struct http_request *req, struct http_response *res, void *ctx)
{
	const struct system_handlers *s = ctx;

	(void)req;
	buf_reset(&res->body);
	if (s->metrics_text(s->ctx, &res->body) != MN_OK) {
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
	size_t limit, offset;
	json_t *o;

	if (http_param_page(req->query, CONFIG_PAGE_DEFAULT, CONFIG_PAGE_MAX, &limit, &offset, err,
			    sizeof(err)) != MN_OK) {
		http_reply_error(res, 400, "%s", err);
		return;
	}
	if (req->query && !http_query_get(req->query, "prefix", prefix, sizeof(prefix)))
		prefix[0] = '\0';
	o = s->config_json(s->ctx, prefix, offset, limit);
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
