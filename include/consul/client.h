/* A client of the local Consul agent's HTTP API: address, ACL token and TLS
 * settings, and one call primitive the agent/kv modules build on. The token
 * travels only in the X-Consul-Token header; it is never logged. */
#ifndef MESHNODE_CONSUL_CLIENT_H
#define MESHNODE_CONSUL_CLIENT_H

#include "http/client.h"

struct consul;

struct consul_opts {
	const char *address;      /* "http://127.0.0.1:8500" */
	const char *token;        /* "" or NULL: no token */
	struct httpc_tls tls;     /* from CONSUL_CACERT and friends */
	const char *server_name;  /* CONSUL_TLS_SERVER_NAME: the name the agent's
				     certificate must carry; NULL: the address's host */
	const struct httpc_transport *transport; /* borrowed; NULL: httpc_libcurl */
};

/* Called after every agent call: 'op' names it ("register", "kv_list"),
 * 'result' is what consul_call returned. */
typedef void (*consul_observe_fn)(void *ctx, const char *op, enum mn_err result);

/* A new client (copies everything in opts). NULL on a bad address or out of
 * memory, with the reason in err. */
struct consul *consul_create(const struct consul_opts *opts, char *err, size_t errlen);
/* consul_create() with TLS set as Consul's own tools read it from the
 * environment 'env': CONSUL_CACERT, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY,
 * CONSUL_TLS_SERVER_NAME; CONSUL_HTTP_SSL=true means https whatever the
 * address says, CONSUL_HTTP_SSL_VERIFY=false turns verification off. */
struct consul *consul_create_env(const char *address, const char *token, char *const *env,
				 char *err, size_t errlen);
/* consul_create_env() over 'transport' (borrowed; NULL: httpc_libcurl). */
struct consul *consul_create_env_transport(const char *address, const char *token,
					   char *const *env,
					   const struct httpc_transport *transport, char *err,
					   size_t errlen);
void consul_destroy(struct consul *c);

void consul_set_observer(struct consul *c, consul_observe_fn fn, void *ctx);

/* The agent address in use (borrowed). */
const char *consul_address(const struct consul *c);

struct consul_call {
	const char *op;            /* for metrics and logs */
	const char *method;
	const char *path;          /* "/v1/agent/service/register", with query */
	const char *body;          /* may be NULL */
	size_t body_len;
	long timeout_ms;
	size_t max_response;
	const atomic_bool *cancel; /* may be NULL */
};

/* A connection handle of the client's transport for consul_call(), used by
 * one thread at a time; NULL when out of memory. */
struct httpc *consul_conn_create(struct consul *c);
void consul_conn_destroy(struct consul *c, struct httpc *h);

/* Performs one call through 'h' (from consul_conn_create(): one per thread).
 * MN_OK for a 2xx answer (body in res); MN_NOT_FOUND for 404 (res kept);
 * MN_FORBIDDEN for 403 (ACL); MN_PROTOCOL for other statuses;
 * MN_UNAVAILABLE / MN_TIMEOUT / MN_IO when the agent did not answer. */
enum mn_err consul_call(struct consul *c, struct httpc *h, const struct consul_call *call,
			struct httpc_response *res, char *err, size_t errlen);

#endif
