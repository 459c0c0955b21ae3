/* HTTP client over libcurl: the only module that includes curl/curl.h. One
 * `struct httpc` wraps one reusable easy handle (keep-alive across calls); it
 * is used by one thread at a time. */
#ifndef MESHNODE_HTTP_CLIENT_H
#define MESHNODE_HTTP_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/error.h"

struct httpc;

/* An https request's TLS. The PEM members (borrowed, need not be
 * NUL-terminated) hand libcurl a client certificate, its key and the CA
 * certificates from memory instead of files: a Connect leaf and its roots.
 * libcurl reuses a kept-alive connection, or resumes a TLS session, only
 * for a request with the same URL host and port and the same certificate
 * and CA text: a new leaf or new roots make new connections while those
 * made with the old ones finish. */
struct httpc_tls {
	const char *ca_file;      /* CONSUL_CACERT */
	const char *cert_file;    /* CONSUL_CLIENT_CERT */
	const char *key_file;     /* CONSUL_CLIENT_KEY */
	bool insecure;            /* CONSUL_HTTP_SSL_VERIFY=false: no verification */
	const char *ca_pem;       /* in memory, PEM; may be NULL */
	size_t ca_pem_len;
	const char *cert_pem;     /* the certificate, then its chain */
	size_t cert_pem_len;
	const char *key_pem;      /* its private key */
	size_t key_pem_len;
	bool no_verify_host;      /* the URL's host is not looked for in the
				     peer's certificate (ssl_ctx_fn checks
				     the peer's identity instead) */
	bool http1;               /* HTTP/1.1 only: no ALPN "h2" offered */
	/* Called with each new connection's SSL_CTX (OpenSSL's SSL_CTX *,
	 * seen here as void *: only connect/ includes OpenSSL), after
	 * libcurl configured it and before the handshake; not called for a
	 * reused connection. Nonzero refuses the connection (MN_IO). 'arg'
	 * must stay valid for the whole request. May be NULL. */
	int (*ssl_ctx_fn)(void *ssl_ctx, void *arg);
	void *ssl_ctx_arg;
};

struct httpc_request {
	const char *method;            /* "GET", "PUT", ... */
	const char *url;               /* http:// or https:// only */
	const char *const *headers;    /* NULL-terminated "Name: value" list, may be NULL */
	const char *body;              /* may be NULL */
	size_t body_len;
	long timeout_ms;               /* whole transfer */
	long connect_timeout_ms;
	size_t max_response;           /* cap on the response body */
	const struct httpc_tls *tls;   /* may be NULL */
	const char *capture_header;    /* one response header to keep, may be NULL */
	const char *connect_to;        /* "HOST:PORT:ADDR:PORT": reach the URL's host at
					  another address (libcurl CONNECT_TO), may be NULL */
	const atomic_bool *cancel;     /* when it turns true the transfer aborts */
	long ack_timeout_ms;           /* bytes sent and not acknowledged by the
					  peer's TCP for this long end the transfer
					  as MN_TIMEOUT (a host cut off mid-call on a
					  kept-alive connection); 0: off */
};

struct httpc_response {
	long status;                   /* 0 when no response arrived */
	struct buf body;
	char captured[128];            /* the value of capture_header, "" when absent */
	bool sent;                     /* any of the request went out (a retry of a
					  non-idempotent request is safe only when not) */
	long connects;                 /* new connections the request made (0: a
					  kept-alive one was reused) */
};

/* Global libcurl setup; call once before threads start. */
enum mn_err httpc_global_init(void);
void httpc_global_cleanup(void);

/* A new client; NULL when out of memory. */
struct httpc *httpc_create(void);
void httpc_destroy(struct httpc *h);

void httpc_response_init(struct httpc_response *res);
void httpc_response_release(struct httpc_response *res);

/* Performs one request. MN_OK when a response arrived (any status); then
 * res->status and res->body hold it. Otherwise MN_UNAVAILABLE (could not
 * connect), MN_TIMEOUT, MN_TOO_LARGE (body over the cap), MN_INVALID (bad
 * URL or scheme), MN_IO (anything else, including cancel), with detail in err. */
enum mn_err httpc_perform(struct httpc *h, const struct httpc_request *req,
			  struct httpc_response *res, char *err, size_t errlen);

/* The seam between the modules that make HTTP calls (the Consul client and
 * its watches, the peer client) and libcurl. Production uses httpc_libcurl;
 * unit tests pass a table-driven fake fed with answers captured from the
 * real agent. A handle from create() is used by one thread at a time and
 * may be of the transport's own type (callers never look inside it);
 * perform() has httpc_perform()'s contract, 'cancel' included. */
struct httpc_transport {
	struct httpc *(*create)(void *ctx);
	void (*destroy)(void *ctx, struct httpc *h);
	enum mn_err (*perform)(void *ctx, struct httpc *h, const struct httpc_request *req,
			       struct httpc_response *res, char *err, size_t errlen);
	void *ctx;
};

/* libcurl: httpc_create(), httpc_destroy(), httpc_perform(). */
extern const struct httpc_transport httpc_libcurl;

/* 's' percent-encoded for use as one URL path segment or query value
 * (new allocation, free with free()); NULL when out of memory. */
char *httpc_escape(const char *s);

#endif
