/* The settings reference (docs/configuration.md, `make docs`): one Markdown
 * row per row of settings_table, so the page says what the code does. */
#include "settings.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The page being written; 'err' keeps the first failure. */
struct doc {
	struct buf *out;
	enum mn_err err;
};

static void put(struct doc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct doc *d, const char *fmt, ...)
{
	va_list ap;
	enum mn_err err;

	va_start(ap, fmt);
	err = buf_vprintf(d->out, fmt, ap);
	va_end(ap);
	if (d->err == MN_OK)
		d->err = err;
}

static const char *const type_names[] = {
	[SETTING_STRING] = "string",	    [SETTING_INT] = "integer",
	[SETTING_BOOL] = "boolean",	    [SETTING_LIST] = "list of strings",
	[SETTING_MAP] = "group of strings",
};

/* 'name' as shown: a '*' segment as "<name>". */
static void doc_name(struct doc *d, const char *name)
{
	for (const char *p = name; *p; p++) {
		if (*p == '*')
			put(d, "%s", "<name>");
		else
			put(d, "%c", *p);
	}
}

/* 'name' in its MESHNODE_ form, a '*' segment as "<NAME>". */
static void doc_env_name(struct doc *d, const char *name)
{
	put(d, "%s", "`MESHNODE_");
	for (const char *p = name; *p; p++) {
		if (*p == '*') {
			put(d, "%s", "<NAME>");
		} else {
			char c = *p == '.' ? '_' : (char)toupper((unsigned char)*p);

			put(d, "%c", c);
		}
	}
	put(d, "%s", "`");
}

static void doc_default(struct doc *d, const struct setting_def *def)
{
	char reason[128], *text;
	json_t *v;

	if (def->default_text == NULL) {
		put(d, "%s", "none");
		return;
	}
	if (def->derived || def->type == SETTING_INT || def->type == SETTING_BOOL ||
	    (def->type == SETTING_STRING && def->default_text[0] != '\0')) {
		put(d, "`%s`", def->default_text);
		return;
	}
	/* "", lists and groups as JSON: `""`, `["users"]`, `{}` */
	v = settings_parse_text(def, def->default_text, reason, sizeof(reason));
	text = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	put(d, "`%s`", text ? text : "?");
	free(text);
	json_decref(v);
}

static void doc_choices(struct doc *d, const char *const *choices)
{
	for (const char *const *c = choices; *c; c++)
		put(d, "%s`%s`", c == choices ? "" : ", ", *c);
}

static void doc_accepted(struct doc *d, const struct setting_def *def)
{
	size_t before = d->out->len;
	const char *sep = "";

	switch (def->type) {
	case SETTING_INT: put(d, "%lld to %lld", def->min, def->max); break;
	case SETTING_BOOL: put(d, "%s", "true or false"); break;
	case SETTING_LIST:
		put(d, "%s", def->min > 0 ? "a non-empty list of " : "a list of ");
		if (def->choices)
			doc_choices(d, def->choices);
		else
			put(d, "%s", "non-empty strings");
		sep = "; ";
		break;
	case SETTING_MAP:
		put(d, "%s", "string values");
		sep = "; ";
		break;
	case SETTING_STRING:
		if (def->choices) {
			put(d, "%s", "one of ");
			doc_choices(d, def->choices);
		} else if (def->min > 0 && def->max > 0) {
			put(d, "%lld to %lld bytes", def->min, def->max);
		} else if (def->max > 0) {
			put(d, "at most %lld bytes", def->max);
		} else if (def->min > 0) {
			put(d, "%s", "non-empty");
		} else if (def->check == NULL) {
			put(d, "%s", "any string");
		}
		if (d->out->len > before)
			sep = "; ";
		break;
	}
	if (def->check)
		put(d, "%s%s", sep, def->check->expects);
}

static void doc_environment(struct doc *d, const struct setting_def *def)
{
	if (def->env)
		put(d, "`%s`, ", def->env);
	if (def->env_file)
		put(d, "`%s` (a file holding it), ", def->env_file);
	doc_env_name(d, def->name);
}

enum mn_err settings_doc_table(struct buf *out)
{
	struct doc doc = {.out = out, .err = MN_OK}, *d = &doc;

	put(d, "%s",
	    "| setting | type | default | accepted | dynamic | secret | environment |\n"
	    "|---|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < settings_count; i++) {
		const struct setting_def *def = &settings_table[i];

		put(d, "%s", "| `");
		doc_name(d, def->name);
		put(d, "` | %s | ", type_names[def->type]);
		doc_default(d, def);
		put(d, "%s", " | ");
		doc_accepted(d, def);
		put(d, " | %s | %s | ", def->dynamic ? "yes" : "no", def->secret ? "yes" : "no");
		doc_environment(d, def);
		put(d, "%s", " |\n");
	}
	return d->err;
}

/* The offset of the line 'line' (ending with '\n') in page[from, len), or
 * SIZE_MAX. */
static size_t doc_find_line(const char *page, size_t len, size_t from, const char *line)
{
	size_t n = strlen(line);

	for (size_t i = from; i + n <= len; i++)
		if ((i == 0 || page[i - 1] == '\n') && memcmp(page + i, line, n) == 0)
			return i;
	return SIZE_MAX;
}

enum mn_err settings_doc_splice(const char *page, size_t len, struct buf *out)
{
	size_t begin = doc_find_line(page, len, 0, SETTINGS_DOC_BEGIN), end;
	enum mn_err err;

	if (begin == SIZE_MAX)
		return MN_NOT_FOUND;
	begin += strlen(SETTINGS_DOC_BEGIN);
	end = doc_find_line(page, len, begin, SETTINGS_DOC_END);
	if (end == SIZE_MAX)
		return MN_NOT_FOUND;
	err = buf_append(out, page, begin);
	if (err == MN_OK)
		err = settings_doc_table(out);
	if (err == MN_OK)
		err = buf_append(out, page + end, len - end);
	return err;
}
