#include "http/server.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/backoff.h"
#include "core/clock.h"
#include "core/log.h"
#include "http/path.h"
#include "http/tls_runtime.h"

struct http_server {
	struct mg_context *ctx;
	struct http_server_opts opts;
	int port;                  /* the port listened on (opts.port may be 0) */
	int keep_alive_max;        /* open connections past which answers close */
	_Atomic int inflight;      /* requests being handled that a stop waits for */
	_Atomic int open_conns;    /* connections holding a worker */
	atomic_bool draining;
	atomic_bool stopped;
	_Atomic size_t stack_peak; /* most stack bytes a finished worker used */
	_Atomic size_t stack_size;
	char allow_all[96];        /* every method the router answers, for OPTIONS * */
};

/* civetweb 1.15's mg_init_library() and mg_exit_library() are not
 * thread-safe (a first call creates its global lock unguarded): every
 * call is made under this lock, which also guards tls_state. */
static pthread_mutex_t library_lock = PTHREAD_MUTEX_INITIALIZER;
static enum { TLS_UNTRIED, TLS_UP, TLS_REFUSED } tls_state;

/* Per worker thread: the response is formatted here (reused, so a request
 * costs no allocation and no big stack array), and whether civetweb sent
 * an error for the current request itself. */
static _Thread_local struct buf tl_out;
static _Thread_local bool tl_error_sent;

/* Scratch kept between requests up to this size; a bigger one is freed. */
#define OUT_KEEP_BYTES (64u << 10)
#define OUT_HEAD_BYTES 1024u

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
 * formatted in front of the body in the worker's scratch buffer. A HEAD
 * answer carries the GET's headers, Content-Length included, and no body. */
static void send_response(struct mg_connection *conn, const struct http_response *res,
			  const char *request_id, bool close, bool keep_alive_10, bool head)
{
	size_t body_len = res->body.len;
	char length[48] = "";
	enum mn_err err;

	if (res->status != 204) /* RFC 9110 8.6: a 204 has no Content-Length */
		snprintf(length, sizeof(length), "Content-Length: %zu\r\n", body_len);

	if (tl_out.cap == 0)
		buf_init(&tl_out, OUT_HEAD_BYTES + HTTP_RESPONSE_HEADERS_MAX + HTTP_RESPONSE_BODY_MAX);
	buf_reset(&tl_out);
	err = buf_printf(&tl_out,
			 "HTTP/1.1 %d %s\r\n"
			 "%s%s%s"
			 "%s"
			 "X-Request-ID: %s\r\n"
			 "%s"
			 "%s\r\n",
			 res->status, mn_http_reason(res->status),
			 res->content_type ? "Content-Type: " : "",
			 res->content_type ? res->content_type : "", res->content_type ? "\r\n" : "",
			 length, request_id, res->headers,
			 close ? "Connection: close\r\n"
			       : (keep_alive_10 ? "Connection: keep-alive\r\n" : ""));
	if (err == MN_OK && body_len && !head)
		err = buf_append(&tl_out, res->body.data, body_len);
	if (err != MN_OK)
		log_error("http", "cannot format a %zu byte response: %s", body_len, mn_strerror(err));
	else
		mg_write(conn, tl_out.data, tl_out.len);
	if (tl_out.alloc > OUT_KEEP_BYTES)
		buf_release(&tl_out);
}

/* Reads the body into 'body': exactly 'length' bytes, or a chunked body
 * when length is -1, all within 'timeout_ms' however slowly it trickles.
 * MN_TOO_LARGE past the buffer's cap, MN_TIMEOUT when the deadline passed,
 * MN_INVALID when the client stopped short (closed, or a broken chunk). */
