#include "peers/peers_handlers.h"

#include "http/params.h"

/* Instances in one view: a page, as /users lists users. */
#define VIEW_PAGE_DEFAULT 100
#define VIEW_PAGE_MAX 1000

static void peer_view(const struct http_request *req, struct http_response *res, void *ctx)
{
	const struct peers_handlers *h = ctx;
	const char *service = req->params[0];
	struct peer_settings s;
	const void *token;
	json_t *view;
	size_t limit, offset;
	char err[256];
	enum mn_err e;

	if (!resolver_name_valid(service)) {
		http_reply_error(res, 400, "invalid service name");
		return;
	}
	if (http_param_page(req->query, VIEW_PAGE_DEFAULT, VIEW_PAGE_MAX, &limit, &offset, err,
			    sizeof(err)) != MN_OK) {
		http_reply_error(res, 400, "%s", err);
		return;
	}
	token = h->settings->get(h->settings->ctx, service, &s);
	e = peer_client_view(h->client, service, &s, offset, limit, &view, err, sizeof(err));
	if (e == MN_OK) {
		json_object_set_new(view, "lb", json_string(s.lb));
		json_object_set_new(view, "timeout_ms", json_integer((json_int_t)s.timeout_ms));
		json_object_set_new(view, "retries", json_integer(s.retries));
		json_object_set_new(view, "panic_threshold", json_integer(s.panic_threshold));
	}
	h->settings->put(h->settings->ctx, token);
	switch (e) {
	case MN_OK:
		break;
	case MN_NOT_FOUND:
		http_reply_error(res, 404, "%s", err);
		return;
	case MN_INVALID:
		http_reply_error(res, 400, "%s", err);
		return;
	case MN_UNAVAILABLE:
		http_reply_error(res, 503, "%s", err);
		return;
	default:
		http_reply_error(res, 500, "cannot show the peer view");
		return;
	}
	http_reply_json(res, 200, view);
}

enum mn_err peers_handlers_register(struct http_router *r, const struct peers_handlers *h)
{
	return http_router_add(r, "GET", "/peers/{service}", peer_view, (void *)h);
}
