/* The request and response types every handler works with. Handlers never see
 * civetweb: the server module fills a `struct http_request`, calls the matched
 * handler, and sends the `struct http_response` it filled in one write. */
#ifndef MESHNODE_HTTP_HTTP_H
#define MESHNODE_HTTP_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

#define HTTP_MAX_PARAMS 4
#define HTTP_REQUEST_ID_MAX 64

struct http_request {
	const char *method;       /* "GET", borrowed */
	const char *path;         /* path without the query, borrowed */
	const char *query;        /* raw query string, NULL when absent */
	const char *body;         /* NUL-terminated copy of the body, "" when none */
	size_t body_len;
	const char *request_id;   /* the caller's X-Request-ID or a new one */
	const char *route;        /* the matched pattern ("/users/{id}") */
	const char *params[HTTP_MAX_PARAMS]; /* path parameters in pattern order */
	size_t nparams;
	/* Header lookup, case-insensitive; NULL when absent. */
	const char *(*header)(const struct http_request *req, const char *name);
	void *impl; /* the server's private connection data */
	/* Over TLS, the certificate the client presented (an OpenSSL X509 *,
	 * borrowed for the request); NULL over plain HTTP or without one. */
	const void *peer_cert;
};

/* Extra response headers are kept inline: a handful at most. */
#define HTTP_RESPONSE_HEADERS_MAX 512

struct http_response {
	int status;
	const char *content_type; /* static string; NULL means no body type */
	struct buf body;
	char headers[HTTP_RESPONSE_HEADERS_MAX]; /* "Name: value\r\n" lines */
	size_t headers_len;
};

typedef void (*http_handler_fn)(const struct http_request *req, struct http_response *res,
				void *ctx);

/* Response bodies are capped: a handler cannot build an unbounded reply. */
#define HTTP_RESPONSE_BODY_MAX (64u << 20)

void http_response_init(struct http_response *res);
void http_response_release(struct http_response *res);

/* Sets 'status' and the body to the JSON text of 'body' (steals the
 * reference; NULL means no body, as for 204). On an encoding failure the
 * response becomes a 500 error. */
void http_reply_json(struct http_response *res, int status, json_t *body);

/* Sets 'status' and {"error":"<formatted message>"}. A 503 also gets
 * "Retry-After: 1" unless the response has a Retry-After already. */
void http_reply_error(struct http_response *res, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Sets 'status' and a body of 'len' bytes of 'content_type' (static string). */
void http_reply_raw(struct http_response *res, int status, const char *content_type,
		    const char *body, size_t len);

/* Adds "name: value\r\n". Fails (false) when the header block is full or the
 * value holds CR or LF. */
bool http_response_add_header(struct http_response *res, const char *name, const char *value);

/* Copies the decoded value of query parameter 'name' into out[outlen].
 * Returns true when present (and it fit), false otherwise. */
bool http_query_get(const char *query, const char *name, char *out, size_t outlen);

/* true when query parameter 'name' is present, whatever its value: tells a
 * value too long for http_query_get()'s buffer from an absent one. */
bool http_query_has(const char *query, const char *name);

#endif
