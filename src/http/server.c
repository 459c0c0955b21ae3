#include "http/server.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/backoff.h"
#include "core/clock.h"
#include "core/log.h"

struct http_server {
	struct mg_context *ctx;
	struct http_server_opts opts;
	_Atomic int inflight;
	atomic_bool stopped;
};

/* What the request's generic header lookup needs. */
struct conn_ref {
	struct mg_connection *conn;
};

static const char *request_header(const struct http_request *req, const char *name)
{
	const struct conn_ref *ref = req->impl;

	return mg_get_header(ref->conn, name);
}

/* A caller's request ID is echoed only when it is short and plain, so it can
 * never smuggle anything into a header or a log line. */
static bool request_id_acceptable(const char *id)
{
	size_t n = 0;

	if (id == NULL)
		return false;
	for (; id[n]; n++) {
		char c = id[n];

		if (n >= HTTP_REQUEST_ID_MAX - 1)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.' || c == ':'))
			return false;
	}
	return n > 0;
}

static void request_id_new(char out[HTTP_REQUEST_ID_MAX])
{
	static _Thread_local uint64_t rng;
	uint64_t a, b;

	if (rng == 0) {
		if (getrandom(&rng, sizeof(rng), 0) != (ssize_t)sizeof(rng) || rng == 0)
			rng = clock_monotonic_ns() | 1;
	}
	a = mn_rand_next(&rng);
	b = mn_rand_next(&rng);
	snprintf(out, HTTP_REQUEST_ID_MAX, "%016llx%016llx", (unsigned long long)a,
		 (unsigned long long)b);
}

/* Sends the response in ONE mg_write: the status line and headers are
 * formatted in front of the body in a single buffer. */
static void send_response(struct mg_connection *conn, const struct http_response *res,
			  const char *request_id, bool close, bool keep_alive_10)
{
	char head[1024], stackbuf[8192];
	size_t body_len = res->body.len;
	char *out = stackbuf;
	int n;

	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %d %s\r\n"
		     "%s%s%s"
		     "Content-Length: %zu\r\n"
		     "X-Request-ID: %s\r\n"
		     "%s"
		     "%s\r\n",
		     res->status, mn_http_reason(res->status),
		     res->content_type ? "Content-Type: " : "",
		     res->content_type ? res->content_type : "", res->content_type ? "\r\n" : "",
		     body_len, request_id, res->headers,
		     close ? "Connection: close\r\n" : (keep_alive_10 ? "Connection: keep-alive\r\n" : ""));
	if (n < 0 || (size_t)n >= sizeof(head))
		return;
	if ((size_t)n + body_len > sizeof(stackbuf)) {
		out = malloc((size_t)n + body_len);
		if (out == NULL) {
			log_error("http", "out of memory sending a %zu byte response", body_len);
			return;
		}
	}
	memcpy(out, head, (size_t)n);
	if (body_len)
		memcpy(out + n, res->body.data, body_len);
	mg_write(conn, out, (size_t)n + body_len);
	if (out != stackbuf)
		free(out);
}

/* Reads the whole body into 'body', up to the cap. MN_TOO_LARGE past it. */
static enum mn_err read_body(struct mg_connection *conn, struct buf *body)
{
	char chunk[16384];

	for (;;) {
		int n = mg_read(conn, chunk, sizeof(chunk));

		if (n < 0)
			return MN_IO;
		if (n == 0)
			return MN_OK;
		enum mn_err err = buf_append(body, chunk, (size_t)n);
		if (err != MN_OK)
			return err;
	}
}

static bool header_has_token(const char *value, const char *token)
{
	size_t tlen = strlen(token);

	for (const char *p = value; p && *p;) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		size_t len = strcspn(p, ",");
		size_t trimmed = len;
		while (trimmed && (p[trimmed - 1] == ' ' || p[trimmed - 1] == '\t'))
			trimmed--;
		if (trimmed == tlen && strncasecmp(p, token, tlen) == 0)
			return true;
		p += len;
	}
	return false;
}