static enum mn_err read_body(struct mg_connection *conn, struct buf *body, int64_t length,
			     int timeout_ms)
{
	uint64_t deadline = clock_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
	enum mn_err err;

	for (;;) {
		size_t want = length >= 0 ? (size_t)length - body->len : 16384;
		char *dst;
		int n;

		if (want == 0)
			return MN_OK;
		if (want > (1u << 20))
			want = 1u << 20;
		dst = buf_reserve(body, want, &err);
		if (dst == NULL)
			return err;
		n = mg_read(conn, dst, want);
		if (n > 0)
			buf_commit(body, (size_t)n);
		else if (n == 0 && length < 0)
			return MN_OK; /* the last chunk */
		if (clock_monotonic_ns() > deadline)
			return MN_TIMEOUT;
		if (n <= 0)
			return MN_INVALID;
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

/* Whether the header line had whitespace between its name and the colon
 * (RFC 9112 5.1: a 400, a known smuggling vector behind lax proxies).
 * civetweb 1.15 (parse_http_headers) hides it: it overwrites those spaces
 * and the colon with NULs in the request's own buffer, then skips the
 * spaces after the colon. So the name's NUL is followed by another NUL
 * (a space's or the colon's) before the value starts only when a space
 * preceded the colon; right after "Name:" comes the value itself, a
 * space, a tab, or (empty value) the NUL of its CR, at name+len+1 then. */
static bool space_before_colon(const struct mg_header *h)
{
	size_t len = strlen(h->name);

	return h->value > h->name + len + 1 && h->name[len + 1] == '\0';
}

/* Where this request's body ends, from every framing header it carries
 * (RFC 9112 6.3): *length is the body size, -1 for chunked, 0 for none.
 * civetweb reads only the first Content-Length, so a second one that
 * differs would frame a smuggled request: both are refused here, as is
 * any header with whitespace before its colon, Transfer-Encoding in
 * HTTP/1.0 (6.1: a 1.0 message cannot be chunked; a proxy may frame it
 * otherwise) and an HTTP/1.1 request without exactly one Host (3.2). */
static bool request_framing(const struct mg_request_info *ri, int64_t *length, const char **why)
{
	bool http10 = strcmp(ri->http_version, "1.0") == 0;
	const char *te = NULL;
	bool have_length = false;
	int hosts = 0;

	*length = 0;
	for (int i = 0; i < ri->num_headers; i++) {
		const struct mg_header *h = &ri->http_headers[i];
		int64_t v;

		if (space_before_colon(h)) {
			*why = "whitespace between a header name and its colon";
			return false;
		}
		if (strcasecmp(h->name, "Host") == 0) {
			hosts++;
		} else if (strcasecmp(h->name, "Transfer-Encoding") == 0) {
			if (http10) {
				*why = "Transfer-Encoding in an HTTP/1.0 request";
				return false;
			}
			if (te) {
				*why = "more than one Transfer-Encoding header";
				return false;
			}
			te = h->value;
		} else if (strcasecmp(h->name, "Content-Length") == 0) {
			if (http_content_length_parse(h->value, &v) != MN_OK) {
				*why = "invalid Content-Length";
				return false;
			}
			if (have_length && v != *length) {
				*why = "conflicting Content-Length headers";
				return false;
			}
			have_length = true;
			*length = v;
		}
	}
	if (!http10 && hosts != 1) {
		*why = hosts ? "more than one Host header" : "no Host header";
		return false;
	}
	if (te && have_length) {
		/* The two framings disagree about where this request ends, so
		 * neither is trusted. */
		*why = "both Transfer-Encoding and Content-Length given";
		return false;
	}
	if (te) {
		if (strcasecmp(te, "chunked") != 0) {
			*why = "unsupported Transfer-Encoding";
			return false;
		}
		*length = -1;
	}
	return true;
}

/* Ends the connection after this answer. civetweb 1.15 offers no call for
 * that from begin_request: it keeps a connection alive when the request's
 * own Connection header asks for it, so the request's (already handled)
 * first header is turned into "Connection: close". The header array is
 * the request's own and is parsed anew for the next request. */
static void conn_close_after(struct mg_connection *conn)
{
	struct mg_request_info *ri = (struct mg_request_info *)mg_get_request_info(conn);

	ri->http_headers[0].name = "Connection";
	ri->http_headers[0].value = "close";
	if (ri->num_headers < 1)
		ri->num_headers = 1;
}

static bool drain_path(const struct http_server *s, const char *path)
{
	for (const char *const *p = s->opts.drain_paths; p && *p; p++)
		if (strcmp(*p, path) == 0)
			return true;
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
	char request_id[HTTP_REQUEST_ID_MAX], why_buf[128];
	const char *given_id, *connection, *why;
	const char *route = NULL;
	char *path = (char *)ri->local_uri; /* civetweb's copy, private to the request */
	bool close = false, keep_alive_10 = false, body_read = false, counted = true;
	bool head = strcmp(ri->request_method, "HEAD") == 0;
	int64_t length = 0;
	int status;

	if (s->opts.gate &&
	    !s->opts.gate(s->opts.gate_ctx, ri->client_cert ? ri->client_cert->peer_cert : NULL)) {
		conn_close_after(conn);
		return -1;
	}
	atomic_fetch_add(&s->inflight, 1);
	tl_error_sent = false;
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

	if (!request_framing(ri, &length, &why)) {
		http_reply_error(&res, 400, "%s", why);
		close = true; /* where this request ends is unknown */
		goto out_send;
	}
	if (http_path_decode(path, why_buf, sizeof(why_buf)) != MN_OK) {
		http_reply_error(&res, 400, "%s", why_buf);
		goto out_send;
	}
	if (atomic_load(&s->draining)) {
		/* Not a request the stop waits for: answered at once. */
		atomic_fetch_sub(&s->inflight, 1);
		counted = false;
		if (!drain_path(s, path)) {
			http_response_add_header(&res, "Retry-After", "1");
			http_reply_error(&res, 503, "the node is shutting down");
			goto out_send;
		}
	}

	switch (http_router_match(s->opts.router, ri->request_method, path, &match)) {
	case HTTP_MATCH_NOT_FOUND:
		if (s->opts.explain_not_found &&
		    s->opts.explain_not_found(s->opts.explain_ctx, path, why_buf, sizeof(why_buf)))
			http_reply_error(&res, 404, "%s", why_buf);
		else
			http_reply_error(&res, 404, "no route for %s", path);
		goto out_send;
	case HTTP_MATCH_METHOD_NOT_ALLOWED:
		http_response_add_header(&res, "Allow", match.allow);
		if (strcmp(ri->request_method, "OPTIONS") == 0)
			http_reply_raw(&res, 204, NULL, NULL, 0);
		else
			http_reply_error(&res, 405, "method %s not allowed", ri->request_method);
		goto out_send;
	case HTTP_MATCH_OK:
		route = match.pattern;
		break;
	}

	if (length > s->opts.max_body_bytes) {
		/* Answered before a byte of the body is read. */
		http_reply_error(&res, 413, "request body larger than %lld bytes",
				 (long long)s->opts.max_body_bytes);
		goto out_send;
	}
	if (length != 0) {
		switch (read_body(conn, &body, length, s->opts.read_timeout_ms)) {
		case MN_OK:
			body_read = true;
			break;
		case MN_TOO_LARGE:
			http_reply_error(&res, 413, "request body larger than %lld bytes",
					 (long long)s->opts.max_body_bytes);
			goto out_send;
		case MN_TIMEOUT:
			http_reply_error(&res, 408, "the request body did not arrive within %d ms",
					 s->opts.read_timeout_ms);
			goto out_send;
		default:
			http_reply_error(&res, 400, "the request body ended before its announced length");
			goto out_send;
		}
	}

	req = (struct http_request){
		.method = ri->request_method,
		.path = path,
		.query = ri->query_string,
		.body = body.data ? body.data : "",
		.body_len = body.len,
		.request_id = request_id,
		.route = route,
		.nparams = match.nparams,
		.header = request_header,
		.impl = &ref,
		.peer_cert = ri->client_cert ? ri->client_cert->peer_cert : NULL,
	};
	for (size_t i = 0; i < match.nparams; i++)
		req.params[i] = match.params[i];
	match.fn(&req, &res, match.ctx);

out_send:
	/* A body left unread would be read as the next request: close. Past
	 * the high-water mark of held workers, or while stopping, a
	 * connection is not kept open to wait for another request. */
	if (length != 0 && !body_read)
		close = true;
	if (!close && (atomic_load(&s->draining) ||
		       atomic_load(&s->open_conns) > s->keep_alive_max))
		close = true;
	send_response(conn, &res, request_id, close, keep_alive_10, head);
	status = res.status;
	http_response_release(&res);
	buf_release(&body);
	if (s->opts.observe)
		s->opts.observe(s->opts.observe_ctx, ri->request_method, route, status,
				(double)(clock_monotonic_ns() - t0) / 1e9, request_id);
	if (counted)
		atomic_fetch_sub(&s->inflight, 1);
	if (close) {
		conn_close_after(conn);
		/* Not a status: civetweb then skips reading the rest of an
		 * unread body, which a slow client could stretch forever. */
		return -1;
	}
	return status;
}

/* civetweb's own errors (malformed request line, oversized headers) get the
 * same JSON shape as ours. */
static int http_error(struct mg_connection *conn, int status, const char *msg)
{
	struct http_response res;
	char request_id[HTTP_REQUEST_ID_MAX];

	(void)msg;
	tl_error_sent = true;
	request_id_new(request_id);
	http_response_init(&res);
	/* civetweb 1.15 says 411 only for a Content-Length it cannot parse
	 * ("-1", "abc"): by RFC 9112 6.3 that is a 400. */
	if (status == 411)
		http_reply_error(&res, 400, "invalid Content-Length");
	else
		http_reply_error(&res, status, "%s", mn_http_reason(status));
	send_response(conn, &res, request_id, true, false, false);
	http_response_release(&res);
	return 0;
}

/* civetweb's init_ssl: the application configures the SSL_CTX; 1 tells
 * civetweb it has nothing left to set up, -1 makes mg_start2 fail. */
static int init_ssl(void *ssl_ctx, void *user_data)
{
	struct http_server *s = user_data;

	return s->opts.tls_setup(ssl_ctx, s->opts.tls_ctx) == 0 ? 1 : -1;
}

/* A TLS handshake that failed is the client's doing (plain HTTP, garbage,
 * a stall, a certificate refused): counted by the TLS setup's owner
 * (meshnode_connect_handshakes_total), logged only at debug, so a flood
 * of them cannot flood the log. */
static int log_message(const struct mg_connection *conn, const char *message)
{
	(void)conn;
	if (strncmp(message, "sslize error", 12) == 0 || strncmp(message, "SSL syscall error", 17) == 0)
		log_debug("http", "civetweb: %s", message);
	else
		log_warn("http", "civetweb: %s", message);
	return 1;
}

/* The connection's user data marks it as counted: civetweb 1.15 calls
 * connection_close, never init_connection, for a TLS handshake that
 * failed (process_new_connection is not reached). */
static int on_init_connection(const struct mg_connection *conn, void **conn_data)
{
	struct http_server *s = mg_get_user_data(mg_get_context(conn));

	*conn_data = s;
	atomic_fetch_add(&s->open_conns, 1);
	tl_error_sent = false;
	return 0;
}

/* civetweb 1.15 drops a request for "*" (the asterisk form, RFC 9112 3.2.4)
 * without calling begin_request and closes the connection unanswered. It
 * still calls this hook on the worker with the socket open, so the answer
 * is written here: OPTIONS * lists what the server answers; any other
 * method gets 400. */
static void answer_asterisk(struct mg_connection *conn, struct http_server *s)
{
	const struct mg_request_info *ri = mg_get_request_info(conn);
	struct http_response res;
	char request_id[HTTP_REQUEST_ID_MAX];
	bool options;

	if (ri == NULL || ri->request_method == NULL || ri->request_uri == NULL ||
	    strcmp(ri->request_uri, "*") != 0 || ri->http_version == NULL ||
	    (strcmp(ri->http_version, "1.1") != 0 && strcmp(ri->http_version, "1.0") != 0) ||
	    tl_error_sent)
		return;
	options = strcmp(ri->request_method, "OPTIONS") == 0;
	request_id_new(request_id);
	http_response_init(&res);
	if (options) {
		http_response_add_header(&res, "Allow", s->allow_all);
		http_reply_raw(&res, 204, NULL, NULL, 0);
	} else {
		http_reply_error(&res, 400, "'*' is a request target for OPTIONS only");
	}
	send_response(conn, &res, request_id, true, false, false);
	if (s->opts.observe)
		s->opts.observe(s->opts.observe_ctx, ri->request_method, NULL, res.status, 0.0,
				request_id);
	http_response_release(&res);
}

static void on_connection_close(const struct mg_connection *conn)
{
	struct http_server *s = mg_get_user_data(mg_get_context(conn));

	if (mg_get_user_connection_data(conn) == NULL)
		return; /* a failed handshake: never counted, nothing read */
	answer_asterisk((struct mg_connection *)conn, s);
	atomic_fetch_sub(&s->open_conns, 1);
}

/* Worker stacks are small (100 KiB in Debian's build), so how much of one
 * the request path really uses is measured: when a worker ends, the
 * lowest of its stack pages the kernel has ever given memory to (mincore)
 * is the deepest the stack went, to the page. Nothing is written to the
 * stack for this, so an idle worker keeps costing only the pages it used. */
static bool stack_bounds(unsigned char **lo, size_t *size)
{
	pthread_attr_t a;
	void *addr;
	bool ok;

	if (pthread_getattr_np(pthread_self(), &a) != 0)
		return false;
	ok = pthread_attr_getstack(&a, &addr, size) == 0;
	pthread_attr_destroy(&a);
	*lo = addr;
	return ok;
}

/* Bytes of this thread's stack ever used (to the page), 0 when unknown. */
static size_t stack_used(size_t *size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), npages, used = 0;
	unsigned char *lo, *vec;
	uintptr_t start;

	*size = 0;
	if (!stack_bounds(&lo, size))
		return 0;
	start = (uintptr_t)lo & ~(uintptr_t)(page - 1);
	npages = ((uintptr_t)lo + *size - start + page - 1) / page;
	vec = malloc(npages);
	if (vec && mincore((void *)start, npages * page, vec) == 0) {
		for (size_t i = 0; i < npages; i++) {
			if (vec[i] & 1) {
				used = (size_t)((uintptr_t)lo + *size - (start + i * page));
				break;
			}
		}
	}
	free(vec);
	return used;
}

static void on_exit_thread(const struct mg_context *ctx, int thread_type, void *thread_pointer)
{
	struct http_server *s = mg_get_user_data(ctx);
	size_t size, used, peak;

	(void)thread_pointer;
	buf_release(&tl_out);
	if (thread_type != 1)
		return;
	used = stack_used(&size);
	atomic_store(&s->stack_size, size);
	peak = atomic_load(&s->stack_peak);
	while (used > peak && !atomic_compare_exchange_weak(&s->stack_peak, &peak, used))
		;
}

/* How long the kernel holds a connection that has sent nothing before a
 * worker sees it (TCP_DEFER_ACCEPT, in seconds; Linux rounds it up to its
 * SYN-ACK retransmissions: 1+2+...+64 = 127 s). Then a silent connection
 * costs a worker one server.read_timeout_ms in every ~132 s: with 30 s
 * (31 + 5) 1,000 silent connections reached the workers together often
 * enough to stall a probe every 36 s, with 120 once in 150 s. */
#define DEFER_ACCEPT_S 120
/* civetweb's listen backlog (its default is 200): a deferred connection
 * waits in the listener's SYN queue, which this bounds; past it the
 * kernel answers with SYN cookies, which defer nothing. The kernel caps
 * it at net.core.somaxconn (4096 since Linux 5.4). */
#define LISTEN_BACKLOG "4096"

/* The listening socket civetweb opened on 'port': civetweb 1.15 shows no
 * socket of its own (no call, no callback), so it is found among the
 * process's descriptors as the one that listens on that port. -1 when
 * none does. */
static int listener_fd(int port)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int found = -1;

	if (d == NULL)
		return -1;
	while (found < 0 && (e = readdir(d)) != NULL) {
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa), olen;
		int fd, listening = 0;
		char *end;

		fd = (int)strtol(e->d_name, &end, 10);
		olen = sizeof(listening);
		if (*end || end == e->d_name || fd == dirfd(d) ||
		    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &olen) != 0 || !listening ||
		    getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
			continue;
		if ((sa.ss_family == AF_INET &&
		     ntohs(((struct sockaddr_in *)&sa)->sin_port) == port) ||
		    (sa.ss_family == AF_INET6 &&
		     ntohs(((struct sockaddr_in6 *)&sa)->sin6_port) == port))
			found = fd;
	}
	closedir(d);
	return found;
}

