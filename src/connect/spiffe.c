#include "connect/spiffe.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char scheme[] = "spiffe://";

/* At most this many path segments are looked at: the longest form, the
 * agent's, has six. */
#define SEGMENTS_MAX 8

struct segment {
	const char *p;
	size_t len;
};

static bool seg_is(const struct segment *s, const char *word)
{
	return s->len == strlen(word) && memcmp(s->p, word, s->len) == 0;
}

const char *spiffe_trust_domain_problem(const char *s, size_t len)
{
	size_t label = 0;

	if (len == 0)
		return "is empty";
	if (len > SPIFFE_TRUST_DOMAIN_MAX)
		return "is longer than 253 bytes";
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return "is not a host name";
			label = 0;
			continue;
		}
		if (c >= 'A' && c <= 'Z')
			return "is not lowercase";
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return "is not a host name";
		if ((label == 0 && c == '-') || ++label > 63)
			return "is not a host name";
	}
	if (label == 0 || s[len - 1] == '-')
		return "is not a host name";
	return NULL;
}

/* A name of Consul's: letters, digits, '-' and '_' ('upper' false for a
 * datacenter, which Consul lowercases). NULL when it is one. */
static const char *name_problem(const char *s, size_t len, size_t max, bool upper)
{
	if (len == 0)
		return "is empty";
	if (len > max)
		return max == SPIFFE_SERVICE_MAX ? "is longer than 128 bytes"
						 : "is longer than 63 bytes";
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (c >= 'A' && c <= 'Z' && !upper)
			return "is not lowercase";
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return "has a character Consul does not write in a name";
	}
	return NULL;
}

static void copy_part(char *dst, const struct segment *s)
{
	memcpy(dst, s->p, s->len);
	dst[s->len] = '\0';
}

static enum mn_err parse_service(const struct segment *seg, size_t n, struct spiffe_id *out,
				 char *err, size_t errlen)
{
	static const char *const part[] = {"namespace", "datacenter", "service"};
	static const size_t max[] = {SPIFFE_NAME_MAX, SPIFFE_NAME_MAX, SPIFFE_SERVICE_MAX};
	static const bool upper[] = {true, false, true};
	char *dst[] = {out->ns, out->dc, out->service};

	if (n < 4 || !seg_is(&seg[2], "dc"))
		return mn_error(err, errlen, MN_INVALID, "expected '/dc/' after the namespace");
	if (n < 6)
		return mn_error(err, errlen, MN_INVALID,
				"not a service identity: no '/svc/' segment");
	if (!seg_is(&seg[4], "svc"))
		return mn_error(err, errlen, MN_INVALID, "expected '/svc/' after the datacenter");
	if (n > 6)
		return mn_error(err, errlen, MN_INVALID, "extra segments after the service");
	for (size_t i = 0; i < 3; i++) {
		const struct segment *s = &seg[1 + 2 * i];
		const char *why = name_problem(s->p, s->len, max[i], upper[i]);

		if (why)
			return mn_error(err, errlen, MN_INVALID, "%s '%.*s' %s", part[i],
					(int)(s->len > 64 ? 64 : s->len), s->p, why);
	}
	for (size_t i = 0; i < 3; i++)
		copy_part(dst[i], &seg[1 + 2 * i]);
	out->kind = SPIFFE_SERVICE;
	return MN_OK;
}

