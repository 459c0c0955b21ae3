#include "config_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/escape.h"
#include "core/text.h"

/* A libconfig value as JSON: scalars as themselves, arrays and lists as
 * arrays, groups as objects. NULL when out of memory (errno tells it from
 * the refusals of json_real() and json_string(), which allocate nothing). */
static json_t *config_file_value(const config_setting_t *s)
{
	json_t *v;
	int n;

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return json_integer(config_setting_get_int64(s));
	case CONFIG_TYPE_FLOAT:
		/* too large for a double (1e999): JSON has no infinity, so
		 * null, refused by the setting's check like a string would be,
		 * instead of failing the whole load as if memory ran out */
		errno = 0;
		v = json_real(config_setting_get_float(s));
		return v || errno == ENOMEM ? v : json_null();
	case CONFIG_TYPE_STRING:
		/* not UTF-8: null, which the setting's check refuses as a type
		 * mismatch instead of failing the whole load */
		errno = 0;
		v = json_string(config_setting_get_string(s));
		return v || errno == ENOMEM ? v : json_null();
	case CONFIG_TYPE_BOOL:
		return json_boolean(config_setting_get_bool(s));
	case CONFIG_TYPE_ARRAY:
	case CONFIG_TYPE_LIST:
		v = json_array();
		n = config_setting_length(s);
		for (int i = 0; v && i < n; i++) {
			json_t *e = config_file_value(config_setting_get_elem(s, (unsigned)i));

			if (json_array_append_new(v, e) != 0) {
				json_decref(v);
				v = NULL;
			}
		}
		return v;
	case CONFIG_TYPE_GROUP:
		v = json_object();
		n = config_setting_length(s);
		for (int i = 0; v && i < n; i++) {
			config_setting_t *m = config_setting_get_elem(s, (unsigned)i);

			if (json_object_set_new(v, config_setting_name(m), config_file_value(m))) {
				json_decref(v);
				v = NULL;
			}
		}
		return v;
	default:
		return json_null();
	}
}

static enum mn_err config_file_walk(const config_setting_t *group, const char *prefix,
				    const char *path, const struct config_file_ops *ops,
				    void *ctx)
{
	int n = config_setting_length(group);
	enum mn_err err = MN_OK;

	for (int i = 0; i < n && err == MN_OK; i++) {
		config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		const char *file = config_setting_source_file(s);
		char *name;
		json_t *v;

		if (asprintf(&name, "%s%s%s", prefix, *prefix ? "." : "",
			     config_setting_name(s)) < 0)
			return MN_NOMEM;
		if (config_setting_is_group(s) && !ops->is_map(ctx, name)) {
			err = config_file_walk(s, name, path, ops, ctx);
		} else {
			v = config_file_value(s);
			if (v == NULL)
				err = MN_NOMEM;
			else
				err = ops->set(ctx, name, v, file ? file : path,
					       config_setting_source_line(s));
		}
		free(name);
	}
	return err;
}

/* Line 'line' (from 1) of the text just read, trimmed and cut to fit 'out';
 * false when there is no such line or it is blank. */
static bool config_file_line(const char *text, size_t len, int line, char *out, size_t outlen)
{
	const char *s = text, *end = text + len, *nl;
	size_t n;

	if (line < 1)
		return false;
	for (int at = 1; at < line; at++) {
		nl = memchr(s, '\n', (size_t)(end - s));
		if (nl == NULL)
			return false;
		s = nl + 1;
	}
	nl = memchr(s, '\n', (size_t)(end - s));
	n = nl ? (size_t)(nl - s) : (size_t)(end - s);
	n = strcspn(s, "\r\n") < n ? strcspn(s, "\r\n") : n;
	text_trim(&s, &n);
	if (n == 0)
		return false;
	snprintf(out, outlen, "%.*s", (int)n, s);
	return true;
}

static const char *file_kind(mode_t mode)
{
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISCHR(mode) || S_ISBLK(mode))
		return "a device";
	if (S_ISSOCK(mode))
		return "a socket";
	return "not a regular file";
}

/* Reads 'path' whole into *text (NUL-terminated, *len bytes) if it is a
 * regular file within the caps, '*budget' bytes being what the files of
 * this load may still take; never blocks on a FIFO or a device (opened
 * with O_NONBLOCK, checked before and after opening). MN_NOT_FOUND for a
 * missing file (nothing appended), MN_CONFIG with one line in 'errors'
 * that names the file and never quotes it. */