/* A connection takes a worker only once its first bytes have arrived:
 * civetweb hands each accepted connection to a worker that then waits for
 * the request head, so connections that send nothing would hold every
 * worker (1,000 silent ones took /health's p99 to 5 s with 512 workers).
 * With TCP_DEFER_ACCEPT the kernel keeps such a connection out of
 * accept() until data comes, or until DEFER_ACCEPT_S have passed (then it
 * is accepted and, silent, cut at server.read_timeout_ms like any). false
 * when the listener is not found or the option is refused. */
static bool defer_accept(int port, char *why, size_t whylen)
{
	int secs = DEFER_ACCEPT_S, fd;

	if (port <= 0) {
		snprintf(why, whylen, "civetweb names no listening port");
		return false;
	}
	fd = listener_fd(port);
	if (fd < 0) {
		snprintf(why, whylen, "no socket listens on port %d", port);
		return false;
	}
	if (setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof(secs)) != 0) {
		snprintf(why, whylen, "TCP_DEFER_ACCEPT: %s", strerror(errno));
		return false;
	}
	return true;
}

static void library_exit(void)
{
	pthread_mutex_lock(&library_lock);
	mg_exit_library();
	pthread_mutex_unlock(&library_lock);
}

/* mg_init_library(MG_FEATURES_TLS) is called once: civetweb 1.15 counts
 * a library reference even when TLS failed, and a second call then claims
 * TLS (initialize_openssl finds its libcrypto handle and its user count
 * above one, and returns success without libssl), so a refusal is final.
 * mg_check_feature() only says what civetweb was built with; the return
 * of mg_init_library() is what came up. The reference taken on success is
 * kept: when the count falls to 0, mg_exit_library() uninitializes
 * OpenSSL, and every server's mg_init_library(0) would then run without
 * it. */
