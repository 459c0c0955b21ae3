/* Structured logging to stderr, one line per record, written with a single
 * write(2) so lines from different threads never interleave. The level and
 * format can change at any time from any thread (they follow live config).
 *
 * One event is one record: the message and the component are escaped
 * (core/escape.h) in both formats, so a CR, LF, ESC or invalid UTF-8 byte
 * from a request path, a KV key or a Consul answer can neither end the
 * line nor forge a record. In 'json' every record is one JSON object
 * that parses; in 'text' it reads `<ts> <level> [<component>] <msg>`.
 * A record is at most LOG_RECORD_MAX bytes, PIPE_BUF, so its one write(2)
 * is atomic on a pipe too (journald, a log shipper): a longer message is cut
 * at a character boundary and ends with LOG_TRUNCATED, never split in two.
 *
 * Formatting uses a buffer of 2 * LOG_RECORD_MAX bytes allocated on the
 * heap the first time a thread logs and freed when that thread exits, so a
 * caller's stack (civetweb's workers have 100 KiB) pays only for
 * log_write's own frame. */
#ifndef MESHNODE_CORE_LOG_H
#define MESHNODE_CORE_LOG_H

#include <stdbool.h>

#define LOG_RECORD_MAX 4096
#define LOG_TRUNCATED  " [truncated]"

enum log_level { MN_LOG_DEBUG, MN_LOG_INFO, MN_LOG_WARN, MN_LOG_ERROR };
enum log_format { MN_LOG_JSON, MN_LOG_TEXT };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_set_format(enum log_format format);
enum log_format log_get_format(void);

/* Sends records to 'fd' instead of stderr (tests). */
void log_set_fd(int fd);

/* Parses "debug", "info", "warn", "error"; false for anything else. */
bool log_level_parse(const char *s, enum log_level *out);
/* Parses "json", "text"; false for anything else. */
bool log_format_parse(const char *s, enum log_format *out);
const char *log_level_name(enum log_level level);

bool log_enabled(enum log_level level);

/* Writes one record: 'component' names the module ("consul", "http").
 * When memory for the thread's buffer cannot be had, a fixed record saying
 * so is written instead. */
void log_write(enum log_level level, const char *component, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* One record per line of 'text' (lines end at '\n'; the last may not;
 * an empty line between two is an empty record), each at 'level'. NULL
 * or "" writes nothing. */
void log_write_lines(enum log_level level, const char *component, const char *text);

#define log_at(lvl, comp, ...)                               \
	do {                                                 \
		if (log_enabled(lvl))                        \
			log_write(lvl, comp, __VA_ARGS__);   \
	} while (0)
#define log_debug(comp, ...) log_at(MN_LOG_DEBUG, comp, __VA_ARGS__)
#define log_info(comp, ...)  log_at(MN_LOG_INFO, comp, __VA_ARGS__)
#define log_warn(comp, ...)  log_at(MN_LOG_WARN, comp, __VA_ARGS__)
#define log_error(comp, ...) log_at(MN_LOG_ERROR, comp, __VA_ARGS__)

#endif
