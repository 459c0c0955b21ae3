#include "http/client.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct httpc {
	CURL *curl;
	CURLM *multi; /* made on the first cancellable request */
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

/* How often a cancellable transfer looks at its flag while the peer is
 * silent (a blocking query can be silent for minutes). */
#define CANCEL_POLL_MS 50

/* curl_easy_perform, but through the multi interface so that a transfer
 * with nothing arriving still looks at 'cancel' every CANCEL_POLL_MS (the
 * progress callback runs only about once a second when idle). */
static CURLcode perform_cancellable(struct httpc *h, const atomic_bool *cancel)
{
	CURLcode rc = CURLE_ABORTED_BY_CALLBACK;
	int running = 1, queued;
	CURLMsg *msg;

	if (h->multi == NULL && (h->multi = curl_multi_init()) == NULL)
		return CURLE_OUT_OF_MEMORY;
	if (curl_multi_add_handle(h->multi, h->curl) != CURLM_OK)
		return CURLE_FAILED_INIT;
	while (running && !atomic_load(cancel)) {
		if (curl_multi_perform(h->multi, &running) != CURLM_OK) {
			rc = CURLE_FAILED_INIT;
			break;
		}
		if (running && curl_multi_poll(h->multi, NULL, 0, CANCEL_POLL_MS, NULL) != CURLM_OK) {
			rc = CURLE_FAILED_INIT;
			break;
		}
	}
	while ((msg = curl_multi_info_read(h->multi, &queued)) != NULL)
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == h->curl)
			rc = msg->data.result;
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
	}

	rc = req->cancel ? perform_cancellable(h, req->cancel) : curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_REQUEST_SIZE, &request_size);
	res->sent = request_size > 0;
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(c, CURLOPT_CONNECT_TO, NULL);
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
