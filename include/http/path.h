/* Request paths and framing headers as the RFCs define them, checked before
 * a request is routed. Pure logic, no I/O: the server and the fuzz target
 * call it alike. */
#ifndef MESHNODE_HTTP_PATH_H
#define MESHNODE_HTTP_PATH_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Percent-decodes the request path in place (it only shrinks). MN_INVALID,
 * with the reason in err, for a path that does not start with '/', a
 * malformed escape, an encoded NUL or '/', a control character, or a "."
 * or ".." segment that was percent-encoded (plain dot segments were already
 * removed by the server, RFC 3986 5.2.4). On failure 'path' may be partly
 * decoded. */
enum mn_err http_path_decode(char *path, char *err, size_t errlen);

/* Parses one Content-Length field value: optional whitespace around 1 to 18
 * decimal digits, nothing else (no sign, no list). MN_INVALID otherwise. */
enum mn_err http_content_length_parse(const char *value, int64_t *out);

#endif
