/* Allocation failures in the router (http/router: its table is built at
 * start from every module's routes), with the routes and paths of its
 * unit test; and the request parsers that must not allocate at all
 * (http/path, http/params): each of their cases completes at N = 1. */
#include "http/params.h"
#include "http/path.h"
#include "http/router.h"
#include "torture.h"

static void h_one(const struct http_request *req, struct http_response *res, void *ctx)
{
	(void)req, (void)res, (void)ctx;
}

static const char *const routes[][2] = {
	{"GET", "/users"},
	{"POST", "/users"},
	{"GET", "/users/{id}"},
	{"DELETE", "/users/{id}"},
	{"GET", "/a/{x}/b/{y}"},
	{"GET", "/"},
	{"GET", "/health"},
	{"GET", "/peers/{service}"},
	{"PUT", "/users/{id}"},
	/* refused: malformed, duplicate */
	{"GET", "users"},
	{"GET", "/x/{}"},
	{"GET", "/x//y"},
	{"GET", "/users"},
};

static enum mn_err router(const void *input, size_t len, struct torture_out *out)
{
	static const char *const paths[][2] = {
		{"GET", "/users"},     {"GET", "/users/42"},  {"HEAD", "/users/42"},
		{"GET", "/a/1/b/two"}, {"PATCH", "/users/1"}, {"GET", "/nothing"},
	};
	struct http_router *r = http_router_create();
	struct http_route_match m;
	char allow[128];

	(void)input, (void)len;
	if (r == NULL)
		return MN_NOMEM;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		enum mn_err e = http_router_add(r, routes[i][0], routes[i][1], h_one, NULL);

		if (e == MN_NOMEM) {
			http_router_destroy(r);
			return e;
		}
		torture_outf(out, "add %s %s: %s\n", routes[i][0], routes[i][1], mn_strerror(e));
	}
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		enum http_match k = http_router_match(r, paths[i][0], paths[i][1], &m);

		torture_outf(out, "%s %s: %d %s %zu %s\n", paths[i][0], paths[i][1], (int)k,
			     k == HTTP_MATCH_OK ? m.pattern : "-", m.nparams, m.allow);
	}
	http_router_allow_all(r, allow, sizeof(allow));
	torture_outf(out, "allow %s\n", allow);
	http_router_destroy(r);
	return MN_OK;
}

/* Path decoding, Content-Length, ids and paging: no allocation. */
static enum mn_err request_parts(const void *input, size_t len, struct torture_out *out)
{
	static const char *const queries[] = {
		NULL, "", "limit=10", "limit=0", "offset=5&limit=1000", "limit=1001", "limit=x",
	};
	static const char *const ids[] = {"1", "42", "0", "-1", "01", "9223372036854775808"};
	char path[256], err[128];
	int64_t cl, id;
	size_t limit, offset;
	enum mn_err e;

	snprintf(path, sizeof(path), "%.*s", (int)len, (const char *)input);
	e = http_path_decode(path, err, sizeof(err));
	torture_outf(out, "path %s: %s\n", mn_strerror(e), e == MN_OK ? path : err);
	e = http_content_length_parse(path + 1, &cl);
	torture_outf(out, "content-length %s\n", mn_strerror(e));
	for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
		e = http_param_page(queries[i], 50, 1000, &limit, &offset, err, sizeof(err));
		torture_outf(out, "page %s %zu %zu\n", mn_strerror(e), e ? 0 : limit,
			     e ? 0 : offset);
	}
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		torture_outf(out, "id %d\n", (int)http_param_id(ids[i], &id));
	return MN_OK;
}

#define TEXT_CASE(fn, s) torture_case(#fn " " s, fn, s, sizeof(s) - 1)

int main(void)
{
	unsigned long before;

	torture_quiet_logs();
	torture_case("router", router, "", 0);
	before = torture_totals.points;
	TEXT_CASE(request_parts, "/users/42");
	TEXT_CASE(request_parts, "/a%20b/%2F");
	TEXT_CASE(request_parts, "/users/%00");
	TEXT_CASE(request_parts, "/%zz");
	TEXT_CASE(request_parts, "/12345");
	TORTURE_CHECK(torture_totals.points == before); /* they allocate nothing */
	return torture_report("alloc_http");
}
