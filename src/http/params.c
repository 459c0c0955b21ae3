#include "http/params.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool http_param_id(const char *s, int64_t *id)
{
	long long v;
	char *end;

	if (s == NULL || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 1)
		return false;
	*id = (int64_t)v;
	return true;
}

static bool parse_size(const char *s, unsigned long long max, size_t *out)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return false;
	*out = (size_t)v;
	return true;
}

enum mn_err http_param_page(const char *query, size_t def, size_t max, size_t *limit,
			    size_t *offset, char *err, size_t errlen)
{
	char text[32];

	*limit = def;
	*offset = 0;
	if (http_query_get(query, "limit", text, sizeof(text)) &&
	    (!parse_size(text, max, limit) || *limit == 0))
		return mn_error(err, errlen, MN_INVALID, "'limit' must be an integer from 1 to %zu",
				max);
	if (http_query_get(query, "offset", text, sizeof(text)) &&
	    !parse_size(text, INT64_MAX, offset))
		return mn_error(err, errlen, MN_INVALID, "'offset' must be a non-negative integer");
	return MN_OK;
}

bool http_require_json(const struct http_request *req, struct http_response *res)
{
	const char *type = req->header(req, "Content-Type");
	size_t n;

	if (type == NULL)
		return true;
	n = strcspn(type, "; \t");
	if (n == strlen("application/json") && strncasecmp(type, "application/json", n) == 0)
		return true;
	http_reply_error(res, 415, "the body must be application/json");
	return false;
}
