/* Capturing what the code under test logs, in cmocka test programs: the
 * records go to a temporary file the test reads back (every thread writes
 * its records with one write(2), so a count is exact). Header-only;
 * include after <cmocka.h>. */
#ifndef MESHNODE_TESTS_LOG_CAPTURE_H
#define MESHNODE_TESTS_LOG_CAPTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"

/* Records at 'level' and above, in the text format, go to a new
 * temporary file from now on; returns its descriptor. */
static inline int logcap_start(enum log_level level)
{
	FILE *f = tmpfile();
	int fd;

	assert_non_null(f);
	fd = dup(fileno(f));
	fclose(f); /* the file lives on through fd */
	assert_true(fd >= 0);
	log_set_level(level);
	log_set_format(MN_LOG_TEXT);
	log_set_fd(fd);
	return fd;
}

/* Everything logged so far (new allocation, free with free()). */
static inline char *logcap_text(int fd)
{
	off_t size = lseek(fd, 0, SEEK_END);
	char *text;
	ssize_t got;

	assert_true(size >= 0);
	text = malloc((size_t)size + 1);
	assert_non_null(text);
	got = pread(fd, text, (size_t)size, 0);
	assert_int_equal(got, size);
	text[got] = '\0';
	return text;
}

/* How many records so far contain 'needle'. */
static inline unsigned logcap_count(int fd, const char *needle)
{
	char *text = logcap_text(fd);
	unsigned n = 0;

	for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	free(text);
	return n;
}

/* logcap_count() once it reaches 'want', or after 'timeout_ms' of real
 * time: a thread may log just after it published what the test waited for. */
static inline unsigned logcap_wait(int fd, const char *needle, unsigned want, uint64_t timeout_ms)
{
	uint64_t end = clock_monotonic_ms() + timeout_ms;
	unsigned n;

	while ((n = logcap_count(fd, needle)) < want && clock_monotonic_ms() < end)
		usleep(2000);
	return n;
}

/* Records go back to stderr, errors only. */
static inline void logcap_stop(int fd)
{
	log_set_fd(STDERR_FILENO);
	log_set_level(MN_LOG_ERROR);
	if (fd >= 0)
		close(fd);
}

#endif
