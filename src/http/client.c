#include "http/client.h"

#include <curl/curl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"

/* Connections a handle keeps track of (libcurl keeps a few per handle,
 * one per host it talks to): to find the socket of a transfer, whose
 * acknowledgements ack_timeout_ms looks at. One beyond is not tracked. */
#define TRACKED_MAX 8

struct httpc {
	CURL *curl;
	CURLM *multi; /* made on the first cancellable request */
	curl_socket_t fd[TRACKED_MAX];
	int local_port[TRACKED_MAX]; /* 0: not asked yet */
	size_t nfd;
	curl_socket_t active;        /* the transfer's, once it is connected */
};

struct transfer {
	const struct httpc_request *req;
	struct httpc_response *res;
	bool too_large;
};

enum mn_err httpc_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? MN_OK : MN_INTERNAL;
}

void httpc_global_cleanup(void) { curl_global_cleanup(); }

struct httpc *httpc_create(void)
{
	struct httpc *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	h->curl = curl_easy_init();
	if (h->curl == NULL) {
		free(h);
		return NULL;
	}
	h->active = CURL_SOCKET_BAD;
	return h;
}

void httpc_destroy(struct httpc *h)
{
	if (h == NULL)
		return;
	curl_easy_cleanup(h->curl);
	if (h->multi)
		curl_multi_cleanup(h->multi);
	free(h);
}

void httpc_response_init(struct httpc_response *res)
{
	res->status = 0;
	buf_init(&res->body, 0);
	res->captured[0] = '\0';
	res->sent = false;
	res->connects = 0;
}

void httpc_response_release(struct httpc_response *res) { buf_release(&res->body); }

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct transfer *t = ctx;
	size_t n = size * nmemb;

	if (buf_append(&t->res->body, data, n) != MN_OK) {
		t->too_large = true;
		return 0; /* aborts the transfer */
	}
	return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct transfer *t = ctx;
	const char *name = t->req->capture_header;
	size_t n = size * nmemb, nlen;

	if (name == NULL)
		return n;
	nlen = strlen(name);
	if (n > nlen + 1 && data[nlen] == ':' && strncasecmp(data, name, nlen) == 0) {
		const char *v = data + nlen + 1;
		size_t vlen = n - nlen - 1;

		while (vlen && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
			vlen--;
		if (vlen >= sizeof(t->res->captured))
			vlen = sizeof(t->res->captured) - 1;
		memcpy(t->res->captured, v, vlen);
		t->res->captured[vlen] = '\0';
	}
	return n;
}

/* libcurl made socket 'fd' for a connection. */
static int on_socket(void *ctx, curl_socket_t fd, curlsocktype purpose)
{
	struct httpc *h = ctx;

	if (purpose == CURLSOCKTYPE_IPCXN && h->nfd < TRACKED_MAX) {
		h->fd[h->nfd] = fd;
		h->local_port[h->nfd++] = 0;
	}
	return CURL_SOCKOPT_OK;
}

static int on_close(void *ctx, curl_socket_t fd)
{
	struct httpc *h = ctx;

	for (size_t i = 0; i < h->nfd; i++) {
		if (h->fd[i] == fd) {
			h->fd[i] = h->fd[--h->nfd];
			h->local_port[i] = h->local_port[h->nfd];
			break;
		}
	}
	if (h->active == fd)
		h->active = CURL_SOCKET_BAD;
	return close(fd);
}

/* The transfer's connection is ready (made or reused): its socket is the
 * tracked one bound to 'local_port'. */
static int on_connected(void *ctx, char *primary_ip, char *local_ip, int primary_port,
			int local_port)
{
	struct httpc *h = ctx;

	(void)primary_ip, (void)local_ip, (void)primary_port;
	h->active = CURL_SOCKET_BAD;
	for (size_t i = 0; i < h->nfd; i++) {
		if (h->local_port[i] == 0) {
			struct sockaddr_storage sa;
			socklen_t len = sizeof(sa);

			if (getsockname(h->fd[i], (struct sockaddr *)&sa, &len) != 0)
				continue;
			h->local_port[i] = sa.ss_family == AF_INET6
						   ? ntohs(((struct sockaddr_in6 *)&sa)->sin6_port)
						   : ntohs(((struct sockaddr_in *)&sa)->sin_port);
		}
		if (h->local_port[i] == local_port) {
			h->active = h->fd[i];
			break;
		}
	}
	return CURL_PREREQFUNC_OK;
}

/* libcurl's SSL_CTX callback, handing the context to the caller's. */
static CURLcode on_ssl_ctx(CURL *c, void *ssl_ctx, void *ctx)
{
	const struct httpc_tls *tls = ctx;

	(void)c;
	return tls->ssl_ctx_fn(ssl_ctx, tls->ssl_ctx_arg) == 0 ? CURLE_OK : CURLE_SSL_CERTPROBLEM;
}

/* A PEM member of httpc_tls as a libcurl blob, which libcurl copies: the
 * caller's text need not outlive the request's setup. */
