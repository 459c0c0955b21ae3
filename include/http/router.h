/* Route table: patterns such as "/users/{id}" with method dispatch. Pure logic,
 * no I/O; the server asks it which handler serves a request. */
#ifndef MESHNODE_HTTP_ROUTER_H
#define MESHNODE_HTTP_ROUTER_H

#include "http/http.h"

struct http_router;

enum http_match {
	HTTP_MATCH_OK,
	HTTP_MATCH_NOT_FOUND,          /* no pattern matches the path */
	HTTP_MATCH_METHOD_NOT_ALLOWED, /* a pattern matches, not for this method */
};

struct http_route_match {
	http_handler_fn fn;
	void *ctx;
	const char *pattern;                  /* borrowed from the router */
	const char *params[HTTP_MAX_PARAMS];  /* point into 'storage' */
	size_t nparams;
	char storage[256];
	char allow[96];                       /* "GET, HEAD, POST, OPTIONS" */
};

/* A new empty router; NULL when out of memory. */
struct http_router *http_router_create(void);
void http_router_destroy(struct http_router *r);

/* Adds a route. 'pattern' segments are literals or "{name}" (one whole
 * segment, at most HTTP_MAX_PARAMS per pattern); 'method' is upper case.
 * The strings are copied. MN_INVALID for a malformed pattern or a duplicate
 * method+pattern, MN_NOMEM when out of memory. */
enum mn_err http_router_add(struct http_router *r, const char *method, const char *pattern,
			    http_handler_fn fn, void *ctx);

/* Finds the route for 'method' and 'path' (decoded, no query). HEAD is
 * served by the path's GET route unless it has its own. On HTTP_MATCH_OK
 * fills fn, ctx, pattern and params; whenever the path is known, fills
 * allow with every method it answers, HEAD with GET and always OPTIONS
 * (for 405 replies and OPTIONS requests). Parameters longer than the
 * storage do not match. */
enum http_match http_router_match(const struct http_router *r, const char *method,
				  const char *path, struct http_route_match *m);

/* Every method some route answers, HEAD with GET and always OPTIONS, as an
 * Allow header value ("GET, HEAD, POST, OPTIONS"), into out[outlen]. */
void http_router_allow_all(const struct http_router *r, char *out, size_t outlen);

#endif