static int begin_request(struct mg_connection *conn)
{
	const struct mg_request_info *ri = mg_get_request_info(conn);
	struct http_server *s = mg_get_user_data(mg_get_context(conn));
	uint64_t t0 = clock_monotonic_ns();
	struct http_route_match match;
	struct http_response res;
	struct http_request req;
	struct conn_ref ref = {conn};
	struct buf body;
	char request_id[HTTP_REQUEST_ID_MAX];
	const char *given_id, *te, *connection;
	const char *route = NULL;
	bool close = false, keep_alive_10 = false;
	int status;

	atomic_fetch_add(&s->inflight, 1);
	http_response_init(&res);
	buf_init(&body, (size_t)s->opts.max_body_bytes);

	given_id = mg_get_header(conn, "X-Request-ID");
	if (request_id_acceptable(given_id))
		snprintf(request_id, sizeof(request_id), "%s", given_id);
	else
		request_id_new(request_id);

	connection = mg_get_header(conn, "Connection");
	if (connection && header_has_token(connection, "close"))
		close = true;
	else if (strcmp(ri->http_version, "1.0") == 0)
		keep_alive_10 = connection && header_has_token(connection, "keep-alive");
	if (strcmp(ri->http_version, "1.0") == 0 && !keep_alive_10)
		close = true;

	te = mg_get_header(conn, "Transfer-Encoding");
	if (te && mg_get_header(conn, "Content-Length")) {
		/* Request smuggling: the two framings disagree about where
		 * this request ends, so neither is trusted. */
		http_reply_error(&res, 400, "both Transfer-Encoding and Content-Length given");
		close = true;
		goto out_send;
	}
	if (te && !header_has_token(te, "chunked")) {
		http_reply_error(&res, 400, "unsupported Transfer-Encoding");
		close = true;
		goto out_send;
	}

	switch (http_router_match(s->opts.router, ri->request_method, ri->local_uri, &match)) {
	case HTTP_MATCH_NOT_FOUND:
		http_reply_error(&res, 404, "no route for %s", ri->local_uri);
		goto out_send;
	case HTTP_MATCH_METHOD_NOT_ALLOWED:
		http_response_add_header(&res, "Allow", match.allow);
		http_reply_error(&res, 405, "method %s not allowed", ri->request_method);
		goto out_send;
	case HTTP_MATCH_OK:
		route = match.pattern;
		break;
	}

	if (ri->content_length > s->opts.max_body_bytes) {
		/* Answered before a byte of the body is read; the connection
		 * closes so the unread body is never parsed as a request. */
		http_reply_error(&res, 413, "request body larger than %lld bytes",
				 (long long)s->opts.max_body_bytes);
		close = true;
		goto out_send;
	}
	if (ri->content_length > 0 || te) {
		enum mn_err err = read_body(conn, &body);

		if (err == MN_TOO_LARGE) {
			http_reply_error(&res, 413, "request body larger than %lld bytes",
					 (long long)s->opts.max_body_bytes);
			close = true;
			goto out_send;
		}
		if (err != MN_OK) {
			http_reply_error(&res, 400, "cannot read the request body");
			close = true;
			goto out_send;
		}
	}

	req = (struct http_request){
		.method = ri->request_method,
		.path = ri->local_uri,
		.query = ri->query_string,
		.body = body.data ? body.data : "",
		.body_len = body.len,
		.request_id = request_id,
		.route = route,
		.nparams = match.nparams,
		.header = request_header,
		.impl = &ref,
	};
	for (size_t i = 0; i < match.nparams; i++)
		req.params[i] = match.params[i];
	match.fn(&req, &res, match.ctx);

out_send:
	send_response(conn, &res, request_id, close, keep_alive_10);
	status = res.status;
	http_response_release(&res);
	buf_release(&body);
	if (s->opts.observe)
		s->opts.observe(s->opts.observe_ctx, ri->request_method, route, status,
				(double)(clock_monotonic_ns() - t0) / 1e9, request_id);
	atomic_fetch_sub(&s->inflight, 1);
	return status;
}

