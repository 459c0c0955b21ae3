/* One request through a router, as the server would run it, for the unit
 * tests of handlers (users, orders, peers). Header-only; include after
 * <cmocka.h>. */
#ifndef MESHNODE_TESTS_ROUTE_CALL_H
#define MESHNODE_TESTS_ROUTE_CALL_H

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http/http.h"
#include "http/router.h"

/* The request's headers and id; NULL members: absent ("req-1" for the id). */
struct route_headers {
	const char *content_type;
	const char *traceparent;
	const char *request_id;
};

static inline const char *route_header(const struct http_request *req, const char *name)
{
	const struct route_headers *h = req->impl;

	if (h && strcasecmp(name, "Content-Type") == 0)
		return h->content_type;
	if (h && strcasecmp(name, "traceparent") == 0)
		return h->traceparent;
	return NULL;
}

/* Matches 'method' and 'target' (path and query) in 'router' (the route
 * must exist) and runs its handler with 'body' (NULL: none) and 'h' (NULL:
 * no headers); the reply is in 'res', released and initialised first. */
static inline void route_call(struct http_router *router, struct http_response *res,
			      const char *method, const char *target, const char *body,
			      const struct route_headers *h)
{
	struct http_route_match m;
	struct http_request req;
	char path[256];
	const char *query = strchr(target, '?');

	snprintf(path, sizeof(path), "%.*s", query ? (int)(query - target) : (int)strlen(target),
		 target);
	http_response_release(res);
	http_response_init(res);
	assert_int_equal(http_router_match(router, method, path, &m), HTTP_MATCH_OK);
	req = (struct http_request){
		.method = method,
		.path = path,
		.query = query ? query + 1 : NULL,
		.body = body ? body : "",
		.body_len = body ? strlen(body) : 0,
		.request_id = h && h->request_id ? h->request_id : "req-1",
		.route = m.pattern,
		.nparams = m.nparams,
		.header = route_header,
		.impl = (void *)h,
	};
	for (size_t i = 0; i < m.nparams; i++)
		req.params[i] = m.params[i];
	m.fn(&req, res, m.ctx);
}

/* The reply's body, "" when it has none. */
static inline const char *route_body(const struct http_response *res)
{
	return res->body.data ? res->body.data : "";
}

/* The reply is 'status' with exactly 'body' as JSON and no extra header. */
static inline void route_expect(const struct http_response *res, int status, const char *body)
{
	assert_int_equal(res->status, status);
	assert_string_equal(route_body(res), body);
	assert_string_equal(res->content_type, "application/json");
	assert_int_equal(res->headers_len, 0);
}

#endif
