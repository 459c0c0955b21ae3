#include "http/router.h"
#include "core/array.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUTER_MAX_SEGMENTS 8

struct route {
	char *method;
	char *pattern;
	char *segments[ROUTER_MAX_SEGMENTS]; /* NULL entry = parameter */
	size_t nsegments;
	http_handler_fn fn;
	void *ctx;
};

struct http_router {
	struct route *routes;
	size_t n;
	size_t alloc;
};

struct http_router *http_router_create(void) { return calloc(1, sizeof(struct http_router)); }

static void route_release(struct route *rt)
{
	free(rt->method);
	free(rt->pattern);
	for (size_t i = 0; i < rt->nsegments; i++)
		free(rt->segments[i]);
}

void http_router_destroy(struct http_router *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		route_release(&r->routes[i]);
	free(r->routes);
	free(r);
}

/* Splits "/users/{id}" into {"users", NULL}; MN_INVALID when malformed,
 * MN_NOMEM when out of memory. */
static enum mn_err route_parse(struct route *rt, const char *pattern)
{
	const char *p = pattern;
	size_t params = 0;

	if (*p != '/')
		return MN_INVALID;
	if (strcmp(p, "/") == 0)
		return MN_OK;
	while (*p == '/') {
		const char *seg = ++p;
		size_t len = strcspn(seg, "/");

		if (len == 0 || rt->nsegments == ROUTER_MAX_SEGMENTS)
			return MN_INVALID;
		if (seg[0] == '{') {
			if (seg[len - 1] != '}' || len < 3 || ++params > HTTP_MAX_PARAMS)
				return MN_INVALID;
			rt->segments[rt->nsegments++] = NULL;
		} else {
			if (memchr(seg, '{', len) || memchr(seg, '}', len))
				return MN_INVALID;
			rt->segments[rt->nsegments] = strndup(seg, len);
			if (rt->segments[rt->nsegments++] == NULL)
				return MN_NOMEM;
		}
		p = seg + len;
	}
	return *p == '\0' ? MN_OK : MN_INVALID;
}

enum mn_err http_router_add(struct http_router *r, const char *method, const char *pattern,
			    http_handler_fn fn, void *ctx)
{
	struct route rt = {0};
	enum mn_err e;

	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->routes[i].pattern, pattern) == 0 &&
		    strcmp(r->routes[i].method, method) == 0)
			return MN_INVALID;
	e = route_parse(&rt, pattern);
	if (e == MN_NOMEM)
		goto out_nomem;
	if (e != MN_OK)
		goto out_invalid;
	rt.method = strdup(method);
	rt.pattern = strdup(pattern);
	if (rt.method == NULL || rt.pattern == NULL)
		goto out_nomem;
	if (!array_reserve(&r->routes, &r->alloc, r->n, sizeof(*r->routes), 16))
		goto out_nomem;
	rt.fn = fn;
	rt.ctx = ctx;
	r->routes[r->n++] = rt;
	return MN_OK;

out_nomem:
	route_release(&rt);
	return MN_NOMEM;
out_invalid:
	route_release(&rt);
	return MN_INVALID;
}

/* Matches 'path' against one route, copying parameters into m->storage. */
static bool route_matches(const struct route *rt, const char *path, struct http_route_match *m)
{
	const char *p = path;
	size_t used = 0, i = 0;

	m->nparams = 0;
	if (*p != '/')
		return false;
	if (rt->nsegments == 0)
		return strcmp(path, "/") == 0;
	for (; i < rt->nsegments; i++) {
		const char *seg;
		size_t len;

		if (*p != '/')
			return false;
		seg = ++p;
		len = strcspn(seg, "/");
		if (len == 0)
			return false;
		if (rt->segments[i] == NULL) {
			if (used + len + 1 > sizeof(m->storage))
				return false;
			memcpy(m->storage + used, seg, len);
			m->storage[used + len] = '\0';
			m->params[m->nparams++] = m->storage + used;
			used += len + 1;
		} else if (strlen(rt->segments[i]) != len || memcmp(rt->segments[i], seg, len) != 0) {
			return false;
		}
		p = seg + len;
	}
	return *p == '\0';
}

/* The methods a path allows, in this order in an Allow header. GET brings
 * HEAD with it (RFC 9110 9.3.2) and every known path answers OPTIONS. */
static const char *const allow_order[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"};

static void allow_format(char *out, size_t outlen, const bool *has, size_t nhas,
			 const char *const *others, size_t nothers)
{
	size_t len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < nhas + nothers + 1; i++) {
		const char *m = i < nhas ? (has[i] ? allow_order[i] : NULL)
			      : i < nhas + nothers ? others[i - nhas] : "OPTIONS";
		int n;

		if (m == NULL)
			continue;
		n = snprintf(out + len, outlen - len, "%s%s", len ? ", " : "", m);
		if (n < 0 || (size_t)n >= outlen - len)
			return; /* the buffer holds every method a route table can name */
		len += (size_t)n;
	}
}

/* Notes 'method' in has[] (the methods of allow_order) or others[]. */
static void allow_add(bool *has, size_t nhas, const char **others, size_t *nothers,
		      const char *method)
{
	size_t k = 0;

	while (k < nhas && strcmp(allow_order[k], method) != 0)
		k++;
	if (k < nhas) {
		has[k] = true;
		if (k == 0)
			has[1] = true; /* HEAD with GET */
		return;
	}
	for (size_t i = 0; i < *nothers; i++)
		if (strcmp(others[i], method) == 0)
			return;
	if (strcmp(method, "OPTIONS") != 0 && *nothers < 4)
		others[(*nothers)++] = method;
}

enum http_match http_router_match(const struct http_router *r, const char *method,
				  const char *path, struct http_route_match *m)
{
	enum { NORDER = sizeof(allow_order) / sizeof(allow_order[0]) };
	bool has[NORDER] = {false};
	const char *others[4];
	size_t nothers = 0;
	const struct route *hit = NULL, *get = NULL;
	bool head = strcmp(method, "HEAD") == 0, known = false;

	m->allow[0] = '\0';
	for (size_t i = 0; i < r->n; i++) {
		const struct route *rt = &r->routes[i];

		if (!route_matches(rt, path, m))
			continue;
		known = true;
		if (hit == NULL && strcmp(rt->method, method) == 0)
			hit = rt;
		if (get == NULL && strcmp(rt->method, "GET") == 0)
			get = rt;
		allow_add(has, NORDER, others, &nothers, rt->method);
	}
	if (hit == NULL && head)
		hit = get;
	if (known)
		allow_format(m->allow, sizeof(m->allow), has, NORDER, others, nothers);
	if (hit) {
		/* route_matches filled params for the last route it tried: redo
		 * it for the one chosen. */
		route_matches(hit, path, m);
		m->fn = hit->fn;
		m->ctx = hit->ctx;
		m->pattern = hit->pattern;
		return HTTP_MATCH_OK;
	}
	m->nparams = 0;
	return known ? HTTP_MATCH_METHOD_NOT_ALLOWED : HTTP_MATCH_NOT_FOUND;
}

void http_router_allow_all(const struct http_router *r, char *out, size_t outlen)
{
	enum { NORDER = sizeof(allow_order) / sizeof(allow_order[0]) };
	bool has[NORDER] = {false};
	const char *others[4];
	size_t nothers = 0;

	for (size_t i = 0; i < r->n; i++)
		allow_add(has, NORDER, others, &nothers, r->routes[i].method);
	allow_format(out, outlen, has, NORDER, others, nothers);
}