/* civetweb's own errors (malformed request line, oversized headers) get the
 * same JSON shape as ours. */
static int http_error(struct mg_connection *conn, int status, const char *msg)
{
	struct http_response res;
	char request_id[HTTP_REQUEST_ID_MAX];

	(void)msg;
	request_id_new(request_id);
	http_response_init(&res);
	http_reply_error(&res, status, "%s", mn_http_reason(status));
	send_response(conn, &res, request_id, true, false);
	http_response_release(&res);
	return 0;
}

static int log_message(const struct mg_connection *conn, const char *message)
{
	(void)conn;
	log_warn("http", "civetweb: %s", message);
	return 1;
}

struct http_server *http_server_start(const struct http_server_opts *opts, char *err,
				      size_t errlen)
{
	struct mg_callbacks callbacks;
	struct http_server *s;
	char listen[128], threads[16], request_timeout[16], keep_alive_timeout[16];
	struct mg_init_data init;
	struct mg_error_data error;
	char cw_err[256] = "";

	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		mn_error(err, errlen, MN_NOMEM, "out of memory");
		return NULL;
	}
	s->opts = *opts;
	snprintf(listen, sizeof(listen), "%s:%d", opts->address, opts->port);
	snprintf(threads, sizeof(threads), "%d", opts->threads);
	snprintf(request_timeout, sizeof(request_timeout), "%d", opts->read_timeout_ms);
	snprintf(keep_alive_timeout, sizeof(keep_alive_timeout), "%d", opts->idle_timeout_ms);

	const char *options[] = {
		"listening_ports", listen,
		"num_threads", threads,
		"request_timeout_ms", request_timeout,
		"keep_alive_timeout_ms", keep_alive_timeout,
		"enable_keep_alive", "yes",
		"tcp_nodelay", "1",
		"decode_url", "yes",
		NULL, NULL,
	};

	memset(&callbacks, 0, sizeof(callbacks));
	callbacks.begin_request = begin_request;
	callbacks.http_error = http_error;
	callbacks.log_message = log_message;

	memset(&init, 0, sizeof(init));
	init.callbacks = &callbacks;
	init.user_data = s;
	init.configuration_options = options;
	memset(&error, 0, sizeof(error));
	error.text = cw_err;
	error.text_buffer_size = sizeof(cw_err);

	mg_init_library(0);
	s->ctx = mg_start2(&init, &error);
	if (s->ctx == NULL) {
		mn_error(err, errlen, MN_IO, "cannot listen on '%s': %s", listen,
			 cw_err[0] ? cw_err : "unknown civetweb error");
		mg_exit_library();
		free(s);
		return NULL;
	}
	return s;
}

static void *stop_thread(void *arg)
{
	struct http_server *s = arg;

	mg_stop(s->ctx);
	atomic_store(&s->stopped, true);
	return NULL;
}

/* civetweb's master thread notices the stop flag only when its poll() on
 * the listener returns, which takes up to two seconds on an idle server.
 * A connection to our own listener wakes it at once. */
static void poke_listener(const struct http_server *s)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->opts.port)};
	int fd;

	if (inet_pton(AF_INET, s->opts.address, &sa.sin_addr) != 1)
		return;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
		close(fd);
		return;
	}
	close(fd);
}

void http_server_stop(struct http_server *s)
{
	pthread_t t;

	if (s == NULL)
		return;
	if (pthread_create(&t, NULL, stop_thread, s) != 0) {
		mg_stop(s->ctx);
	} else {
		for (int i = 0; !atomic_load(&s->stopped); i++) {
			if (i % 10 == 1) /* mg_stop has had time to set its flag */
				poke_listener(s);
			clock_sleep_ms(5);
		}
		pthread_join(t, NULL);
	}
	mg_exit_library();
	free(s);
}

int http_server_inflight(const struct http_server *s) { return atomic_load(&s->inflight); }