enum mn_err http_server_tls_init(const char *shim_dir, char *err, size_t errlen)
{
	enum mn_err e = MN_OK;

	pthread_mutex_lock(&library_lock);
	switch (tls_state) {
	case TLS_UP:
		goto out_unlock;
	case TLS_REFUSED:
		e = mn_error(err, errlen, MN_IO,
			     "civetweb did not enable TLS (it refused once in this process, and "
			     "does not try again)");
		goto out_unlock;
	case TLS_UNTRIED:
		break;
	}
	if (!mg_check_feature(MG_FEATURES_TLS)) {
		e = mn_error(err, errlen, MN_IO, "civetweb did not enable TLS: it was built without");
		goto out_unlock;
	}
	e = tls_runtime_load(shim_dir, err, errlen);
	if (e != MN_OK)
		goto out_unlock;
	if (!(mg_init_library(MG_FEATURES_TLS) & MG_FEATURES_TLS)) {
		mg_exit_library();
		tls_state = TLS_REFUSED;
		e = mn_error(err, errlen, MN_IO,
			     "civetweb did not enable TLS with the OpenSSL runtime from '%s'",
			     shim_dir);
		goto out_unlock;
	}
	tls_state = TLS_UP;
out_unlock:
	pthread_mutex_unlock(&library_lock);
	return e;
}

