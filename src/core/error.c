#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const messages[] = {
#define MN_ERROR_MSG(name, msg, status) msg,
	MN_ERROR_MAP(MN_ERROR_MSG)
#undef MN_ERROR_MSG
};

static const int statuses[] = {
#define MN_ERROR_STATUS(name, msg, status) status,
	MN_ERROR_MAP(MN_ERROR_STATUS)
#undef MN_ERROR_STATUS
};

const char *mn_strerror(enum mn_err err)
{
	if ((unsigned)err >= MN_ERR_COUNT)
		return "unknown error";
	return messages[err];
}

int mn_err_http_status(enum mn_err err)
{
	if ((unsigned)err >= MN_ERR_COUNT)
		return 500;
	return statuses[err];
}

const char *mn_http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Unknown";
	}
}

enum mn_err mn_error(char *errbuf, size_t errlen, enum mn_err err, const char *fmt, ...)
{
	va_list ap;

	if (errbuf == NULL || errlen == 0)
		return err;
	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
	return err;
}
