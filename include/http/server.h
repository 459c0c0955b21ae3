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
	/* Optional TLS: when set, the listener speaks TLS only, and this
	 * configures the SSL_CTX civetweb made for it (an OpenSSL SSL_CTX *,
	 * owned by civetweb, freed when the server stops): certificate, key,
	 * what the client must present, and a session id context (civetweb
	 * sets none when the application configures the context, and OpenSSL
	 * refuses to resume a session that asked for a client certificate
	 * without one). 0 when done, -1 to make the start fail. Needs
	 * http_server_tls_init() to have succeeded. */
	int (*tls_setup)(void *ssl_ctx, void *ctx);
	void *tls_ctx;
	/* Optional: asked before each request is routed, with the client's
	 * certificate (an X509 *, borrowed; NULL when none): false closes
	 * the connection at once, unanswered, the request never routed nor
	 * observed. Called on the connection's worker. */
	bool (*gate)(void *ctx, void *peer_cert);
	void *gate_ctx;
};

struct http_server;

/* Makes TLS work in civetweb (docs/connect.md, "TLS runtime"): loads the
 * OpenSSL shims from 'shim_dir' (tls_runtime_load(), http/tls_runtime.h)
 * and initializes civetweb's TLS, once for the process; call it before any
 * server starts. MN_OK only when civetweb reports TLS up; later calls
 * then return MN_OK at once. MN_IO (or tls_runtime_load()'s code) with the
 * reason in err otherwise: shims that do not load may be given again, but
 * once civetweb itself refused TLS every later call fails the same way
 * (civetweb 1.15 would claim TLS on a second try without having it). The
 * library reference taken here is never given back, so stopping servers
 * never uninitializes TLS. Thread-safe. */
enum mn_err http_server_tls_init(const char *shim_dir, char *err, size_t errlen);

/* Starts listening and serving. NULL on failure with the reason in err
 * (the port in use, say; TLS asked for without http_server_tls_init()). */
struct http_server *http_server_start(const struct http_server_opts *opts, char *err,
				      size_t errlen);

/* The port 's' listens on: opts.port, or the one the kernel chose when it
 * was 0; 0 when civetweb did not say. */
int http_server_port(const struct http_server *s);

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
