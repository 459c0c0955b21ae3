/* The configuration file reader's guards (issue 21, points 2 and 7): only
 * regular files within the caps reach libconfig, the @included ones too,
 * and nothing of an included file's content appears in a message. Every
 * refusal here would have blocked (a FIFO) or taken libconfig minutes (an
 * 8 MB line) before. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "../../../src/config/config_file.h"

#define MAX_FILES 8

struct fixture {
	char dir[64];
	char *files[MAX_FILES];
	size_t n_files;
	struct buf errors;
};

static int fixture_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/meshnode-cfgfile.XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	buf_init(&f->errors, 1 << 16);
	*state = f;
	return 0;
}

static int fixture_teardown(void **state)
{
	struct fixture *f = *state;

	for (size_t i = 0; i < f->n_files; i++) {
		unlink(f->files[i]);
		free(f->files[i]);
	}
	rmdir(f->dir);
	buf_release(&f->errors);
	free(f);
	return 0;
}

static const char *file_path(struct fixture *f, const char *name)
{
	char *path;

	assert_true(f->n_files < MAX_FILES);
	assert_true(asprintf(&path, "%s/%s", f->dir, name) > 0);
	f->files[f->n_files++] = path;
	return path;
}

static const char *write_bytes(struct fixture *f, const char *name, const char *data, size_t len)
{
	const char *path = file_path(f, name);
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
	return path;
}

static const char *write_file(struct fixture *f, const char *name, const char *text)
{
	return write_bytes(f, name, text, strlen(text));
}

static bool is_map(void *ctx, const char *name)
{
	(void)ctx;
	(void)name;
	return false;
}

static enum mn_err count_leaf(void *ctx, const char *name, json_t *value, const char *file,
			      unsigned line)
{
	(void)name;
	(void)file;
	(void)line;
	json_decref(value);
	(*(size_t *)ctx)++;
	return MN_OK;
}

static const struct config_file_ops ops = {is_map, count_leaf};

/* Reads 'path' expecting MN_CONFIG and one error line holding 'want'. */
static void refused(struct fixture *f, const char *path, const char *want)
{
	size_t leaves = 0;

	buf_reset(&f->errors);
	assert_int_equal(config_file_read(path, &ops, &leaves, &f->errors), MN_CONFIG);
	assert_non_null(f->errors.data);
	if (strstr(f->errors.data, want) == NULL)
		print_error("errors: %s\nwanted: %s\n", f->errors.data, want);
	assert_non_null(strstr(f->errors.data, want));
	assert_int_equal(leaves, 0);
}

static size_t read_ok(struct fixture *f, const char *path)
{
	size_t leaves = 0;

	enum mn_err err;

	buf_reset(&f->errors);
	err = config_file_read(path, &ops, &leaves, &f->errors);
	if (err != MN_OK)
		print_error("errors: %s\n", f->errors.data ? f->errors.data : "");
	assert_int_equal(err, MN_OK);
	return leaves;
}

static void test_not_regular_files_refused(void **state)
{
	struct fixture *f = *state;
	const char *fifo = file_path(f, "fifo.cfg");
	char want[160];

	/* a FIFO with no writer: opening it for reading would wait forever */
	assert_int_equal(mkfifo(fifo, 0600), 0);
	snprintf(want, sizeof(want), "%s: a FIFO, not a regular file: refused", fifo);
	refused(f, fifo, want);
	refused(f, f->dir, "a directory, not a regular file: refused");
	refused(f, "/dev/null", "/dev/null: a device, not a regular file: refused");
	/* a missing file stays "not found" (an optional one is fine) */
	assert_int_equal(config_file_read(file_path(f, "none.cfg"), &ops, &(size_t){0}, NULL),
			 MN_NOT_FOUND);
}

static void test_size_cap(void **state)
{
	struct fixture *f = *state;
	size_t n = 2u << 20;
	char *text = malloc(n);
	const char *path;

	/* a 2 MB file of short comment lines: over the cap, whatever it holds */
	assert_non_null(text);
	for (size_t i = 0; i < n; i++)
		text[i] = i % 64 == 63 ? '\n' : i % 64 == 0 ? '#' : 'x';
	path = write_bytes(f, "big.cfg", text, n);
	refused(f, path, "2097152 bytes, over the 1048576 bytes");
	/* the cap itself is fine */
	memcpy(text + CONFIG_FILE_MAX_BYTES - 10, "\nx = 1;\n\n\n", 10);
	path = write_bytes(f, "cap.cfg", text, CONFIG_FILE_MAX_BYTES);
	assert_int_equal(read_ok(f, path), 1);
	free(text);
}

static void test_line_cap(void **state)
{
	struct fixture *f = *state;
	size_t n = CONFIG_FILE_MAX_LINE + 16;
	char *text = malloc(n + 32);
	const char *path;

	/* one long line, far under the size cap: refused before libconfig,
	 * which is quadratic in it (an 8 MB line took it a minute) */
	assert_non_null(text);
	memcpy(text, "a = 1;\n#", 8);
	memset(text + 8, 'x', n - 8);
	memcpy(text + n, "\nb = 2;\n", 8);
	path = write_bytes(f, "line.cfg", text, n + 8);
	refused(f, path, ":2: line longer than 65536 bytes, refused");
	/* a line at the cap is read */
	memset(text + 8, 'x', CONFIG_FILE_MAX_LINE - 1);
	memcpy(text + 7 + CONFIG_FILE_MAX_LINE, "\nb = 2;\n", 8);
	path = write_bytes(f, "line2.cfg", text, CONFIG_FILE_MAX_LINE + 15);
	assert_int_equal(read_ok(f, path), 2);
	free(text);
}

