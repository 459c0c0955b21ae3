/* A request as the server hands it on: "METHOD TARGET" on the first line,
 * the Content-Type on the second ("" for none), the body after. The target
 * is split at '?' into the raw path and the raw query; the path is
 * percent-decoded as the server does it (http_path_decode), and a path it
 * refuses goes no further. The node's own route table routes it; users and orders
 * requests then run their real handlers over memory stores, and the query
 * goes through the paging and query-string readers.
 *
 * Checked: a match rebuilds the path from its pattern and parameters;
 * every reply has a known status, a JSON body that parses (an "error"
 * string for 4xx; /metrics aside), header lines without stray CR or LF,
 * and never a 500. */
#include <jansson.h>
#include <strings.h>

#include "fuzz.h"
#include "http/params.h"
#include "http/path.h"
#include "http/router.h"
#include "http/system_handlers.h"
#include "store/drivers.h"
#include "orders/orders_handlers.h"
#include "peers/peers_handlers.h"
#include "peers/resolver.h"
#include "orders/orders_repo.h"
#include "users/users_repo.h"
#include "users/users_handlers.h"

struct request_parts {
	char *method, *path, *query, *content_type, *body;
	size_t body_len;
};

static const char *request_header(const struct http_request *req, const char *name)
{
	const struct request_parts *r = req->impl;

	if (strcasecmp(name, "Content-Type") == 0 && r->content_type[0] != '\0')
		return r->content_type;
	return NULL;
}

/* Users 1 and 2 exist for the orders module. */
static enum mn_err user_exists(void *ctx, int64_t id, const struct users_peer_trace *trace,
			       unsigned *retry_after_s, char *err, size_t errlen)
{
	(void)ctx, (void)trace, (void)retry_after_s;
	if (id == 1 || id == 2)
		return MN_OK;
	return mn_error(err, errlen, MN_NOT_FOUND, "no user %lld", (long long)id);
}

/* The config in force (the defaults) and an empty registry, made once. */
static atomic_bool stopping;
static struct system_handlers system_cbs = {.stopping = &stopping};
static const struct peers_handlers peers = {NULL, NULL};
static const struct users_peer users_peer = {user_exists, NULL};

/* Splits the input; every part is its own exact-size allocation. */
static void parts_split(struct request_parts *r, const uint8_t *data, size_t size)
{
	const uint8_t *end = data + size, *nl, *sp, *q;

	nl = memchr(data, '\n', size);
	if (nl == NULL)
		nl = end;
	sp = memchr(data, ' ', (size_t)(nl - data));
	if (sp == NULL)
		sp = nl;
	r->method = fuzz_strndup(data, (size_t)(sp - data));
	if (sp < nl)
		sp++;
	q = memchr(sp, '?', (size_t)(nl - sp));
	r->path = fuzz_strndup(sp, (size_t)((q ? q : nl) - sp));
	r->query = q ? fuzz_strndup(q + 1, (size_t)(nl - q - 1)) : NULL;
	data = nl < end ? nl + 1 : end;
	nl = memchr(data, '\n', (size_t)(end - data));
	if (nl == NULL)
		nl = end;
	r->content_type = fuzz_strndup(data, (size_t)(nl - data));
	data = nl < end ? nl + 1 : end;
	r->body_len = (size_t)(end - data);
	r->body = fuzz_strndup(data, r->body_len);
}

static void parts_free(struct request_parts *r)
{
	free(r->method);
	free(r->path);
	free(r->query);
	free(r->content_type);
	free(r->body);
}

/* Substituting the parameters into the pattern gives the path back. */
static void check_match(const struct http_route_match *m, const char *path)
{
	const char *p = m->pattern, *q = path;
	size_t k = 0;

	while (*p) {
		if (*p == '{') {
			size_t len = strlen(m->params[k]);

			FUZZ_CHECK(k < m->nparams && len > 0 && !strchr(m->params[k], '/'));
			FUZZ_CHECK(strncmp(q, m->params[k], len) == 0);
			q += len;
			k++;
			p = strchr(p, '}') + 1;
		} else {
			FUZZ_CHECK(*p == *q);
			p++;
			q++;
		}
	}
	FUZZ_CHECK(*q == '\0' && k == m->nparams);
}

static void check_response(const struct http_response *res)
{
	static const int known[] = {200, 201, 204, 400, 404, 405, 409, 413, 415, 422, 503};
	bool ok = false;
	json_t *body;

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		ok = ok || res->status == known[i];
	FUZZ_CHECK(ok);
	FUZZ_CHECK(res->headers_len == strlen(res->headers));
	for (const char *h = res->headers; *h; h++)
		if (*h == '\r' || *h == '\n')
			FUZZ_CHECK(h[0] == '\r' && h[1] == '\n' && h[2] != '\r' && h[2] != '\n' &&
				   h++);
	if (res->status == 204) {
		FUZZ_CHECK(res->body.len == 0);
		return;
	}
	FUZZ_CHECK(res->content_type != NULL);
	if (strncmp(res->content_type, "text/plain", 10) == 0) {
		FUZZ_CHECK(res->status == 200); /* /metrics */
		return;
	}
	FUZZ_CHECK(strcmp(res->content_type, "application/json") == 0);
	body = json_loadb(res->body.data ? res->body.data : "", res->body.len, JSON_DECODE_ANY,
			  NULL);
	FUZZ_CHECK(body != NULL);
	if (res->status >= 400)
		FUZZ_CHECK(json_is_string(json_object_get(body, "error")));
	json_decref(body);
}