struct http_server *http_server_start(const struct http_server_opts *opts, char *err,
				      size_t errlen)
{
	struct mg_callbacks callbacks;
	struct http_server *s;
	char listen[128], threads[16], request_timeout[16], keep_alive_timeout[16];
	struct mg_init_data init;
	struct mg_error_data error;
	struct mg_server_port ports[4];
	char cw_err[256] = "";

	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		mn_error(err, errlen, MN_NOMEM, "out of memory");
		return NULL;
	}
	s->opts = *opts;
	s->keep_alive_max = opts->threads - opts->threads / 4;
	http_router_allow_all(opts->router, s->allow_all, sizeof(s->allow_all));
	/* civetweb's "s" suffix: this port speaks TLS only */
	snprintf(listen, sizeof(listen), "%s:%d%s", opts->address, opts->port,
		 opts->tls_setup ? "s" : "");
	snprintf(threads, sizeof(threads), "%d", opts->threads);
	snprintf(request_timeout, sizeof(request_timeout), "%d", opts->read_timeout_ms);
	snprintf(keep_alive_timeout, sizeof(keep_alive_timeout), "%d", opts->idle_timeout_ms);

	/* decode_url is off: the server decodes the path itself, refusing
	 * what would route a request elsewhere (http_path_decode). */
	const char *options[] = {
		"listening_ports", listen,
		"num_threads", threads,
		"request_timeout_ms", request_timeout,
		"keep_alive_timeout_ms", keep_alive_timeout,
		"enable_keep_alive", "yes",
		"tcp_nodelay", "1",
		"decode_url", "no",
		"listen_backlog", LISTEN_BACKLOG,
		NULL, NULL,
	};

	memset(&callbacks, 0, sizeof(callbacks));
	callbacks.begin_request = begin_request;
	callbacks.http_error = http_error;
	callbacks.log_message = log_message;
	callbacks.init_connection = on_init_connection;
	callbacks.connection_close = on_connection_close;
	callbacks.exit_thread = on_exit_thread;
	if (opts->tls_setup)
		callbacks.init_ssl = init_ssl;

	memset(&init, 0, sizeof(init));
	init.callbacks = &callbacks;
	init.user_data = s;
	init.configuration_options = options;
	memset(&error, 0, sizeof(error));
	error.text = cw_err;
	error.text_buffer_size = sizeof(cw_err);

	pthread_mutex_lock(&library_lock);
	if (opts->tls_setup && tls_state != TLS_UP) {
		/* civetweb would start, and jump to address 0 on the first TLS
		 * connection (docs/connect.md, "TLS runtime") */
		pthread_mutex_unlock(&library_lock);
		mn_error(err, errlen, MN_INVALID,
			 "cannot listen on '%s': TLS asked for and the tls runtime is not "
			 "initialized (http_server_tls_init)",
			 listen);
		free(s);
		return NULL;
	}
	mg_init_library(0);
	pthread_mutex_unlock(&library_lock);
	s->ctx = mg_start2(&init, &error);
	if (s->ctx == NULL) {
		mn_error(err, errlen, MN_IO, "cannot listen on '%s': %s", listen,
			 cw_err[0] ? cw_err : "unknown civetweb error");
		library_exit();
		free(s);
		return NULL;
	}
	/* The port civetweb bound: opts.port, or the one the kernel chose for 0. */
	if (mg_get_server_ports(s->ctx, 4, ports) >= 1)
		s->port = ports[0].port;
	if (!defer_accept(s->port, cw_err, sizeof(cw_err)))
		log_warn("http",
			 "connections take a worker before they send a byte: %s; silent "
			 "connections can hold every worker for server.read_timeout_ms",
			 cw_err);
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
 * A connection to our own listener that sends a byte wakes it at once. */
