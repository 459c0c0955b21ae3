#include "users/users_handlers.h"

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
	case MN_CONFLICT:
		http_reply_error(res, mn_err_http_status(e), "%s", msg);
		break;
	case MN_NOT_FOUND:
		http_reply_error(res, 404, "user %lld not found", (long long)id);
		break;
	case MN_UNAVAILABLE:
		http_reply_error(res, 503, "%s", msg[0] ? msg : "the store is unavailable; try again");
		break;
	default:
		http_reply_error(res, 500, "internal error");
		break;
	}
}

static bool path_id(const struct http_request *req, struct http_response *res, int64_t *id)
{
	if (http_param_id(req->params[0], id))
		return true;
	http_reply_error(res, 400, "invalid user id '%.64s'", req->params[0]);
	return false;
}

static void reply_user(struct http_response *res, int status, struct user *u)
{
	json_t *o = user_to_json(u);

	user_release(u);
	if (o == NULL) {
		http_reply_error(res, 500, "internal error");
		return;
	}
	http_reply_json(res, status, o);
}

static void create(const struct http_request *req, struct http_response *res, void *ctx)
{
	struct user u;
	char err[256] = "", location[48];
	enum mn_err e;

	if (!http_require_json(req, res))
		return;
	user_init(&u);
	e = users_service_create_user(ctx, req->body, req->body_len, &u, err, sizeof(err));
	if (e != MN_OK) {
		reply_failure(res, e, err, 0);
		return;
	}
	snprintf(location, sizeof(location), "/users/%lld", (long long)u.id);
	http_response_add_header(res, "Location", location);
	reply_user(res, 201, &u);
}

static void list(const struct http_request *req, struct http_response *res, void *ctx)
{
	char err[128];
	struct user *users;
	size_t n, lim, off;
	enum mn_err e;
	json_t *arr;

	e = http_param_page(req->query, USERS_LIMIT_DEFAULT, USERS_LIMIT_MAX, &lim, &off, err,
			    sizeof(err));
	if (e != MN_OK) {
		reply_failure(res, e, err, 0);
		return;
	}
	e = users_service_list(ctx, lim, off, &users, &n);
	if (e != MN_OK) {
		reply_failure(res, e, "", 0);
		return;
	}
	arr = json_array();
	for (size_t i = 0; arr && i < n; i++) {
		if (json_array_append_new(arr, user_to_json(&users[i])) != 0) {
			json_decref(arr);
			arr = NULL;
		}
	}
	user_list_free(users, n);
	if (arr == NULL) {
		http_reply_error(res, 500, "internal error");
		return;
	}
	http_reply_json(res, 200, arr);
}

static void get(const struct http_request *req, struct http_response *res, void *ctx)
{
	struct user u;
	int64_t id;
	enum mn_err e;

	if (!path_id(req, res, &id))
		return;
	user_init(&u);
	e = users_service_get(ctx, id, &u);
	if (e != MN_OK) {
		reply_failure(res, e, "", id);
		return;
	}
	reply_user(res, 200, &u);
}

static void update(const struct http_request *req, struct http_response *res, void *ctx)
{
	struct user u;
	char err[256] = "";
	int64_t id;
	enum mn_err e;

	if (!path_id(req, res, &id) || !http_require_json(req, res))
		return;
	user_init(&u);
	e = users_service_update(ctx, id, req->body, req->body_len, &u, err, sizeof(err));
	if (e != MN_OK) {
		reply_failure(res, e, err, id);
		return;
	}
	reply_user(res, 200, &u);
}

static void delete(const struct http_request *req, struct http_response *res, void *ctx)
{
	char err[256] = "";
	int64_t id;
	enum mn_err e;

	if (!path_id(req, res, &id))
		return;
	e = users_service_delete(ctx, id, err, sizeof(err));
	if (e != MN_OK) {
		reply_failure(res, e, err, id);
		return;
	}
	http_reply_json(res, 204, NULL);
}

enum mn_err users_handlers_register(struct http_router *r, struct users_service *svc)
{
	enum mn_err e;

	if ((e = http_router_add(r, "GET", "/users", list, svc)) != MN_OK ||
	    (e = http_router_add(r, "POST", "/users", create, svc)) != MN_OK ||
	    (e = http_router_add(r, "GET", "/users/{id}", get, svc)) != MN_OK ||
	    (e = http_router_add(r, "PUT", "/users/{id}", update, svc)) != MN_OK ||
	    (e = http_router_add(r, "DELETE", "/users/{id}", delete, svc)) != MN_OK)
		return e;
	return MN_OK;
}
