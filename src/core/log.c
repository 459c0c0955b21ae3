#include "core/log.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/escape.h"

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

/* The component is a name from the code; bounding it keeps the head of a
 * record far below LOG_RECORD_MAX whatever it holds. */
#define COMPONENT_MAX 64

_Static_assert(LOG_RECORD_MAX <= PIPE_BUF, "a record must be one atomic write to a pipe");

/* One thread's formatting space. The message buffer is as large as the
 * record: a message cut by vsnprintf() is then always cut again, at a
 * character boundary, when it is escaped into the record, so the partial
 * UTF-8 sequence vsnprintf() may leave at its end is never written. */
struct log_scratch {
	char msg[LOG_RECORD_MAX];  /* the message as formatted */
	char line[LOG_RECORD_MAX]; /* the record as written */
};

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static bool scratch_key_ok;

/* The key's destructor frees a thread's buffer when the thread exits:
 * threads come and go (civetweb's workers, test programs starting and
 * stopping servers), and LeakSanitizer would report every exited thread's
 * buffer. The main thread's stays until the process ends. */
static void scratch_key_create(void)
{
	scratch_key_ok = pthread_key_create(&scratch_key, free) == 0;
}

static struct log_scratch *scratch_get(void)
{
	struct log_scratch *s;

	pthread_once(&scratch_once, scratch_key_create);
	if (!scratch_key_ok)
		return NULL;
	s = pthread_getspecific(scratch_key);
	if (s == NULL) {
		s = malloc(sizeof(*s));
		if (s && pthread_setspecific(scratch_key, s) != 0) {
			free(s);
			s = NULL;
		}
	}
	return s;
}

/* "2024-05-01T12:00:00.123Z" (UTC, milliseconds). */
static void timestamp(char ts[32])
{
	struct timeval tv;
	struct tm tm;
	size_t n;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(ts, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + n, 32 - n, ".%03dZ", (int)(tv.tv_usec / 1000));
}

static void put(char *line, size_t *pos, const char *s)
{
	size_t n = strlen(s);

	memcpy(line + *pos, s, n);
	*pos += n;
}

/* Builds one record in line[0..LOG_RECORD_MAX) and returns its length.
 * 'cut' says the message was already cut when formatted. */
static size_t format_record(char *line, enum log_format format, enum log_level level,
			    const char *component, const char *ts, const char *msg, size_t msg_len,
			    bool cut)
{
	enum escape_style style = format == MN_LOG_JSON ? ESCAPE_JSON : ESCAPE_TEXT;
	const char *tail = format == MN_LOG_JSON ? "\"}\n" : "\n";
	size_t pos, start, tail_len = strlen(tail);
	int n;

	if (format == MN_LOG_JSON)
		n = snprintf(line, LOG_RECORD_MAX,
			     "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"", ts,
			     log_level_name(level));
	else
		n = snprintf(line, LOG_RECORD_MAX, "%s %-5s [", ts, log_level_name(level));
	pos = n > 0 ? (size_t)n : 0;
	escape_append(line, pos + COMPONENT_MAX, &pos, component, strlen(component), style);
	put(line, &pos, format == MN_LOG_JSON ? "\",\"msg\":\"" : "] ");
	start = pos;
	if (escape_append(line, LOG_RECORD_MAX - tail_len, &pos, msg, msg_len, style) < msg_len ||
	    cut) {
		/* again, leaving room for the marker */
		pos = start;
		escape_append(line, LOG_RECORD_MAX - tail_len - strlen(LOG_TRUNCATED), &pos, msg,
			      msg_len, style);
		put(line, &pos, LOG_TRUNCATED);
	}
	put(line, &pos, tail);
	return pos;
}

/* Out of memory for the thread's buffer: say a record was lost, from a
 * small frame of its own so log_write()'s stays small. */
__attribute__((noinline, cold)) static void write_lost(const char *ts)
{
	char line[160];
	int n;

	if (log_get_format() == MN_LOG_JSON)
		n = snprintf(line, sizeof(line),
			     "{\"ts\":\"%s\",\"level\":\"error\",\"component\":\"log\","
			     "\"msg\":\"out of memory: a record was lost\"}\n",
			     ts);
	else
		n = snprintf(line, sizeof(line),
			     "%s error [log] out of memory: a record was lost\n", ts);
	if (n > 0 && (size_t)n < sizeof(line) && write(atomic_load(&out_fd), line, (size_t)n) < 0)
		return;
}

void log_write(enum log_level level, const char *component, const char *fmt, ...)
{
	struct log_scratch *s = scratch_get();
	size_t len, msg_len;
	char ts[32];
	va_list ap;
	int n;

	timestamp(ts);
	if (s == NULL) {
		write_lost(ts);
		return;
	}
	va_start(ap, fmt);
	n = vsnprintf(s->msg, sizeof(s->msg), fmt, ap);
	va_end(ap);
	/* the length vsnprintf() gives, not strlen(): a NUL from "%c" is
	 * escaped like any control character */
	msg_len = n < 0 ? 0 : (size_t)n < sizeof(s->msg) ? (size_t)n : sizeof(s->msg) - 1;
	len = format_record(s->line, log_get_format(), level, component ? component : "", ts,
			    s->msg, msg_len, n >= 0 && (size_t)n >= sizeof(s->msg));
	/* A short write to stderr is not worth retrying: the record is lost
	 * either way and logging must never block the caller for long. */
	if (write(atomic_load(&out_fd), s->line, len) < 0)
		return;
}

void log_write_lines(enum log_level level, const char *component, const char *text)
{
	const char *line = text, *nl;

	while (line && *line) {
		nl = strchr(line, '\n');
		log_at(level, component, "%.*s",
		       (int)(nl ? nl - line : (ptrdiff_t)strlen(line)), line);
		line = nl ? nl + 1 : line + strlen(line);
	}
}
