/* Project-wide error codes. One X-macro list gives each code its name, its
 * message and the HTTP status it maps to, so the three can never drift apart
 * (libuv's UV_ERRNO_MAP, libcurl's CURLcode). */
#ifndef MESHNODE_CORE_ERROR_H
#define MESHNODE_CORE_ERROR_H

#include <stddef.h>

/*      name            message                          http status */
#define MN_ERROR_MAP(X)                                                  \
	X(OK,           "ok",                            200)            \
	X(INVALID,      "invalid argument",              400)            \
	X(NOT_FOUND,    "not found",                     404)            \
	X(CONFLICT,     "conflict",                      409)            \
	X(TOO_LARGE,    "too large",                     413)            \
	X(UNSUPPORTED,  "unsupported media type",        415)            \
	X(UNPROCESSABLE, "unprocessable entity",         422)            \
	X(UNAVAILABLE,  "service unavailable",           503)            \
	X(TIMEOUT,      "timed out",                     504)            \
	X(NOMEM,        "out of memory",                 500)            \
	X(IO,           "input/output error",            500)            \
	X(PROTOCOL,     "protocol error",                502)            \
	X(FORBIDDEN,    "forbidden",                     403)            \
	X(CONFIG,       "configuration error",           500)            \
	X(INTERNAL,     "internal error",                500)

enum mn_err {
#define MN_ERROR_ENUM(name, msg, status) MN_##name,
	MN_ERROR_MAP(MN_ERROR_ENUM)
#undef MN_ERROR_ENUM
	MN_ERR_COUNT
};

/* The fixed message of 'err' ("not found"); never NULL. */
const char *mn_strerror(enum mn_err err);

/* The HTTP status 'err' maps to (500 for unknown codes). */
int mn_err_http_status(enum mn_err err);

/* The reason phrase of an HTTP status ("Not Found"); "Unknown" if unlisted. */
const char *mn_http_reason(int status);

/* Formats detail into the optional caller buffer 'errbuf' of 'errlen' bytes
 * (redis's anet convention: errbuf may be NULL) and returns 'err', so callers
 * can write `return mn_error(errbuf, len, MN_INVALID, "...", ...);`. */
enum mn_err mn_error(char *errbuf, size_t errlen, enum mn_err err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
