#include "orders/orders_handlers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/params.h"

/* Replies for a failed use case: the caller's fault with its message, the
 * store's unavailability with the service's words for it, anything else
 * with a fixed text (the detail was logged where it arose). */
static void reply_failure(struct http_response *res, enum mn_err e, const char *msg, int64_t id)
{
	switch (e) {
	case MN_INVALID:
	case MN_UNPROCESSABLE: http_reply_error(res, mn_err_http_status(e), "%s", msg); break;
	case MN_NOT_FOUND: http_reply_error(res, 404, "order %lld not found", (long long)id); break;
	case MN_UNAVAILABLE:
		http_reply_error(res, 503, "%s", msg[0] ? msg : "the store is unavailable; try again");
		break;
	default: http_reply_error(res, 500, "internal error"); break;
	}
}

static void reply_order(struct http_response *res, int status, struct order *o)
{
	json_t *j = order_to_json(o);

	order_release(o);
	if (j == NULL) {
		http_reply_error(res, 500, "internal error");
		return;
	}
	http_reply_json(res, status, j);
}

static void create(const struct http_request *req, struct http_response *res, void *ctx)
{
	struct users_peer_trace trace;
	struct order o;
	char err[512] = "", value[24], location[48];
	unsigned retry_after_s;
	enum mn_err e;

	if (!http_require_json(req, res))
		return;
	trace.request_id = req->request_id;
	trace.traceparent = req->header(req, "traceparent");
	order_init(&o);
	e = orders_service_create_order(ctx, req->body, req->body_len, &trace, &o, &retry_after_s,
					err, sizeof(err));
	if (e == MN_UNAVAILABLE && retry_after_s > 0) {
		snprintf(value, sizeof(value), "%u", retry_after_s);
		http_response_add_header(res, "Retry-After", value);
		http_reply_error(res, 503, "no users instance could answer; try again");
		return;
	}
	if (e != MN_OK) {
		reply_failure(res, e, err, 0);
		return;
	}
	snprintf(location, sizeof(location), "/orders/%lld", (long long)o.id);
	http_response_add_header(res, "Location", location);
	reply_order(res, 201, &o);
}

static void list(const struct http_request *req, struct http_response *res, void *ctx)
{
	char err[128];
	struct order *orders;
	size_t n, lim, off;
	enum mn_err e;
	json_t *arr;

	e = http_param_page(req->query, ORDERS_LIMIT_DEFAULT, ORDERS_LIMIT_MAX, &lim, &off, err,
			    sizeof(err));
	if (e != MN_OK) {
		reply_failure(res, e, err, 0);
		return;
	}
	e = orders_service_list(ctx, lim, off, &orders, &n);
	if (e != MN_OK) {
		reply_failure(res, e, "", 0);
		return;
	}
	arr = json_array();
	for (size_t i = 0; arr && i < n; i++) {
		if (json_array_append_new(arr, order_to_json(&orders[i])) != 0) {
			json_decref(arr);
			arr = NULL;
		}
	}
	order_list_free(orders, n);
	if (arr == NULL) {
		http_reply_error(res, 500, "internal error");
		return;
	}
	http_reply_json(res, 200, arr);
}

static void get(const struct http_request *req, struct http_response *res, void *ctx)
{
	struct order o;
	int64_t id;
	enum mn_err e;

	if (!http_param_id(req->params[0], &id)) {
		http_reply_error(res, 400, "invalid order id '%.64s'", req->params[0]);
		return;
	}
	order_init(&o);
	e = orders_service_get(ctx, id, &o);
	if (e != MN_OK) {
		reply_failure(res, e, "", id);
		return;
	}
	reply_order(res, 200, &o);
}

enum mn_err orders_handlers_register(struct http_router *r, struct orders_service *svc)
{
	enum mn_err e;

	if ((e = http_router_add(r, "GET", "/orders", list, svc)) != MN_OK ||
	    (e = http_router_add(r, "POST", "/orders", create, svc)) != MN_OK ||
	    (e = http_router_add(r, "GET", "/orders/{id}", get, svc)) != MN_OK)
		return e;
	return MN_OK;
}