/* The readers the list handlers use, with tight buffers. */
static void check_query(const char *query)
{
	size_t limit, offset;
	char err[128], *out;

	if (http_param_page(query, 50, 1000, &limit, &offset, err, sizeof(err)) == MN_OK)
		FUZZ_CHECK(limit >= 1 && limit <= 1000 && offset <= INT64_MAX);
	else
		FUZZ_CHECK(err[0] != '\0');
	for (size_t len = 1; len <= 4; len++) {
		out = malloc(len);
		FUZZ_CHECK(out != NULL);
		if (http_query_get(query, "limit", out, len))
			FUZZ_CHECK(strlen(out) < len);
		free(out);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct config_sources src = {.hostname = "fuzz"};
	struct config *cfg = NULL;

	(void)argc, (void)argv;
	fuzz_quiet_logs();
	FUZZ_CHECK(config_load(&src, &cfg, NULL, NULL) == MN_OK);
	system_cbs.config = config_store_create(cfg);
	system_cbs.metrics = metrics_create();
	FUZZ_CHECK(system_cbs.config && system_cbs.metrics);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct request_parts parts;
	struct http_router *router = http_router_create();
	struct users_repo *urepo = users_repo_memory_create();
	struct orders_repo *orepo = orders_repo_memory_create(NULL);
	struct users_service *usvc = users_service_create(urepo);
	struct orders_service *osvc = orders_service_create(orepo, &users_peer);
	struct http_route_match m;
	struct http_response res;
	struct http_request req;
	struct user u;
	struct order o;
	char why[128];
	int64_t id;

	FUZZ_CHECK(router && urepo && orepo && usvc && osvc);
	FUZZ_CHECK(users_handlers_register(router, usvc) == MN_OK);
	FUZZ_CHECK(orders_handlers_register(router, osvc) == MN_OK);
	FUZZ_CHECK(system_handlers_register(router, &system_cbs) == MN_OK);
	FUZZ_CHECK(peers_handlers_register(router, &peers) == MN_OK);
	user_init(&u);
	FUZZ_CHECK(users_repo_create_user(urepo, "Ada", "ada@example.com", &u, NULL, 0) == MN_OK);
	user_release(&u);
	FUZZ_CHECK(users_repo_create_user(urepo, "Grace", NULL, &u, NULL, 0) == MN_OK);
	user_release(&u);
	order_init(&o);
	FUZZ_CHECK(orders_repo_create_order(orepo, 1, "tea", 3, &o, NULL, 0) == MN_OK);
	order_release(&o);

	parts_split(&parts, data, size);
	check_query(parts.query);
	if (http_path_decode(parts.path, why, sizeof(why)) != MN_OK) {
		FUZZ_CHECK(why[0] != '\0');
		goto out;
	}
	/* What the server routes: starts with '/', no NUL, no control
	 * character. */
	FUZZ_CHECK(parts.path[0] == '/');
	for (const char *c = parts.path; *c; c++)
		FUZZ_CHECK((unsigned char)*c >= 0x20 && *c != 0x7f);
	switch (http_router_match(router, parts.method, parts.path, &m)) {
	case HTTP_MATCH_OK:
		check_match(&m, parts.path);
		if (m.nparams == 1 && http_param_id(m.params[0], &id))
			FUZZ_CHECK(id >= 1 && m.params[0][0] >= '0' && m.params[0][0] <= '9');
		if (strcmp(m.pattern, "/peers/{service}") == 0) {
			/* the view needs a live peer client; the name check
			 * is what guards it */
			if (resolver_name_valid(m.params[0]))
				FUZZ_CHECK(strlen(m.params[0]) <= 128 &&
					   strspn(m.params[0],
						  "abcdefghijklmnopqrstuvwxyz"
						  "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
						  "0123456789-_.") == strlen(m.params[0]));
			break;
		}
		req = (struct http_request){
			.method = parts.method,
			.path = parts.path,
			.query = parts.query,
			.body = parts.body,
			.body_len = parts.body_len,
			.request_id = "fuzz",
			.route = m.pattern,
			.nparams = m.nparams,
			.header = request_header,
			.impl = &parts,
		};
		for (size_t i = 0; i < m.nparams; i++)
			req.params[i] = m.params[i];
		http_response_init(&res);
		m.fn(&req, &res, m.ctx);
		check_response(&res);
		http_response_release(&res);
		break;
	case HTTP_MATCH_METHOD_NOT_ALLOWED: FUZZ_CHECK(m.allow[0] != '\0' && m.nparams == 0); break;
	case HTTP_MATCH_NOT_FOUND: FUZZ_CHECK(m.nparams == 0); break;
	}

out:
	parts_free(&parts);
	orders_service_destroy(osvc);
	users_service_destroy(usvc);
	orders_repo_destroy(orepo);
	users_repo_destroy(urepo);
	http_router_destroy(router);
	return 0;
}