static void poke_listener(const struct http_server *s)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
	int fd;

	if (inet_pton(AF_INET, s->opts.address, &sa.sin_addr) != 1)
		return;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	/* blocking, briefly: the listener defers connections until a byte
	 * arrives (TCP_DEFER_ACCEPT), so one is sent once connected */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &(struct timeval){.tv_usec = 100000},
		   sizeof(struct timeval));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		(void)!send(fd, "\n", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
}

int http_server_port(const struct http_server *s)
{
	return s->port;
}

void http_server_drain(struct http_server *s)
{
	if (s)
		atomic_store(&s->draining, true);
}

void http_server_stop(struct http_server *s)
{
	size_t size, peak;
	pthread_t t;

	if (s == NULL)
		return;
	/* civetweb writes nothing once mg_stop has begun: every request being
	 * handled must have sent its answer first. */
	http_server_drain(s);
	while (atomic_load(&s->inflight) > 0)
		clock_sleep_ms(5);
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
	peak = atomic_load(&s->stack_peak);
	size = atomic_load(&s->stack_size);
	if (peak)
		log_info("http", "worker stacks: at most %zu of %zu bytes used", peak, size);
	library_exit();
	free(s);
}


static void *stop_within_thread(void *arg)
{
	http_server_stop(arg);
	return NULL;
}

bool http_server_stop_within(struct http_server *s, int timeout_ms)
{
	struct timespec deadline;
	pthread_t t;

	if (pthread_create(&t, NULL, stop_within_thread, s) != 0) {
		http_server_stop(s);
		return true;
	}
	deadline = clock_realtime_deadline_ms((uint64_t)timeout_ms);
	if (pthread_timedjoin_np(t, NULL, &deadline) != 0) {
		pthread_detach(t);
		return false;
	}
	return true;
}