static void set_blob(CURL *c, CURLoption opt, const char *pem, size_t len)
{
	struct curl_blob b = {(void *)(uintptr_t)pem, len, CURL_BLOB_COPY};

	curl_easy_setopt(c, opt, &b);
}

/* How often a cancellable transfer looks at its flag while the peer is
 * silent (a blocking query can be silent for minutes). */
#define CANCEL_POLL_MS 50

/* True when the transfer's connection has bytes out that the peer's TCP
 * has not acknowledged for ack_ms: neither an ACK in that time nor one
 * since the transfer began 'elapsed_ms' ago. A host that is alive
 * acknowledges within its delayed-ACK time (40 ms on Linux) whatever its
 * program is doing; one cut off from us never does. The kernel's
 * TCP_USER_TIMEOUT would say the same, but the error it causes makes
 * libcurl resend the request on a fresh connection to the same host
 * (which a reused connection's death calls for), and that waits for the
 * connect timeout as well. */
static bool unacked_too_long(const struct httpc *h, long ack_ms, uint64_t elapsed_ms)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (h->active == CURL_SOCKET_BAD)
		return false;
	if (getsockopt(h->active, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 || len < sizeof(ti) ||
	    ti.tcpi_state != TCP_ESTABLISHED || ti.tcpi_unacked == 0)
		return false;
	return elapsed_ms >= (uint64_t)ack_ms && ti.tcpi_last_ack_recv >= (uint32_t)ack_ms;
}

/* curl_easy_perform, but through the multi interface, so that a transfer
 * with nothing arriving still looks at 'cancel' every CANCEL_POLL_MS (the
 * progress callback runs only about once a second when idle) and at its
 * connection's acknowledgements (ack_ms, 0: off) a few times per ack_ms.
 * *unacked: ended for want of an acknowledgement. */
static CURLcode perform_multi(struct httpc *h, const atomic_bool *cancel, long ack_ms,
			      bool *unacked)
{
	CURLcode rc = CURLE_ABORTED_BY_CALLBACK;
	int running = 1, queued, poll_ms = CANCEL_POLL_MS;
	uint64_t start = clock_monotonic_ms();
	CURLMsg *msg;

	*unacked = false;
	if (ack_ms > 0 && ack_ms / 10 < poll_ms)
		poll_ms = ack_ms / 10 > 5 ? (int)(ack_ms / 10) : 5;
	if (h->multi == NULL && (h->multi = curl_multi_init()) == NULL)
		return CURLE_OUT_OF_MEMORY;
	if (curl_multi_add_handle(h->multi, h->curl) != CURLM_OK)
		return CURLE_FAILED_INIT;
	while (running && !(cancel && atomic_load(cancel))) {
		int ready = 0;

		if (curl_multi_perform(h->multi, &running) != CURLM_OK) {
			rc = CURLE_FAILED_INIT;
			break;
		}
		if (running && curl_multi_poll(h->multi, NULL, 0, poll_ms, &ready) != CURLM_OK) {
			rc = CURLE_FAILED_INIT;
			break;
		}
		if (running && ready == 0 && ack_ms > 0 &&
		    unacked_too_long(h, ack_ms, clock_monotonic_ms() - start)) {
			*unacked = true;
			break;
		}
	}
	while ((msg = curl_multi_info_read(h->multi, &queued)) != NULL)
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == h->curl)
			rc = msg->data.result;
	/* removed mid-transfer, the connection is closed, not kept */
	curl_multi_remove_handle(h->multi, h->curl);
	return rc;
}

enum mn_err httpc_perform(struct httpc *h, const struct httpc_request *req,
			  struct httpc_response *res, char *err, size_t errlen)
{
	struct transfer t = {req, res, false};
	struct curl_slist *headers = NULL, *connect_to = NULL, *tmp;
	char curl_err[CURL_ERROR_SIZE] = "";
	enum mn_err ret = MN_OK;
	long request_size = 0;
	bool unacked = false;
	CURL *c = h->curl;
	CURLcode rc;

	if (strncmp(req->url, "http://", 7) != 0 && strncmp(req->url, "https://", 8) != 0)
		return mn_error(err, errlen, MN_INVALID, "unsupported URL scheme");
	res->status = 0;
	res->captured[0] = '\0';
	res->sent = false;
	buf_release(&res->body);
	buf_init(&res->body, req->max_response);

