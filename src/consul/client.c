#include "consul/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/env.h"
#include "core/escape.h"

struct consul {
	char *address;        /* the URL base requests go to */
	char *connect_to;     /* with a TLS server name: "NAME:PORT:HOST:PORT" */
	char *token_header;   /* "X-Consul-Token: ..." or NULL */
	char *ca_file, *cert_file, *key_file;
	struct httpc_tls tls;
	const struct httpc_transport *transport;
	consul_observe_fn observe;
	void *observe_ctx;
};

static char *strdup_or_null(const char *s) { return s && *s ? strdup(s) : NULL; }

/* Requests name 'server_name' in the URL (so TLS checks the certificate
 * against it) while connecting to the configured host and port. */
static enum mn_err consul_use_server_name(struct consul *c, const char *server_name)
{
	const char *scheme_end = strstr(c->address, "://") + 3;
	const char *colon = strrchr(scheme_end, ':');
	char *url = NULL, *connect_to = NULL;
	int port;

	if (colon == NULL || (port = atoi(colon + 1)) <= 0 || strpbrk(server_name, ":/@ "))
		return MN_INVALID;
	if (asprintf(&connect_to, "%s:%d:%.*s:%d", server_name, port,
		     (int)(colon - scheme_end), scheme_end, port) < 0)
		return MN_NOMEM;
	if (asprintf(&url, "%.*s%s:%d", (int)(scheme_end - c->address), c->address, server_name,
		     port) < 0) {
		free(connect_to);
		return MN_NOMEM;
	}
	free(c->address);
	c->address = url;
	c->connect_to = connect_to;
	return MN_OK;
}

struct consul *consul_create(const struct consul_opts *opts, char *err, size_t errlen)
{
	struct consul *c;
	size_t len;

	if (opts->address == NULL || (strncmp(opts->address, "http://", 7) != 0 &&
				      strncmp(opts->address, "https://", 8) != 0)) {
		mn_error(err, errlen, MN_INVALID, "consul address '%s' is not an http(s) URL",
			 opts->address ? opts->address : "");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		goto out_nomem;
	c->address = strdup(opts->address);
	if (c->address == NULL)
		goto out_nomem;
	len = strlen(c->address);
	while (len && c->address[len - 1] == '/')
		c->address[--len] = '\0';
	if (opts->server_name && *opts->server_name &&
	    consul_use_server_name(c, opts->server_name) != MN_OK) {
		mn_error(err, errlen, MN_INVALID, "consul address '%s' has no host:port for '%s'",
			 opts->address, opts->server_name);
		consul_destroy(c);
		return NULL;
	}
	if (opts->token && *opts->token) {
		if (strpbrk(opts->token, "\r\n")) {
			mn_error(err, errlen, MN_INVALID, "consul token contains a line break");
			consul_destroy(c);
			return NULL;
		}
		if (asprintf(&c->token_header, "X-Consul-Token: %s", opts->token) < 0) {
			c->token_header = NULL;
			goto out_nomem;
		}
	}
	c->transport = opts->transport ? opts->transport : &httpc_libcurl;
	c->ca_file = strdup_or_null(opts->tls.ca_file);
	c->cert_file = strdup_or_null(opts->tls.cert_file);
	c->key_file = strdup_or_null(opts->tls.key_file);
	c->tls = (struct httpc_tls){.ca_file = c->ca_file,
				    .cert_file = c->cert_file,
				    .key_file = c->key_file,
				    .insecure = opts->tls.insecure};
	return c;

out_nomem:
	consul_destroy(c);
	mn_error(err, errlen, MN_NOMEM, "out of memory");
	return NULL;
}

struct consul *consul_create_env(const char *address, const char *token, char *const *env,
				 char *err, size_t errlen)
{
	return consul_create_env_transport(address, token, env, NULL, err, errlen);
}

struct consul *consul_create_env_transport(const char *address, const char *token,
					   char *const *env,
					   const struct httpc_transport *transport, char *err,
					   size_t errlen)
{
	char https[512];
	struct consul_opts opts = {
		.address = address,
		.token = token,
		.tls = {.ca_file = env_get(env, "CONSUL_CACERT"),
			.cert_file = env_get(env, "CONSUL_CLIENT_CERT"),
			.key_file = env_get(env, "CONSUL_CLIENT_KEY"),
			.insecure = !env_bool(env, "CONSUL_HTTP_SSL_VERIFY", true)},
		.server_name = env_get(env, "CONSUL_TLS_SERVER_NAME"),
		.transport = transport,
	};

	if (env_bool(env, "CONSUL_HTTP_SSL", false) && strncmp(address, "http://", 7) == 0) {
		snprintf(https, sizeof(https), "https://%s", address + 7);
		opts.address = https;
	}
	return consul_create(&opts, err, errlen);
}

void consul_destroy(struct consul *c)
{
	if (c == NULL)
		return;
	free(c->address);
	free(c->connect_to);
	free(c->token_header);
	free(c->ca_file);
	free(c->cert_file);
	free(c->key_file);
	free(c);
}

void consul_set_observer(struct consul *c, consul_observe_fn fn, void *ctx)
{
	c->observe = fn;
	c->observe_ctx = ctx;
}

const char *consul_address(const struct consul *c) { return c->address; }

struct httpc *consul_conn_create(struct consul *c)
{
	return c->transport->create(c->transport->ctx);
}

void consul_conn_destroy(struct consul *c, struct httpc *h)
{
	if (h)
		c->transport->destroy(c->transport->ctx, h);
}

/* The start of an error answer's body for a message, escaped: Consul ends
 * them with a newline, and the message may become a line of its own. */
static const char *body_excerpt(const struct httpc_response *res, char out[128])
{
	const char *s = res->body.data ? res->body.data : "";
	size_t len = res->body.len, pos = 0;

	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' '))
		len--;
	escape_append(out, 127, &pos, s, len, ESCAPE_TEXT);
	out[pos] = '\0';
	return out;
}