static enum mn_err config_file_slurp(const char *path, size_t *budget, char **text, size_t *len,
				     struct buf *errors)
{
	struct stat st;
	char *data = NULL;
	size_t n = 0, line_start = 0, line_no = 1;
	ssize_t r;
	int fd, e;

	*text = NULL;
	*len = 0;
	/* stat first: opening a FIFO for reading may wait for a writer */
	if (stat(path, &st) != 0) {
		e = errno;
		if (e == ENOENT)
			return MN_NOT_FOUND;
		goto out_errno;
	}
	if (!S_ISREG(st.st_mode))
		goto out_kind;
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		e = errno;
		if (e == ENOENT)
			return MN_NOT_FOUND;
		goto out_errno;
	}
	/* what was opened, which may not be what was looked at */
	if (fstat(fd, &st) != 0) {
		e = errno;
		close(fd);
		goto out_errno;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		goto out_kind;
	}
	if ((uint64_t)st.st_size > *budget) {
		close(fd);
		goto out_size;
	}
	data = malloc((size_t)st.st_size + 2);
	if (data == NULL) {
		close(fd);
		return MN_NOMEM;
	}
	/* one byte more than fstat said: a file that grows meanwhile is read
	 * up to the cap, not past it */
	while (n < (size_t)st.st_size + 1) {
		r = read(fd, data + n, (size_t)st.st_size + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			e = errno;
			close(fd);
			free(data);
			goto out_errno;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (n > (size_t)st.st_size) {
		free(data);
		if (errors)
			buf_printf(errors, "%s: changed while being read\n", path);
		return MN_CONFIG;
	}
	data[n] = '\0';
	for (size_t i = 0; i <= n; i++) {
		if (i < n && data[i] == '\0') {
			free(data);
			if (errors)
				buf_printf(errors, "%s:%zu: holds a NUL byte: not a configuration "
					   "file\n", path, line_no);
			return MN_CONFIG;
		}
		if (i == n || data[i] == '\n') {
			if (i - line_start > CONFIG_FILE_MAX_LINE) {
				free(data);
				if (errors)
					buf_printf(errors, "%s:%zu: line longer than %u bytes, "
						   "refused\n", path, line_no,
						   (unsigned)CONFIG_FILE_MAX_LINE);
				return MN_CONFIG;
			}
			line_start = i + 1;
			line_no++;
		}
	}
	*budget -= n;
	*text = data;
	*len = n;
	return MN_OK;

out_errno:
	if (errors)
		buf_printf(errors, "%s: cannot open: %s\n", path, strerror(e));
	return MN_CONFIG;
out_kind:
	if (errors)
		buf_printf(errors, "%s: %s, not a regular file: refused\n", path,
			   file_kind(st.st_mode));
	return MN_CONFIG;
out_size:
	if (errors)
		buf_printf(errors, "%s: %lld bytes, over the %u bytes configuration files may "
			   "hold in all: refused\n", path, (long long)st.st_size,
			   (unsigned)CONFIG_FILE_MAX_BYTES);
	return MN_CONFIG;
}

/* Where libconfig's scanner is at the end of a line, so that an
 * "@include" it takes for a directive (one at the start of a line outside
 * comments and strings) is told from one it does not. */
enum scan_state {
	SCAN_CODE,
	SCAN_COMMENT, /* within a comment */
	SCAN_STRING,  /* within a string, which may run over lines */
};

/* The state after the line [s, eol), from 'st' at its start: "/" "*"
 * comments and strings run on, "#" and "//" comments end with the line. */
static enum scan_state scan_line(const char *s, const char *eol, enum scan_state st)
{
	for (; s < eol; s++) {
		switch (st) {
		case SCAN_COMMENT:
			if (s[0] == '*' && s + 1 < eol && s[1] == '/') {
				st = SCAN_CODE;
				s++;
			}
			break;
		case SCAN_STRING:
			if (*s == '\\')
				s++; /* an escape, "\\" and "\"" too */
			else if (*s == '"')
				st = SCAN_CODE;
			break;
		case SCAN_CODE:
			if (*s == '#' || (s[0] == '/' && s + 1 < eol && s[1] == '/'))
				return SCAN_CODE;
			if (s[0] == '/' && s + 1 < eol && s[1] == '*') {
				st = SCAN_COMMENT;
				s++;
			} else if (*s == '"') {
				st = SCAN_STRING;
			}
			break;
		}
	}
	return st;
}

/* The @include directives of 'text' ('path', at depth 'depth'), each file
 * checked and read like the main one (the same caps, counted together),
 * so that libconfig, which opens them itself, only finds regular files
 * within the caps. A directive of another form than '@include "file"'
 * (libconfig's, with no escapes) is refused rather than left to libconfig.
 * One within a comment or a string is not a directive: libconfig skips it. */
static enum mn_err config_file_check_includes(const char *path, const char *text, size_t len,
					      int depth, size_t *budget, struct buf *errors)
{
	static const char directive[] = "@include";
	const char *s = text, *end = text + len, *q, *close;
	enum scan_state st = SCAN_CODE;
	unsigned line = 1;
	enum mn_err err;

	for (; s < end; line++) {
		const char *eol = memchr(s, '\n', (size_t)(end - s));
		char *inc, *inc_text;
		size_t inc_len;

		if (eol == NULL)
			eol = end;
		q = s;
		while (q < eol && (*q == ' ' || *q == '\t'))
			q++;
		if (st != SCAN_CODE || (size_t)(eol - q) < sizeof(directive) - 1 ||
		    memcmp(q, directive, sizeof(directive) - 1) != 0) {
			st = scan_line(s, eol, st);
			s = eol + 1;
			continue;
		}
		q += sizeof(directive) - 1;
		if (q < eol && (*q == ' ' || *q == '\t')) {
			while (q < eol && (*q == ' ' || *q == '\t'))
				q++;
		} else {
			q = eol; /* "@includes", "@include\"x\"": not libconfig's form */
		}
		close = q < eol && *q == '"' ? memchr(q + 1, '"', (size_t)(eol - q - 1)) : NULL;
		if (close == NULL || close == q + 1 || memchr(q + 1, '\\', (size_t)(close - q - 1))) {
			if (errors)
				buf_printf(errors, "%s:%u: an @include this node does not read "
					   "(expected @include \"file\", no escapes)\n", path, line);
			return MN_CONFIG;
		}
		if (depth >= CONFIG_FILE_MAX_INCLUDE_DEPTH) {
			if (errors)
				buf_printf(errors, "%s:%u: @include nested more than %d deep\n", path,
					   line, CONFIG_FILE_MAX_INCLUDE_DEPTH);
			return MN_CONFIG;
		}
		/* libconfig's path: relative to the working directory, as no
		 * include directory is set */
		inc = strndup(q + 1, (size_t)(close - q - 1));
		if (inc == NULL)
			return MN_NOMEM;
		err = config_file_slurp(inc, budget, &inc_text, &inc_len, errors);
		if (err == MN_NOT_FOUND) {
			if (errors)
				buf_printf(errors, "%s:%u: cannot open include file '%s': no such "
					   "file\n", path, line, inc);
			err = MN_CONFIG;
		}
		if (err == MN_OK) {
			err = config_file_check_includes(inc, inc_text, inc_len, depth + 1, budget,
							 errors);
			free(inc_text);
		}
		free(inc);
		if (err != MN_OK)
			return err;
		st = scan_line(close + 1, eol, SCAN_CODE); /* what follows the file name */
		s = eol + 1;
	}
	return MN_OK;
}

enum mn_err config_file_read(const char *path, const struct config_file_ops *ops, void *ctx,
			     struct buf *errors)
{
	size_t budget = CONFIG_FILE_MAX_BYTES, len;
	config_t lc;
	enum mn_err err;
	char *text;

	err = config_file_slurp(path, &budget, &text, &len, errors);
	if (err != MN_OK)
		return err;
	err = config_file_check_includes(path, text, len, 0, &budget, errors);
	if (err != MN_OK)
		goto out_free;

	config_init(&lc);
	if (config_read_string(&lc, text) != CONFIG_TRUE) {
		const char *file = config_error_file(&lc);
		char quote[120];

		if (errors) {
			/* libconfig says only "syntax error": the line it means
			 * follows, so the mistake is seen without an editor; but
			 * only a line of the file named here: an included file's
			 * content is never shown (it may be anything) */
			if (file == NULL &&
			    config_file_line(text, len, config_error_line(&lc), quote,
					     sizeof(quote))) {
				buf_printf(errors, "%s:%d: %s in '", path, config_error_line(&lc),
					   config_error_text(&lc));
				escape_buf(errors, quote, strlen(quote), ESCAPE_TEXT);
				buf_puts(errors, "'\n");
			} else {
				buf_printf(errors, "%s:%d: %s\n", file ? file : path,
					   config_error_line(&lc), config_error_text(&lc));
			}
		}
		err = MN_CONFIG;
		goto out_destroy;
	}
	err = config_file_walk(config_root_setting(&lc), "", path, ops, ctx);
out_destroy:
	config_destroy(&lc);
out_free:
	free(text);
	return err;
}