	for (const char *const *hp = req->headers; hp && *hp; hp++) {
		tmp = curl_slist_append(headers, *hp);
		if (tmp == NULL) {
			ret = mn_error(err, errlen, MN_NOMEM, "out of memory");
			goto out_free_headers;
		}
		headers = tmp;
	}
	/* curl adds "Expect: 100-continue" to larger PUTs; the agent does
	 * not need the extra round trip. */
	tmp = curl_slist_append(headers, "Expect:");
	if (tmp == NULL) {
		ret = mn_error(err, errlen, MN_NOMEM, "out of memory");
		goto out_free_headers;
	}
	headers = tmp;

	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, req->url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, req->timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
			 req->connect_timeout_ms ? req->connect_timeout_ms : req->timeout_ms);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
	curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, on_socket);
	curl_easy_setopt(c, CURLOPT_SOCKOPTDATA, h);
	curl_easy_setopt(c, CURLOPT_CLOSESOCKETFUNCTION, on_close);
	curl_easy_setopt(c, CURLOPT_CLOSESOCKETDATA, h);
	h->active = CURL_SOCKET_BAD;
	if (req->ack_timeout_ms > 0) {
		curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, on_connected);
		curl_easy_setopt(c, CURLOPT_PREREQDATA, h);
	}
	if (req->body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
	} else if (strcmp(req->method, "GET") == 0) {
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	}
	if (req->connect_to) {
		connect_to = curl_slist_append(NULL, req->connect_to);
		if (connect_to == NULL) {
			ret = mn_error(err, errlen, MN_NOMEM, "out of memory");
			goto out_free_headers;
		}
		curl_easy_setopt(c, CURLOPT_CONNECT_TO, connect_to);
	}
	if (req->tls) {
		if (req->tls->insecure) {
			curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
			curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
		}
		if (req->tls->ca_file)
			curl_easy_setopt(c, CURLOPT_CAINFO, req->tls->ca_file);
		if (req->tls->cert_file)
			curl_easy_setopt(c, CURLOPT_SSLCERT, req->tls->cert_file);
		if (req->tls->key_file)
			curl_easy_setopt(c, CURLOPT_SSLKEY, req->tls->key_file);
		if (req->tls->ca_pem)
			set_blob(c, CURLOPT_CAINFO_BLOB, req->tls->ca_pem, req->tls->ca_pem_len);
		if (req->tls->cert_pem) {
			set_blob(c, CURLOPT_SSLCERT_BLOB, req->tls->cert_pem,
				 req->tls->cert_pem_len);
			curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
		}
		if (req->tls->key_pem) {
			set_blob(c, CURLOPT_SSLKEY_BLOB, req->tls->key_pem, req->tls->key_pem_len);
			curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
		}
		if (req->tls->no_verify_host)
			curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
		if (req->tls->http1) {
			/* libcurl offers "h2" by ALPN otherwise, and a proxy that
			 * takes it forwards an HTTP/2 preface to an HTTP/1.1
			 * service (Consul's built-in proxy does) */
			curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
		}
		if (req->tls->ssl_ctx_fn) {
			curl_easy_setopt(c, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
			curl_easy_setopt(c, CURLOPT_SSL_CTX_DATA, (void *)(uintptr_t)req->tls);
		}
	}

	rc = req->cancel || req->ack_timeout_ms > 0
		     ? perform_multi(h, req->cancel, req->ack_timeout_ms, &unacked)
		     : curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_REQUEST_SIZE, &request_size);
	curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &res->connects);
	res->sent = request_size > 0;
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(c, CURLOPT_CONNECT_TO, NULL);
	if (unacked) {
		ret = mn_error(err, errlen, MN_TIMEOUT, "no TCP acknowledgement from the peer in %ld ms",
			       req->ack_timeout_ms);
		goto out_release;
	}
	switch (rc) {
	case CURLE_OK:
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &res->status);
		break;
	case CURLE_WRITE_ERROR:
		ret = t.too_large ? mn_error(err, errlen, MN_TOO_LARGE, "response larger than %zu bytes",
					     req->max_response)
				  : mn_error(err, errlen, MN_IO, "%s", curl_err);
		break;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
		ret = mn_error(err, errlen, MN_UNAVAILABLE, "%s", curl_err[0] ? curl_err : curl_easy_strerror(rc));
		break;
	case CURLE_OPERATION_TIMEDOUT:
		ret = mn_error(err, errlen, MN_TIMEOUT, "%s", curl_err[0] ? curl_err : curl_easy_strerror(rc));
		break;
	case CURLE_ABORTED_BY_CALLBACK:
		ret = mn_error(err, errlen, MN_IO, "cancelled");
		break;
	default:
		ret = mn_error(err, errlen, MN_IO, "%s", curl_err[0] ? curl_err : curl_easy_strerror(rc));
		break;
	}
out_release:
	if (ret != MN_OK)
		buf_release(&res->body);

out_free_headers:
	curl_slist_free_all(connect_to);
	curl_slist_free_all(headers);
	return ret;
}

char *httpc_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(strlen(s) * 3 + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~') {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
	return out;
}

static struct httpc *libcurl_create(void *ctx)
{
	(void)ctx;
	return httpc_create();
}

static void libcurl_destroy(void *ctx, struct httpc *h)
{
	(void)ctx;
	httpc_destroy(h);
}

static enum mn_err libcurl_perform(void *ctx, struct httpc *h, const struct httpc_request *req,
				   struct httpc_response *res, char *err, size_t errlen)
{
	(void)ctx;
	return httpc_perform(h, req, res, err, errlen);
}

const struct httpc_transport httpc_libcurl = {libcurl_create, libcurl_destroy, libcurl_perform,
					      NULL};
