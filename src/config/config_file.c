#include "config_file.h"

#include <errno.h>
#include <libconfig.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/escape.h"
#include "core/text.h"

/* A libconfig value as JSON: scalars as themselves, arrays and lists as
 * arrays, groups as objects. NULL when out of memory. */
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
		v = json_real(config_setting_get_float(s));
		return v ? v : json_null();
	case CONFIG_TYPE_STRING:
		/* not UTF-8: null, which the setting's check refuses as a type
		 * mismatch instead of failing the whole load */
		v = json_string(config_setting_get_string(s));
		return v ? v : json_null();
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

/* Line 'line' (from 1) of 'path', trimmed and cut to fit 'out'; false when
 * it cannot be read or is blank. */
static bool config_file_line(const char *path, int line, char *out, size_t len)
{
	FILE *fp = fopen(path, "r");
	char buf[4096];
	const char *s;
	size_t n;
	int at = 0;
	bool found = false, at_start = true;

	if (fp == NULL || line < 1)
		goto out;
	/* a line longer than buf comes in pieces: only a piece that ends the
	 * previous line starts a new one; the wanted line's first piece shows */
	while (!found && fgets(buf, sizeof(buf), fp) != NULL) {
		if (at_start && ++at == line)
			found = true;
		at_start = strchr(buf, '\n') != NULL;
	}
	if (!found)
		goto out;
	s = buf;
	n = strcspn(buf, "\r\n");
	text_trim(&s, &n);
	if (n == 0) {
		found = false;
		goto out;
	}
	snprintf(out, len, "%.*s", (int)n, s);
out:
	if (fp)
		fclose(fp);
	return found;
}

enum mn_err config_file_read(const char *path, const struct config_file_ops *ops, void *ctx,
			     struct buf *errors)
{
	config_t lc;
	enum mn_err err;
	FILE *fp;

	/* libconfig reports a missing file as a bare "file I/O error" */
	fp = fopen(path, "r");
	if (fp == NULL) {
		int e = errno;

		if (e == ENOENT)
			return MN_NOT_FOUND;
		if (errors)
			buf_printf(errors, "%s: cannot open: %s\n", path, strerror(e));
		return MN_CONFIG;
	}
	fclose(fp);

	config_init(&lc);
	if (config_read_file(&lc, path) != CONFIG_TRUE) {
		const char *file = config_error_file(&lc);
		char text[120];

		if (errors) {
			/* libconfig says only "syntax error": the line it means
			 * follows, so the mistake is seen without an editor */
			if (config_file_line(file ? file : path, config_error_line(&lc), text,
					     sizeof(text))) {
				buf_printf(errors, "%s:%d: %s in '", file ? file : path,
					   config_error_line(&lc), config_error_text(&lc));
				escape_buf(errors, text, strlen(text), ESCAPE_TEXT);
				buf_puts(errors, "'\n");
			} else
				buf_printf(errors, "%s:%d: %s\n", file ? file : path,
					   config_error_line(&lc), config_error_text(&lc));
		}
		err = MN_CONFIG;
		goto out_destroy;
	}
	err = config_file_walk(config_root_setting(&lc), "", path, ops, ctx);
out_destroy:
	config_destroy(&lc);
	return err;
}
