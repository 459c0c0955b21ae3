#include "config_state.h"
#include "core/array.h"
#include "core/escape.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void config_state_init(struct config_state *st, struct buf *errors, struct buf *warnings)
{
	memset(st, 0, sizeof(*st));
	st->errors = errors;
	st->warnings = warnings;
}

void config_state_release(struct config_state *st)
{
	for (size_t i = 0; i < st->n_slots; i++) {
		free(st->slots[i].name);
		free(st->slots[i].origin);
		json_decref(st->slots[i].value);
	}
	free(st->slots);
	st->slots = NULL;
	st->n_slots = 0;
	st->alloc = 0;
}

struct config_slot *config_state_find(const struct config_state *st, const char *name)
{
	for (size_t i = 0; i < st->n_slots; i++)
		if (strcmp(st->slots[i].name, name) == 0)
			return &st->slots[i];
	return NULL;
}

const char *config_state_string(const struct config_state *st, const char *name)
{
	struct config_slot *slot = config_state_find(st, name);

	return slot ? json_string_value(slot->value) : NULL;
}

static struct config_slot *config_state_add(struct config_state *st, const char *name,
					    const struct setting_def *def)
{
	struct config_slot *slot;

	if (!array_reserve(&st->slots, &st->alloc, st->n_slots, sizeof(*st->slots), 64))
		return NULL;
	slot = &st->slots[st->n_slots];
	memset(slot, 0, sizeof(*slot));
	slot->name = strdup(name);
	if (slot->name == NULL)
		return NULL;
	slot->def = def;
	slot->source = CONFIG_SRC_DEFAULT;
	st->n_slots++;
	return slot;
}

enum mn_err config_state_set(struct config_state *st, const char *name, const char *text,
			     json_t *value, enum config_source source, const char *origin,
			     char *reason, size_t len)
{
	const struct setting_def *def = settings_find(name);
	struct config_slot *slot;
	char *dup = NULL;

	if (def == NULL) {
		json_decref(value);
		snprintf(reason, len, "unknown setting");
		return MN_NOT_FOUND;
	}
	if (text) {
		value = settings_parse_text(def, text, reason, len);
		if (value == NULL)
			return MN_INVALID;
	}
	if (value == NULL)
		return MN_NOMEM;
	if (!settings_check(def, &value, reason, len)) {
		json_decref(value);
		return MN_INVALID;
	}
	slot = config_state_find(st, name);
	if (slot && slot->value && slot->source > source) {
		json_decref(value);
		return MN_OK;
	}
	if (origin && (dup = strdup(origin)) == NULL)
		goto out_nomem;
	if (slot == NULL && (slot = config_state_add(st, name, def)) == NULL)
		goto out_nomem;
	json_decref(slot->value);
	free(slot->origin);
	slot->value = value;
	slot->source = source;
	slot->origin = dup;
	return MN_OK;
out_nomem:
	free(dup);
	json_decref(value);
	return MN_NOMEM;
}

static void config_state_vappend(struct buf *b, const char *fmt, va_list ap)
{
	if (b == NULL)
		return;
	if (escape_vprintf(b, ESCAPE_TEXT, fmt, ap) == MN_OK)
		buf_puts(b, "\n");
}

void config_state_error(struct config_state *st, const char *fmt, ...)
{
	va_list ap;

	st->n_errors++;
	va_start(ap, fmt);
	config_state_vappend(st->errors, fmt, ap);
	va_end(ap);
}

void config_state_warning(struct config_state *st, const char *fmt, ...)
{
	va_list ap;

	st->n_warnings++;
	va_start(ap, fmt);
	config_state_vappend(st->warnings, fmt, ap);
	va_end(ap);
}