enum mn_err spiffe_parse(const char *uri, size_t len, struct spiffe_id *out, char *err,
			 size_t errlen)
{
	struct segment seg[SEGMENTS_MAX];
	const char *p, *end = uri + len, *host, *why;
	size_t n = 0;
	enum mn_err e;

	memset(out, 0, sizeof(*out));
	if (len > SPIFFE_URI_MAX)
		return mn_error(err, errlen, MN_INVALID, "URI longer than %d bytes",
				SPIFFE_URI_MAX);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)uri[i];

		if (c <= 0x20 || c >= 0x7f)
			return mn_error(err, errlen, MN_INVALID,
					"byte %zu is not a printable ASCII character", i);
		if (c == '%')
			return mn_error(err, errlen, MN_INVALID,
					"percent-escapes are not accepted");
		if (c == '?' || c == '#')
			return mn_error(err, errlen, MN_INVALID,
					"a query or fragment is not accepted");
	}
	if (len < sizeof(scheme) - 1 || memcmp(uri, scheme, sizeof(scheme) - 1) != 0)
		return mn_error(err, errlen, MN_INVALID, "not a 'spiffe://' URI");
	host = uri + sizeof(scheme) - 1;
	for (p = host; p < end && *p != '/'; p++) {
		if (*p == '@')
			return mn_error(err, errlen, MN_INVALID, "a user part is not accepted");
		if (*p == ':')
			return mn_error(err, errlen, MN_INVALID, "a port is not accepted");
	}
	why = spiffe_trust_domain_problem(host, (size_t)(p - host));
	if (why)
		return mn_error(err, errlen, MN_INVALID, "trust domain '%.*s' %s",
				(int)(p - host > 64 ? 64 : p - host), host, why);
	memcpy(out->trust_domain, host, (size_t)(p - host));
	out->trust_domain[p - host] = '\0';
	if (p == end) {
		out->kind = SPIFFE_CA;
		return mn_error(err, errlen, MN_INVALID, "not a service identity: a CA's URI");
	}
	while (p < end) {
		const char *start = ++p;

		while (p < end && *p != '/')
			p++;
		if (n == SEGMENTS_MAX)
			return mn_error(err, errlen, MN_INVALID, "more than %d path segments",
					SEGMENTS_MAX);
		seg[n].p = start;
		seg[n].len = (size_t)(p - start);
		if (seg[n].len == 0)
			return mn_error(err, errlen, MN_INVALID, "segment %zu is empty", n + 1);
		if (seg_is(&seg[n], ".") || seg_is(&seg[n], ".."))
			return mn_error(err, errlen, MN_INVALID,
					"segment %zu ('%.*s') is a dot segment", n + 1,
					(int)seg[n].len, seg[n].p);
		n++;
	}
	if (seg_is(&seg[0], "ns")) {
		e = parse_service(seg, n, out, err, errlen);
		if (e != MN_OK)
			memset(out, 0, sizeof(*out));
		return e;
	}
	if (n == 6 && seg_is(&seg[0], "agent") && seg_is(&seg[1], "client") &&
	    seg_is(&seg[2], "dc") && seg_is(&seg[4], "id") &&
	    name_problem(seg[3].p, seg[3].len, SPIFFE_NAME_MAX, false) == NULL &&
	    name_problem(seg[5].p, seg[5].len, SPIFFE_NAME_MAX, true) == NULL) {
		out->kind = SPIFFE_AGENT;
		copy_part(out->dc, &seg[3]);
		copy_part(out->service, &seg[5]);
		return mn_error(err, errlen, MN_INVALID, "not a service identity: an agent's URI");
	}
	memset(out, 0, sizeof(*out));
	return mn_error(err, errlen, MN_INVALID,
			"path is neither '/ns/...' nor '/agent/client/...'");
}

const char *spiffe_service_problem(const char *s, size_t len)
{
	return name_problem(s, len, SPIFFE_SERVICE_MAX, true);
}

const char *spiffe_dc_problem(const char *s, size_t len)
{
	return name_problem(s, len, SPIFFE_NAME_MAX, false);
}

enum mn_err spiffe_service_uri(char *buf, size_t size, const char *trust_domain, const char *dc,
			       const char *service, char *err, size_t errlen)
{
	const char *why;
	int n;

	if (size)
		buf[0] = '\0';
	why = spiffe_trust_domain_problem(trust_domain, strlen(trust_domain));
	if (why)
		return mn_error(err, errlen, MN_INVALID, "trust domain '%.64s' %s", trust_domain,
				why);
	why = spiffe_dc_problem(dc, strlen(dc));
	if (why)
		return mn_error(err, errlen, MN_INVALID, "datacenter '%.64s' %s", dc, why);
	why = spiffe_service_problem(service, strlen(service));
	if (why)
		return mn_error(err, errlen, MN_INVALID, "service '%.64s' %s", service, why);
	n = snprintf(buf, size, "%s%s/ns/default/dc/%s/svc/%s", scheme, trust_domain, dc, service);
	if (n < 0 || (size_t)n >= size) {
		if (size)
			buf[0] = '\0';
		return mn_error(err, errlen, MN_TOO_LARGE,
				"URI longer than the buffer of %zu bytes", size);
	}
	return MN_OK;
}

bool spiffe_id_format(const struct spiffe_id *id, char *buf, size_t size)
{
	int n = -1;

	if (size == 0)
		return false;
	if (id->kind == SPIFFE_SERVICE)
		n = snprintf(buf, size, "%s%s/ns/%s/dc/%s/svc/%s", scheme, id->trust_domain, id->ns,
			     id->dc, id->service);
	else if (id->kind == SPIFFE_AGENT)
		n = snprintf(buf, size, "%s%s/agent/client/dc/%s/id/%s", scheme, id->trust_domain,
			     id->dc, id->service);
	else if (id->kind == SPIFFE_CA)
		n = snprintf(buf, size, "%s%s", scheme, id->trust_domain);
	if (n < 0 || (size_t)n >= size) {
		buf[0] = '\0';
		return false;
	}
	return true;
}

bool spiffe_service_matches(const struct spiffe_id *id, const char *trust_domain,
			    const char *service)
{
	return id->kind == SPIFFE_SERVICE && trust_domain != NULL && service != NULL &&
	       strcasecmp(id->trust_domain, trust_domain) == 0 && strcmp(id->ns, "default") == 0 &&
	       strcmp(id->service, service) == 0;
}