static void test_nul_byte_refused(void **state)
{
	struct fixture *f = *state;

	/* libconfig would stop at the NUL and take half a file */
	refused(f, write_bytes(f, "nul.cfg", "a = 1;\nb = 2;\0c = 3;\n", 21),
		":2: holds a NUL byte");
}

static void test_includes_checked(void **state)
{
	struct fixture *f = *state;
	const char *fifo = file_path(f, "inc.fifo"), *inc, *path;
	char text[512], want[256];

	assert_int_equal(mkfifo(fifo, 0600), 0);
	snprintf(text, sizeof(text), "a = 1;\n  @include \"%s\"\n", fifo);
	path = write_file(f, "main.cfg", text);
	snprintf(want, sizeof(want), "%s: a FIFO, not a regular file: refused", fifo);
	refused(f, path, want);
	/* a good include is read (libconfig opens it itself) */
	inc = write_file(f, "inc.cfg", "b = 2;\n");
	snprintf(text, sizeof(text), "a = 1;\n@include \"%s\"\n", inc);
	path = write_file(f, "main.cfg", text);
	assert_int_equal(read_ok(f, path), 2);
	/* a form libconfig may read otherwise is not left to it */
	path = write_file(f, "main.cfg", "a = 1;\n@include \"x\\x69.cfg\"\n");
	refused(f, path, "main.cfg:2: an @include this node does not read");
	/* nesting is bounded (a file that includes itself) */
	snprintf(text, sizeof(text), "@include \"%s\"\n@include \"%s\"\n", path, path);
	inc = write_file(f, "loop.cfg", text);
	snprintf(text, sizeof(text), "@include \"%s\"\n", inc);
	write_file(f, "loop.cfg", text);
	refused(f, inc, "@include nested more than 10 deep");
}

/* libconfig skips an @include within a comment or a string: so does the
 * check, and a file that loads in libconfig is not refused. */
static void test_includes_in_comments_and_strings_ignored(void **state)
{
	struct fixture *f = *state;
	const char *inc, *path;
	char text[512];

	path = write_file(f, "main.cfg",
			  "a = 1;\n"
			  "/* commented out:\n"
			  "@include \"missing.cfg\"\n"
			  "*/\n"
			  "# @include \"missing.cfg\"\n"
			  "// @include \"missing.cfg\"\n"
			  "s = \"a string over lines\n"
			  "@include \\\"missing.cfg\\\" \\\\ still the string\n"
			  "\";\n"
			  "b = 2; /* @include \"missing.cfg\" */\n");
	assert_int_equal(read_ok(f, path), 3);
	/* quotes and comment marks within comments and strings do not hide
	 * a real directive after them */
	inc = write_file(f, "inc.cfg", "c = 3;\n");
	snprintf(text, sizeof(text),
		 "# a \"quote in a comment\n"
		 "// a /* in a comment\n"
		 "a = \"/* # // in a string\"; /* a \" in a comment */\n"
		 "@include \"%s\"\n",
		 inc);
	path = write_file(f, "main.cfg", text);
	assert_int_equal(read_ok(f, path), 2);
	snprintf(text, sizeof(text), "a = 1;\n/* x */ b = \"y\";\n@include \"%s\"\n", inc);
	path = write_file(f, "main.cfg", text);
	assert_int_equal(read_ok(f, path), 3);
}

/* The cap is on the main file and its includes together. */
static void test_includes_count_towards_the_cap(void **state)
{
	struct fixture *f = *state;
	size_t n = 600u << 10;
	char *text = malloc(n + 256);
	const char *inc, *path;
	int head;

	assert_non_null(text);
	for (size_t i = 0; i < n; i++)
		text[i] = i % 64 == 63 ? '\n' : i % 64 == 0 ? '#' : 'x';
	inc = write_bytes(f, "half.cfg", text, n);
	head = snprintf(text, 256, "@include \"%s\"\n", inc);
	text[head] = '#'; /* snprintf's NUL: the rest of the line is a comment */
	path = write_bytes(f, "main.cfg", text, n);
	refused(f, path, "over the 1048576 bytes configuration files may hold in all");
	/* each alone is fine */
	assert_int_equal(read_ok(f, inc), 0);
	free(text);
}

/* An included file may be anything the node can read: its content never
 * shows, only its name, the line and libconfig's reason. */
static void test_include_content_never_shown(void **state)
{
	struct fixture *f = *state;
	const char *secret, *path;
	char text[512], want[256];

	secret = write_file(f, "secret", "root:$6$s3cr3tHash:19000:0:99999:7:::\n");
	snprintf(text, sizeof(text), "a = 1;\n@include \"%s\"\n", secret);
	path = write_file(f, "main.cfg", text);
	snprintf(want, sizeof(want), "%s:1: syntax error\n", secret);
	refused(f, path, want);
	assert_null(strstr(f->errors.data, "s3cr3t"));
	assert_null(strstr(f->errors.data, "root"));
	/* the main file's own line is still quoted */
	path = write_file(f, "main.cfg", "a = 1;\nb = = 2;\n");
	refused(f, path, "main.cfg:2: syntax error in 'b = = 2;'");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)
		T(test_not_regular_files_refused),
		T(test_size_cap),
		T(test_line_cap),
		T(test_nul_byte_refused),
		T(test_includes_checked),
		T(test_includes_in_comments_and_strings_ignored),
		T(test_includes_count_towards_the_cap),
		T(test_include_content_never_shown),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