enum mn_err consul_call(struct consul *c, struct httpc *h, const struct consul_call *call,
			struct httpc_response *res, char *err, size_t errlen)
{
	const char *headers[3] = {"Content-Type: application/json", c->token_header, NULL};
	char url[2048], excerpt[128];
	enum mn_err ret;

	if ((size_t)snprintf(url, sizeof(url), "%s%s", c->address, call->path) >= sizeof(url)) {
		ret = mn_error(err, errlen, MN_INVALID, "consul path too long");
		goto out;
	}
	struct httpc_request req = {
		.method = call->method,
		.url = url,
		.headers = headers,
		.body = call->body,
		.body_len = call->body_len,
		.timeout_ms = call->timeout_ms,
		.connect_timeout_ms = call->timeout_ms < 2000 ? call->timeout_ms : 2000,
		.max_response = call->max_response ? call->max_response : (1u << 20),
		.tls = &c->tls,
		.capture_header = "X-Consul-Index",
		.connect_to = c->connect_to,
		.cancel = call->cancel,
	};
	ret = c->transport->perform(c->transport->ctx, h, &req, res, err, errlen);
	if (ret != MN_OK)
		goto out;
	if (res->status >= 200 && res->status < 300)
		goto out;
	if (res->status == 404)
		ret = mn_error(err, errlen, MN_NOT_FOUND, "consul %s: not found", call->op);
	else if (res->status == 403)
		ret = mn_error(err, errlen, MN_FORBIDDEN, "consul %s: permission denied (%s)",
			       call->op, body_excerpt(res, excerpt));
	else
		ret = mn_error(err, errlen, MN_PROTOCOL, "consul %s: status %ld (%s)", call->op,
			       res->status, body_excerpt(res, excerpt));
out:
	if (c->observe)
		c->observe(c->observe_ctx, call->op, ret);
	return ret;
}
