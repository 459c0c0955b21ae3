/* The HTTP server: civetweb behind a router. The only module that includes
 * civetweb.h. Each response (status line, headers, body) leaves in one write:
 * system calls are what a request costs on the machines measured
 * (docs/benchmarks.md). */
#ifndef MESHNODE_HTTP_SERVER_H
#define MESHNODE_HTTP_SERVER_H

#include <stdint.h>

#include "core/error.h"
#include "http/router.h"

/* Called once per answered request, after the response was sent. 'route' is
 * the matched pattern, or NULL when no route matched (404/405/400/413);
 * 'request_id' the X-Request-ID the response carried. */
typedef void (*http_observe_fn)(void *ctx, const char *method, const char *route, int status,
				double seconds, const char *request_id);

struct http_server_opts {
	const char *address;         /* "127.0.0.1" */
	int port;
	int threads;                 /* civetweb serves one connection per thread */
	int read_timeout_ms;         /* socket timeout while a request is in flight */
	int idle_timeout_ms;         /* keep-alive idle timeout */
	int64_t max_body_bytes;      /* larger bodies are answered 413 unread */
	const struct http_router *router; /* borrowed; must outlive the server */
	/* Paths still answered while the server drains (NULL-terminated,
	 * borrowed): the probes an operator and Consul read. */
	const char *const *drain_paths;
	http_observe_fn observe;     /* optional */
	void *observe_ctx;
	/* Optional: for a path no route serves, a better 404 message than
	 * "no route" into msg[len] (a route another configuration serves);
	 * false to keep the plain one. */
	bool (*explain_not_found)(void *ctx, const char *path, char *msg, size_t len);
	void *explain_ctx;
};

struct http_server;

/* Starts listening and serving. NULL on failure with the reason in err
 * (the port in use, say). */
struct http_server *http_server_start(const struct http_server_opts *opts, char *err,
				      size_t errlen);

/* Starts draining: from now on every answer closes its connection, and a
 * request for a path outside opts.drain_paths is answered 503 at once.
 * Requests already being handled go on. NULL is a no-op. */
void http_server_drain(struct http_server *s);

/* Drains (if not yet), waits until every request being handled has sent
 * its answer, then stops accepting, closes the idle connections, joins the
 * workers and frees the server. Unbounded: a caller that needs a bound
 * runs it on a thread of its own. NULL is a no-op. */
void http_server_stop(struct http_server *s);

/* http_server_stop() within 'timeout_ms': true when the server stopped in
 * time (and is freed); false when the bound passed first: the server is
 * then abandoned, its stop going on in a thread of its own, and nothing
 * its requests may touch can be freed (the process is about to exit).
 * NULL: true. */
bool http_server_stop_within(struct http_server *s, int timeout_ms);

#endif
