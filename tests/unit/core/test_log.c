#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

static int fds[2];
static char got[1 << 20];
static size_t got_len;

static int setup(void **state)
{
	(void)state;
	if (pipe(fds) != 0 || fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0)
		return -1;
	log_set_fd(fds[1]);
	log_set_level(MN_LOG_DEBUG);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	log_set_fd(STDERR_FILENO);
	log_set_format(MN_LOG_JSON);
	log_set_level(MN_LOG_INFO);
	close(fds[0]);
	close(fds[1]);
	return 0;
}

/* Everything written since the last call, NUL-terminated. */
static const char *drain(void)
{
	ssize_t n;

	got_len = 0;
	while ((n = read(fds[0], got + got_len, sizeof(got) - 1 - got_len)) > 0)
		got_len += (size_t)n;
	got[got_len] = '\0';
	return got;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* Exactly one record was written: one line ending in '\n'. */
static const char *one_line(void)
{
	const char *s = drain();

	assert_true(got_len > 0);
	assert_int_equal(got[got_len - 1], '\n');
	assert_ptr_equal(memchr(s, '\n', got_len), got + got_len - 1);
	assert_null(memchr(s, '\r', got_len));
	return s;
}

/* The one record, parsed as JSON (new reference). */
static json_t *one_record(void)
{
	const char *s = one_line();
	json_error_t err;
	json_t *v = json_loadb(s, got_len - 1, JSON_ALLOW_NUL, &err);

	if (v == NULL)
		fail_msg("record does not parse (%s): %s", err.text, s);
	assert_true(json_is_object(v));
	assert_int_equal(json_object_size(v), 4);
	return v;
}

static const char *field(json_t *rec, const char *name)
{
	const char *s = json_string_value(json_object_get(rec, name));

	assert_non_null(s);
	return s;
}

static const char forged[] = "/users/\r\n{\"ts\":\"2024-01-01T00:00:00.000Z\",\"level\":\"error\","
			     "\"component\":\"app\",\"msg\":\"forged\"}\n";

static void test_json_forgery_stays_one_record(void **state)
{
	json_t *rec;
	(void)state;

	log_set_format(MN_LOG_JSON);
	log_info("http", "no route for %s", forged);
	rec = one_record();
	assert_string_equal(field(rec, "level"), "info");
	assert_string_equal(field(rec, "component"), "http");
	/* the message comes back exactly as it was given */
	assert_int_equal(strncmp(field(rec, "msg"), "no route for ", 13), 0);
	assert_string_equal(field(rec, "msg") + 13, forged);
	json_decref(rec);
}

static void test_text_forgery_stays_one_line(void **state)
{
	const char *line;
	(void)state;

	log_set_format(MN_LOG_TEXT);
	log_warn("http", "no route for %s", forged);
	line = one_line();
	assert_non_null(strstr(line, " warn  [http] no route for /users/\\r\\n{\"ts\":"));
	assert_non_null(strstr(line, "\"msg\":\"forged\"}\\n\n"));
}

static void test_controls_and_escape_sequences(void **state)
{
	json_t *rec;
	const char *line;
	(void)state;

	log_set_format(MN_LOG_TEXT);
	log_info("kv", "key '%s'", "a\x1b[2Jb\tc\x7f\x01");
	line = one_line();
	assert_non_null(strstr(line, "[kv] key 'a\\x1b[2Jb\\tc\\x7f\\x01'\n"));

	log_set_format(MN_LOG_JSON);
	log_info("kv", "key '%s'", "a\x1b[2Jb\tc\x7f\x01");
	line = drain();
	assert_non_null(strstr(line, "\"msg\":\"key 'a\\u001b[2Jb\\tc\\u007f\\u0001'\"}\n"));

	/* a NUL from %c is kept and escaped, not an end of the message */
	log_info("kv", "a%cb", 0);
	rec = one_record();
	assert_int_equal(json_string_length(json_object_get(rec, "msg")), 3);
	assert_memory_equal(field(rec, "msg"), "a\0b", 3);
	json_decref(rec);

	/* the component is escaped too */
	log_info("x\ny\"", "m");
	rec = one_record();
	assert_string_equal(field(rec, "component"), "x\ny\"");
	json_decref(rec);
}

static void test_utf8(void **state)
{
	static const char valid[] = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
	json_t *rec;
	const char *line;
	(void)state;

	log_set_format(MN_LOG_JSON);
	log_info("t", "%s", valid);
	rec = one_record();
	assert_string_equal(field(rec, "msg"), valid);
	json_decref(rec);
	log_set_format(MN_LOG_TEXT);
	log_info("t", "%s", valid);
	line = one_line();
	assert_non_null(strstr(line, valid));

	/* invalid bytes: \ufffd in JSON (so it parses), \xNN in text */
	log_set_format(MN_LOG_JSON);
	log_info("t", "a%sb", "\xff\xc0\x80\xed\xa0\x80");
	rec = one_record();
	assert_string_equal(field(rec, "msg"), "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
					       "\xef\xbf\xbd\xef\xbf\xbd" "b");
	json_decref(rec);
	log_set_format(MN_LOG_TEXT);
	log_info("t", "a%sb", "\xff\xc0\x80\xed\xa0\x80");
	line = one_line();
	assert_non_null(strstr(line, "] a\\xff\\xc0\\x80\\xed\\xa0\\x80b\n"));
}

/* The length of a JSON record's fixed part for level info, component "t". */
static size_t json_overhead(void)
{
	return strlen("{\"ts\":\"2024-01-01T00:00:00.000Z\",\"level\":\"info\",\"component\":\"t\","
		      "\"msg\":\"\"}\n");
}

static void test_truncation(void **state)
{
	static char msg[3 * LOG_RECORD_MAX];
	size_t fits = LOG_RECORD_MAX - json_overhead();
	json_t *rec;
	const char *m;
	(void)state;

	log_set_format(MN_LOG_JSON);
	/* exactly the largest record: whole, no marker */
	memset(msg, 'x', fits);
	msg[fits] = '\0';
	log_info("t", "%s", msg);
	rec = one_record();
	assert_int_equal(got_len, LOG_RECORD_MAX);
	assert_int_equal(strlen(field(rec, "msg")), fits);
	json_decref(rec);
	/* one byte more: cut, with the marker, still one record */
	msg[fits] = 'x';
	msg[fits + 1] = '\0';
	log_info("t", "%s", msg);
	rec = one_record();
	assert_true(got_len <= LOG_RECORD_MAX);
	m = field(rec, "msg");
	assert_string_equal(m + strlen(m) - strlen(LOG_TRUNCATED), LOG_TRUNCATED);
	json_decref(rec);

	/* far longer than the formatting buffer, made of escapes */
	memset(msg, '\n', sizeof(msg) - 1);
	msg[sizeof(msg) - 1] = '\0';
	log_error("t", "%s", msg);
	rec = one_record();
	assert_true(got_len <= LOG_RECORD_MAX);
	m = field(rec, "msg");
	assert_true(strlen(m) > 1000);
	assert_string_equal(m + strlen(m) - strlen(LOG_TRUNCATED), LOG_TRUNCATED);
	json_decref(rec);

	/* multi-byte characters cut by the formatting buffer: never half of
	 * one, in either format */
	for (size_t i = 0; i + 3 < sizeof(msg); i += 3)
		memcpy(msg + i, "\xe2\x82\xac", 3);
	msg[sizeof(msg) - 1] = '\0';
	for (int k = 0; k < 3; k++) {
		/* 0 to 2 bytes before them move where the cut falls */
		log_set_format(MN_LOG_JSON);
		log_info("t", "%.*s%s", k, "ab", msg);
		rec = one_record();
		assert_null(strstr(got, "\\ufffd"));
		json_decref(rec);
		log_set_format(MN_LOG_TEXT);
		log_info("t", "%.*s%s", k, "ab", msg);
		one_line();
		assert_true(got_len <= LOG_RECORD_MAX);
		assert_null(strstr(got, "\\x"));
		assert_string_equal(got + got_len - 1 - strlen(LOG_TRUNCATED), LOG_TRUNCATED "\n");
	}
}

static void test_level_filter(void **state)
{
	(void)state;

	log_set_format(MN_LOG_JSON);
	log_set_level(MN_LOG_WARN);
	log_info("t", "hidden");
	assert_int_equal(strlen(drain()), 0);
	log_warn("t", "shown");
	json_decref(one_record());
	log_set_level(MN_LOG_DEBUG);
}

/* A buffer of messages, one record per line, at the level given. */
static void test_lines(void **state)
{
	const char *s;
	(void)state;

	log_set_format(MN_LOG_TEXT);
	log_write_lines(MN_LOG_WARN, "config", "first one\n\nlast, no newline");
	s = drain();
	assert_non_null(strstr(s, " warn  [config] first one\n"));
	assert_non_null(strstr(s, " warn  [config] \n"));
	assert_non_null(strstr(s, " warn  [config] last, no newline\n"));
	assert_int_equal(count_lines(s), 3);
	log_write_lines(MN_LOG_WARN, "config", "one\n");
	assert_int_equal(count_lines(drain()), 1);
	log_write_lines(MN_LOG_WARN, "config", "");
	log_write_lines(MN_LOG_WARN, "config", NULL);
	assert_int_equal(strlen(drain()), 0);
	log_set_level(MN_LOG_ERROR);
	log_write_lines(MN_LOG_WARN, "config", "hidden\nhidden");
	assert_int_equal(strlen(drain()), 0);
	log_set_level(MN_LOG_DEBUG);
	log_set_format(MN_LOG_JSON);
}

static void *log_from_thread(void *arg)
{
	for (int i = 0; i < 50; i++)
		log_info("thread", "record %d from thread %zu with\na newline", i,
			 (size_t)(uintptr_t)arg);
	return NULL;
}

/* Threads that log and exit: every record whole (each thread has its own
 * buffer), and each buffer freed at exit (LeakSanitizer checks). */
static void test_threads(void **state)
{
	pthread_t t[4];
	size_t lines = 0;
	(void)state;

	log_set_format(MN_LOG_JSON);
	log_set_level(MN_LOG_DEBUG);
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(
			pthread_create(&t[i], NULL, log_from_thread, (void *)(uintptr_t)i), 0);
	for (size_t i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	drain();
	for (char *line = got, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
		json_t *v = json_loadb(line, (size_t)(nl - line), 0, NULL);

		assert_non_null(v);
		json_decref(v);
		lines++;
	}
	assert_int_equal(lines, 200);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_forgery_stays_one_record),
		cmocka_unit_test(test_text_forgery_stays_one_line),
		cmocka_unit_test(test_controls_and_escape_sequences),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_level_filter),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_lines),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
