#include "http/http.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"

static const char content_type_json[] = "application/json";

void http_response_init(struct http_response *res)
{
	res->status = 200;
	res->content_type = NULL;
	buf_init(&res->body, HTTP_RESPONSE_BODY_MAX);
	res->headers[0] = '\0';
	res->headers_len = 0;
}

void http_response_release(struct http_response *res) { buf_release(&res->body); }

/* jansson's dump callback, appending to the response body. */
static int dump_to_buf(const char *data, size_t size, void *ctx)
{
	return buf_append(ctx, data, size) == MN_OK ? 0 : -1;
}

void http_reply_json(struct http_response *res, int status, json_t *body)
{
	buf_reset(&res->body);
	res->status = status;
	res->content_type = body ? content_type_json : NULL;
	if (body == NULL)
		return;
	if (json_dump_callback(body, dump_to_buf, &res->body, JSON_COMPACT) != 0) {
		json_decref(body);
		log_error("http", "cannot encode a response body");
		http_reply_error(res, 500, "internal error");
		return;
	}
	json_decref(body);
}

static bool has_retry_after(const struct http_response *res)
{
	for (const char *l = res->headers; *l;) {
		const char *end = strstr(l, "\r\n");

		if (strncasecmp(l, "Retry-After:", 12) == 0)
			return true;
		if (end == NULL)
			break;
		l = end + 2;
	}
	return false;
}

void http_reply_error(struct http_response *res, int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	json_t *o;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* A 503 is "not now": every one says when to try again, one second
	 * unless the caller set its own (a busy store sheds at once, so a
	 * client that retries at once would only add to it). */
	if (status == 503 && !has_retry_after(res))
		http_response_add_header(res, "Retry-After", "1");
	buf_reset(&res->body);
	res->status = status;
	res->content_type = content_type_json;
	o = json_pack("{s:s}", "error", msg);
	/* A message that is not valid UTF-8 (a quoted hostile path) cannot go
	 * into json_pack; fall back to the fixed reason. */
	if (o == NULL)
		o = json_pack("{s:s}", "error", mn_http_reason(status));
	if (o == NULL || json_dump_callback(o, dump_to_buf, &res->body, JSON_COMPACT) != 0) {
		buf_reset(&res->body);
		buf_puts(&res->body, "{\"error\":\"internal error\"}");
	}
	json_decref(o);
}

void http_reply_raw(struct http_response *res, int status, const char *content_type,
		    const char *body, size_t len)
{
	buf_reset(&res->body);
	res->status = status;
	res->content_type = content_type;
	if (buf_append(&res->body, body, len) != MN_OK)
		http_reply_error(res, 500, "internal error");
}

bool http_response_add_header(struct http_response *res, const char *name, const char *value)
{
	size_t room = sizeof(res->headers) - res->headers_len;
	int n;

	if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
		return false;
	n = snprintf(res->headers + res->headers_len, room, "%s: %s\r\n", name, value);
	if (n < 0 || (size_t)n >= room) {
		res->headers[res->headers_len] = '\0';
		return false;
	}
	res->headers_len += (size_t)n;
	return true;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

bool http_query_get(const char *query, const char *name, char *out, size_t outlen)
{
	size_t nlen = strlen(name);
	const char *p = query;

	if (query == NULL || outlen == 0)
		return false;
	while (*p) {
		const char *end = p + strcspn(p, "&");
		const char *eq = memchr(p, '=', (size_t)(end - p));
		const char *kend = eq ? eq : end;

		if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0) {
			size_t o = 0;

			for (const char *v = eq ? eq + 1 : end; v < end; v++) {
				int c = (unsigned char)*v;

				if (c == '+') {
					c = ' ';
				} else if (c == '%' && end - v > 2 && hexval(v[1]) >= 0 &&
					   hexval(v[2]) >= 0) {
					c = hexval(v[1]) * 16 + hexval(v[2]);
					v += 2;
				}
				if (o + 1 >= outlen)
					return false;
				out[o++] = (char)c;
			}
			out[o] = '\0';
			return true;
		}
		p = *end ? end + 1 : end;
	}
	return false;
}

bool http_query_has(const char *query, const char *name)
{
	size_t nlen = strlen(name);
	const char *p = query;

	if (query == NULL)
		return false;
	while (*p) {
		const char *end = p + strcspn(p, "&");
		size_t klen = strcspn(p, "=&");

		if (klen == nlen && memcmp(p, name, nlen) == 0)
			return true;
		p = *end ? end + 1 : end;
	}
	return false;
}
