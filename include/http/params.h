/* What the API handlers read from a request the same way: an id path
 * segment, ?limit=&offset= paging, and a JSON Content-Type. */
#ifndef MESHNODE_HTTP_PARAMS_H
#define MESHNODE_HTTP_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "http/http.h"

/* A resource id: a decimal integer in 1..INT64_MAX, nothing else. */
bool http_param_id(const char *s, int64_t *id);

/* ?limit= (1..max, default 'def') and ?offset= (>= 0, default 0) from the
 * raw query (NULL: none). MN_INVALID with err naming the parameter. */
enum mn_err http_param_page(const char *query, size_t def, size_t max, size_t *limit,
			    size_t *offset, char *err, size_t errlen);

/* true when the request's body may be read as JSON: no Content-Type, or
 * application/json (with parameters). Otherwise replies 415 and returns
 * false. */
bool http_require_json(const struct http_request *req, struct http_response *res);

#endif
