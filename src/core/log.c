#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int current_level = MN_LOG_INFO;
static _Atomic int current_format = MN_LOG_JSON;
static _Atomic int out_fd = STDERR_FILENO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level) { atomic_store(&current_level, (int)level); }
enum log_level log_get_level(void) { return (enum log_level)atomic_load(&current_level); }
void log_set_format(enum log_format format) { atomic_store(&current_format, (int)format); }
enum log_format log_get_format(void) { return (enum log_format)atomic_load(&current_format); }
void log_set_fd(int fd) { atomic_store(&out_fd, fd); }

bool log_enabled(enum log_level level) { return (int)level >= atomic_load(&current_level); }

const char *log_level_name(enum log_level level)
{
	return (unsigned)level <= MN_LOG_ERROR ? level_names[level] : "unknown";
}

bool log_level_parse(const char *s, enum log_level *out)
{
	for (int i = MN_LOG_DEBUG; i <= MN_LOG_ERROR; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return true;
		}
	}
	return false;
}

bool log_format_parse(const char *s, enum log_format *out)
{
	if (strcmp(s, "json") == 0)
		*out = MN_LOG_JSON;
	else if (strcmp(s, "text") == 0)
		*out = MN_LOG_TEXT;
	else
		return false;
	return true;
}

/* Appends 'src' JSON-escaped to dst[*pos..cap-1]; truncates when full. */
static void put_escaped(char *dst, size_t cap, size_t *pos, const char *src)
{
	static const char hex[] = "0123456789abcdef";

	for (; *src && *pos + 7 < cap; src++) {
		unsigned char c = (unsigned char)*src;

		if (c == '"' || c == '\\') {
			dst[(*pos)++] = '\\';
			dst[(*pos)++] = (char)c;
		} else if (c == '\n') {
			dst[(*pos)++] = '\\';
			dst[(*pos)++] = 'n';
		} else if (c < 0x20) {
			memcpy(dst + *pos, "\\u00", 4);
			dst[*pos + 4] = hex[c >> 4];
			dst[*pos + 5] = hex[c & 15];
			*pos += 6;
		} else {
			dst[(*pos)++] = (char)c;
		}
	}
}

void log_write(enum log_level level, const char *component, const char *fmt, ...)
{
	char msg[2048], line[4608], ts[40];
	struct timeval tv;
	struct tm tm;
	size_t pos;
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = (int)strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + n, sizeof(ts) - (size_t)n, ".%03dZ", (int)(tv.tv_usec / 1000));

	if (log_get_format() == MN_LOG_TEXT) {
		n = snprintf(line, sizeof(line), "%s %-5s [%s] %s\n", ts, log_level_name(level),
			     component, msg);
		pos = n < 0 ? 0 : ((size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
	} else {
		n = snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"",
			     ts, log_level_name(level));
		pos = (size_t)n;
		put_escaped(line, sizeof(line) - 3, &pos, component);
		memcpy(line + pos, "\",\"msg\":\"", 9);
		pos += 9;
		put_escaped(line, sizeof(line) - 3, &pos, msg);
		memcpy(line + pos, "\"}\n", 3);
		pos += 3;
	}
	/* A short write to stderr is not worth retrying: the record is lost
	 * either way and logging must never block the caller for long. */
	if (write(atomic_load(&out_fd), line, pos) < 0)
		return;
}
